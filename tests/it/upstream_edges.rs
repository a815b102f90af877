//! What comes back from upstreams, at its edges: error text that quotes a
//! key, answers larger than the proxy will hold, header values that could
//! panic a handler, and which upstream headers reach the client.

use std::future::Future;
use std::io::BufRead;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::logged::{files, logged_proxy};
use crate::support::raw::{RawUpstream, closed_by_peer, http_chunk, write};
use crate::support::*;

/// No case takes this long unless something hangs.
const LIMIT: Duration = Duration::from_secs(60);

async fn within<F: Future>(case: F) -> F::Output {
    tokio::time::timeout(LIMIT, case)
        .await
        .expect("the case hung: no answer within the limit")
}

/// The backend key the mocks quote back.
const KEY: &str = "sk-backend-SECRET-0123456789abcdef";
/// A key the proxy does not know (a client's own, passed through), quoted
/// by an upstream: masked by its shape.
const FOREIGN_KEY: &str = "sk-proj-foreignKEY0123456789";
const ADMIN_PASSWORD: &str = "admin-pw-0123456789";

fn quoting(status: u16, key: &str) -> Reply {
    Reply::Json(
        status,
        json!({"error": {
            "message": format!("Incorrect API key provided: Bearer {key}. You can find your API key at https://platform.openai.com/account/api-keys."),
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }}),
    )
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

/// Models whose single backend answers with upstream text quoting a key:
/// a 401 (skipped: every attempt fails), a 500 (retried, then every attempt
/// fails), a 400 (passed through as it is), a 400 quoting a key the proxy
/// does not know, an error event on a stream, the admin password in a 403.
/// The config text has no `proxy_settings` (each test adds its own, with
/// `admin_password` in it).
async fn quoting_mocks() -> (Vec<Mock>, String) {
    let unauthorized = Mock::start(quoting(401, KEY)).await;
    let broken = Mock::start(quoting(500, KEY)).await;
    let bad = Mock::start(quoting(400, KEY)).await;
    let foreign = Mock::start(quoting(400, FOREIGN_KEY)).await;
    let event = Mock::start(Reply::Sse {
        frames: vec![format!(
            "data: {}\n\n",
            json!({"error": {"message": format!("invalid x-api-key {KEY}")}})
        )],
        gap: Duration::ZERO,
    })
    .await;
    let admin = Mock::start(Reply::Json(
        403,
        json!({"error": {"message": format!("password {ADMIN_PASSWORD} is not a key")}}),
    ))
    .await;
    let mut yaml = String::from("model_list:\n");
    for (name, m, key) in [
        ("unauthorized", &unauthorized, KEY),
        ("broken", &broken, KEY),
        ("bad", &bad, KEY),
        ("foreign", &foreign, ""),
        ("event", &event, KEY),
        ("admin", &admin, KEY),
    ] {
        let key = if key.is_empty() {
            String::new()
        } else {
            format!(", api_key: '{key}'")
        };
        yaml.push_str(&format!(
            "  - {{model_name: {name}, model_params: {{api_base: '{}'{key}}}}}\n",
            m.url
        ));
    }
    yaml.push_str("router_settings: {num_retries: 1, retry_backoff_ms: 1, allowed_fails: 100}\n");
    (vec![unauthorized, broken, bad, foreign, event, admin], yaml)
}

/// Sends the requests of [`quoting_mocks`] to `base`; checks each answer
/// and returns every body.
async fn send_quoting(base: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    for (model, stream, want) in [
        ("unauthorized", false, 401),
        ("broken", false, 500),
        ("bad", false, 400),
        ("foreign", false, 400),
        ("event", true, 502),
        ("admin", false, 403),
    ] {
        let mut body = chat(model);
        body["stream"] = json!(stream);
        let r = client()
            .post(format!("{base}/v1/chat/completions"))
            .header("authorization", format!("Bearer {FOREIGN_KEY}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, want, "{model}: {text}");
        for secret in [KEY, FOREIGN_KEY, ADMIN_PASSWORD] {
            assert!(
                !text.contains(secret),
                "{model}: the client got {secret}: {text}"
            );
        }
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}"));
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("***"), "{model}: {text}");
        if model != "bad" && model != "foreign" {
            // Built by the proxy: the attempts are listed, scrubbed too.
            assert!(message.contains("(attempts: "), "{model}: {text}");
        }
        bodies.push(text);
    }
    bodies
}

#[tokio::test]
async fn upstream_keys_never_reach_clients_the_log_or_warnings() {
    within(async {
        warnings::capture();
        let (_mocks, yaml) = quoting_mocks().await;
        let yaml =
            format!("{yaml}proxy_settings: {{auth: {{admin_password: '{ADMIN_PASSWORD}'}}}}\n");
        let l = logged_proxy(&yaml, None).await;
        let base = l.server.url();
        let bodies = send_quoting(&base).await;
        // The 401 relayed inside the proxy's error (401 is skipped: one
        // attempt), the 500 with its two attempts.
        assert!(
            bodies[0].contains("unauthorized#1 try 1: 401 Incorrect API key provided: Bearer ***."),
            "{}",
            bodies[0]
        );
        assert!(bodies[1].contains("broken#1 try 2: 500"), "{}", bodies[1]);
        // The passed-through 400 keeps the upstream's shape.
        let v: Value = serde_json::from_str(&bodies[2]).unwrap();
        assert_eq!(v["error"]["code"], "invalid_api_key");
        // Every record (attempts, response body, error) is clean too:
        // the foreign key is not a known secret, so only the proxy's own
        // scrub of upstream text keeps it out.
        let mut seen = 0;
        for _ in 0..200 {
            seen = files(&l.dir)
                .iter()
                .filter(|(_, t)| t.contains(r#"{"event":"outcome""#))
                .count();
            if seen >= 6 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(seen >= 6, "records written: {seen}");
        for (name, text) in files(&l.dir) {
            for secret in [KEY, FOREIGN_KEY, ADMIN_PASSWORD] {
                assert!(!text.contains(secret), "{name} holds {secret}:\n{text}");
            }
        }
        // The `request failed` warnings name the failure, without the key.
        let line = warnings::wait_for(&["request failed", "unauthorized#1 try 1"]).await;
        assert!(line.contains("***"), "{line}");
        let logged = warnings::logged();
        for secret in [KEY, FOREIGN_KEY, ADMIN_PASSWORD] {
            assert!(
                !logged.contains(secret),
                "a warning holds {secret}:\n{logged}"
            );
        }
        l.server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn upstream_keys_never_reach_the_binarys_stderr() {
    within(async {
        let (_mocks, yaml) = quoting_mocks().await;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "{yaml}proxy_settings: {{auth: {{admin_password: '{ADMIN_PASSWORD}'}}, \
                 logging: {{files: {{enabled: false}}, database: {{enabled: false}}}}}}\n"
            ),
        )
        .unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_yallmp"))
            .args([
                "--config",
                config.to_str().unwrap(),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "serve",
            ])
            .env_remove("RUST_LOG")
            .env_remove("YALLMP_ADMIN_PASSWORD")
            .env_remove("YALLMP_CONFIG")
            .current_dir(dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let first = tokio::task::spawn_blocking(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok).unwrap_or_default();
            // Keep draining so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            first
        })
        .await
        .unwrap();
        // "yallmp VERSION listening on http://127.0.0.1:PORT"
        let base = first
            .split_whitespace()
            .last()
            .filter(|u| u.starts_with("http://"))
            .unwrap_or_else(|| panic!("no listening line: {first:?}"))
            .to_string();
        send_quoting(&base).await;
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("request failed") && stderr.contains("unauthorized#1 try 1"),
            "{stderr}"
        );
        for secret in [KEY, FOREIGN_KEY, ADMIN_PASSWORD] {
            assert!(!stderr.contains(secret), "stderr holds {secret}:\n{stderr}");
        }
    })
    .await;
}

/// A raw upstream that answers `status` with a chunked JSON body that
/// never ends: 64 KiB chunks until the proxy hangs up. Returns how many
/// connections saw the proxy hang up.
async fn endless(status: u16) -> (RawUpstream, tokio::sync::mpsc::UnboundedReceiver<usize>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let up = RawUpstream::start(move |mut stream, _| {
        let tx = tx.clone();
        async move {
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
            );
            if !write(&mut stream, &head).await {
                return;
            }
            let piece = http_chunk(&format!("[{}", "1,".repeat(32 * 1024)));
            let mut sent = 0usize;
            while write(&mut stream, &piece).await {
                sent += piece.len();
            }
            let _ = tx.send(sent);
        }
    })
    .await;
    (up, rx)
}

#[tokio::test]
async fn answers_past_max_response_bytes_are_refused_with_502() {
    within(async {
        let big = Mock::start(Reply::Raw(200, "application/json", format!("[{}0]", "1,".repeat(300_000)))).await;
        let fine = Mock::start(Reply::Echo).await;
        let (stream_200, mut hung_up) = endless(200).await;
        let (stream_500, mut hung_up_500) = endless(500).await;
        let yaml = format!(
            "model_list:\n\
             \x20 - {{model_name: big, model_params: {{api_base: '{}'}}}}\n\
             \x20 - {{model_name: endless, model_params: {{api_base: '{}'}}}}\n\
             \x20 - {{model_name: endless-error, model_params: {{api_base: '{}'}}}}\n\
             \x20 - {{model_name: fine, model_params: {{api_base: '{}'}}}}\n\
             \x20 - {{model_name: falls-back, model_params: {{api_base: '{}'}}}}\n\
             router_settings: {{num_retries: 2, retry_backoff_ms: 1, allowed_fails: 100, fallbacks: {{falls-back: [fine]}}}}\n\
             proxy_settings: {{server: {{max_response_bytes: 100000}}}}\n",
            big.url, stream_200.url, stream_500.url, fine.url, big.url
        );
        let server = proxy(&yaml).await;
        for model in ["big", "endless"] {
            let (status, headers, text) = post(&server, "/v1/chat/completions", &chat(model)).await;
            assert_eq!(status, 502, "{model}: {text}");
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["error"]["code"], "upstream_response_too_large", "{text}");
            assert_eq!(v["error"]["type"], "upstream_error", "{text}");
            let message = v["error"]["message"].as_str().unwrap();
            assert!(message.contains("100000 bytes"), "{message}");
            // One attempt: the same backend would answer the same again.
            assert_eq!(headers["x-yallmp-attempts"], "1", "{model}: {text}");
        }
        // The endless body was given up: the proxy hung up on it.
        let sent = hung_up.recv().await.unwrap();
        assert!(sent > 100_000, "{sent}");
        // An error body is read only to ERROR_BODY_LIMIT: the 500 is
        // answered (and retried) although its body never ends.
        let (status, headers, text) = post(&server, "/v1/chat/completions", &chat("endless-error")).await;
        assert_eq!(status, 500, "{text}");
        assert_eq!(headers["x-yallmp-attempts"], "3", "{text}");
        for _ in 0..3 {
            hung_up_500.recv().await.unwrap();
        }
        // A fallback within the bound answers.
        let (status, headers, text) = post(&server, "/v1/chat/completions", &chat("falls-back")).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(headers["x-yallmp-backend"], "fine#1");
        // And the proxy still serves.
        let (status, _, text) = post(&server, "/v1/chat/completions", &chat("fine")).await;
        assert_eq!(status, 200, "{text}");
        // The bound is checked.
        let e = config_error("model_list: []\nproxy_settings: {server: {max_response_bytes: 10}}\n")
        .to_string();
        assert!(e.contains("proxy_settings.server.max_response_bytes"), "{e}");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn no_retry_after_value_panics_a_request() {
    within(async {
        for (name, value) in [
            ("retry-after-ms", "1e300"),
            ("retry-after-ms", "NaN"),
            ("retry-after-ms", "-1"),
            ("retry-after-ms", "inf"),
            ("retry-after-ms", "-inf"),
            ("retry-after-ms", "1e20"),
            ("retry-after", "1e300"),
            ("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT"),
            ("retry-after", "NaN"),
        ] {
            let limited = Mock::start(Reply::JsonHeaders(
                429,
                vec![(name, value.to_string())],
                json!({"error": {"message": "slow down", "type": "rate_limit_error"}}),
            ))
            .await;
            let good = Mock::start(Reply::Echo).await;
            let yaml = format!(
                "model_list:\n\
                 \x20 - {{model_name: m, model_params: {{api_base: '{}'}}}}\n\
                 \x20 - {{model_name: only, model_params: {{api_base: '{}'}}}}\n\
                 \x20 - {{model_name: f, model_params: {{api_base: '{}'}}}}\n\
                 router_settings: {{num_retries: 1, retry_backoff_ms: 1, max_retry_after: 0.05, fallbacks: {{m: [f]}}}}\n",
                limited.url, limited.url, good.url
            );
            let server = proxy(&yaml).await;
            // Two attempts at the limited backend, then the fallback answers.
            let (status, headers, text) = post(&server, "/v1/chat/completions", &chat("m")).await;
            assert_eq!(status, 200, "{name}: {value}: {text}");
            assert_eq!(headers["x-yallmp-backend"], "f#1", "{name}: {value}");
            assert_eq!(headers["x-yallmp-attempts"], "3", "{name}: {value}");
            // Without a fallback: the client hears the 429, attempts listed.
            let (status, headers, text) = post(&server, "/v1/chat/completions", &chat("only")).await;
            assert_eq!(status, 429, "{name}: {value}: {text}");
            assert_eq!(headers["x-yallmp-attempts"], "2", "{name}: {value}");
            assert!(text.contains("only#1 try 2: 429 slow down"), "{text}");
            server.shutdown().await;
        }
    })
    .await;
}

/// The upstream headers every mock below sends, and whether each reaches
/// the client.
const SENT_HEADERS: &[(&str, &str, bool)] = &[
    ("set-cookie", "session=upstream", false),
    ("server", "upstream-server/1.0", false),
    ("access-control-allow-origin", "*", false),
    ("access-control-allow-credentials", "true", false),
    ("via", "1.1 upstream-gateway", false),
    ("x-powered-by", "upstream", false),
    ("openai-organization", "org-private", false),
    ("strict-transport-security", "max-age=1", false),
    ("x-ratelimit-remaining-requests", "99", true),
    ("x-ratelimit-reset-tokens", "6ms", true),
    ("anthropic-ratelimit-requests-remaining", "42", true),
    ("openai-processing-ms", "12", true),
    ("openai-version", "2020-10-01", true),
    ("request-id", "req_anthropic_1", true),
];

fn check_relayed(headers: &http::HeaderMap, what: &str) {
    for (name, value, relayed) in SENT_HEADERS {
        if *relayed {
            assert_eq!(
                headers.get(*name).map(|v| v.to_str().unwrap()),
                Some(*value),
                "{what}: {name}"
            );
        } else {
            assert!(
                !headers.contains_key(*name),
                "{what}: {name} relayed: {headers:?}"
            );
        }
    }
    // The upstream's request id comes under its own name; ours stays.
    assert_eq!(headers["x-upstream-request-id"], "upstream-id-1", "{what}");
    assert_ne!(headers["x-request-id"], "upstream-id-1", "{what}");
    assert!(!headers["x-request-id"].is_empty(), "{what}");
}

#[tokio::test]
async fn only_allowed_upstream_headers_reach_the_client() {
    within(async {
        let mut extra: Vec<(&'static str, String)> = SENT_HEADERS
            .iter()
            .map(|(n, v, _)| (*n, v.to_string()))
            .collect();
        extra.push(("x-request-id", "upstream-id-1".into()));
        let json_mock = Mock::start(Reply::JsonHeaders(
            200,
            extra,
            json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}),
        ))
        .await;
        let sse = RawUpstream::start(|mut stream, _| async move {
            let mut head = String::from(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nx-request-id: upstream-id-1\r\n",
            );
            for (n, v, _) in SENT_HEADERS {
                head.push_str(&format!("{n}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let body = format!("{}{}", chunk("hi"), DONE);
            if write(&mut stream, &head).await
                && write(&mut stream, &http_chunk(&body)).await
                && write(&mut stream, "0\r\n\r\n").await
            {
                closed_by_peer(&mut stream).await;
            }
        })
        .await;
        let yaml = format!(
            "model_list:\n\
             \x20 - {{model_name: j, model_params: {{api_base: '{}'}}}}\n\
             \x20 - {{model_name: s, model_params: {{api_base: '{}'}}}}\n",
            json_mock.url, sse.url
        );
        let server = proxy(&yaml).await;
        let (status, headers, text) = post(&server, "/v1/chat/completions", &chat("j")).await;
        assert_eq!(status, 200, "{text}");
        check_relayed(&headers, "json");
        assert_eq!(headers["content-type"], "application/json");
        let mut body = chat("s");
        body["stream"] = json!(true);
        let (status, headers, text) = post(&server, "/v1/chat/completions", &body).await;
        assert_eq!(status, 200, "{text}");
        check_relayed(&headers, "stream");
        assert_eq!(headers["content-type"], "text/event-stream");
        assert!(text.contains("\"hi\""), "{text}");
        server.shutdown().await;
    })
    .await;
}

/// An error event in the middle of a stream (after the first event, so it
/// is relayed, not retried) that quotes the backend's key reaches the
/// client masked, for a chat client and through the translation to
/// Anthropic Messages.
#[tokio::test]
async fn a_mid_stream_error_event_reaches_the_client_masked() {
    within(async {
        let upstream = Mock::start(Reply::Sse {
            frames: vec![
                chunk("partial"),
                format!(
                    "data: {}\n\n",
                    json!({"error": {"message": format!("invalid x-api-key {KEY}; also Bearer {FOREIGN_KEY}")}})
                ),
            ],
            gap: Duration::ZERO,
        })
        .await;
        let server = proxy(&format!(
            "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}', api_key: '{KEY}'}}}}\n",
            upstream.url
        ))
        .await;
        for (path, body) in [
            (
                "/v1/chat/completions",
                json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
            ),
            (
                "/v1/messages",
                json!({"model": "m", "stream": true, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}),
            ),
        ] {
            let (status, _, text) = post(&server, path, &body).await;
            assert_eq!(status, 200, "{path}: {text}");
            assert!(text.contains("partial"), "{path}: {text}");
            assert!(text.contains("error"), "{path}: {text}");
            for secret in [KEY, FOREIGN_KEY] {
                assert!(!text.contains(secret), "{path}: the client got {secret}: {text}");
            }
        }
    })
    .await;
}
