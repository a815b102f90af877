//! Anthropic Messages both ways, against mock upstreams and the real proxy
//! over HTTP: an `api_type: anthropic` backend behind `/v1/chat/completions`,
//! and the `/v1/messages` front door to Anthropic and OpenAI backends.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::anthropic::*;
use crate::support::*;

#[tokio::test]
async fn chat_completion_reaches_an_anthropic_backend() {
    let mock = Mock::start(Reply::Json(200, fixture_json("message_response.json"))).await;
    let server = anthropic_proxy(&mock, "").await;
    let mut req = fixture_json("chat_request.json");
    req["model"] = json!("claude");
    req["stream"] = json!(false);
    let (status, headers, body) = post(&server, "/v1/chat/completions", &req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    let hit = &mock.hits()[0];
    // A trailing /v1 in api_base is accepted: one /v1, then /messages.
    assert_eq!(hit.path, "/v1/messages");
    assert_eq!(hit.headers["x-api-key"], "sk-ant-test");
    assert_eq!(hit.headers["anthropic-version"], "2023-06-01");
    assert!(hit.headers.get("authorization").is_none());
    let sent = hit.json();
    let mut want = fixture_json("chat_request.as_messages.json");
    want["model"] = json!("claude-sonnet-4-5");
    want.as_object_mut().unwrap().remove("stream");
    assert_eq!(sent, want);
    let v: Value = serde_json::from_str(&body).unwrap();
    let mut expected = fixture_json("message_response.as_chat.json");
    expected["created"] = v["created"].clone();
    assert_eq!(v, expected);
}

#[tokio::test]
async fn chat_stream_from_an_anthropic_backend_with_usage() {
    let mock = Mock::start(sse(frames("stream_tool_thinking.sse"))).await;
    let server = anthropic_proxy(&mock, "").await;
    let req = json!({"model": "claude", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "weather in Paris?"}]});
    let (status, headers, body) = post(&server, "/v1/chat/completions", &req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(mock.hits()[0].json()["stream"], true);
    let evs = events(&body);
    assert_eq!(evs.last().unwrap().1, "[DONE]");
    let mut content = String::new();
    let mut reasoning = String::new();
    let mut args = String::new();
    let mut finish = Value::Null;
    let mut usage = Value::Null;
    let mut tool_id = Value::Null;
    for (_, c) in &evs {
        if c["usage"].is_object() {
            usage = c["usage"].clone();
        }
        let Some(ch) = c["choices"].get(0) else {
            continue;
        };
        let d = &ch["delta"];
        content += d["content"].as_str().unwrap_or("");
        reasoning += d["reasoning_content"].as_str().unwrap_or("");
        if let Some(tc) = d["tool_calls"].get(0) {
            if !tc["id"].is_null() {
                tool_id = tc["id"].clone();
                assert_eq!(tc["function"]["name"], "get_weather");
            }
            args += tc["function"]["arguments"].as_str().unwrap_or("");
        }
        if !ch["finish_reason"].is_null() {
            finish = ch["finish_reason"].clone();
        }
    }
    assert_eq!(content, "Let me check.");
    assert_eq!(reasoning, "The user wants weather. I'll call the tool.");
    assert_eq!(tool_id, "toolu_01A");
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(finish, "tool_calls");
    assert_eq!(usage["prompt_tokens"], 872);
    assert_eq!(usage["completion_tokens"], 89);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 300);
    // Without include_usage: no usage chunk.
    let req =
        json!({"model": "claude", "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let (_, _, body) = post(&server, "/v1/chat/completions", &req).await;
    assert!(events(&body).iter().all(|(_, c)| c.get("usage").is_none()));
}

#[tokio::test]
async fn anthropic_errors_reach_chat_clients_in_openai_shape() {
    let mock = Mock::start(Reply::Json(
        400,
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too large"}}),
    ))
    .await;
    let server = anthropic_proxy(&mock, "").await;
    let req = json!({"model": "claude", "messages": [{"role": "user", "content": "x"}]});
    let (status, _, body) = post(&server, "/v1/chat/completions", &req).await;
    assert_eq!(status, 400);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["message"], "max_tokens: too large");
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn an_anthropic_error_event_first_falls_back_to_an_openai_backend() {
    let anthropic = Mock::start(sse(vec![
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n".into(),
    ]))
    .await;
    let openai = Mock::start(sse(vec![chunk("from openai"), DONE.into()])).await;
    let server = proxy(&format!(
        "model_list:\n  - {{model_name: claude, model_params: {{api_type: anthropic, api_base: '{}', api_key: k}}, fallbacks: [gpt]}}\n  - {{model_name: gpt, model_params: {{api_base: '{}'}}}}\nrouter_settings: {{num_retries: 0}}\n",
        anthropic.url, openai.url
    ))
    .await;
    let req =
        json!({"model": "claude", "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let (status, headers, body) = post(&server, "/v1/chat/completions", &req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-yallmp-backend"], "gpt#1");
    assert_eq!(headers["x-yallmp-attempts"], "2");
    assert!(body.contains("from openai"), "{body}");
    assert_eq!(anthropic.count(), 1);
    // The OpenAI backend got the client's chat body, not a Messages one.
    assert!(openai.hits()[0].json()["messages"][0]["content"] == "x");

    // An HTTP 529 from Anthropic is retried elsewhere too.
    anthropic.push(Reply::Json(
        529,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ));
    let req = json!({"model": "claude", "messages": [{"role": "user", "content": "x"}]});
    openai.push(Reply::Echo);
    let (status, headers, _) = post(&server, "/v1/chat/completions", &req).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-yallmp-backend"], "gpt#1");
}

#[tokio::test]
async fn reasoning_effort_and_the_reasoning_block_reach_anthropic_as_thinking() {
    let mock = Mock::start(Reply::Json(200, fixture_json("message_response.json"))).await;
    let server = anthropic_proxy(
        &mock,
        ", reasoning: {style: anthropic, budget_tokens: 3000}",
    )
    .await;
    let req = json!({"model": "claude", "max_tokens": 8000, "messages": [{"role": "user", "content": "x"}]});
    post(&server, "/v1/chat/completions", &req).await;
    assert_eq!(
        mock.hits()[0].json()["thinking"],
        json!({"type": "enabled", "budget_tokens": 3000})
    );
    // The client's reasoning_effort wins over the block.
    let req = json!({"model": "claude", "max_tokens": 8000, "reasoning_effort": "low",
        "messages": [{"role": "user", "content": "x"}]});
    post(&server, "/v1/chat/completions", &req).await;
    assert_eq!(
        mock.hits()[1].json()["thinking"],
        json!({"type": "enabled", "budget_tokens": 2048})
    );
}

#[tokio::test]
async fn the_admin_api_registers_anthropic_backends_with_reasoning() {
    let mock = Mock::start(Reply::Json(200, fixture_json("message_response.json"))).await;
    let server = proxy("model_list: []\n").await;
    let r = client()
        .post(format!("{}/admin/models", server.url()))
        .json(&json!({"model_name": "rt", "api_type": "anthropic", "api_base": mock.url, "api_key": "k",
            "reasoning": {"style": "anthropic", "effort": "low"}, "supports_responses": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let v = get_json(&server, "/admin/models/rt").await;
    let b = &v["backends"][0];
    assert_eq!(b["api_type"], "anthropic");
    assert_eq!(
        b["reasoning"],
        json!({"style": "anthropic", "effort": "low", "budget_tokens": null})
    );
    assert_eq!(b["supports_responses"], false);
    let req =
        json!({"model": "rt", "max_tokens": 10000, "messages": [{"role": "user", "content": "x"}]});
    let (status, _, body) = post(&server, "/v1/chat/completions", &req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        mock.hits()[0].json()["thinking"],
        json!({"type": "enabled", "budget_tokens": 2048})
    );
    // A bad style is refused with its key path.
    let r = client()
        .post(format!("{}/admin/models", server.url()))
        .json(&json!({"model_name": "bad", "api_type": "stub", "reasoning": {"style": "nope"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("reasoning.style"));
}

#[tokio::test]
async fn a_translated_anthropic_stream_is_cached_whole() {
    use yallmp::cache::Key;
    use yallmp::endpoint::Endpoint;
    use yallmp::pipeline::request::RequestBody;
    let mock = Mock::start(sse(frames("stream_tool_thinking.sse"))).await;
    let server = proxy(&format!(
        "model_list:\n  - {{model_name: claude, model_params: {{api_type: anthropic, api_base: '{}', api_key: k}}}}\nproxy_settings: {{cache: {{enabled: true}}}}\n",
        mock.url
    ))
    .await;
    let req = json!({"model": "claude", "stream": true, "messages": [{"role": "user", "content": "cache me"}]});
    let (status, h, first) = post(&server, "/v1/chat/completions", &req).await;
    assert_eq!(status, 200);
    assert_eq!(h["x-yallmp-cache"], "miss");
    let cache = server.state().cache.clone().expect("cache on");
    let raw = req.to_string();
    let parsed = RequestBody::parse(raw.as_bytes()).unwrap();
    let key = Key::new(Endpoint::ChatCompletions, "claude", &parsed, None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cache.contains(&key).await {
        assert!(tokio::time::Instant::now() < deadline, "never stored");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, h, second) = post(&server, "/v1/chat/completions", &req).await;
    assert_eq!(status, 200);
    assert_eq!(h["x-yallmp-cache"], "hit");
    // The client's dialect was stored: chat chunks, [DONE] last.
    assert_eq!(second, first);
    assert!(second.ends_with("data: [DONE]\n\n"));
    assert_eq!(mock.count(), 1);
}

#[tokio::test]
async fn health_checks_speak_anthropic() {
    let mock = Mock::start(Reply::Json(200, json!({"data": []}))).await;
    let yaml = format!(
        "model_list:\n  - {{model_name: claude, model_params: {{api_type: anthropic, api_base: '{}', api_key: sk-ant-hc, health_check: {{interval: 30}}}}}}\n",
        mock.url
    );
    let backend = backend(&yaml);
    yallmp::router::health_check::probe(&client(), &backend)
        .await
        .unwrap();
    let hit = &mock.hits()[0];
    assert_eq!(hit.path, "/v1/models");
    assert_eq!(hit.headers["x-api-key"], "sk-ant-hc");
    assert_eq!(hit.headers["anthropic-version"], "2023-06-01");
    assert!(hit.headers.get("authorization").is_none());
}
