//! A proxy whose request log (files, and SQLite or a given database) goes
//! to a fresh directory, and reading its records back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use yallmp::config::{Config, Env};

pub struct Logged {
    pub server: yallmp::Server,
    /// The log's directory: `requests/` holds the files, `yallmp.db` the
    /// SQLite database.
    pub dir: PathBuf,
}

/// The config of `yaml`, listening on port 0, its log in a fresh directory
/// (returned), its database `db_url` when given (else SQLite there).
pub fn logged_config(yaml: &str, db_url: Option<&str>) -> (Config, PathBuf) {
    let mut config = Config::from_yaml(yaml, None, &Env::isolated::<[(&str, &str); 0], _, _>([]))
        .unwrap_or_else(|e| panic!("config: {e}"));
    config.server.host = "127.0.0.1".into();
    config.server.port = 0;
    let dir = super::isolate_logs(&mut config);
    if let Some(url) = db_url {
        config.database.target = Config::from_yaml(
            &format!("database: {{url: '{url}'}}\n"),
            None,
            &Env::default(),
        )
        .unwrap()
        .database
        .target;
    }
    (config, dir)
}

/// A proxy whose log goes to a fresh directory (and SQLite, or `db_url`).
pub async fn logged_proxy(yaml: &str, db_url: Option<&str>) -> Logged {
    let (config, dir) = logged_config(yaml, db_url);
    let server = yallmp::serve(config).await.unwrap();
    Logged { server, dir }
}

/// Every file in the log's `requests/`, sorted by name: (name, text).
pub fn files(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir.join("requests"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read_to_string(e.path()).unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// A file's events, one per line.
pub fn events(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn of_kind<'a>(ev: &'a [Value], kind: &str) -> Vec<&'a Value> {
    ev.iter().filter(|e| e["event"] == kind).collect()
}

/// Whether a record file's request line says `id`: the proxy's own id
/// (which names the file) or the client's `x-request-id`.
pub fn is_request(name: &str, text: &str, id: &str) -> bool {
    if name.contains(&format!("-{id}_")) {
        return true;
    }
    let Some(first) = text.lines().next() else {
        return false;
    };
    serde_json::from_str::<Value>(first)
        .is_ok_and(|v| v["event"] == "request" && v["client_request_id"] == id)
}

/// The events of the record whose request id is `id` (the proxy's own, or
/// the client's `x-request-id`), once its file is complete (the writer
/// works in the background); panics after 20 s.
pub async fn record(dir: &Path, id: &str) -> Vec<Value> {
    for _ in 0..400 {
        let found = files(dir).into_iter().find(|(name, text)| {
            !name.ends_with(".parsed.log")
                && text.ends_with('\n')
                && text.contains(r#"{"event":"outcome""#)
                && is_request(name, text, id)
        });
        if let Some((_, text)) = found {
            return events(&text);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no complete log file for request {id} in {}", dir.display());
}

/// The one `outcome` event of a record.
pub fn outcome(ev: &[Value]) -> &Value {
    let all = of_kind(ev, "outcome");
    assert_eq!(all.len(), 1, "{ev:?}");
    all[0]
}

/// `(backend, status, error)` of each `attempt` event.
pub fn attempts(ev: &[Value]) -> Vec<(String, Value, Value)> {
    of_kind(ev, "attempt")
        .iter()
        .map(|a| {
            (
                a["backend"].as_str().unwrap_or_default().to_string(),
                a["status"].clone(),
                a["error"].clone(),
            )
        })
        .collect()
}

/// The `data` of each `chunk` event, in order.
pub fn chunks(ev: &[Value]) -> Vec<String> {
    of_kind(ev, "chunk")
        .iter()
        .map(|c| c["data"].as_str().unwrap_or_default().to_string())
        .collect()
}
