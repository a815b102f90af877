//! `--log-format json`: yallmp's own log is one JSON object a line, and
//! the request path's warnings carry the request id, model and backend as
//! fields (the real binary, a mock upstream answering 500).

use serde_json::{Value, json};

use crate::support::child::Running;
use crate::support::*;

fn yaml(api_base: &str, extra: &str) -> String {
    format!(
        "proxy_settings:\n  server: {{host: 127.0.0.1, port: 0}}\n  logging: {{files: {{enabled: false}}, database: {{enabled: false}}}}\n{extra}\
         router_settings: {{num_retries: 1, retry_backoff_ms: 0}}\n\
         model_list:\n  - model_name: m\n    model_params: {{api_base: '{api_base}', api_key: sk-test}}\n"
    )
}

fn parse(line: &str) -> Value {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert!(v.is_object(), "{line}");
    for key in ["timestamp", "level", "target", "message"] {
        assert!(v.get(key).is_some(), "no `{key}`: {line}");
    }
    v
}

async fn failing_request(run: &Running) -> reqwest::Response {
    client()
        .post(format!("{}/v1/chat/completions", run.url))
        .header("x-request-id", "json-log-test-1")
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn json_log_lines_carry_the_request_id_model_and_backend() {
    let mock = Mock::start(Reply::Json(500, json!({"error": {"message": "boom"}}))).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, yaml(&mock.url, "")).unwrap();
    let run = Running::start(
        dir.path(),
        &["--config", config.to_str().unwrap(), "--log-format", "json"],
        &[],
    );
    let r = failing_request(&run).await;
    assert_eq!(r.status(), 500, "{:?}", r.text().await);
    assert_eq!(mock.count(), 2, "one attempt and one retry");
    let (failed, before) = run.wait_for_line(|l| l.contains("\"request failed\""));
    let (status, after) = run.stop();
    assert!(status.success(), "{status:?}");
    let lines: Vec<Value> = before
        .iter()
        .chain([&failed])
        .chain(after.iter())
        .map(|l| parse(l))
        .collect();
    let attempts: Vec<&Value> = lines
        .iter()
        .filter(|v| v["message"] == "upstream attempt failed")
        .collect();
    assert_eq!(attempts.len(), 2, "{lines:#?}");
    for (i, a) in attempts.iter().enumerate() {
        assert_eq!(a["level"], "WARN", "{a}");
        assert_eq!(a["request_id"], "json-log-test-1", "{a}");
        assert_eq!(a["model"], "m", "{a}");
        assert!(
            a["backend"].as_str().is_some_and(|b| b.starts_with('m')),
            "{a}"
        );
        assert_eq!(a["attempt"], i as u64 + 1, "{a}");
        assert_eq!(a["status"], 500, "{a}");
    }
    let failed = parse(&failed);
    assert_eq!(failed["request_id"], "json-log-test-1", "{failed}");
    assert_eq!(failed["model"], "m", "{failed}");
    assert_eq!(failed["backend"], attempts[0]["backend"], "{failed}");
    assert_eq!(failed["status"], 500, "{failed}");
    // The client's message as a plain string (not JSON in a string).
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("boom")),
        "{failed}"
    );
    // The backend's key never reaches the log.
    assert!(lines.iter().all(|l| !l.to_string().contains("sk-test")));
}

/// `proxy_settings.log_format: json` does the same without the flag, and
/// `--log-format plain` overrides it.
#[tokio::test(flavor = "multi_thread")]
async fn the_config_sets_the_format_and_the_flag_wins() {
    let mock = Mock::start(Reply::Json(500, json!({"error": {"message": "boom"}}))).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, yaml(&mock.url, "  log_format: json\n")).unwrap();
    let path = config.to_str().unwrap();

    let run = Running::start(dir.path(), &["--config", path], &[]);
    failing_request(&run).await;
    let (line, before) = run.wait_for_line(|l| l.contains("request failed"));
    for l in before.iter().chain([&line]) {
        parse(l);
    }
    drop(run);

    let run = Running::start(
        dir.path(),
        &["--config", path, "--log-format", "plain"],
        &[],
    );
    failing_request(&run).await;
    let (line, _) = run.wait_for_line(|l| l.contains("request failed"));
    assert!(serde_json::from_str::<Value>(&line).is_err(), "{line}");
    assert!(
        line.contains("WARN") && line.contains("request_id"),
        "{line}"
    );
}
