//! The request log's `on_full` modes (a full queue makes new requests wait,
//! or drops records) and its `segments` file layout (records appended to
//! rolling files), end to end.

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};

use yallmp::config::DatabaseTarget;
use yallmp::reqlog::db::Db;

use crate::support::logged::{files, logged_proxy};
use crate::support::*;

const REQUESTS: usize = 200;
const CONCURRENCY: usize = 32;

/// Sends `REQUESTS` requests, `CONCURRENCY` at a time; every one must be
/// answered 200.
async fn load(server: &yallmp::Server) {
    let url = format!("{}/v1/chat/completions", server.url());
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let c = client();
            let url = url.clone();
            let next = next.clone();
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < REQUESTS {
                    let r = c
                        .post(&url)
                        .json(&json!({"model": "m", "messages": []}))
                        .send()
                        .await
                        .unwrap();
                    let status = r.status();
                    let body = r.text().await.unwrap();
                    assert_eq!(status, 200, "{body}");
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
}

/// A queue of one byte (so it is full while any record is in the writer's
/// hands: the writer lingers 20 ms over a small batch before it writes it,
/// which makes it much slower than 32 clients against a mock answering at
/// once). With `wait` every request is answered and every record lands,
/// some requests having waited; with `drop` the same load loses records,
/// which shows the test can tell the two apart.
#[tokio::test]
async fn wait_lands_every_record_where_drop_loses_some() {
    let mock = Mock::start(Reply::Echo).await;
    for mode in ["wait", "drop"] {
        let l = logged_proxy(
            &format!(
                "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\nproxy_settings:\n  logging: {{on_full: {mode}, queue_size: 1, queue_max_bytes: 1}}\n",
                mock.url
            ),
            None,
        )
        .await;
        load(&l.server).await;
        let db = Db::connect(&DatabaseTarget::Sqlite {
            path: l.dir.join("yallmp.db"),
        })
        .await
        .unwrap();
        let stats = l.server.state().log.stats().clone();
        l.server.shutdown().await;
        let dropped = stats.dropped.load(Ordering::Relaxed) as usize;
        let waits = stats.waits.load(Ordering::Relaxed);
        let rows = db.count().await.unwrap() as usize;
        let written = files(&l.dir).len();
        if mode == "wait" {
            assert_eq!(dropped, 0);
            assert_eq!(written, REQUESTS);
            assert_eq!(rows, REQUESTS);
            assert!(waits > 0, "no request waited");
            assert_eq!(stats.wait_timeouts.load(Ordering::Relaxed), 0);
        } else {
            assert!(dropped > 0, "drop mode lost nothing");
            assert_eq!(waits, 0);
            assert_eq!(written + dropped, REQUESTS);
            assert_eq!(rows + dropped, REQUESTS);
        }
        assert_eq!(stats.queued.load(Ordering::Relaxed), 0);
        assert_eq!(stats.queued_bytes.load(Ordering::Relaxed), 0);
    }
}

/// The admission wait is counted in the metrics the proxy serves.
#[tokio::test]
async fn the_wait_counters_are_served() {
    let mock = Mock::start(Reply::Echo).await;
    let l = logged_proxy(
        &format!(
            "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\nproxy_settings:\n  logging: {{queue_max_bytes: 1}}\n",
            mock.url
        ),
        None,
    )
    .await;
    load(&l.server).await;
    let text = client()
        .get(format!("{}/metrics", l.server.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let waits = l.server.state().log.stats().waits.load(Ordering::Relaxed);
    assert!(waits > 0);
    assert!(
        text.lines()
            .any(|l| l.starts_with("yallmp_log_waits_total ") && !l.ends_with(" 0")),
        "{text}"
    );
    l.server.shutdown().await;
}

/// Every segment file under the log's directory, sorted by path.
fn segment_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = yallmp::reqlog::segments::list(&dir.join("requests"));
    out.sort();
    out
}

/// Records in segments: one JSON line each in rolling, private files; read
/// back by the admin API (from the database) and by `yallmp replay` (a
/// segment and an id, or an id alone found in the newest segments when the
/// log has no database); cleaned by scripts/clean-logs.sh.
#[tokio::test]
async fn segments_hold_every_record_and_read_back() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let frames = vec![chunk("seg"), DONE.to_string()];
    let mock = Mock::start(Reply::Echo).await;
    mock.push(Reply::Echo);
    mock.push(Reply::Sse {
        frames: frames.clone(),
        gap: Duration::ZERO,
    });
    let yaml = format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\nproxy_settings:\n  logging: {{files: {{layout: segments, segment_max_bytes: 600}}}}\n",
        mock.url
    );
    let l = logged_proxy(&yaml, None).await;
    let (s, _, _) = post(
        &l.server,
        "/v1/chat/completions",
        &json!({"model": "m", "echo": "seg-one", "messages": [{"role": "user", "content": "x\ny"}]}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, _) = post(
        &l.server,
        "/v1/chat/completions",
        &json!({"model": "m", "stream": true}),
    )
    .await;
    assert_eq!(s, 200);
    // A few more, to roll past segment_max_bytes.
    for i in 0..4 {
        post(
            &l.server,
            "/v1/chat/completions",
            &json!({"model": "m", "n": i}),
        )
        .await;
    }
    let db = l.server.log_db().unwrap().clone();
    for _ in 0..400 {
        if db.count().await.unwrap() == 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(db.count().await.unwrap(), 6);
    let segs = segment_files(&l.dir);
    // Every record is a line; 600 bytes hold one or two, so it rolled.
    let lines: Vec<Value> = segs
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(lines.len(), 6);
    assert!(segs.len() >= 2, "{segs:?}");
    for p in &segs {
        assert_eq!(mode(p), 0o600, "{}", p.display());
        assert_eq!(mode(p.parent().unwrap()), 0o700);
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.len() == "05-000.jsonl".len() && name.ends_with(".jsonl"),
            "{name}"
        );
    }
    assert_eq!(mode(&l.dir.join("requests").join("segments")), 0o700);
    // No per-request files beside them.
    let names: Vec<String> = std::fs::read_dir(l.dir.join("requests"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["segments"]);
    // Each line is the record's events, as a per-request file has them.
    let plain = lines
        .iter()
        .find(|l| l["events"][0]["body"]["echo"] == "seg-one")
        .unwrap();
    let plain_id = plain["id"].as_str().unwrap().to_string();
    assert_eq!(plain["events"][0]["event"], "request");
    assert_eq!(plain["events"][0]["id"], plain_id);
    assert_eq!(
        plain["events"].as_array().unwrap().last().unwrap()["event"],
        "outcome"
    );
    let stream = lines
        .iter()
        .find(|l| l["events"][0]["stream"] == true)
        .unwrap();
    let stream_id = stream["id"].as_str().unwrap().to_string();
    let chunks: Vec<&Value> = stream["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "chunk")
        .collect();
    assert_eq!(chunks.len(), 2);

    // The admin API's detail.
    for id in [&plain_id, &stream_id] {
        let r = client()
            .get(format!("{}/admin/api/logs/{id}", l.server.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["id"], id.as_str(), "{v}");
    }

    // `yallmp replay` of a segment and an id.
    let echo_id = plain_id.clone();
    let echo_seg = segs
        .iter()
        .find(|p| std::fs::read_to_string(p).unwrap().contains(&echo_id))
        .unwrap()
        .clone();
    let bin = env!("CARGO_BIN_EXE_yallmp");
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || Command::new(bin).args(args).output().unwrap())
    };
    let base = l.server.url();
    let out = run(vec![
        "replay".into(),
        echo_seg.display().to_string(),
        "--id".into(),
        echo_id.clone(),
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
    assert_eq!(v["echo"], "seg-one");
    // The replayed body reached the upstream byte for byte.
    let hits = mock.hits();
    assert_eq!(hits.last().unwrap().raw, hits[0].raw);
    // A segment with more than one record needs the id.
    let crowded = segs
        .iter()
        .find(|p| std::fs::read_to_string(p).unwrap().lines().count() > 1);
    if let Some(p) = crowded {
        let out = run(vec![
            "replay".into(),
            p.display().to_string(),
            "--dry-run".into(),
        ])
        .await
        .unwrap();
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("give the record's id"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    l.server.shutdown().await;

    // An id alone, with no database for the log: found in the segments.
    let cfg = l.dir.join("nodb.yaml");
    std::fs::write(
        &cfg,
        format!(
            "model_list: []\nproxy_settings:\n  logging: {{database: {{enabled: false}}, files: {{dir: '{}', layout: segments}}}}\n",
            l.dir.join("requests").display()
        ),
    )
    .unwrap();
    let out = run(vec![
        "--config".into(),
        cfg.display().to_string(),
        "replay".into(),
        "--id".into(),
        echo_id.clone(),
        "--dry-run".into(),
    ])
    .await
    .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shown.contains("seg-one"), "{shown}");
    let out = run(vec![
        "--config".into(),
        cfg.display().to_string(),
        "replay".into(),
        "--id".into(),
        "no-such-record".into(),
        "--dry-run".into(),
    ])
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no logged request with id no-such-record")
    );

    // scripts/clean-logs.sh: segments older than the cut go, the others stay
    // (the replay above added a record: listed again).
    let segs = segment_files(&l.dir);
    let old = &segs[0];
    let touched = Command::new("touch")
        .args(["-d", "10 days ago"])
        .arg(old)
        .status()
        .unwrap();
    assert!(touched.success());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/clean-logs.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(l.dir.join("requests"))
        .args(["--older-than-days", "7"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left = segment_files(&l.dir);
    assert_eq!(left.len(), segs.len() - 1, "{left:?}");
    assert!(!left.contains(old));
    let out = Command::new("bash")
        .arg(script)
        .arg(l.dir.join("requests"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(segment_files(&l.dir).is_empty());
    // Empty day directories go too.
    assert!(
        std::fs::read_dir(l.dir.join("requests").join("segments"))
            .map(|rd| rd.count() == 0)
            .unwrap_or(true)
    );
}

/// A writer held back past the requests' timeout: the database locked by
/// another connection, so its insert waits out SQLite's busy timeout (5 s)
/// while the renderer waits for it and the queue (one byte) fills. A new
/// request then waits its timeout (the backend's `request_timeout`, 0.3 s)
/// and is answered 503 `log_saturated` in its route's dialect; once the lock
/// goes, every request's record lands, the refused ones' too.
#[tokio::test]
async fn a_wait_past_the_timeout_is_a_503_in_the_dialect_and_still_logged() {
    use sqlx::Connection as _;
    let mock = Mock::start(Reply::Echo).await;
    let l = logged_proxy(
        &format!(
            "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}', request_timeout: 0.3}}}}\nproxy_settings:\n  logging: {{queue_size: 1, queue_max_bytes: 1}}\n",
            mock.url
        ),
        None,
    )
    .await;
    let mut lock =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", l.dir.join("yallmp.db").display()))
            .await
            .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut lock)
        .await
        .unwrap();
    let mut sent = 0;
    let mut refused = None;
    // Until the writer is held up: a few batches fill the database stage.
    for _ in 0..60 {
        sent += 1;
        let (s, _, body) = post(&l.server, "/v1/chat/completions", &json!({"model": "m"})).await;
        if s == 503 {
            refused = Some(body);
            break;
        }
        assert_eq!(s, 200, "{body}");
    }
    let body: Value = serde_json::from_str(&refused.expect("no request was refused")).unwrap();
    assert_eq!(body["error"]["code"], "log_saturated", "{body}");
    assert_eq!(body["error"]["type"], "server_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the request log is saturated"),
        "{body}"
    );
    // Anthropic's route answers in Anthropic's shape.
    sent += 1;
    let r = client()
        .post(format!("{}/v1/messages", l.server.url()))
        .json(
            &json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the request log is saturated"),
        "{v}"
    );
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    lock.close().await.unwrap();
    let stats = l.server.state().log.stats().clone();
    assert!(stats.wait_timeouts.load(Ordering::Relaxed) >= 2);
    let db = Db::connect(&DatabaseTarget::Sqlite {
        path: l.dir.join("yallmp.db"),
    })
    .await
    .unwrap();
    l.server.shutdown().await;
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
    assert_eq!(files(&l.dir).len(), sent);
    assert_eq!(db.count().await.unwrap() as usize, sent);
    let saturated = files(&l.dir)
        .into_iter()
        .filter(|(_, text)| text.contains("log_saturated"))
        .count();
    assert_eq!(saturated, 2);
}
