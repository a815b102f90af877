//! The Responses API for backends without one (`supports_responses: false`,
//! Anthropic backends), translated through chat completions; and legacy
//! `/v1/completions` passed through. Mock upstreams, the real proxy, HTTP.

use serde_json::{Value, json};

use crate::support::anthropic::{fixture, frames, sse};
use crate::support::*;

/// Named events' data, checking each name matches its `type`.
fn events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            let name = f.lines().find_map(|l| l.strip_prefix("event: ")).unwrap();
            let data = f.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            let v: Value = serde_json::from_str(data).unwrap();
            assert_eq!(v["type"], name, "{f}");
            v
        })
        .collect()
}

async fn server(mock: &Mock, params: &str) -> yallmp::Server {
    proxy(&format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'{params}}}}}\nproxy_settings: {{enable_responses_endpoint: true}}\n",
        mock.url
    ))
    .await
}

#[tokio::test]
async fn responses_reach_a_chat_only_backend_translated() {
    let completion = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "up",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}});
    let mock = Mock::start(Reply::Json(200, completion)).await;
    let server = server(&mock, ", supports_responses: false").await;
    let req = json!({"model": "m", "instructions": "Be nice.", "input": "Hello", "max_output_tokens": 20});
    let (status, _, body) = post(&server, "/v1/responses", &req).await;
    assert_eq!(status, 200, "{body}");
    let hit = &mock.hits()[0];
    assert_eq!(hit.path, "/v1/chat/completions");
    assert_eq!(
        hit.json(),
        json!({"model": "m", "messages": [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Hello"}], "max_tokens": 20})
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["output"][0]["content"][0]["text"], "Hi there.");
    assert_eq!(v["usage"]["total_tokens"], 12);
}

#[tokio::test]
async fn responses_stream_from_a_chat_only_backend() {
    let mock = Mock::start(sse(frames("chat_stream_tool_reasoning.sse"))).await;
    let server = server(&mock, ", supports_responses: false").await;
    let req = json!({"model": "m", "input": [{"role": "user", "content": "weather?"}], "stream": true,
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]});
    let (status, headers, body) = post(&server, "/v1/responses", &req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "text/event-stream");
    let sent = mock.hits()[0].json();
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
    let evs = events(&body);
    assert_eq!(evs[0]["type"], "response.created");
    let text: String = evs
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Checking.");
    let args: String = evs
        .iter()
        .filter(|e| e["type"] == "response.function_call_arguments.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(args, r#"{"city":"Paris"}"#);
    let done = evs.last().unwrap();
    assert_eq!(done["type"], "response.completed");
    assert_eq!(done["response"]["output"][2]["name"], "get_weather");
    assert_eq!(done["response"]["usage"]["input_tokens"], 40);
}

#[tokio::test]
async fn responses_pass_through_by_default() {
    let mock = Mock::start(Reply::Json(
        200,
        json!({"id": "resp_1", "object": "response"}),
    ))
    .await;
    let server = server(&mock, "").await;
    let (status, _, body) = post(
        &server,
        "/v1/responses",
        &json!({"model": "m", "input": "x"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(mock.hits()[0].path, "/v1/responses");
    assert_eq!(body, r#"{"id":"resp_1","object":"response"}"#);
}

#[tokio::test]
async fn responses_reach_an_anthropic_backend() {
    let mock = Mock::start(Reply::Raw(
        200,
        "application/json",
        fixture("message_response.json"),
    ))
    .await;
    let server = server(&mock, ", api_type: anthropic, api_key: k").await;
    let req = json!({"model": "m", "input": "weather in Paris?", "reasoning": {"effort": "low"}, "max_output_tokens": 5000});
    let (status, _, body) = post(&server, "/v1/responses", &req).await;
    assert_eq!(status, 200, "{body}");
    let hit = &mock.hits()[0];
    assert_eq!(hit.path, "/v1/messages");
    let sent = hit.json();
    assert_eq!(
        sent["messages"][0]["content"][0]["text"],
        "weather in Paris?"
    );
    assert_eq!(sent["max_tokens"], 5000);
    assert_eq!(
        sent["thinking"],
        json!({"type": "enabled", "budget_tokens": 2048})
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    let types: Vec<&str> = v["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["reasoning", "message", "function_call"]);
    assert_eq!(v["output"][2]["arguments"], r#"{"city":"Paris"}"#);
    assert_eq!(v["usage"]["input_tokens"], 2472);
    // Streamed: Anthropic events → chat → Responses events.
    mock.push(sse(frames("stream_tool_thinking.sse")));
    let req = json!({"model": "m", "input": "weather?", "stream": true});
    let (status, _, body) = post(&server, "/v1/responses", &req).await;
    assert_eq!(status, 200);
    let evs = events(&body);
    let done = evs.last().unwrap();
    assert_eq!(done["type"], "response.completed");
    assert_eq!(
        done["response"]["output"][0]["summary"][0]["text"],
        "The user wants weather. I'll call the tool."
    );
    assert_eq!(
        done["response"]["output"][1]["content"][0]["text"],
        "Let me check."
    );
    assert_eq!(done["response"]["usage"]["output_tokens"], 89);
}

#[tokio::test]
async fn legacy_completions_pass_through() {
    let answer = r#"{"id":"cmpl-1","object":"text_completion","choices":[{"index":0,"text":" world","finish_reason":"stop"}]}"#;
    let mock = Mock::start(Reply::Raw(200, "application/json", answer.into())).await;
    let anthropic = Mock::start(Reply::Echo).await;
    let server = proxy(&format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\n  - {{model_name: a, model_params: {{api_base: '{}', api_type: anthropic}}}}\n",
        mock.url, anthropic.url
    ))
    .await;
    let raw = r#"{"model": "m", "prompt": "hello",  "max_tokens": 3, "echo": false}"#;
    let r = client()
        .post(format!("{}/v1/completions", server.url()))
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), answer);
    assert_eq!(mock.hits()[0].path, "/v1/completions");
    assert_eq!(&mock.hits()[0].raw[..], raw.as_bytes());
    // An Anthropic backend has no legacy completions: 501, never sent.
    let (status, _, body) = post(
        &server,
        "/v1/completions",
        &json!({"model": "a", "prompt": "x"}),
    )
    .await;
    assert_eq!(status, 501, "{body}");
    assert_eq!(anthropic.count(), 0);
}

/// A Responses stream that ended in failure, as the Responses API ends one:
/// every event has an integer `sequence_number`, strictly increasing; the
/// last two are `error` (`code`, `message`, `param`, a string code) and
/// `response.failed` with the same code and message in `response.error`.
/// Returns the events.
fn assert_failed(body: &str, code: &str, message: &str) -> Vec<Value> {
    let evs = events(body);
    let mut last: Option<u64> = None;
    for v in &evs {
        let n = v["sequence_number"]
            .as_u64()
            .unwrap_or_else(|| panic!("no integer sequence_number: {v}\n{body}"));
        assert!(last.is_none_or(|l| n > l), "not increasing at {v}\n{body}");
        last = Some(n);
    }
    let [.., error, failed] = &evs[..] else {
        panic!("{body}")
    };
    assert_eq!(error["type"], "error", "{body}");
    assert_eq!(error["code"], code, "{error}");
    assert!(error["param"].is_null(), "{error}");
    let text = error["message"].as_str().unwrap();
    assert!(text.contains(message), "{error}");
    // The same as an `error` object, as OpenAI's own streams send it.
    assert_eq!(error["error"]["code"], code, "{error}");
    assert_eq!(error["error"]["message"], text, "{error}");
    assert_eq!(failed["type"], "response.failed", "{body}");
    assert_eq!(failed["response"]["object"], "response", "{failed}");
    assert_eq!(failed["response"]["status"], "failed", "{failed}");
    assert_eq!(
        failed["response"]["error"],
        json!({"code": code, "message": text}),
        "{failed}"
    );
    evs
}

#[tokio::test]
async fn a_translated_stream_cut_mid_way_ends_with_error_and_response_failed() {
    let mock = Mock::start(Reply::SseCut(vec![chunk("Hel"), chunk("lo")])).await;
    let server = server(&mock, ", supports_responses: false").await;
    let req = json!({"model": "m", "input": "hi", "stream": true});
    let (status, _, body) = post(&server, "/v1/responses", &req).await;
    assert_eq!(status, 200, "{body}");
    let evs = assert_failed(&body, "stream_interrupted", "upstream stream failed");
    assert_eq!(evs[0]["type"], "response.created");
    // The numbering continues the translator's: 0, 1, 2, …
    for (i, v) in evs.iter().enumerate() {
        assert_eq!(v["sequence_number"], i, "{v}");
    }
    let failed = &evs.last().unwrap()["response"];
    assert_eq!(failed["id"], evs[0]["response"]["id"]);
    assert_eq!(failed["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(failed["output"][0]["status"], "incomplete");
    assert!(!body.contains("response.completed"), "{body}");
}

#[tokio::test]
async fn an_upstream_error_mid_stream_ends_a_translated_stream_as_failed() {
    let error = "data: {\"error\":{\"message\":\"The model is overloaded.\",\"type\":\"server_error\",\"code\":null}}\n\n";
    let mock = Mock::start(Reply::Sse {
        frames: vec![chunk("Hi"), error.to_string()],
        gap: std::time::Duration::from_millis(1),
    })
    .await;
    let server = server(&mock, ", supports_responses: false").await;
    let req = json!({"model": "m", "input": "hi", "stream": true});
    let (status, _, body) = post(&server, "/v1/responses", &req).await;
    assert_eq!(status, 200, "{body}");
    // No code upstream: its type stands in (clients want a string).
    assert_failed(&body, "server_error", "The model is overloaded.");
}

#[tokio::test]
async fn proxy_made_errors_end_a_translated_stream_as_failed() {
    // An event past max_event_bytes, then an upstream gone silent past
    // the gap (request_timeout).
    let endless = format!("data: {{\"x\": \"{}", "x".repeat(100_000));
    let mock = Mock::start(Reply::SseStall(vec![chunk("hello "), endless])).await;
    let server = proxy(&format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}', supports_responses: false, timeout: 1}}}}\nrouter_settings: {{num_retries: 0}}\nproxy_settings: {{enable_responses_endpoint: true, streaming: {{max_event_bytes: 65536}}}}\n",
        mock.url
    ))
    .await;
    let req = json!({"model": "m", "input": "hi", "stream": true});
    let (status, _, body) = post(&server, "/v1/responses", &req).await;
    assert_eq!(status, 200, "{body}");
    assert_failed(
        &body,
        "upstream_event_too_large",
        "max_event_bytes (65536 bytes)",
    );
    mock.push(Reply::SseStall(vec![chunk("slow")]));
    let (status, _, body) = post(&server, "/v1/responses", &req).await;
    assert_eq!(status, 200, "{body}");
    assert_failed(&body, "upstream_timeout", "upstream stream failed");
}

#[tokio::test]
async fn a_stream_from_an_anthropic_backend_cut_mid_way_ends_as_failed() {
    let mut f = frames("stream_tool_thinking.sse");
    f.truncate(4);
    let mock = Mock::start(Reply::SseCut(f)).await;
    let server = server(&mock, ", api_type: anthropic, api_key: k").await;
    let req = json!({"model": "m", "input": "weather?", "stream": true});
    let (status, _, body) = post(&server, "/v1/responses", &req).await;
    assert_eq!(status, 200, "{body}");
    let evs = assert_failed(&body, "stream_interrupted", "upstream stream failed");
    assert_eq!(evs[0]["type"], "response.created");
}

#[tokio::test]
async fn a_native_responses_stream_cut_by_the_proxy_ends_numbered_after_it() {
    let ev = |name: &str, v: Value| format!("event: {name}\ndata: {v}\n\n");
    let created = json!({"type": "response.created", "sequence_number": 0,
        "response": {"id": "resp_native", "object": "response", "status": "in_progress", "model": "up", "output": []}});
    let delta = json!({"type": "response.output_text.delta", "sequence_number": 1,
        "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Hel"});
    let frames = vec![
        ev("response.created", created.clone()),
        ev("response.output_text.delta", delta.clone()),
    ];
    let mock = Mock::start(Reply::SseCut(frames.clone())).await;
    let server = server(&mock, "").await;
    let req = json!({"model": "m", "input": "hi", "stream": true});
    let (status, _, body) = post(&server, "/v1/responses", &req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(mock.hits()[0].path, "/v1/responses");
    // The backend's own events pass as they came.
    assert!(body.starts_with(&frames.concat()), "{body}");
    let evs = assert_failed(&body, "stream_interrupted", "upstream stream failed");
    assert_eq!(evs.len(), 4, "{body}");
    assert_eq!(evs[2]["sequence_number"], 2);
    assert_eq!(evs[3]["sequence_number"], 3);
    assert_eq!(evs[3]["response"]["id"], "resp_native");
    assert_eq!(evs[3]["response"]["model"], "up");
    // A backend's own error event is relayed as it is, nothing added.
    let own = ev(
        "error",
        json!({"type": "error", "sequence_number": 2, "code": "server_error", "message": "boom", "param": null}),
    );
    mock.push(Reply::Sse {
        frames: vec![
            ev("response.created", created),
            ev("response.output_text.delta", delta),
            own.clone(),
        ],
        gap: std::time::Duration::from_millis(1),
    });
    let (status, _, body) = post(&server, "/v1/responses", &req).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.ends_with(&own), "{body}");
    assert_eq!(events(&body).len(), 3, "{body}");
}

/// A chat backend that names no model in its completion or chunks: the
/// translated Responses object carries the requested model name (the AI SDK
/// requires a string `model`, and refused `null` with "Type validation
/// failed"), in the answer and in every event of a stream, even a failed one.
#[tokio::test]
async fn a_translated_response_without_a_backend_model_names_the_requested_one() {
    let completion = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 7,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi."}, "finish_reason": "stop"}]});
    let mock = Mock::start(Reply::Json(200, completion)).await;
    let server = server(&mock, ", supports_responses: false").await;
    let (status, _, body) = post(
        &server,
        "/v1/responses",
        &json!({"model": "m", "input": "hi"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["model"], "m", "{v}");

    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "c1", "object": "chat.completion.chunk", "created": 1,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let frames = vec![
        chunk(json!({"role": "assistant", "content": "Hi."}), Value::Null),
        chunk(json!({}), json!("stop")),
        DONE.to_string(),
    ];
    mock.push(Reply::Sse {
        frames: frames.clone(),
        gap: std::time::Duration::ZERO,
    });
    let req = json!({"model": "m", "input": "hi", "stream": true});
    let (status, _, body) = post(&server, "/v1/responses", &req).await;
    assert_eq!(status, 200, "{body}");
    let evs = events(&body);
    for e in evs.iter().filter(|e| e.get("response").is_some()) {
        assert_eq!(e["response"]["model"], "m", "{e}");
    }
    assert_eq!(evs[0]["type"], "response.created");
    assert_eq!(evs.last().unwrap()["type"], "response.completed");

    // Cut after the first chunk: response.failed names it too, numbered
    // after the events before it, with the response so far (with the
    // request log on, the translator is wrapped to keep the turn for
    // `previous_response_id`; the wrapper passes the failure on to it).
    mock.push(Reply::SseCut(frames[..1].to_vec()));
    let (status, _, body) = post(&server, "/v1/responses", &req).await;
    assert_eq!(status, 200, "{body}");
    let evs = assert_failed(&body, "stream_interrupted", "upstream stream failed");
    for (i, v) in evs.iter().enumerate() {
        assert_eq!(v["sequence_number"], i, "{body}");
    }
    let failed = evs.last().unwrap();
    assert_eq!(failed["response"]["model"], "m", "{body}");
    assert_eq!(failed["response"]["id"], evs[0]["response"]["id"], "{body}");
    assert_eq!(failed["response"]["output"][0]["content"][0]["text"], "Hi.");
}
