//! End-to-end behaviour of the proxy against mock upstreams, over HTTP.
//! Upstream faults (refused, reset, timeouts, stalled or cut streams, error
//! events, 429 storms, non-JSON answers, client disconnects) are in
//! tests/faults.rs, with the records they leave.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

fn one_model(name: &str, url: &str, extra: &str) -> String {
    format!(
        "model_list:\n  - model_name: {name}\n    model_params: {{api_base: '{url}', api_key: sk-backend-key{extra}}}\n"
    )
}

#[tokio::test]
async fn non_stream_passthrough_keeps_unknown_fields_both_ways() {
    let mock = Mock::start(Reply::Echo).await;
    let server = proxy(&one_model("m", &mock.url, "")).await;
    let body = json!({
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "echo": {"nested": [1, 2.50, "x"]},
        "vendor_field": {"keep": "me"},
    });
    let (status, headers, text) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "model=m");
    assert_eq!(v["mock_extra"]["kept"], true);
    assert_eq!(v["echo"], body["echo"]);
    assert!(headers.contains_key("x-request-id"));
    let hits = mock.hits();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].path, "/v1/chat/completions");
    // Nothing to rewrite: the upstream gets the client's bytes exactly.
    assert_eq!(hits[0].raw, body.to_string().as_bytes());
    server.shutdown().await;
}

#[tokio::test]
async fn stream_frames_arrive_byte_for_byte_with_usage_chunk() {
    let frames = vec![
        ": keep-alive\n\n".to_string(),
        chunk("Hel"),
        chunk("lo"),
        "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5},\"x_vendor\":1}\n\n".to_string(),
        DONE.to_string(),
    ];
    let mock = Mock::start(Reply::Sse {
        frames: frames.clone(),
        gap: Duration::from_millis(5),
    })
    .await;
    let server = proxy(&one_model("m", &mock.url, "")).await;
    let body = json!({"model": "m", "stream": true, "stream_options": {"include_usage": true}, "messages": []});
    let (status, headers, text) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(text, frames.concat());
    assert_eq!(
        mock.hits()[0].json()["stream_options"]["include_usage"],
        true
    );
    server.shutdown().await;
}

#[tokio::test]
async fn stream_is_relayed_as_it_arrives_not_buffered() {
    let frames = vec![chunk("a"), chunk("b"), DONE.to_string()];
    let mock = Mock::start(Reply::Sse {
        frames,
        gap: Duration::from_millis(400),
    })
    .await;
    let server = proxy(&one_model("m", &mock.url, "")).await;
    let started = Instant::now();
    let mut r = client()
        .post(format!("{}/v1/chat/completions", server.url()))
        .json(&json!({"model": "m", "stream": true}))
        .send()
        .await
        .unwrap();
    let first = r.chunk().await.unwrap().unwrap();
    // The first frame comes long before the whole stream (3 × 400 ms) ends.
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    assert!(String::from_utf8_lossy(&first).contains("\"a\""));
    server.shutdown().await;
}

#[tokio::test]
async fn retries_on_500_and_429_then_succeeds() {
    let mock = Mock::start(Reply::Echo).await;
    mock.push(Reply::Json(500, json!({"error": {"message": "boom"}})));
    mock.push(Reply::JsonHeaders(
        429,
        vec![("retry-after", "0".into())],
        json!({"error": {"message": "slow down"}}),
    ));
    let yaml = format!(
        "{}router_settings: {{num_retries: 2, retry_backoff_ms: 1}}\n",
        one_model("m", &mock.url, "")
    );
    let server = proxy(&yaml).await;
    let (status, _, text) = post(&server, "/v1/chat/completions", &json!({"model": "m"})).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(mock.count(), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let mock = Mock::start(Reply::Echo).await;
    mock.push(Reply::JsonHeaders(
        429,
        vec![("retry-after", "1".into())],
        json!({"error": {"message": "slow"}}),
    ));
    let yaml = format!(
        "{}router_settings: {{num_retries: 1, retry_backoff_ms: 1}}\n",
        one_model("m", &mock.url, "")
    );
    let server = proxy(&yaml).await;
    let started = Instant::now();
    let (status, _, _) = post(&server, "/v1/chat/completions", &json!({"model": "m"})).await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn fallback_order_and_fallbacks_of_fallbacks() {
    let a = Mock::start(Reply::Json(503, json!({"error": {"message": "a down"}}))).await;
    let b = Mock::start(Reply::Json(500, json!({"error": {"message": "b down"}}))).await;
    let c = Mock::start(Reply::Json(502, json!({"error": {"message": "c down"}}))).await;
    let d = Mock::start(Reply::Echo).await;
    let yaml = format!(
        r#"
model_list:
  - {{model_name: a, model_params: {{api_base: '{}', target_model: up-a}}}}
  - {{model_name: b, model_params: {{api_base: '{}', target_model: up-b}}}}
  - {{model_name: c, model_params: {{api_base: '{}'}}, fallbacks: [d]}}
  - {{model_name: d, model_params: {{api_base: '{}', target_model: up-d}}}}
router_settings:
  num_retries: 1
  retry_backoff_ms: 1
  fallbacks: [{{a: [b, c]}}]
"#,
        a.url, b.url, c.url, d.url
    );
    let server = proxy(&yaml).await;
    let (status, headers, text) =
        post(&server, "/v1/chat/completions", &json!({"model": "a"})).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["model"], "up-d");
    assert_eq!((a.count(), b.count(), c.count(), d.count()), (2, 2, 2, 1));
    // The fallback model's own rewrite applies on its backend.
    assert_eq!(b.hits()[0].json()["model"], "up-b");
    assert_eq!(c.hits()[0].json()["model"], "a");
    assert!(headers.contains_key("x-request-id"));
    server.shutdown().await;
}

#[tokio::test]
async fn client_error_goes_straight_back_without_retry_or_fallback() {
    let bad = Mock::start(Reply::Json(400, json!({"error": {"message": "bad param", "type": "invalid_request_error", "param": "temperature", "code": null}}))).await;
    let other = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\n  - {{model_name: f, model_params: {{api_base: '{}'}}}}\nrouter_settings: {{num_retries: 3, fallbacks: {{m: f}}}}\n",
        bad.url, other.url
    );
    let server = proxy(&yaml).await;
    let (status, _, text) = post(&server, "/v1/chat/completions", &json!({"model": "m"})).await;
    assert_eq!(status, 400);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["message"], "bad param");
    assert_eq!(v["error"]["param"], "temperature");
    assert_eq!((bad.count(), other.count()), (1, 0));
    server.shutdown().await;
}

#[tokio::test]
async fn unauthorized_backend_is_skipped_not_retried() {
    let denied = Mock::start(Reply::Json(401, json!({"error": {"message": "bad key"}}))).await;
    let ok = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\nrouter_settings: {{num_retries: 3, routing_strategy: ordered}}\n",
        denied.url, ok.url
    );
    let server = proxy(&yaml).await;
    let (status, _, _) = post(&server, "/v1/chat/completions", &json!({"model": "m"})).await;
    assert_eq!(status, 200);
    assert_eq!((denied.count(), ok.count()), (1, 1));
    server.shutdown().await;
}

#[tokio::test]
async fn all_attempts_failed_reports_last_status_and_attempts() {
    let a = Mock::start(Reply::Json(
        503,
        json!({"error": {"message": "overloaded", "type": "server_error", "code": "overloaded"}}),
    ))
    .await;
    let yaml = format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\n  - {{model_name: gone, model_params: {{api_base: 'http://127.0.0.1:9/v1'}}}}\nrouter_settings: {{num_retries: 1, retry_backoff_ms: 1, fallbacks: {{gone: [m]}}}}\n",
        a.url
    );
    let server = proxy(&yaml).await;
    let (status, _, text) = post(&server, "/v1/chat/completions", &json!({"model": "gone"})).await;
    assert_eq!(status, 503, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("overloaded (attempts: gone#1 try 1: no response"),
        "{msg}"
    );
    assert!(msg.contains("m#1 try 2: 503 overloaded"), "{msg}");
    assert_eq!(v["error"]["type"], "server_error");
    assert_eq!(v["error"]["code"], "overloaded");

    // Only unreachable backends: 502.
    let (status, _, text) = post(
        &server,
        "/v1/embeddings",
        &json!({"model": "gone", "input": "x"}),
    )
    .await;
    assert_eq!(status, 503, "fallback to m answers last: {text}");
    server.shutdown().await;

    let server = proxy(
        "model_list:\n  - {model_name: gone, model_params: {api_base: 'http://127.0.0.1:9/v1'}}\n",
    )
    .await;
    let (status, _, text) = post(&server, "/v1/chat/completions", &json!({"model": "gone"})).await;
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("connection failed"), "{text}");
    server.shutdown().await;
}

#[tokio::test]
async fn stream_closed_before_first_event_falls_back() {
    let empty = Mock::start(Reply::Sse {
        frames: vec![],
        gap: Duration::ZERO,
    })
    .await;
    let good = Mock::start(Reply::Sse {
        frames: vec![chunk("x"), DONE.into()],
        gap: Duration::ZERO,
    })
    .await;
    let yaml = format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\n",
        empty.url, good.url
    );
    let server = proxy(&yaml).await;
    let (status, _, text) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "m", "stream": true}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(text.ends_with(DONE));
    server.shutdown().await;
}

#[tokio::test]
async fn target_model_and_thinking_rewrite() {
    let mock = Mock::start(Reply::Echo).await;
    let server = proxy(&one_model(
        "alias",
        &mock.url,
        ", target_model: real/Model-1, supports_reasoning: true",
    ))
    .await;
    let body = json!({"model": "alias", "messages": [], "temperature": 0.7});
    let (status, _, text) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{text}");
    let sent = mock.hits()[0].json();
    assert_eq!(sent["model"], "real/Model-1");
    assert_eq!(sent["thinking"], json!({"type": "enabled"}));
    assert_eq!(sent["temperature"], 0.7);
    // A client's own `thinking` is left alone.
    let body = json!({"model": "alias", "thinking": {"type": "disabled"}});
    post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(
        mock.hits()[1].json()["thinking"],
        json!({"type": "disabled"})
    );
    server.shutdown().await;
}

#[tokio::test]
async fn backend_key_replaces_client_credentials_and_request_id_flows() {
    let mock = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n  - {{model_name: keyed, model_params: {{api_base: '{u}', api_key: sk-backend-key}}}}\n  - {{model_name: open, model_params: {{api_base: '{u}'}}}}\n",
        u = mock.url
    );
    let server = proxy(&yaml).await;
    let r = client()
        .post(format!("{}/v1/chat/completions", server.url()))
        .header("authorization", "Bearer client-key")
        .header("x-api-key", "client-key")
        .header("x-request-id", "req-123")
        .header("openai-organization", "org-1")
        .header("connection", "keep-alive")
        .json(&json!({"model": "keyed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "req-123");
    let hit = &mock.hits()[0];
    assert_eq!(hit.headers["authorization"], "Bearer sk-backend-key");
    assert!(!hit.headers.contains_key("x-api-key"));
    assert_eq!(hit.headers["x-request-id"], "req-123");
    assert_eq!(hit.headers["openai-organization"], "org-1");
    // A backend without a key gets the client's credentials.
    client()
        .post(format!("{}/v1/chat/completions", server.url()))
        .header("authorization", "Bearer client-key")
        .json(&json!({"model": "open"}))
        .send()
        .await
        .unwrap();
    assert_eq!(mock.hits()[1].headers["authorization"], "Bearer client-key");
    // Generated ids are unique.
    let (_, h1, _) = post(&server, "/v1/chat/completions", &json!({"model": "open"})).await;
    let (_, h2, _) = post(&server, "/v1/chat/completions", &json!({"model": "open"})).await;
    assert_ne!(h1["x-request-id"], h2["x-request-id"]);
    assert_eq!(mock.hits()[2].headers["x-request-id"], h1["x-request-id"]);
    server.shutdown().await;
}

#[tokio::test]
async fn embeddings_retry_and_fall_back() {
    let bad = Mock::start(Reply::Json(500, json!({"error": {"message": "x"}}))).await;
    let good = Mock::start(Reply::Json(
        200,
        json!({"object": "list", "data": [{"embedding": [0.1], "index": 0}]}),
    ))
    .await;
    let yaml = format!(
        "model_list:\n  - {{model_name: e, model_params: {{api_base: '{}'}}}}\n  - {{model_name: e2, model_params: {{api_base: '{}'}}}}\nrouter_settings: {{num_retries: 1, retry_backoff_ms: 1, fallbacks: {{e: e2}}}}\n",
        bad.url, good.url
    );
    let server = proxy(&yaml).await;
    let (status, _, text) = post(
        &server,
        "/embeddings",
        &json!({"model": "e", "input": ["a"]}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(bad.count(), 2);
    assert_eq!(good.hits()[0].path, "/v1/embeddings");
    server.shutdown().await;
}

#[tokio::test]
async fn responses_endpoint_off_by_default_and_streams_when_on() {
    let frames = vec![
        "event: response.created\ndata: {\"type\":\"response.created\"}\n\n".to_string(),
        "event: response.completed\ndata: {\"type\":\"response.completed\"}\n\n".to_string(),
    ];
    let mock = Mock::start(Reply::Sse {
        frames: frames.clone(),
        gap: Duration::ZERO,
    })
    .await;
    let server = proxy(&one_model("m", &mock.url, "")).await;
    let (status, _, text) = post(
        &server,
        "/v1/responses",
        &json!({"model": "m", "input": "hi"}),
    )
    .await;
    assert_eq!(status, 404);
    assert!(text.contains("enable_responses_endpoint"), "{text}");
    server.shutdown().await;

    let yaml = format!(
        "{}proxy_settings: {{enable_responses_endpoint: true}}\n",
        one_model("m", &mock.url, "")
    );
    let server = proxy(&yaml).await;
    let (status, _, text) = post(
        &server,
        "/responses",
        &json!({"model": "m", "input": "hi", "stream": true}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(text, frames.concat());
    assert_eq!(mock.hits()[0].path, "/v1/responses");
    server.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_openai_errors() {
    let yaml = "model_list:\n  - {model_name: s, model_params: {api_type: stub}}\n  - {model_name: t, model_params: {api_type: stub}}\nproxy_settings: {server: {max_body_bytes: 1000}}\n";
    let server = proxy(yaml).await;
    let c = client();
    let url = format!("{}/v1/chat/completions", server.url());
    let check = |status: u16, code: &'static str| {
        move |(s, body): (u16, String)| {
            assert_eq!(s, status, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["error"]["code"], code, "{body}");
            assert!(v["error"]["message"].is_string());
            assert!(v["error"]["type"].is_string());
            body
        }
    };
    let send = |body: String| {
        let c = c.clone();
        let url = url.clone();
        async move {
            let r = c.post(url).body(body).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    check(400, "invalid_json")(send("{not json".into()).await);
    check(400, "invalid_json")(send("[1,2]".into()).await);
    check(400, "invalid_model")(send("{\"messages\":[]}".into()).await);
    check(400, "invalid_model")(send("{\"model\":5}".into()).await);
    let body = check(404, "model_not_found")(send("{\"model\":\"nope\"}".into()).await);
    assert!(body.contains("s, t"), "{body}");
    check(413, "request_too_large")(
        send(format!(
            "{{\"model\":\"s\",\"x\":\"{}\"}}",
            "a".repeat(2000)
        ))
        .await,
    );
    // Chunked body without a length, over the limit.
    let big = futures::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![b' '; 100])));
    let r = c
        .post(&url)
        .body(reqwest::Body::wrap_stream(big))
        .send()
        .await
        .unwrap();
    // The unread rest of the body ends the connection, and the answer says so.
    assert_eq!(r.headers()["connection"], "close");
    check(413, "request_too_large")((r.status().as_u16(), r.text().await.unwrap()));
    let r = c.get(&url).send().await.unwrap();
    check(405, "method_not_allowed")((r.status().as_u16(), r.text().await.unwrap()));
    let r = c
        .get(format!("{}/v2/nothing", server.url()))
        .send()
        .await
        .unwrap();
    check(404, "not_found")((r.status().as_u16(), r.text().await.unwrap()));
    server.shutdown().await;
}

#[tokio::test]
async fn stub_backend_models_and_health() {
    let yaml = "model_list:\n  - {model_name: echo, model_params: {api_type: stub}}\n  - {model_name: vendor/x, model_params: {api_type: stub}}\n";
    let server = proxy(yaml).await;
    let body = json!({"model": "echo", "messages": [{"role": "user", "content": "ping pong"}]});
    let (status, _, text) = post(&server, "/chat/completions", &body).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "ping pong");

    let body = json!({"model": "echo", "stream": true, "messages": [{"role": "user", "content": "ping pong"}]});
    let (_, _, text) = post(&server, "/v1/chat/completions", &body).await;
    let content: String = sse_data(&text)
        .iter()
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert_eq!(content, "ping pong");

    for path in ["/v1/models", "/models"] {
        let v = get_json(&server, path).await;
        assert_eq!(v["object"], "list");
        let ids: Vec<&str> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["echo", "vendor/x"]);
    }
    let r = client()
        .get(format!("{}/v1/models/vendor/x", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let one: Value = r.json().await.unwrap();
    let list = get_json(&server, "/v1/models").await;
    // One model, one `created` (a Unix time, not the uptime).
    assert_eq!(one["created"], list["data"][1]["created"]);
    assert!(one["created"].as_i64().unwrap() > 1_700_000_000);
    let h = get_json(&server, "/healthz").await;
    assert_eq!(h["status"], "ok");
    assert!(h["uptime_seconds"].is_u64());
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    server.shutdown().await;
}

/// Claude Code probes `HEAD /` at start: the root answers like `/healthz`
/// (200; a `HEAD` has no body), without a client key even when keys are
/// configured, and is not sent to any backend.
#[tokio::test]
async fn head_and_get_of_the_root_answer_like_healthz() {
    let mock = Mock::start(Reply::Echo).await;
    let server = proxy(&format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\nproxy_settings: {{auth: {{api_keys: ['ck-one']}}}}\n",
        mock.url
    ))
    .await;
    for path in ["/", "/healthz"] {
        let r = client()
            .head(format!("{}{path}", server.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "HEAD {path}");
        assert!(r.bytes().await.unwrap().is_empty(), "HEAD {path}");
    }
    let r = client()
        .get(format!("{}/", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["uptime_seconds"].is_u64());
    assert_eq!(mock.count(), 0);
    server.shutdown().await;
}

/// Each serving thread (`workers: N`) has its own upstream pool: two client
/// connections, handed to two threads, reach the upstream on a connection
/// each even though their requests never overlap. One thread, or the shared
/// runtime's one pool, reuses a single upstream connection for both.
#[tokio::test]
async fn serving_threads_keep_their_own_upstream_connections() {
    for (workers, want) in [("2", 2), ("1", 1), ("shared", 1)] {
        let mock = Mock::start(Reply::Echo).await;
        let yaml = format!(
            "{}proxy_settings:\n  server: {{workers: {workers}}}\n",
            one_model("m", &mock.url, "")
        );
        let server = proxy(&yaml).await;
        // Two clients: a keep-alive connection each.
        let (a, b) = (client(), client());
        let url = format!("{}/v1/chat/completions", server.url());
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        for round in 0..4 {
            for c in [&a, &b] {
                let r = c.post(&url).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 200, "workers {workers}, round {round}");
                r.bytes().await.unwrap();
            }
        }
        let hits = mock.hits();
        assert_eq!(hits.len(), 8);
        let peers: std::collections::HashSet<_> = hits.iter().map(|h| h.peer.unwrap()).collect();
        assert_eq!(peers.len(), want, "workers {workers}: {peers:?}");
        let config = get_json(&server, "/admin/config").await;
        let shown = &config["server"]["workers"];
        match workers.parse::<u64>() {
            Ok(n) => assert_eq!(shown, n, "{config}"),
            Err(_) => assert_eq!(shown, workers, "{config}"),
        }
        server.shutdown().await;
    }
}

#[tokio::test]
async fn graceful_shutdown_lets_a_stream_in_flight_finish() {
    for workers in ["auto", "shared"] {
        graceful_shutdown_with(workers).await;
    }
}

async fn graceful_shutdown_with(workers: &str) {
    let frames: Vec<String> = (0..6)
        .map(|i| chunk(&i.to_string()))
        .chain([DONE.to_string()])
        .collect();
    let mock = Mock::start(Reply::Sse {
        frames: frames.clone(),
        gap: Duration::from_millis(100),
    })
    .await;
    let yaml = format!(
        "{}proxy_settings:\n  server: {{workers: {workers}}}\n",
        one_model("m", &mock.url, "")
    );
    let server = proxy(&yaml).await;
    let url = server.url();
    let mut r = client()
        .post(format!("{url}/v1/chat/completions"))
        .json(&json!({"model": "m", "stream": true}))
        .send()
        .await
        .unwrap();
    let mut got = String::from_utf8(r.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    let shutdown = tokio::spawn(server.shutdown());
    while let Some(c) = r.chunk().await.unwrap() {
        got.push_str(std::str::from_utf8(&c).unwrap());
    }
    assert_eq!(got, frames.concat());
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .unwrap()
        .unwrap();
    // After shutdown nothing listens.
    assert!(client().get(format!("{url}/healthz")).send().await.is_err());
}
