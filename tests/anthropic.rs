//! Anthropic Messages both ways, against mock upstreams and the real proxy
//! over HTTP: an `api_type: anthropic` backend behind `/v1/chat/completions`,
//! and the `/v1/messages` front door to Anthropic and OpenAI backends.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/anthropic/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap()
}

/// The frames of an SSE fixture, each with its terminator.
fn frames(name: &str) -> Vec<String> {
    fixture(name)
        .split_inclusive("\n\n")
        .map(str::to_string)
        .collect()
}

fn sse(frames: Vec<String>) -> Reply {
    Reply::Sse {
        frames,
        gap: Duration::from_millis(1),
    }
}

/// The `data:` payloads of an event stream, with their event names.
fn events(body: &str) -> Vec<(Option<String>, Value)> {
    body.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .filter_map(|f| {
            let mut name = None;
            let mut data = None;
            for line in f.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = Some(d.to_string());
                }
            }
            let data = data?;
            let v = if data == "[DONE]" {
                json!("[DONE]")
            } else {
                serde_json::from_str(&data).unwrap_or_else(|e| panic!("{data}: {e}"))
            };
            Some((name, v))
        })
        .collect()
}

async fn anthropic_proxy(mock: &Mock, extra: &str) -> yallmp::Server {
    proxy(&format!(
        "model_list:\n  - {{model_name: claude, model_params: {{api_type: anthropic, api_base: '{}', api_key: sk-ant-test, target_model: claude-sonnet-4-5{extra}}}}}\n",
        mock.url
    ))
    .await
}

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

async fn post_with(
    server: &yallmp::Server,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, String) {
    let mut req = client().post(format!("{}{path}", server.url())).json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

#[tokio::test]
async fn messages_pass_through_to_an_anthropic_backend() {
    let answer = fixture("message_response.json");
    let mock = Mock::start(Reply::Raw(200, "application/json", answer.clone())).await;
    let server = anthropic_proxy(&mock, "").await;
    let mut req = fixture_json("messages_request.json");
    req["model"] = json!("claude");
    req["stream"] = json!(false);
    let (status, _, body) = post_with(
        &server,
        "/v1/messages",
        &req,
        &[
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "x-1"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The answer as the backend sent it, byte for byte.
    assert_eq!(body, answer);
    let hit = &mock.hits()[0];
    assert_eq!(hit.path, "/v1/messages");
    assert_eq!(hit.headers["x-api-key"], "sk-ant-test");
    assert_eq!(hit.headers["anthropic-beta"], "x-1");
    // The body unchanged but for the model.
    let mut want = req.clone();
    want["model"] = json!("claude-sonnet-4-5");
    assert_eq!(hit.json(), want);
    // Without /v1 too, and streamed: frames byte for byte.
    let stream = fixture("stream_tool_thinking.sse");
    mock.push(sse(frames("stream_tool_thinking.sse")));
    req["stream"] = json!(true);
    let (status, headers, body) = post_with(&server, "/messages", &req, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(body, stream);
}

#[tokio::test]
async fn messages_are_translated_for_an_openai_backend() {
    let completion = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "It is 18C.", "reasoning_content": "Look it up.",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "Bash", "arguments": "{\"command\":\"cat a.txt\"}"}}]},
            "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150, "prompt_tokens_details": {"cached_tokens": 100}}});
    let mock = Mock::start(Reply::Json(200, completion)).await;
    let server = proxy(&format!(
        "model_list:\n  - {{model_name: gpt, model_params: {{api_base: '{}', target_model: gpt-4o}}}}\n",
        mock.url
    ))
    .await;
    let mut req = fixture_json("messages_request.json");
    req["model"] = json!("gpt");
    req["stream"] = json!(false);
    let (status, _, body) = post(&server, "/v1/messages", &req).await;
    assert_eq!(status, 200, "{body}");
    let hit = &mock.hits()[0];
    assert_eq!(hit.path, "/v1/chat/completions");
    let mut want = fixture_json("messages_request.as_chat.json");
    let w = want.as_object_mut().unwrap();
    w.remove("stream");
    w.remove("stream_options");
    assert_eq!(hit.json(), want);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["id"], "msg_chatcmpl-1");
    assert_eq!(
        v["content"],
        json!([
            {"type": "thinking", "thinking": "Look it up.", "signature": ""},
            {"type": "text", "text": "It is 18C."},
            {"type": "tool_use", "id": "call_1", "name": "Bash", "input": {"command": "cat a.txt"}},
        ])
    );
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(v["usage"]["input_tokens"], 20);
    assert_eq!(v["usage"]["cache_read_input_tokens"], 100);
    assert_eq!(v["usage"]["output_tokens"], 30);
}

#[tokio::test]
async fn messages_stream_from_an_openai_backend_becomes_events() {
    let mock = Mock::start(sse(frames("chat_stream_tool_reasoning.sse"))).await;
    let server = proxy(&format!(
        "model_list:\n  - {{model_name: glm, model_params: {{api_base: '{}'}}}}\n",
        mock.url
    ))
    .await;
    let req = json!({"model": "glm", "max_tokens": 100, "stream": true,
        "messages": [{"role": "user", "content": "weather?"}]});
    let (status, headers, body) = post(&server, "/v1/messages", &req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(
        mock.hits()[0].json()["stream_options"],
        json!({"include_usage": true})
    );
    let evs = events(&body);
    for (name, v) in &evs {
        assert_eq!(name.as_deref(), v["type"].as_str(), "{body}");
    }
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(
        &names[names.len() - 2..],
        &["message_delta", "message_stop"]
    );
    let mut thinking = String::new();
    let mut signature = String::new();
    let mut text = String::new();
    let mut json_args = String::new();
    let mut tool = Value::Null;
    for (_, v) in &evs {
        match v["type"].as_str().unwrap() {
            "content_block_start" if v["content_block"]["type"] == "tool_use" => {
                tool = v["content_block"].clone()
            }
            "content_block_delta" => {
                let d = &v["delta"];
                thinking += d["thinking"].as_str().unwrap_or("");
                signature += d["signature"].as_str().unwrap_or("");
                text += d["text"].as_str().unwrap_or("");
                json_args += d["partial_json"].as_str().unwrap_or("");
            }
            _ => {}
        }
    }
    assert_eq!(thinking, "Need the weather.");
    assert_eq!(signature, "sig-1");
    assert_eq!(text, "Checking.");
    assert_eq!(tool["id"], "call_1");
    assert_eq!(tool["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(&json_args).unwrap(),
        json!({"city": "Paris"})
    );
    let delta = &evs[evs.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(delta["usage"]["input_tokens"], 40);
    assert_eq!(delta["usage"]["output_tokens"], 17);
}

#[tokio::test]
async fn response_parsers_apply_to_translated_messages() {
    let raw = "<think>plan it</think>The answer.";
    let completion = json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "q",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": raw}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}});
    let mock = Mock::start(Reply::Json(200, completion)).await;
    let server = proxy(&format!(
        "model_list:\n  - model_name: q\n    model_params: {{api_base: '{}'}}\n    parsers: {{parse_tags: {{}}}}\n",
        mock.url
    ))
    .await;
    let req =
        json!({"model": "q", "max_tokens": 50, "messages": [{"role": "user", "content": "x"}]});
    let (status, _, body) = post(&server, "/v1/messages", &req).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["content"],
        json!([{"type": "thinking", "thinking": "plan it", "signature": ""},
               {"type": "text", "text": "The answer."}])
    );
    // Streamed, the same.
    let mut fs: Vec<String> = ["<thi", "nk>plan", " it</think>The ", "answer."]
        .iter()
        .map(|c| chunk(c))
        .collect();
    fs.push(DONE.into());
    mock.push(sse(fs));
    let req = json!({"model": "q", "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let (_, _, body) = post(&server, "/v1/messages", &req).await;
    let (mut thinking, mut text) = (String::new(), String::new());
    for (_, v) in events(&body) {
        thinking += v["delta"]["thinking"].as_str().unwrap_or("");
        text += v["delta"]["text"].as_str().unwrap_or("");
    }
    assert_eq!(thinking, "plan it");
    assert_eq!(text, "The answer.");
}

#[tokio::test]
async fn messages_errors_come_in_anthropic_shape() {
    let mock = Mock::start(Reply::Json(
        400,
        json!({"error": {"message": "bad tool schema", "type": "invalid_request_error", "code": null}}),
    ))
    .await;
    let server = proxy(&format!(
        "model_list:\n  - {{model_name: gpt, model_params: {{api_base: '{}'}}}}\nproxy_settings: {{auth: {{api_keys: [sk-client]}}}}\n",
        mock.url
    ))
    .await;
    let req =
        json!({"model": "gpt", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
    let key = [("x-api-key", "sk-client")];
    // No key: 401.
    let (status, _, body) = post_with(&server, "/v1/messages", &req, &[]).await;
    assert_eq!(status, 401);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "authentication_error");
    // Unknown model: 404.
    let (status, _, body) = post_with(
        &server,
        "/v1/messages",
        &json!({"model": "nope", "max_tokens": 5, "messages": []}),
        &key,
    )
    .await;
    assert_eq!(status, 404);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "not_found_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("nope"));
    // The backend's 400.
    let (status, _, body) = post_with(&server, "/v1/messages", &req, &key).await;
    assert_eq!(status, 400);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "bad tool schema"}})
    );
    // Malformed: `messages` missing.
    let (status, _, body) = post_with(
        &server,
        "/v1/messages",
        &json!({"model": "gpt", "max_tokens": 5}),
        &key,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["type"],
        "invalid_request_error"
    );
}

#[tokio::test]
async fn count_tokens_from_the_backend_or_estimated() {
    let mock = Mock::start(Reply::Json(200, json!({"input_tokens": 1234}))).await;
    let openai = Mock::start(Reply::Echo).await;
    let server = proxy(&format!(
        "model_list:\n  - {{model_name: claude, model_params: {{api_type: anthropic, api_base: '{}', api_key: k, target_model: c-1}}}}\n  - {{model_name: gpt, model_params: {{api_base: '{}'}}}}\n",
        mock.url, openai.url
    ))
    .await;
    let req = json!({"model": "claude", "messages": [{"role": "user", "content": "hello there"}]});
    let (status, headers, body) = post(&server, "/v1/messages/count_tokens", &req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"input_tokens": 1234})
    );
    assert!(headers.get("x-yallmp-token-count").is_none());
    assert_eq!(mock.hits()[0].path, "/v1/messages/count_tokens");
    assert_eq!(mock.hits()[0].json()["model"], "c-1");
    // An OpenAI backend cannot count: the estimate, said so in a header.
    let req = json!({"model": "gpt", "system": "abcd", "messages": [{"role": "user", "content": "12345678"}]});
    let (status, headers, body) = post(&server, "/v1/messages/count_tokens", &req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-yallmp-token-count"], "estimate");
    // 12 characters → 3 tokens, 3 for the message, 3 for the reply.
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"input_tokens": 9})
    );
    assert_eq!(openai.count(), 0);
}

#[tokio::test]
async fn messages_requests_are_logged_like_any_other() {
    let mock = Mock::start(Reply::Json(200, fixture_json("message_response.json"))).await;
    let yaml = format!(
        "model_list:\n  - {{model_name: claude, model_params: {{api_type: anthropic, api_base: '{}', api_key: sk-secret-key}}}}\nproxy_settings: {{logging: {{files: {{enabled: true}}}}}}\n",
        mock.url
    );
    let mut config = yallmp::config::Config::from_yaml(
        &yaml,
        None,
        &yallmp::config::Env::isolated::<[(&str, &str); 0], _, _>([]),
    )
    .unwrap();
    config.server.port = 0;
    let dir = isolate_logs(&mut config);
    let server = yallmp::serve(config).await.unwrap();
    let req = json!({"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "logged?"}]});
    let (status, _, _) = post_with(
        &server,
        "/v1/messages",
        &req,
        &[("x-request-id", "req-messages-1")],
    )
    .await;
    assert_eq!(status, 200);
    server.shutdown().await;
    let logs: Vec<String> = std::fs::read_dir(dir.join("requests"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    let log = logs
        .iter()
        .find(|l| l.contains("req-messages-1"))
        .expect("a record for the request");
    assert!(log.contains("/v1/messages"), "{log}");
    assert!(log.contains("claude#1"), "{log}");
    assert!(log.contains("logged?"), "{log}");
    assert!(!log.contains("sk-secret-key"), "{log}");
}
