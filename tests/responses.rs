//! The Responses API for backends without one (`supports_responses: false`,
//! Anthropic backends), translated through chat completions; and legacy
//! `/v1/completions` passed through. Mock upstreams, the real proxy, HTTP.

mod support;

use serde_json::{Value, json};
use support::anthropic::{fixture, frames, sse};
use support::*;

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
