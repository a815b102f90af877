//! The request log, end to end: records in files and in SQLite/PostgreSQL,
//! secrets kept out, nothing lost under load or at shutdown, and replay.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::Row as _;

use yallmp::config::{Config, DatabaseTarget, Env};
use yallmp::reqlog::db::Db;

use crate::support;
use crate::support::logged::{events, files, logged_proxy, of_kind};
use crate::support::*;

const BACKEND_KEY: &str = "sk-DISTINCTIVE-backend-7f3a9";
const CLIENT_KEY: &str = "cl-DISTINCTIVE-client-51b2";
const BODY_SECRET: &str = "bd-DISTINCTIVE-field-0c4e";

fn yaml(ok: &str, failing: &str) -> String {
    format!(
        r#"
model_list:
  - {{model_name: good, model_params: {{api_base: '{ok}', api_key: {BACKEND_KEY}}}}}
  - {{model_name: flaky, model_params: {{api_base: '{failing}', api_key: {BACKEND_KEY}}}}}
  - {{model_name: dead, model_params: {{api_base: '{failing}', api_key: {BACKEND_KEY}}}}}
router_settings:
  num_retries: 1
  retry_backoff_ms: 1
  fallbacks: {{flaky: [good]}}
"#
    )
}

async fn send(server: &yallmp::Server, body: Value) -> (u16, String) {
    let r = client()
        .post(format!("{}/v1/chat/completions", server.url()))
        .header("authorization", format!("Bearer {CLIENT_KEY}"))
        .header("x-request-id", body["echo"].as_str().unwrap_or("no-id"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Runs the four kinds of request and checks both sinks.
async fn four_kinds(db_url: Option<&str>) {
    let stream_frames = vec![
        chunk("Hi"),
        "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":1,\"total_tokens\":8}}\n\n".to_string(),
        DONE.to_string(),
    ];
    let ok = Mock::start(Reply::Echo).await;
    ok.push(Reply::Echo);
    ok.push(Reply::Sse {
        frames: stream_frames.clone(),
        gap: Duration::from_millis(2),
    });
    let failing = Mock::start(Reply::Json(500, json!({"error": {"message": "kaput"}}))).await;
    let l = logged_proxy(&yaml(&ok.url, &failing.url), db_url).await;
    let (s, _) = send(&l.server, json!({"model": "good", "echo": "req-plain", "messages": [{"role": "user", "content": "hello"}], "metadata": {"api_key": BODY_SECRET}})).await;
    assert_eq!(s, 200);
    let (s, text) = send(&l.server, json!({"model": "good", "echo": "req-stream", "stream": true, "stream_options": {"include_usage": true}})).await;
    assert_eq!((s, text), (200, stream_frames.concat()));
    let (s, _) = send(&l.server, json!({"model": "flaky", "echo": "req-fallback"})).await;
    assert_eq!(s, 200);
    let (s, _) = send(&l.server, json!({"model": "dead", "echo": "req-failed"})).await;
    assert_eq!(s, 500);
    let (s, _) = send(&l.server, json!({"model": "nope", "echo": "req-unknown"})).await;
    assert_eq!(s, 404);
    let db = match db_url {
        Some(url) => Db::connect(&pg::target(url)).await.unwrap(),
        None => Db::connect(&DatabaseTarget::Sqlite {
            path: l.dir.join("yallmp.db"),
        })
        .await
        .unwrap(),
    };
    l.server.shutdown().await;

    // Files.
    let files = files(&l.dir);
    assert_eq!(
        files.len(),
        5,
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    let find = |id: &str| {
        let (name, text) = files
            .iter()
            .find(|(n, t)| support::logged::is_request(n, t, id))
            .unwrap_or_else(|| panic!("no file for {id}"));
        (name.clone(), events(text))
    };
    let (name, ev) = find("req-plain");
    let req = of_kind(&ev, "request")[0];
    // Named by the proxy's own id; the client's x-request-id is kept beside it.
    let own_id = req["id"].as_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&own_id).is_ok(), "{own_id}");
    assert!(name.ends_with(&format!("-{own_id}_good.log")), "{name}");
    assert_eq!(req["client_request_id"], "req-plain");
    assert_eq!(req["method"], "POST");
    assert_eq!(req["path"], "/v1/chat/completions");
    assert_eq!(req["model"], "good");
    assert_eq!(req["headers"]["authorization"], "***");
    assert!(req["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(req["body"]["messages"][0]["content"], "hello");
    assert_eq!(req["body"]["metadata"]["api_key"], "***");
    let att = of_kind(&ev, "attempt");
    assert_eq!(att.len(), 1);
    assert_eq!(att[0]["backend"], "good#1");
    assert_eq!(att[0]["status"], 200);
    assert!(
        att[0]["url"]
            .as_str()
            .unwrap()
            .ends_with("/v1/chat/completions")
    );
    assert!(att[0]["latency_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(att[0]["headers"]["content-type"], "application/json");
    let resp = of_kind(&ev, "response")[0];
    assert_eq!(resp["status"], 200);
    assert_eq!(resp["body"]["mock_extra"]["kept"], true);
    let out = of_kind(&ev, "outcome")[0];
    assert_eq!(out["outcome"], "ok");
    assert_eq!(out["usage"]["total_tokens"], 5);
    assert!(out["ttfb_ms"].as_f64().is_some() && out["total_ms"].as_f64().is_some());

    let (_, ev) = find("req-stream");
    let chunks = of_kind(&ev, "chunk");
    let relayed: String = chunks.iter().map(|c| c["data"].as_str().unwrap()).collect();
    assert_eq!(relayed, stream_frames.concat());
    assert!(
        chunks
            .windows(2)
            .all(|w| w[0]["t_ms"].as_f64() <= w[1]["t_ms"].as_f64())
    );
    let out = of_kind(&ev, "outcome")[0];
    assert_eq!(out["outcome"], "ok");
    assert_eq!(out["usage"]["prompt_tokens"], 7);

    let (_, ev) = find("req-fallback");
    let att = of_kind(&ev, "attempt");
    let seen: Vec<(String, Value)> = att
        .iter()
        .map(|a| {
            (
                a["backend"].as_str().unwrap().to_string(),
                a["status"].clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("flaky#1".into(), json!(500)),
            ("flaky#1".into(), json!(500)),
            ("good#1".into(), json!(200))
        ]
    );
    assert_eq!(att[0]["error"], "kaput");
    assert_eq!(of_kind(&ev, "outcome")[0]["outcome"], "ok");
    assert_eq!(of_kind(&ev, "outcome")[0]["backend"], "good#1");

    let (_, ev) = find("req-failed");
    assert_eq!(of_kind(&ev, "attempt").len(), 2);
    let out = of_kind(&ev, "outcome")[0];
    assert_eq!(
        (out["outcome"].as_str(), out["status"].as_u64()),
        (Some("all_failed"), Some(500))
    );
    assert!(out["error"].is_string());

    let (_, ev) = find("req-unknown");
    assert_eq!(of_kind(&ev, "outcome")[0]["outcome"], "client_error");

    // No secret anywhere in the files.
    for (name, text) in &files {
        for secret in [BACKEND_KEY, CLIENT_KEY, BODY_SECRET] {
            assert!(!text.contains(secret), "{secret} in {name}");
        }
    }

    // The database has the same.
    assert_eq!(db.count().await.unwrap(), 5);
    if let Db::Sqlite(p) = &db {
        let size: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(p)
            .await
            .unwrap();
        assert_eq!(size, 8192, "a new log database uses 8 KiB pages");
    }
    let dump: String = match &db {
        Db::Sqlite(p) => sqlx::query("SELECT client_request_id, outcome, status, stream, attempts_count, backend, total_tokens, request_headers, request_body, attempts, response_body, chunks FROM requests ORDER BY client_request_id")
            .fetch_all(p)
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let mut line = String::new();
                for i in 0..12 {
                    let v: Option<String> = r.try_get::<Option<String>, _>(i).ok().flatten().or_else(|| r.try_get::<Option<i64>, _>(i).ok().flatten().map(|n| n.to_string()));
                    line.push_str(&v.unwrap_or_default());
                    line.push('|');
                }
                line + "\n"
            })
            .collect(),
        Db::Postgres(p) => sqlx::query("SELECT concat_ws('|', client_request_id, outcome, status, stream, attempts_count, backend, total_tokens, request_headers::text, request_body::text, request_body_text, attempts::text, response_body::text, chunks::text) FROM requests ORDER BY client_request_id")
            .fetch_all(p)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(0) + "\n")
            .collect(),
    };
    for secret in [BACKEND_KEY, CLIENT_KEY, BODY_SECRET] {
        assert!(!dump.contains(secret), "{secret} in the database");
    }
    let row = |id: &str| {
        dump.lines()
            .find(|l| l.starts_with(id))
            .unwrap()
            .to_string()
    };
    assert!(
        row("req-failed").starts_with("req-failed|all_failed|500|"),
        "{}",
        row("req-failed")
    );
    assert!(
        row("req-fallback").contains("|3|good#1|"),
        "{}",
        row("req-fallback")
    );
    assert!(
        row("req-stream").contains("|8|"),
        "total tokens: {}",
        row("req-stream")
    );
    assert!(row("req-stream").contains("[DONE]"));
    assert!(row("req-plain").contains("mock_extra"));
    assert!(db.fetch_request("req-plain").await.unwrap().is_none());
    let logged = db.fetch_request(&own_id).await.unwrap().unwrap();
    assert_eq!(logged.path, "/v1/chat/completions");
    db.close().await;
}

#[tokio::test]
async fn records_in_files_and_sqlite() {
    four_kinds(None).await;
}

/// A log database made before 8 KiB pages keeps its page size (SQLite can
/// change it only by a VACUUM) and is used as it is.
#[tokio::test]
async fn an_existing_database_keeps_its_page_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        use sqlx::ConnectOptions as _;
        let mut c = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .page_size(4096)
            .connect()
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut c)
            .await
            .unwrap();
    }
    let db = Db::connect(&DatabaseTarget::Sqlite { path }).await.unwrap();
    db.migrate().await.unwrap();
    assert_eq!(db.count().await.unwrap(), 0);
    let Db::Sqlite(p) = &db else { unreachable!() };
    let size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(p)
        .await
        .unwrap();
    assert_eq!(size, 4096);
    db.close().await;
}

/// PostgreSQL runs on this machine; `.ci/run` exports its URL. When the
/// variable is set, an unreachable server fails the test.
#[tokio::test]
async fn records_in_postgres() {
    support::pg::with_fresh_database(|url| async move { four_kinds(Some(&url)).await }).await;
}

#[tokio::test]
async fn a_thousand_concurrent_requests_give_a_thousand_records() {
    let mock = Mock::start(Reply::Echo).await;
    let l = logged_proxy(
        &format!(
            "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\n",
            mock.url
        ),
        None,
    )
    .await;
    let c = client();
    let url = format!("{}/v1/chat/completions", l.server.url());
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let c = c.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let stream = i % 2 == 0;
                let r = c
                    .post(url)
                    .json(&json!({"model": "m", "n": i, "stream": stream}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let db = Db::connect(&DatabaseTarget::Sqlite {
        path: l.dir.join("yallmp.db"),
    })
    .await
    .unwrap();
    let stats = l.server.state().log.stats().clone();
    l.server.shutdown().await;
    assert_eq!(files(&l.dir).len(), 1000);
    assert_eq!(db.count().await.unwrap(), 1000);
    // Every record counted against the queue's byte bound was given back.
    assert_eq!(
        stats
            .queued_bytes
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(stats.dropped.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[tokio::test]
async fn shutdown_with_records_queued_loses_none() {
    let l = logged_proxy(
        "model_list:\n  - {model_name: s, model_params: {api_type: stub}}\n",
        None,
    )
    .await;
    let c = client();
    let url = format!("{}/v1/chat/completions", l.server.url());
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let c = c.clone();
            let url = url.clone();
            tokio::spawn(async move {
                c.post(url)
                    .json(&json!({"model": "s", "n": i}))
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    // Straight to shutdown: whatever is still queued must be written.
    let db = Db::connect(&DatabaseTarget::Sqlite {
        path: l.dir.join("yallmp.db"),
    })
    .await
    .unwrap();
    l.server.shutdown().await;
    assert_eq!(db.count().await.unwrap(), 300);
    assert_eq!(files(&l.dir).len(), 300);
}

#[tokio::test]
async fn unusable_sinks_fail_at_start_unless_disabled() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let yaml = format!(
        "model_list: []\nproxy_settings: {{server: {{port: 0}}, logging: {{files: {{dir: '{}/sub'}}, database: {{enabled: false}}}}}}\n",
        file.path().display()
    );
    let config = Config::from_yaml(&yaml, None, &Env::default()).unwrap();
    let err = yallmp::serve(config).await.err().unwrap().to_string();
    assert!(
        err.contains("request log directory") && err.contains("not writable"),
        "{err}"
    );

    let yaml = "model_list: []\nproxy_settings: {server: {port: 0}, logging: {files: {enabled: false}}}\ndatabase: {url: 'postgres://nobody@127.0.0.1:9/none'}\n";
    let config = Config::from_yaml(yaml, None, &Env::default()).unwrap();
    let err = yallmp::serve(config).await.err().unwrap().to_string();
    assert!(
        err.contains("request log database (postgres 127.0.0.1:9/none) is not usable"),
        "{err}"
    );
    assert!(!err.contains("nobody@"), "{err}");

    let yaml = "model_list: []\nproxy_settings: {server: {port: 0}, logging: {files: {enabled: false}, database: {enabled: false}}}\ndatabase: {url: 'postgres://nobody@127.0.0.1:9/none'}\n";
    let config = Config::from_yaml(yaml, None, &Env::default()).unwrap();
    yallmp::serve(config).await.unwrap().shutdown().await;
}

#[tokio::test]
async fn replay_round_trips_stream_and_non_stream_and_prints_runnable_curl() {
    let frames = vec![chunk("again"), DONE.to_string()];
    let mock = Mock::start(Reply::Echo).await;
    mock.push(Reply::Echo);
    mock.push(Reply::Sse {
        frames: frames.clone(),
        gap: Duration::ZERO,
    });
    mock.push(Reply::Echo);
    mock.push(Reply::Sse {
        frames: frames.clone(),
        gap: Duration::ZERO,
    });
    let l = logged_proxy(
        &format!(
            "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\n",
            mock.url
        ),
        None,
    )
    .await;
    let plain = json!({"model": "m", "echo": "one", "messages": [{"role": "user", "content": "x"}], "odd":   1.50});
    post(&l.server, "/v1/chat/completions", &plain).await;
    post(
        &l.server,
        "/v1/chat/completions",
        &json!({"model": "m", "stream": true}),
    )
    .await;
    let base = l.server.url();
    // Keep the proxy up for the replays: read the files once written.
    let dir = l.dir.clone();
    let mut logs = Vec::new();
    for _ in 0..100 {
        logs = files(&dir);
        if logs.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(logs.len(), 2);
    let path_of = |stream: bool| {
        let (name, _) = logs
            .iter()
            .find(|(_, t)| events(t)[0]["stream"] == stream)
            .unwrap();
        dir.join("requests").join(name)
    };
    let bin = env!("CARGO_BIN_EXE_yallmp");
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || Command::new(bin).args(args).output().unwrap())
    };
    let out = run(vec![
        "replay".into(),
        path_of(false).display().to_string(),
        "--base-url".into(),
        base.clone(),
    ])
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["echo"], "one");
    // The replayed body reached the upstream byte for byte.
    assert_eq!(mock.hits()[2].raw, mock.hits()[0].raw);

    let out = run(vec![
        "replay".into(),
        path_of(true).display().to_string(),
        "--base-url".into(),
        base.clone(),
    ])
    .await
    .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), frames.concat());

    let out = run(vec![
        "replay".into(),
        path_of(false).display().to_string(),
        "--base-url".into(),
        base.clone(),
        "--print-curl".into(),
    ])
    .await
    .unwrap();
    let curl = String::from_utf8(out.stdout).unwrap();
    assert!(curl.starts_with("curl "), "{curl}");
    let ran = tokio::task::spawn_blocking(move || {
        Command::new("sh").arg("-c").arg(curl).output().unwrap()
    })
    .await
    .unwrap();
    let v: Value = serde_json::from_slice(&ran.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&ran.stdout)));
    assert_eq!(v["echo"], "one");
    assert_eq!(mock.count(), 5, "curl did not reach the proxy");

    let out = run(vec![
        "replay".into(),
        path_of(false).display().to_string(),
        "--dry-run".into(),
        "--model".into(),
        "other".into(),
        "--stream-mode".into(),
        "on".into(),
    ])
    .await
    .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("\"model\":\"other\"") && shown.contains("\"stream\":true"),
        "{shown}"
    );
    assert_eq!(mock.count(), 5, "dry run sent something");

    // Not a log of ours: the error names the line.
    let bogus = dir.join("bogus.log");
    std::fs::write(&bogus, "not json\n").unwrap();
    let out = run(vec!["replay".into(), bogus.display().to_string()])
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus.log:1: not a yallmp request log"));
    l.server.shutdown().await;
}

#[tokio::test]
async fn db_commands_migrate_rollback_current_history() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "database: {{connection: {{sqlite: {{path: '{}/x.db'}}}}}}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_yallmp");
    let run = |a: &str| {
        let o = Command::new(bin)
            .args(["db", a, "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{a}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    assert!(run("history").contains("pending"));
    run("migrate");
    // The newest migration in migrations/sqlite is the current one.
    let newest = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .unwrap()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .split('_')
                .next()?
                .parse::<i64>()
                .ok()
        })
        .max()
        .unwrap();
    assert!(run("current").starts_with(&format!("{newest} ")));
    assert!(run("history").contains("applied"));
    assert!(run("rollback").contains("rolled back"));
    // The rest, newest first, until none is applied.
    for _ in 0..50 {
        if run("current").contains("no migration applied") {
            break;
        }
        assert!(run("rollback").contains("rolled back"));
    }
    assert!(run("current").contains("no migration applied"));
    run("migrate");
}

/// Sends `n` chat completions with `x-request-id: id` (the same id each
/// time); returns the echoed ids.
async fn send_with_id(server: &yallmp::Server, id: &str, n: usize) -> Vec<String> {
    let mut echoed = Vec::new();
    for i in 0..n {
        let r = client()
            .post(format!("{}/v1/chat/completions", server.url()))
            .header("x-request-id", id)
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": format!("prompt {i}")}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        echoed.push(r.headers()["x-request-id"].to_str().unwrap().to_string());
        let _ = r.text().await;
    }
    echoed
}

/// A client-chosen `x-request-id` used to be the record's key: five
/// requests with `dup-id-1` left one row (SQLite `INSERT OR REPLACE`) or
/// kept the first and dropped the rest while counting them written
/// (PostgreSQL `ON CONFLICT DO NOTHING`), and one file; ids that differ
/// collided once made safe for a file name. Now each record is keyed by the
/// proxy's own id, the client's is kept as `client_request_id` (and still
/// echoed and sent upstream), and the admin API finds them by it.
async fn client_ids_never_overwrite(db_url: Option<&str>) {
    let mock = Mock::start(Reply::Echo).await;
    let l = logged_proxy(
        &format!(
            "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\n",
            mock.url
        ),
        db_url,
    )
    .await;
    let echoed = send_with_id(&l.server, "dup-id-1", 5).await;
    assert!(echoed.iter().all(|e| e == "dup-id-1"), "{echoed:?}");
    assert!(
        mock.hits()
            .iter()
            .all(|h| h.headers["x-request-id"] == "dup-id-1")
    );
    // Two ids that are one once made safe for a file name.
    send_with_id(&l.server, "a/b", 1).await;
    send_with_id(&l.server, "a?b", 1).await;
    let long = "L".repeat(150);
    send_with_id(&l.server, &format!("{long}-one"), 1).await;
    send_with_id(&l.server, &format!("{long}-two"), 1).await;

    // The admin API finds all five by the client's id.
    let page = loop {
        let v = get_json(&l.server, "/admin/api/logs?client_request_id=dup-id-1").await;
        if v["data"].as_array().map_or(0, Vec::len) == 5 {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ids: std::collections::HashSet<String> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["client_request_id"], "dup-id-1");
            r["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 5);
    for id in &ids {
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        let d = get_json(&l.server, &format!("/admin/api/logs/{id}")).await;
        assert_eq!(d["client_request_id"], "dup-id-1");
    }
    l.server.shutdown().await;

    // Nine files, nine rows, every prompt kept.
    let files = files(&l.dir);
    assert_eq!(
        files.len(),
        9,
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for i in 0..5 {
        let prompt = format!("prompt {i}");
        assert_eq!(
            files
                .iter()
                .filter(|(_, t)| t.contains(&prompt)
                    && t.contains("\"client_request_id\":\"dup-id-1\""))
                .count(),
            1,
            "{prompt}"
        );
    }
    let db = match db_url {
        Some(url) => Db::connect(&pg::target(url)).await.unwrap(),
        None => Db::connect(&DatabaseTarget::Sqlite {
            path: l.dir.join("yallmp.db"),
        })
        .await
        .unwrap(),
    };
    assert_eq!(db.count().await.unwrap(), 9);
    let clients: Vec<Option<String>> = match &db {
        Db::Sqlite(p) => {
            sqlx::query_scalar("SELECT client_request_id FROM requests ORDER BY client_request_id")
                .fetch_all(p)
                .await
                .unwrap()
        }
        Db::Postgres(p) => {
            sqlx::query_scalar("SELECT client_request_id FROM requests ORDER BY client_request_id")
                .fetch_all(p)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        clients
            .iter()
            .filter(|c| c.as_deref() == Some("dup-id-1"))
            .count(),
        5
    );
    assert!(clients.contains(&Some("a/b".into())) && clients.contains(&Some("a?b".into())));
    db.close().await;
}

#[tokio::test]
async fn a_client_request_id_never_overwrites_a_record_sqlite() {
    client_ids_never_overwrite(None).await;
}

#[tokio::test]
async fn a_client_request_id_never_overwrites_a_record_postgres() {
    support::pg::with_fresh_database(|url| async move {
        client_ids_never_overwrite(Some(&url)).await;
    })
    .await;
}

/// The client_request_id, response_id and keys-and-spend migrations go
/// down and up again on SQLite.
#[tokio::test]
async fn the_client_request_id_migration_is_reversible() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&DatabaseTarget::Sqlite {
        path: dir.path().join("m.db"),
    })
    .await
    .unwrap();
    db.migrate().await.unwrap();
    let Db::Sqlite(p) = &db else { unreachable!() };
    let has_column = |name: &'static str| async move {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM pragma_table_info('requests') WHERE name = ?",
        )
        .bind(name)
        .fetch_one(p)
        .await
        .unwrap()
    };
    assert_eq!(has_column("client_request_id").await, 1);
    assert_eq!(has_column("response_id").await, 1);
    assert_eq!(has_column("response_turn").await, 1);
    // The keys-and-spend migration came after them: it goes down first.
    assert_eq!(has_column("cost_usd").await, 1);
    assert_eq!(db.rollback().await.unwrap(), Some(20261208000010));
    assert_eq!(has_column("cost_usd").await, 0);
    assert_eq!(has_column("key_id").await, 0);
    assert_eq!(db.rollback().await.unwrap(), Some(20261207000010));
    assert_eq!(has_column("response_id").await, 0);
    assert_eq!(has_column("response_turn").await, 0);
    assert_eq!(has_column("client_request_id").await, 1);
    assert_eq!(db.rollback().await.unwrap(), Some(20261206000010));
    assert_eq!(has_column("client_request_id").await, 0);
    db.migrate().await.unwrap();
    assert_eq!(has_column("client_request_id").await, 1);
    assert_eq!(has_column("response_id").await, 1);
    assert_eq!(has_column("cost_usd").await, 1);
    db.close().await;
}

/// A model whose backend is this proxy itself (the same model): the inner
/// hop carries the proxy's own `Via` marker and is refused with 508
/// `loop_detected`, which the outer hop neither retries nor falls over on
/// the same loop: the client gets one clean 508, and there is one record
/// per hop. A backend that is this proxy serving another model still works.
#[tokio::test]
async fn a_loop_through_the_proxy_itself_is_refused_once_with_508() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let yaml = format!(
        "model_list:\n  - {{model_name: loop, model_params: {{api_base: 'http://127.0.0.1:{port}/v1'}}}}\n  - {{model_name: s, model_params: {{api_type: stub}}}}\n  - {{model_name: via, model_params: {{api_base: 'http://127.0.0.1:{port}/v1', target_model: s}}}}\nrouter_settings: {{num_retries: 3, retry_backoff_ms: 1}}\n"
    );
    let (config, dir) = support::logged::logged_config(&yaml, None);
    let server = tokio::time::timeout(Duration::from_secs(30), yallmp::serve_on(listener, config))
        .await
        .unwrap()
        .unwrap();
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        client()
            .post(format!("{}/v1/chat/completions", server.url()))
            .header("x-request-id", "loop-1")
            .json(&json!({"model": "loop", "messages": [{"role": "user", "content": "hi"}]}))
            .send(),
    )
    .await
    .expect("the loop was not stopped")
    .unwrap();
    assert_eq!(r.status(), 508);
    assert_eq!(r.headers()["x-request-id"], "loop-1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "loop_detected", "{v}");
    // The proxy through itself to another model is no loop.
    let (s, _, text) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "via", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(s, 200, "{text}");
    server.shutdown().await;
    // Two records for the loop (both carry the client's id): the outer one
    // with its single attempt answered 508, the inner one refused.
    let loop_records: Vec<Vec<Value>> = files(&dir)
        .iter()
        .filter(|(n, t)| support::logged::is_request(n, t, "loop-1"))
        .map(|(_, t)| events(t))
        .collect();
    assert_eq!(loop_records.len(), 2);
    let mut attempts: Vec<usize> = loop_records
        .iter()
        .map(|ev| of_kind(ev, "attempt").len())
        .collect();
    attempts.sort();
    assert_eq!(attempts, vec![0, 1]);
    for ev in &loop_records {
        assert_eq!(of_kind(ev, "outcome")[0]["status"], 508);
    }
}

/// A request whose backend hangs and whose client leaves: the attempt in
/// progress used to be lost (`attempts: []`, no backend). It is listed as
/// it starts, and closed as cancelled when the request ends without it.
#[tokio::test]
async fn the_attempt_in_progress_is_recorded_when_the_client_leaves() {
    let mock = Mock::start(Reply::Delay(Duration::from_secs(60), Box::new(Reply::Echo))).await;
    let l = logged_proxy(
        &format!(
            "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}', request_timeout: 600}}}}\n",
            mock.url
        ),
        None,
    )
    .await;
    let r = client()
        .post(format!("{}/v1/chat/completions", l.server.url()))
        .header("x-request-id", "hung-1")
        .timeout(Duration::from_millis(400))
        .json(&json!({"model": "m", "messages": []}))
        .send()
        .await;
    assert!(r.is_err(), "the mock answered");
    let ev = support::logged::record(&l.dir, "hung-1").await;
    let out = of_kind(&ev, "outcome")[0];
    assert_eq!(out["outcome"], "client_disconnected");
    assert_eq!(out["backend"], "m#1");
    assert_eq!(out["attempts"], 1);
    let att = of_kind(&ev, "attempt");
    assert_eq!(att.len(), 1);
    assert_eq!(att[0]["backend"], "m#1");
    assert!(att[0]["status"].is_null());
    assert!(
        att[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("cancelled: the client went away"),
        "{}",
        att[0]
    );
    assert!(
        att[0]["latency_ms"].as_f64().unwrap() >= 300.0,
        "{}",
        att[0]
    );
    l.server.shutdown().await;
}

/// The log holds prompts: its files and database were 0644 in 0755
/// directories. Now files (and the SQLite database with its -wal and -shm)
/// are 0600 and new directories 0700, whatever the umask; an existing log
/// directory open to others is tightened.
#[cfg(unix)]
#[tokio::test]
async fn the_log_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let mock = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\n",
        mock.url
    );
    let (mut config, dir) = support::logged::logged_config(&yaml, None);
    // A log directory that already exists, open to everyone; the database
    // in a directory of its own that does not exist yet.
    let requests = dir.join("requests");
    std::fs::create_dir_all(&requests).unwrap();
    std::fs::set_permissions(&requests, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db_path = dir.join("db").join("log.db");
    config.database.target = DatabaseTarget::Sqlite {
        path: db_path.clone(),
    };
    let server = yallmp::serve(config).await.unwrap();
    let (s, _, _) = post(&server, "/v1/chat/completions", &json!({"model": "m"})).await;
    assert_eq!(s, 200);
    let file = loop {
        if let Some(e) = std::fs::read_dir(&requests).unwrap().next() {
            break e.unwrap().path();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    while server.log_db().unwrap().count().await.unwrap() < 1 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(mode(&requests), 0o700);
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&dir.join("db")), 0o700);
    for suffix in ["", "-wal", "-shm"] {
        let p = std::path::PathBuf::from(format!("{}{suffix}", db_path.display()));
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    server.shutdown().await;
}
