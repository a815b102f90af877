//! The request log, end to end: records in files and in SQLite/PostgreSQL,
//! secrets kept out, nothing lost under load or at shutdown, and replay.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::Row as _;
use support::logged::{events, files, logged_proxy, of_kind};
use support::*;
use yallmp::config::{Config, DatabaseTarget, Env};
use yallmp::reqlog::db::Db;

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
        Some(url) => {
            let c = Config::from_yaml(
                &format!("database: {{url: '{url}'}}\n"),
                None,
                &Env::default(),
            )
            .unwrap();
            Db::connect(&c.database.target).await.unwrap()
        }
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
            .find(|(n, _)| n.contains(id))
            .unwrap_or_else(|| panic!("no file for {id}"));
        (name.clone(), events(text))
    };
    let (name, ev) = find("req-plain");
    assert!(name.ends_with("-req-plain_good.log"), "{name}");
    let req = of_kind(&ev, "request")[0];
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
        Db::Sqlite(p) => sqlx::query("SELECT id, outcome, status, stream, attempts_count, backend, total_tokens, request_headers, request_body, attempts, response_body, chunks FROM requests ORDER BY id")
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
        Db::Postgres(p) => sqlx::query("SELECT concat_ws('|', id, outcome, status, stream, attempts_count, backend, total_tokens, request_headers::text, request_body::text, request_body_text, attempts::text, response_body::text, chunks::text) FROM requests ORDER BY id")
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
    let logged = db.fetch_request("req-plain").await.unwrap().unwrap();
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
    let Some(base) = std::env::var("DATABASE_URL_POSTGRES")
        .ok()
        .filter(|s| !s.is_empty())
    else {
        eprintln!("DATABASE_URL_POSTGRES not set: PostgreSQL test not run");
        return;
    };
    let url = support::pg::fresh_database(&base).await;
    four_kinds(Some(&url)).await;
    support::pg::drop_database(&base, &url).await;
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
