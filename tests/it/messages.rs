//! The Anthropic front door, `POST /v1/messages` and `/v1/messages/count_tokens`,
//! against mock upstreams and the real proxy over HTTP: passed through to
//! Anthropic backends, translated both ways for OpenAI-compatible ones.

use serde_json::{Value, json};

use crate::support::anthropic::*;
use crate::support::*;

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
    let mut config = config(&yaml);
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

#[tokio::test]
async fn a_messages_stream_falls_back_from_anthropic_to_openai_in_anthropic_events() {
    let anthropic = Mock::start(sse(vec![
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n".into(),
    ]))
    .await;
    let openai = Mock::start(sse(vec![chunk("from "), chunk("openai"), DONE.into()])).await;
    let server = proxy(&format!(
        "model_list:\n  - {{model_name: claude, model_params: {{api_type: anthropic, api_base: '{}', api_key: k}}, fallbacks: [gpt]}}\n  - {{model_name: gpt, model_params: {{api_base: '{}'}}}}\nrouter_settings: {{num_retries: 0}}\n",
        anthropic.url, openai.url
    ))
    .await;
    let req = json!({"model": "claude", "max_tokens": 20, "stream": true,
        "messages": [{"role": "user", "content": "x"}]});
    let (status, headers, body) = post(&server, "/v1/messages", &req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-yallmp-backend"], "gpt#1");
    // The Anthropic backend got the Messages body as sent; the OpenAI one a chat body.
    assert_eq!(anthropic.hits()[0].json()["max_tokens"], 20);
    assert_eq!(openai.hits()[0].json()["messages"][0]["content"], "x");
    let evs = events(&body);
    let text: String = evs
        .iter()
        .filter_map(|(_, v)| v["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "from openai");
    assert_eq!(evs.last().unwrap().0.as_deref(), Some("message_stop"));
}

#[tokio::test]
async fn a_broken_translated_stream_ends_with_an_error_event() {
    let mock = Mock::start(Reply::SseCut(vec![chunk("partial ")])).await;
    let server = proxy(&format!(
        "model_list:\n  - {{model_name: gpt, model_params: {{api_base: '{}'}}}}\n",
        mock.url
    ))
    .await;
    let req = json!({"model": "gpt", "max_tokens": 20, "stream": true,
        "messages": [{"role": "user", "content": "x"}]});
    let (status, _, body) = post(&server, "/v1/messages", &req).await;
    assert_eq!(status, 200);
    let evs = events(&body);
    let names: Vec<&str> = evs.iter().filter_map(|(n, _)| n.as_deref()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "error"
        ],
        "{body}"
    );
    let err = &evs.last().unwrap().1;
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["type"], "api_error");
    assert!(!body.contains("message_stop"));
}
