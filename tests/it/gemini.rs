//! `api_type: gemini` (Google AI Studio) against a mock that checks what
//! the real service does: the model's `:generateContent` /
//! `:streamGenerateContent?alt=sse` path, the key in `x-goog-api-key`, and a
//! body of Gemini's own fields only (contents/parts/roles, systemInstruction,
//! generationConfig, tools). Answers in Gemini's published shapes: thought
//! parts, function calls with thought signatures, usageMetadata, prompt
//! blocks, errors; through chat, Responses and Messages; embeddings.

use serde_json::{Value, json};

use crate::support::{Hit, Mock, Reply, post, proxy, sse_data};

const LOGS_OFF: &str = "proxy_settings: {enable_responses_endpoint: true, logging: {files: {enabled: false}, database: {enabled: false}}}\n";

/// The mock's origin: `api_base` for a Google backend.
fn origin(mock: &Mock) -> String {
    mock.url
        .strip_suffix("/v1")
        .unwrap_or(&mock.url)
        .to_string()
}

fn config(mock: &Mock, extra: &str) -> String {
    format!(
        "model_list:\n  - {{model_name: gem, model_params: {{api_type: gemini, api_base: '{}', api_key: g-secret, model: gemini-2.5-flash{extra}}}}}\n{LOGS_OFF}",
        origin(mock)
    )
}

/// What Gemini's reference says a request body may hold at the top level.
const GEMINI_FIELDS: &[&str] = &[
    "contents",
    "tools",
    "toolConfig",
    "safetySettings",
    "systemInstruction",
    "generationConfig",
    "cachedContent",
];

/// The checks the real service makes on every generate request.
fn check_request(hit: &Hit, method: &str) {
    assert_eq!(
        hit.path,
        format!("/v1beta/models/gemini-2.5-flash:{method}")
    );
    assert_eq!(hit.headers["x-goog-api-key"], "g-secret");
    assert!(
        hit.headers.get("authorization").is_none(),
        "{:?}",
        hit.headers
    );
    let body = hit.json();
    for k in body.as_object().unwrap().keys() {
        assert!(
            GEMINI_FIELDS.contains(&k.as_str()),
            "not a Gemini field: {k} in {body}"
        );
    }
    for c in body["contents"].as_array().unwrap() {
        let role = c["role"].as_str().unwrap();
        assert!(role == "user" || role == "model", "{c}");
        assert!(!c["parts"].as_array().unwrap().is_empty(), "{c}");
    }
}

fn answer() -> Value {
    json!({
        "candidates": [{
            "content": {"parts": [
                {"text": "**Weighing it** the user greets me.", "thought": true},
                {"text": "Hello! How can I help?"}
            ], "role": "model"},
            "finishReason": "STOP",
            "index": 0
        }],
        "usageMetadata": {
            "promptTokenCount": 12, "candidatesTokenCount": 7, "totalTokenCount": 61,
            "cachedContentTokenCount": 4, "thoughtsTokenCount": 42,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 12}]
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": "Vtw1aJ-7LbKmz7IP1N2-yQo"
    })
}

fn call_answer() -> Value {
    json!({
        "candidates": [{
            "content": {"parts": [{
                "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                "thoughtSignature": "CiQB0e2Kb+Y3cYAkm2Gb1n0Vx3TUTkhzO0rQvxZWPNbLrJcsKo0="
            }], "role": "model"},
            "finishReason": "STOP",
            "index": 0
        }],
        "usageMetadata": {"promptTokenCount": 50, "candidatesTokenCount": 15, "totalTokenCount": 95, "thoughtsTokenCount": 30},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "call-1"
    })
}

#[tokio::test]
async fn chat_is_sent_as_contents_and_answered_with_reasoning_and_usage() {
    let g = Mock::start(Reply::Json(200, answer())).await;
    let server = proxy(&config(&g, "")).await;
    let (status, _, body) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "gem", "user": "u-1", "temperature": 0.3, "max_tokens": 256,
            "reasoning_effort": "low", "stop": ["END"],
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let c: Value = serde_json::from_str(&body).unwrap();
    let m = &c["choices"][0]["message"];
    assert_eq!(m["content"], "Hello! How can I help?");
    assert_eq!(
        m["reasoning_content"],
        "**Weighing it** the user greets me."
    );
    assert_eq!(c["choices"][0]["finish_reason"], "stop");
    assert_eq!(c["usage"]["prompt_tokens"], 12);
    assert_eq!(c["usage"]["completion_tokens"], 49);
    assert_eq!(c["usage"]["total_tokens"], 61);
    assert_eq!(c["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
    assert_eq!(
        c["usage"]["completion_tokens_details"]["reasoning_tokens"],
        42
    );
    let hits = g.hits();
    assert_eq!(hits.len(), 1);
    check_request(&hits[0], "generateContent");
    let sent = hits[0].json();
    assert_eq!(
        sent["systemInstruction"],
        json!({"parts": [{"text": "Be brief."}]})
    );
    assert_eq!(
        sent["contents"],
        json!([{"role": "user", "parts": [{"text": "Hi"}]}])
    );
    assert_eq!(
        sent["generationConfig"],
        json!({"temperature": 0.3, "maxOutputTokens": 256, "stopSequences": ["END"],
            "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": true}})
    );
}

#[tokio::test]
async fn streams_become_chat_chunks() {
    let frames = [
        json!({"candidates": [{"content": {"parts": [{"text": "Thinking about it.", "thought": true}], "role": "model"}, "index": 0}],
            "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}, "modelVersion": "gemini-2.5-flash", "responseId": "s1"}),
        json!({"candidates": [{"content": {"parts": [{"text": "Hel"}], "role": "model"}, "index": 0}],
            "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}, "modelVersion": "gemini-2.5-flash", "responseId": "s1"}),
        json!({"candidates": [{"content": {"parts": [{"text": "lo"}], "role": "model"}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 2, "thoughtsTokenCount": 5, "totalTokenCount": 16},
            "modelVersion": "gemini-2.5-flash", "responseId": "s1"}),
    ];
    let g = Mock::start(Reply::Sse {
        frames: frames
            .iter()
            .map(|f| format!("data: {f}\r\n\r\n"))
            .collect(),
        gap: std::time::Duration::from_millis(5),
    })
    .await;
    let server = proxy(&config(&g, "")).await;
    let (status, headers, body) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "gem", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let data = sse_data(&body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    let reasoning: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    assert_eq!(text, "Hello");
    assert_eq!(reasoning, "Thinking about it.");
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "stop")
    );
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 7, "{usage}");
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 5);
    let hit = &g.hits()[0];
    check_request(hit, "streamGenerateContent");
    assert_eq!(hit.query, "alt=sse");
}

#[tokio::test]
async fn tool_calls_round_trip_with_their_thought_signature() {
    let g = Mock::start(Reply::Json(200, answer())).await;
    g.push(Reply::Json(200, call_answer()));
    let server = proxy(&config(&g, "")).await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
            "additionalProperties": false}}}]);
    let mut messages = vec![json!({"role": "user", "content": "Weather in Paris?"})];
    let (status, _, body) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "gem", "messages": messages, "tools": tools, "tool_choice": "required"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let c: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
    let msg = c["choices"][0]["message"].clone();
    let call = &msg["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"city": "Paris"})
    );
    let first = g.hits()[0].json();
    assert_eq!(
        first["tools"],
        json!([{"functionDeclarations": [{"name": "get_weather", "description": "Weather",
            "parametersJsonSchema": tools[0]["function"]["parameters"]}]}])
    );
    assert_eq!(
        first["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY"}})
    );
    // The next turn: the client echoes the call (its id) and answers it.
    messages.push(msg.clone());
    messages
        .push(json!({"role": "tool", "tool_call_id": call["id"], "content": "{\"temp_c\": 21}"}));
    let (status, _, body) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "gem", "messages": messages, "tools": tools}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let hits = g.hits();
    check_request(&hits[1], "generateContent");
    let second = hits[1].json();
    assert_eq!(
        second["contents"][1],
        json!({"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
            "thoughtSignature": "CiQB0e2Kb+Y3cYAkm2Gb1n0Vx3TUTkhzO0rQvxZWPNbLrJcsKo0="}]})
    );
    assert_eq!(
        second["contents"][2],
        json!({"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}}]})
    );
}

#[tokio::test]
async fn messages_and_responses_front_doors_reach_gemini_through_chat() {
    let g = Mock::start(Reply::Json(200, answer())).await;
    let server = proxy(&config(&g, "")).await;
    let (status, _, body) = post(
        &server,
        "/v1/messages",
        &json!({"model": "gem", "max_tokens": 100, "system": "Be brief.",
            "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let m: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(m["type"], "message");
    let text: Vec<&Value> = m["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "text")
        .collect();
    assert_eq!(text[0]["text"], "Hello! How can I help?");
    assert_eq!(m["stop_reason"], "end_turn");
    let sent = g.hits()[0].json();
    check_request(&g.hits()[0], "generateContent");
    assert_eq!(sent["systemInstruction"]["parts"][0]["text"], "Be brief.");
    assert_eq!(sent["generationConfig"]["maxOutputTokens"], 100);

    let (status, _, body) = post(
        &server,
        "/v1/responses",
        &json!({"model": "gem", "input": "Hi", "instructions": "Be brief."}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let r: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(r["object"], "response");
    assert!(body.contains("Hello! How can I help?"), "{body}");
    check_request(&g.hits()[1], "generateContent");
}

#[tokio::test]
async fn supports_reasoning_asks_gemini_for_its_thoughts() {
    let g = Mock::start(Reply::Json(200, answer())).await;
    let server = proxy(&config(&g, ", supports_reasoning: true")).await;
    let (status, _, body) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "gem", "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        g.hits()[0].json()["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 8192, "includeThoughts": true})
    );
    // The client's own effort wins.
    let (status, _, body) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "gem", "reasoning_effort": "high", "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        g.hits()[1].json()["generationConfig"]["thinkingConfig"]["thinkingBudget"],
        24576
    );
}

#[tokio::test]
async fn a_blocked_prompt_is_a_content_filter_finish() {
    let g = Mock::start(Reply::Json(
        200,
        json!({"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true}]},
            "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}, "modelVersion": "gemini-2.5-flash"}),
    ))
    .await;
    let server = proxy(&config(&g, "")).await;
    let (status, _, body) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "gem", "messages": [{"role": "user", "content": "bad"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let c: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(c["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(c["usage"]["prompt_tokens"], 8);
}

fn gemini_error(code: u16, status: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message, "status": status}})
}

#[tokio::test]
async fn errors_reach_the_client_in_its_dialect_with_their_status() {
    let g = Mock::start(Reply::Json(
        400,
        gemini_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received."),
    ))
    .await;
    let server = proxy(&config(&g, "")).await;
    let (status, _, body) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "gem", "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let e: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["error"]["message"], "Invalid JSON payload received.");
    assert_eq!(e["error"]["code"], "INVALID_ARGUMENT");
    assert_eq!(g.count(), 1, "a client error is not retried");
    let (status, _, body) = post(
        &server,
        "/v1/messages",
        &json!({"model": "gem", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let e: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert_eq!(e["error"]["message"], "Invalid JSON payload received.");
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_then_fall_back() {
    let mut quota = gemini_error(
        429,
        "RESOURCE_EXHAUSTED",
        "Resource has been exhausted (e.g. check quota).",
    );
    quota["error"]["details"] =
        json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.3s"}]);
    let g = Mock::start(Reply::Json(429, quota)).await;
    g.push(Reply::Json(
        500,
        gemini_error(500, "INTERNAL", "An internal error has occurred."),
    ));
    let spare = Mock::start(Reply::Json(200, answer())).await;
    let yaml = format!(
        "model_list:\n  - {{model_name: gem, model_params: {{api_type: gemini, api_base: '{}', api_key: g-secret, model: gemini-2.5-flash}}, fallbacks: [spare]}}\n  - {{model_name: spare, litellm_params: {{model: gemini/gemini-2.5-flash, api_base: '{}', api_key: g-secret}}}}\nrouter_settings: {{num_retries: 2, retry_backoff_ms: 1}}\n{LOGS_OFF}",
        origin(&g),
        origin(&spare)
    );
    let server = proxy(&yaml).await;
    let (status, _, body) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "gem", "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let hits = g.hits();
    assert_eq!(
        hits.len(),
        3,
        "500, then 429 retried after Gemini's retryDelay"
    );
    let waited = hits[2].at.duration_since(hits[1].at);
    assert!(
        waited >= std::time::Duration::from_millis(300),
        "{waited:?}"
    );
    assert_eq!(spare.count(), 1);
    check_request(&spare.hits()[0], "generateContent");
}

#[tokio::test]
async fn a_stream_error_event_reaches_the_client() {
    let g = Mock::start(Reply::Sse {
        frames: vec![
            format!(
                "data: {}\r\n\r\n",
                json!({"candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"}, "index": 0}]})
            ),
            format!(
                "data: {}\r\n\r\n",
                gemini_error(503, "UNAVAILABLE", "The model is overloaded.")
            ),
        ],
        gap: std::time::Duration::from_millis(5),
    })
    .await;
    let server = proxy(&config(&g, "")).await;
    let (status, _, body) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "gem", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let data = sse_data(&body);
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(
        last["error"]["message"], "The model is overloaded.",
        "{body}"
    );
    assert!(!data.iter().any(|d| d == "[DONE]"), "{body}");
}

#[tokio::test]
async fn embeddings_use_batch_and_single_embed_content() {
    let g = Mock::start(Reply::Json(
        200,
        json!({"embeddings": [{"values": [0.25, -0.5]}, {"values": [1.0, 0.0]}]}),
    ))
    .await;
    g.push(Reply::Json(
        200,
        json!({"embedding": {"values": [0.5, 0.5]}}),
    ));
    let yaml = format!(
        "model_list:\n  - {{model_name: emb, model_params: {{api_type: gemini, api_base: '{}', api_key: g-secret, model: gemini-embedding-001}}}}\n{LOGS_OFF}",
        origin(&g)
    );
    let server = proxy(&yaml).await;
    let (status, _, body) = post(
        &server,
        "/v1/embeddings",
        &json!({"model": "emb", "input": "one", "dimensions": 2}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let e: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["object"], "list");
    assert_eq!(e["data"][0]["embedding"], json!([0.5, 0.5]));
    let hit = &g.hits()[0];
    assert_eq!(hit.path, "/v1beta/models/gemini-embedding-001:embedContent");
    assert_eq!(hit.headers["x-goog-api-key"], "g-secret");
    assert_eq!(
        hit.json(),
        json!({"content": {"parts": [{"text": "one"}]}, "outputDimensionality": 2})
    );
    let (status, _, body) = post(
        &server,
        "/v1/embeddings",
        &json!({"model": "emb", "input": ["a", "b"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let e: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["data"][1]["embedding"], json!([1.0, 0.0]));
    assert_eq!(e["data"][1]["index"], 1);
    let hit = &g.hits()[1];
    assert_eq!(
        hit.path,
        "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    );
    assert_eq!(
        hit.json(),
        json!({"requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}},
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}}]})
    );
}

#[tokio::test]
async fn config_names_and_errors() {
    let b = crate::support::backend(
        "model_list:\n  - {model_name: g, litellm_params: {model: gemini/gemini-2.5-pro, api_key: k}}\n",
    );
    assert_eq!(b.api_type.as_str(), "gemini");
    assert_eq!(b.api_base, "https://generativelanguage.googleapis.com");
    assert_eq!(
        b.endpoint_url(yallmp::endpoint::Endpoint::ChatCompletions),
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:generateContent"
    );
    // The shipped catalog prices the common models (through a prefix too).
    let p = b.price_for("gemini-2.5-pro").unwrap();
    assert_eq!(
        (p.input, p.output, p.cached_input),
        (1.25, 10.0, Some(0.125))
    );
    for m in [
        "gemini-2.5-flash",
        "models/gemini-2.5-flash-lite",
        "gemini-2.0-flash",
    ] {
        assert!(yallmp::price::shipped(m).is_some(), "{m}");
    }
    let e = crate::support::config_error(
        "model_list:\n  - {model_name: g, model_params: {api_type: gemini, model: gemini-2.5-pro}}\n",
    )
    .to_string();
    assert!(
        e.contains("api_key") && e.contains("required for api_type gemini"),
        "{e}"
    );
}

#[tokio::test]
async fn the_record_lists_what_gemini_does_not_take() {
    let g = Mock::start(Reply::Json(200, answer())).await;
    let yaml = format!(
        "model_list:\n  - {{model_name: gem, model_params: {{api_type: gemini, api_base: '{}', api_key: g-secret, model: gemini-2.5-flash}}}}\n",
        origin(&g)
    );
    let l = crate::support::logged::logged_proxy(&yaml, None).await;
    let (status, headers, body) = post(
        &l.server,
        "/v1/chat/completions",
        &json!({"model": "gem", "user": "u-1", "parallel_tool_calls": false, "logprobs": true,
            "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = headers["x-request-id"].to_str().unwrap().to_string();
    let ev = crate::support::logged::record(&l.dir, &id).await;
    let attempts = crate::support::logged::of_kind(&ev, "attempt");
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        attempts[0]["url"],
        format!(
            "{}/v1beta/models/gemini-2.5-flash:generateContent",
            origin(&g)
        ),
        "{}",
        attempts[0]
    );
    assert_eq!(
        attempts[0]["dropped"],
        json!(["user", "parallel_tool_calls", "logprobs"]),
        "{}",
        attempts[0]
    );
    check_request(&g.hits()[0], "generateContent");
}

#[tokio::test]
async fn a_messages_stream_from_gemini_carries_thinking_text_and_tool_use() {
    let frames = [
        json!({"candidates": [{"content": {"parts": [{"text": "Need the weather.", "thought": true}], "role": "model"}, "index": 0}],
            "usageMetadata": {"promptTokenCount": 20, "totalTokenCount": 20}, "modelVersion": "gemini-2.5-flash", "responseId": "m1"}),
        json!({"candidates": [{"content": {"parts": [{"text": "Checking."},
            {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": "EhsKGQ=="}], "role": "model"},
            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 9, "totalTokenCount": 29}, "modelVersion": "gemini-2.5-flash", "responseId": "m1"}),
    ];
    let g = Mock::start(Reply::Sse {
        frames: frames
            .iter()
            .map(|f| format!("data: {f}\r\n\r\n"))
            .collect(),
        gap: std::time::Duration::from_millis(5),
    })
    .await;
    let server = proxy(&config(&g, "")).await;
    let (status, _, body) = post(
        &server,
        "/v1/messages",
        &json!({"model": "gem", "max_tokens": 200, "stream": true,
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": "Weather in Oslo?"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("event: message_start"), "{body}");
    assert!(body.contains("\"thinking_delta\""), "{body}");
    assert!(body.contains("Need the weather."), "{body}");
    assert!(body.contains("Checking."), "{body}");
    assert!(body.contains("\"tool_use\""), "{body}");
    assert!(body.contains("\"stop_reason\":\"tool_use\""), "{body}");
    assert!(body.contains("event: message_stop"), "{body}");
    let hit = &g.hits()[0];
    check_request(hit, "streamGenerateContent");
    assert_eq!(
        hit.json()["tools"][0]["functionDeclarations"][0]["name"],
        "get_weather"
    );
}

#[tokio::test]
async fn a_responses_tool_round_trip_keeps_the_thought_signature() {
    let g = Mock::start(Reply::Json(200, answer())).await;
    g.push(Reply::Json(200, call_answer()));
    let server = proxy(&config(&g, "")).await;
    let tools = json!([{"type": "function", "name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    let user = json!({"role": "user", "content": "Weather in Paris?"});
    let (status, _, body) = post(
        &server,
        "/v1/responses",
        &json!({"model": "gem", "input": [user], "tools": tools}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let r: Value = serde_json::from_str(&body).unwrap();
    let call = r["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "function_call")
        .cloned()
        .unwrap_or_else(|| panic!("no function_call in {r}"));
    assert_eq!(call["name"], "get_weather");
    let (status, _, body) = post(
        &server,
        "/v1/responses",
        &json!({"model": "gem", "tools": tools, "input": [user, call,
            {"type": "function_call_output", "call_id": call["call_id"], "output": "{\"temp_c\": 21}"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let second = g.hits()[1].json();
    check_request(&g.hits()[1], "generateContent");
    assert_eq!(
        second["contents"][1]["parts"][0]["thoughtSignature"],
        "CiQB0e2Kb+Y3cYAkm2Gb1n0Vx3TUTkhzO0rQvxZWPNbLrJcsKo0=",
        "{second}"
    );
    assert_eq!(
        second["contents"][2]["parts"][0]["functionResponse"],
        json!({"name": "get_weather", "response": {"temp_c": 21}})
    );
}

#[tokio::test]
async fn stream_timeout_bounds_a_gemini_streams_wait() {
    // Headers after 1 s: within request_timeout (5 s), past stream_timeout (0.3 s).
    let g = Mock::start(Reply::Delay(
        std::time::Duration::from_secs(1),
        Box::new(Reply::Json(200, answer())),
    ))
    .await;
    let server = proxy(&config(&g, ", request_timeout: 5, stream_timeout: 0.3")).await;
    let ask = |stream: bool| json!({"model": "gem", "stream": stream, "messages": [{"role": "user", "content": "Hi"}]});
    let (status, _, body) = post(&server, "/v1/chat/completions", &ask(false)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = post(&server, "/v1/chat/completions", &ask(true)).await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("no response within 300ms"), "{body}");
    server.shutdown().await;
}
