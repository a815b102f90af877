//! Bounds on upstream event streams (`proxy_settings.streaming`): an event
//! past `max_event_bytes` (an unterminated `data:` line that never ends)
//! ends the client's stream with an error event in its dialect and the
//! proxy keeps serving; an upstream that sends only keep-alives is given up
//! on after `first_event_timeout`. Mock upstreams and the real proxy, over
//! HTTP.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

fn yaml(mock: &Mock, streaming: &str) -> String {
    format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\nrouter_settings: {{num_retries: 0}}\nproxy_settings:\n  streaming: {{{streaming}}}\n",
        mock.url
    )
}

fn chat(stream: bool) -> Value {
    json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

/// Posts with a generous deadline: a hang is a failure, not a timing.
async fn post_within(server: &yallmp::Server, path: &str, body: &Value) -> (u16, String) {
    let (status, _, text) = tokio::time::timeout(Duration::from_secs(30), post(server, path, body))
        .await
        .expect("the proxy answered");
    (status, text)
}

#[tokio::test]
async fn an_overlong_unterminated_line_ends_the_stream_with_an_error_event() {
    // The first event, then a `data:` line that never ends (and the
    // upstream stays open): 600 KB against a 64 KiB bound.
    let endless = format!("data: {{\"x\": \"{}", "x".repeat(600_000));
    let mock = Mock::start(Reply::Echo).await;
    for _ in 0..2 {
        mock.push(Reply::SseStall(vec![chunk("hello "), endless.clone()]));
    }
    let server = proxy(&yaml(&mock, "max_event_bytes: 65536")).await;

    let (status, text) = post_within(&server, "/v1/chat/completions", &chat(true)).await;
    assert_eq!(status, 200);
    let data = sse_data(&text);
    assert!(data[0].contains("hello "), "{text}");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_event_too_large", "{last}");
    assert_eq!(last["error"]["type"], "upstream_error");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_event_bytes (65536 bytes)"),
        "{last}"
    );
    assert!(!text.contains("[DONE]"));
    assert!(text.len() < 4096, "the overlong line is not relayed");

    // An Anthropic client gets the error in its own shape.
    let (status, text) = post_within(
        &server,
        "/v1/messages",
        &json!({"model": "m", "max_tokens": 16, "stream": true,
                "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(text.contains("event: error"), "{text}");
    assert!(text.contains("max_event_bytes"), "{text}");
    assert!(!text.contains("message_stop"), "{text}");

    // The proxy keeps serving, streams and whole answers alike.
    let (status, text) = post_within(&server, "/v1/chat/completions", &chat(false)).await;
    assert_eq!(status, 200, "{text}");
    mock.push(Reply::Sse {
        frames: vec![chunk("ok"), DONE.to_string()],
        gap: Duration::from_millis(1),
    });
    let (status, text) = post_within(&server, "/v1/chat/completions", &chat(true)).await;
    assert_eq!(status, 200);
    assert!(text.ends_with(DONE), "{text}");
    server.shutdown().await;
}

#[tokio::test]
async fn an_overlong_line_before_the_first_event_is_a_failed_attempt() {
    let endless = format!("data: {}", "y".repeat(200_000));
    let mock = Mock::start(Reply::SseStall(vec![endless])).await;
    let server = proxy(&yaml(&mock, "max_event_bytes: 65536")).await;
    let (status, text) = post_within(&server, "/v1/chat/completions", &chat(true)).await;
    assert_eq!(status, 502, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_event_bytes"),
        "{v}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn keep_alives_alone_do_not_hold_a_request_past_first_event_timeout() {
    // A keep-alive every 20 ms for about 20 s, never an event: the gap
    // (request_timeout) never fires, first_event_timeout does.
    let mock = Mock::start(Reply::Sse {
        frames: vec![": ping\n\n".to_string(); 1000],
        gap: Duration::from_millis(20),
    })
    .await;
    let server = proxy(&yaml(&mock, "first_event_timeout: 0.5")).await;
    let (status, text) = post_within(&server, "/v1/chat/completions", &chat(true)).await;
    assert_eq!(status, 504, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], "upstream_timeout", "{v}");
    server.shutdown().await;
}

#[test]
fn bad_streaming_settings_are_config_errors() {
    let yaml = "model_list:\n  - {model_name: m, model_params: {api_base: 'http://b'}}\nproxy_settings:\n  streaming: {max_event_bytes: 10, first_event_timeout: -1, gap: 3}\n";
    let e = config_error(yaml);
    let text = e.to_string();
    assert!(text.contains("proxy_settings.streaming"), "{text}");
    let yaml = "model_list:\n  - {model_name: m, model_params: {api_base: 'http://b'}}\nproxy_settings:\n  streaming: {max_event_bytes: 10, first_event_timeout: -1}\n";
    let text = config_error(yaml).to_string();
    assert!(
        text.contains("proxy_settings.streaming.max_event_bytes"),
        "{text}"
    );
    assert!(
        text.contains("proxy_settings.streaming.first_event_timeout"),
        "{text}"
    );
    let ok = "model_list:\n  - {model_name: m, model_params: {api_base: 'http://b'}}\nproxy_settings:\n  streaming: {max_event_bytes: 1048576, first_event_timeout: 30}\n";
    let c = config(ok);
    assert_eq!(c.streaming.max_event_bytes, 1 << 20);
    assert_eq!(c.streaming.first_event_timeout, Duration::from_secs(30));
}
