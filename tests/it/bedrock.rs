//! `api_type: bedrock` against mock Bedrock servers over HTTP: the
//! Converse path, method and body shape (per botocore's bedrock-runtime
//! service model), SigV4 headers, JSON answers and binary event streams
//! (built here with aws-smithy-eventstream's encoder), the chat, Responses
//! and Messages front doors, tools and reasoning signatures over two turns,
//! errors by `x-amzn-ErrorType`, throttling retried and fallen back from,
//! and credentials from the variables and from a profile file. The
//! signature itself is checked independently by botocore in
//! tests/sdk/test_bedrock_sigv4.py.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::support::*;

const MODEL: &str = "anthropic.claude-sonnet-4-20250514-v1:0";
const ENCODED: &str = "anthropic.claude-sonnet-4-20250514-v1%3A0";

fn base(mock: &Mock) -> String {
    mock.url.trim_end_matches("/v1").to_string()
}

fn yaml(mock: &Mock, extra: &str) -> String {
    format!(
        "model_list:
  - model_name: claude
    model_params:
      api_type: bedrock
      api_base: {}
      model: {MODEL}
      aws_access_key_id: AKIDEXAMPLE
      aws_secret_access_key: wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
      aws_region_name: us-west-2
{extra}",
        base(mock)
    )
}

/// One event-stream message, encoded by the crate AWS's SDK uses.
fn event(kind: &str, payload: Value) -> Vec<u8> {
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
    let m = Message::new(payload.to_string().into_bytes())
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String("event".into()),
        ))
        .add_header(Header::new(
            ":event-type",
            HeaderValue::String(kind.to_string().into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ));
    let mut out = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&m, &mut out).unwrap();
    out
}

fn exception(kind: &str, message: &str) -> Vec<u8> {
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
    let m = Message::new(json!({"message": message}).to_string().into_bytes())
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String("exception".into()),
        ))
        .add_header(Header::new(
            ":exception-type",
            HeaderValue::String(kind.to_string().into()),
        ));
    let mut out = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&m, &mut out).unwrap();
    out
}

fn stream_reply(messages: Vec<Vec<u8>>) -> Reply {
    Reply::Binary(
        200,
        "application/vnd.amazon.eventstream",
        Bytes::from(messages.concat()),
    )
}

/// A ConverseStream answer: thinking with a signature, text, a tool call,
/// stop, usage.
fn tool_stream() -> Reply {
    stream_reply(vec![
        event("messageStart", json!({"role": "assistant", "p": "abc"})),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Need the weather."}}}),
        ),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "SIG-1"}}}),
        ),
        event("contentBlockStop", json!({"contentBlockIndex": 0})),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"text": "Checking."}}),
        ),
        event("contentBlockStop", json!({"contentBlockIndex": 1})),
        event(
            "contentBlockStart",
            json!({"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "weather"}}}),
        ),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{\"city\":"}}}),
        ),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "\"Paris\"}"}}}),
        ),
        event("contentBlockStop", json!({"contentBlockIndex": 2})),
        event("messageStop", json!({"stopReason": "tool_use"})),
        event(
            "metadata",
            json!({"usage": {"inputTokens": 12, "outputTokens": 30, "totalTokens": 52,
                "cacheReadInputTokens": 10, "cacheWriteInputTokens": 0},
                "metrics": {"latencyMs": 400}}),
        ),
    ])
}

fn converse_answer(text: &str) -> Value {
    json!({
        "output": {"message": {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "Thinking.", "signature": "SIG-J"}}},
            {"text": text}
        ]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 7, "outputTokens": 3, "totalTokens": 10},
        "metrics": {"latencyMs": 120}
    })
}

fn data_chunks(body: &str) -> Vec<Value> {
    sse_data(body)
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[tokio::test]
async fn chat_reaches_converse_signed() {
    let mock = Mock::start(Reply::Json(200, converse_answer("Hello!"))).await;
    let server = proxy(&yaml(
        &mock,
        "      aws_session_token: FQoGZXIvYXdzEXAMPLETOKEN\n",
    ))
    .await;
    let req = json!({"model": "claude", "max_tokens": 100, "temperature": 0.2, "top_p": 0.9,
        "stop": ["END"],
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "Hi"}]});
    let (status, _, body) = post_with(
        &server,
        "/v1/chat/completions",
        &req,
        &[("authorization", "Bearer client-key")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let hit = &mock.hits()[0];
    assert_eq!(hit.path, format!("/model/{ENCODED}/converse"));
    let auth = hit.headers["authorization"].to_str().unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
            && auth.contains("/us-west-2/bedrock/aws4_request")
            && auth.contains("SignedHeaders=")
            && auth.contains("x-amz-date"),
        "{auth}"
    );
    assert!(!auth.contains("client-key"));
    assert_eq!(
        hit.headers["x-amz-security-token"],
        "FQoGZXIvYXdzEXAMPLETOKEN"
    );
    assert!(hit.headers.contains_key("x-amz-date"));
    assert_eq!(
        hit.json(),
        json!({
            "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
            "system": [{"text": "Be brief."}],
            "inferenceConfig": {"maxTokens": 100, "temperature": 0.2, "topP": 0.9,
                "stopSequences": ["END"]}
        })
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    let m = &v["choices"][0]["message"];
    assert_eq!(m["content"], "Hello!");
    assert_eq!(m["reasoning_content"], "Thinking.");
    assert_eq!(m["thinking_blocks"][0]["signature"], "SIG-J");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 7);
    assert_eq!(v["usage"]["total_tokens"], 10);
    assert_eq!(v["model"], MODEL);
}

#[tokio::test]
async fn chat_stream_from_an_event_stream() {
    let mock = Mock::start(tool_stream()).await;
    let server = proxy(&yaml(&mock, "")).await;
    let req = json!({"model": "claude", "stream": true,
        "stream_options": {"include_usage": true}, "reasoning_effort": "low",
        "messages": [{"role": "user", "content": "weather in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "weather",
            "description": "Weather", "parameters": {"type": "object",
            "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}}});
    let (status, headers, body) = post(&server, "/v1/chat/completions", &req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "text/event-stream");
    let hit = &mock.hits()[0];
    assert_eq!(hit.path, format!("/model/{ENCODED}/converse-stream"));
    assert_eq!(hit.headers["accept"], "application/vnd.amazon.eventstream");
    let sent = hit.json();
    assert_eq!(
        sent["toolConfig"],
        json!({"tools": [{"toolSpec": {"name": "weather", "description": "Weather",
            "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}}}],
            "toolChoice": {"tool": {"name": "weather"}}})
    );
    assert_eq!(
        sent["additionalModelRequestFields"]["thinking"]["type"],
        "enabled"
    );
    assert!(
        sent["inferenceConfig"]["maxTokens"].as_u64().unwrap()
            > sent["additionalModelRequestFields"]["thinking"]["budget_tokens"]
                .as_u64()
                .unwrap()
    );
    assert!(body.ends_with(DONE), "{body}");
    let chunks = data_chunks(&body);
    let mut content = String::new();
    let mut reasoning = String::new();
    let mut args = String::new();
    let mut signature = Value::Null;
    let mut finish = Value::Null;
    let mut usage = Value::Null;
    for c in &chunks {
        if c["usage"].is_object() {
            usage = c["usage"].clone();
        }
        let Some(ch) = c["choices"].get(0) else {
            continue;
        };
        let d = &ch["delta"];
        content += d["content"].as_str().unwrap_or("");
        reasoning += d["reasoning_content"].as_str().unwrap_or("");
        for tc in d["tool_calls"].as_array().into_iter().flatten() {
            if let Some(id) = tc["id"].as_str() {
                assert_eq!(id, "tooluse_1");
                assert_eq!(tc["function"]["name"], "weather");
            }
            args += tc["function"]["arguments"].as_str().unwrap_or("");
        }
        for b in d["thinking_blocks"].as_array().into_iter().flatten() {
            signature = b["signature"].clone();
        }
        if !ch["finish_reason"].is_null() {
            finish = ch["finish_reason"].clone();
        }
    }
    assert_eq!(content, "Checking.");
    assert_eq!(reasoning, "Need the weather.");
    assert_eq!(signature, "SIG-1");
    assert_eq!(args, r#"{"city":"Paris"}"#);
    assert_eq!(finish, "tool_calls");
    assert_eq!(usage["prompt_tokens"], 22);
    assert_eq!(usage["completion_tokens"], 30);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 10);
}

#[tokio::test]
async fn tool_round_trip_keeps_the_signature() {
    let mock = Mock::start(Reply::Json(200, converse_answer("It is sunny."))).await;
    let server = proxy(&yaml(&mock, "")).await;
    // The second turn, as a client sends it back after the stream above.
    let req = json!({"model": "claude", "reasoning_effort": "medium", "max_tokens": 8000,
        "messages": [
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": "Checking.", "reasoning_content": "Need the weather.",
             "thinking_blocks": [{"type": "thinking", "thinking": "Need the weather.", "signature": "SIG-1"}],
             "tool_calls": [{"id": "tooluse_1", "type": "function",
                 "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "tooluse_1", "content": "sunny, 21C"}],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]});
    let (status, _, body) = post(&server, "/v1/chat/completions", &req).await;
    assert_eq!(status, 200, "{body}");
    let sent = mock.hits()[0].json();
    assert_eq!(
        sent["messages"][1],
        json!({"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "Need the weather.", "signature": "SIG-1"}}},
            {"text": "Checking."},
            {"toolUse": {"toolUseId": "tooluse_1", "name": "weather", "input": {"city": "Paris"}}}]})
    );
    assert_eq!(
        sent["messages"][2],
        json!({"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_1",
            "content": [{"text": "sunny, 21C"}], "status": "success"}}]})
    );
    assert_eq!(
        sent["toolConfig"]["tools"][0]["toolSpec"]["name"],
        "weather"
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "It is sunny.");
}

#[tokio::test]
async fn responses_and_messages_front_doors() {
    let mock = Mock::start(tool_stream()).await;
    mock.push(Reply::Json(200, converse_answer("Bonjour")));
    mock.push(Reply::Json(200, converse_answer("Bonjour")));
    let server = proxy(&format!(
        "proxy_settings: {{enable_responses_endpoint: true}}\n{}",
        yaml(&mock, "")
    ))
    .await;
    // Responses, whole.
    let (status, _, body) = post(
        &server,
        "/v1/responses",
        &json!({"model": "claude", "input": "Say hi in French", "instructions": "Be brief."}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "response");
    assert!(body.contains("Bonjour"), "{body}");
    let sent = mock.hits()[0].json();
    assert_eq!(sent["system"], json!([{"text": "Be brief."}]));
    assert_eq!(mock.hits()[0].path, format!("/model/{ENCODED}/converse"));
    // Messages, whole.
    let (status, _, body) = post(
        &server,
        "/v1/messages",
        &json!({"model": "claude", "max_tokens": 50,
            "messages": [{"role": "user", "content": "Say hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "message");
    let texts: Vec<&Value> = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "text")
        .collect();
    assert_eq!(texts[0]["text"], "Bonjour");
    let thinking = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "thinking")
        .unwrap();
    assert_eq!(thinking["signature"], "SIG-J");
    // Messages, streamed: Anthropic events out of a Bedrock event stream.
    let (status, _, body) = post(
        &server,
        "/v1/messages",
        &json!({"model": "claude", "max_tokens": 50, "stream": true,
            "messages": [{"role": "user", "content": "weather in Paris?"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("event: message_stop"), "{body}");
    assert!(body.contains("\"tool_use\""), "{body}");
    assert!(body.contains("SIG-1"), "{body}");
    assert_eq!(
        mock.hits()[2].path,
        format!("/model/{ENCODED}/converse-stream")
    );
}

#[tokio::test]
async fn errors_by_type_in_each_dialect() {
    let mock = Mock::start(Reply::JsonHeaders(
        400,
        vec![(
            "x-amzn-errortype",
            "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/".into(),
        )],
        json!({"message": "Malformed input request: #: required key [messages] not found"}),
    ))
    .await;
    let server = proxy(&yaml(&mock, "")).await;
    let chat = json!({"model": "claude", "messages": [{"role": "user", "content": "x"}]});
    let (status, _, body) = post(&server, "/v1/chat/completions", &chat).await;
    assert_eq!(status, 400, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "ValidationException");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Malformed input")
    );
    assert_eq!(mock.count(), 1, "a client error is not retried");
    let (status, _, body) = post(
        &server,
        "/v1/messages",
        &json!({"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    // A model timeout (Bedrock's 408) is a 504 to the client.
    let mock = Mock::start(Reply::JsonHeaders(
        408,
        vec![("x-amzn-errortype", "ModelTimeoutException".into())],
        json!({"message": "Model has timed out in processing the request."}),
    ))
    .await;
    let server = proxy(&format!(
        "router_settings: {{num_retries: 0}}\n{}",
        yaml(&mock, "")
    ))
    .await;
    let (status, _, body) = post(&server, "/v1/chat/completions", &chat).await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("ModelTimeoutException"), "{body}");
}

#[tokio::test]
async fn throttling_is_retried_then_falls_back() {
    let throttled = Reply::JsonHeaders(
        429,
        vec![("x-amzn-errortype", "ThrottlingException".into())],
        json!({"message": "Too many requests, please wait before trying again."}),
    );
    // Retried on the same backend: throttled once, then answered.
    let mock = Mock::start(Reply::Json(200, converse_answer("ok"))).await;
    mock.push(throttled.clone());
    let server = proxy(&format!(
        "router_settings: {{num_retries: 2, retry_backoff_ms: 0}}\n{}",
        yaml(&mock, "")
    ))
    .await;
    let chat = json!({"model": "claude", "messages": [{"role": "user", "content": "x"}]});
    let (status, _, body) = post(&server, "/v1/chat/completions", &chat).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(mock.count(), 2);
    // Always throttled (a stream's first message an exception, too): the
    // fallback model answers.
    let bedrock = Mock::start(throttled).await;
    bedrock.push(stream_reply(vec![exception(
        "throttlingException",
        "Too many tokens",
    )]));
    let openai = Mock::start(Reply::Sse {
        frames: vec![chunk("from openai"), DONE.to_string()],
        gap: std::time::Duration::ZERO,
    })
    .await;
    let server = proxy(&format!(
        "router_settings: {{num_retries: 0, retry_backoff_ms: 0}}\n{}  - model_name: backup\n    model_params: {{api_base: '{}', model: gpt}}\n",
        yaml(&bedrock, "    fallbacks: [backup]\n"),
        openai.url
    ))
    .await;
    let stream = json!({"model": "claude", "stream": true,
        "messages": [{"role": "user", "content": "x"}]});
    let (status, _, body) = post(&server, "/v1/chat/completions", &stream).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("from openai"), "{body}");
    assert!(bedrock.count() >= 1);
    assert_eq!(openai.count(), 1);
}

#[tokio::test]
async fn bedrock_api_key_and_prefix() {
    let mock = Mock::start(Reply::Json(200, converse_answer("ok"))).await;
    let server = proxy(&format!(
        "model_list:
  - model_name: nova
    litellm_params:
      model: bedrock/amazon.nova-lite-v1:0
      api_base: {}
      api_key: bedrock-api-key-123456
      aws_region_name: us-east-1
",
        base(&mock)
    ))
    .await;
    let (status, _, body) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "nova", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let hit = &mock.hits()[0];
    assert_eq!(hit.path, "/model/amazon.nova-lite-v1%3A0/converse");
    assert_eq!(
        hit.headers["authorization"],
        "Bearer bedrock-api-key-123456"
    );
}

#[test]
fn credentials_from_variables_and_profiles() {
    let plain = "model_list:\n  - model_name: m\n    model_params: {api_type: bedrock, model: amazon.nova-pro-v1:0}\n";
    // The variables.
    let c = config_with_env(
        plain,
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDENV"),
            ("AWS_SECRET_ACCESS_KEY", "secret-from-env"),
            ("AWS_SESSION_TOKEN", "token-from-env"),
            ("AWS_DEFAULT_REGION", "eu-central-1"),
        ],
    );
    let b = &c.models[0].backends[0];
    let aws = b.bedrock.as_ref().unwrap();
    assert_eq!(aws.region, "eu-central-1");
    assert_eq!(aws.source, "environment");
    assert_eq!(
        b.api_base,
        "https://bedrock-runtime.eu-central-1.amazonaws.com"
    );
    match &aws.credentials {
        yallmp::config::bedrock::BedrockCredentials::Keys {
            access_key_id,
            secret_access_key,
            session_token,
        } => {
            assert_eq!(access_key_id, "AKIDENV");
            assert_eq!(secret_access_key.expose(), "secret-from-env");
            assert_eq!(session_token.as_ref().unwrap().expose(), "token-from-env");
        }
        other => panic!("{other:?}"),
    }
    // A profile: the credentials file's keys, the config file's region.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("bedrock-profiles")
        .join(uuid::Uuid::new_v4().simple().to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let creds = dir.join("credentials");
    let conf = dir.join("config");
    std::fs::write(
        &creds,
        "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s-default\n\n\
         [work]\naws_access_key_id = AKIDWORK\naws_secret_access_key = s-work\n",
    )
    .unwrap();
    std::fs::write(&conf, "[profile work]\nregion = ap-south-1\n").unwrap();
    let files = [
        ("AWS_SHARED_CREDENTIALS_FILE", creds.to_str().unwrap()),
        ("AWS_CONFIG_FILE", conf.to_str().unwrap()),
    ];
    let named = "model_list:\n  - model_name: m\n    model_params: {api_type: bedrock, model: x, aws_profile_name: work}\n";
    let c = config_with_env(named, &files);
    let aws = c.models[0].backends[0].bedrock.clone().unwrap();
    assert_eq!(aws.region, "ap-south-1");
    assert_eq!(aws.source, "profile work");
    // AWS_PROFILE picks it too; the default profile without it.
    let mut vars = files.to_vec();
    vars.push(("AWS_PROFILE", "work"));
    let c = config_with_env(plain, &vars);
    assert_eq!(
        c.models[0].backends[0].bedrock.as_ref().unwrap().source,
        "profile work"
    );
    let mut vars = files.to_vec();
    vars.push(("AWS_REGION", "us-east-2"));
    let c = config_with_env(plain, &vars);
    let aws = c.models[0].backends[0].bedrock.clone().unwrap();
    assert_eq!(aws.source, "profile default");
    assert_eq!(aws.region, "us-east-2");
    // Nothing at all: an error naming the ways.
    let e = config_error(plain).to_string();
    assert!(e.contains("needs credentials"), "{e}");
    let e = config_error(
        "model_list:\n  - model_name: m\n    model_params: {api_type: bedrock, model: x, aws_access_key_id: A, aws_secret_access_key: B}\n",
    )
    .to_string();
    assert!(e.contains("needs a region"), "{e}");
}

#[tokio::test]
async fn secrets_stay_out_of_answers_and_the_log() {
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const TOKEN: &str = "FQoGZXIvYXdzEXAMPLETOKEN";
    // A Bedrock that quotes the credentials back in its error.
    let mock = Mock::start(Reply::Json(200, converse_answer("fine"))).await;
    mock.push(Reply::JsonHeaders(
        400,
        vec![("x-amzn-errortype", "ValidationException".into())],
        json!({"message": format!("bad request signed with {SECRET} and {TOKEN}")}),
    ));
    let yaml = yaml(&mock, &format!("      aws_session_token: {TOKEN}\n"));
    let l = crate::support::logged::logged_proxy(&yaml, None).await;
    let chat = json!({"model": "claude", "messages": [{"role": "user", "content": "x"}]});
    let (status, _, body) = post(&l.server, "/v1/chat/completions", &chat).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("ValidationException"), "{body}");
    assert!(!body.contains(SECRET) && !body.contains(TOKEN), "{body}");
    let mut chat = chat;
    chat["logprobs"] = json!(true);
    let (status, _, body) = post(&l.server, "/v1/chat/completions", &chat).await;
    assert_eq!(status, 200, "{body}");
    let mut texts = Vec::new();
    for _ in 0..200 {
        texts = crate::support::logged::files(&l.dir)
            .into_iter()
            .filter(|(_, t)| t.contains(r#"{"event":"outcome""#))
            .collect();
        if texts.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(texts.len(), 2);
    let all: String = texts.iter().map(|(_, t)| t.as_str()).collect();
    assert!(!all.contains(SECRET) && !all.contains(TOKEN), "{all}");
    // The attempt names the Converse URL; the answer's usage is counted.
    assert!(all.contains(&format!("/model/{ENCODED}/converse")), "{all}");
    assert!(all.contains("\"prompt_tokens\":7"), "{all}");
    // What Converse has no place for is listed as dropped.
    assert!(all.contains(r#""dropped":["logprobs"]"#), "{all}");
    l.server.shutdown().await;
}

#[tokio::test]
async fn what_converse_cannot_carry_is_a_client_error() {
    let mock = Mock::start(Reply::Json(200, converse_answer("x"))).await;
    let server = proxy(&yaml(&mock, "")).await;
    let (status, _, body) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "claude", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("data: URLs"), "{body}");
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn an_exception_mid_stream_ends_it_with_an_error() {
    let mock = Mock::start(stream_reply(vec![
        event("messageStart", json!({"role": "assistant"})),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "Half"}}),
        ),
        exception("modelStreamErrorException", "The model stream broke"),
    ]))
    .await;
    let server = proxy(&yaml(&mock, "")).await;
    let (status, _, body) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "claude", "stream": true,
            "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"Half\""), "{body}");
    assert!(body.contains("The model stream broke"), "{body}");
    assert!(body.contains("ModelStreamErrorException"), "{body}");
    assert!(!body.contains("[DONE]"), "{body}");
    assert_eq!(mock.count(), 1, "not retried after the first event");
}

#[tokio::test]
async fn admin_registration_takes_a_bedrock_backend() {
    let mock = Mock::start(Reply::Json(200, converse_answer("runtime"))).await;
    let server = proxy(
        "model_list: []\nproxy_settings: {logging: {files: {enabled: false}, database: {enabled: false}}}\n",
    )
    .await;
    let r = client()
        .post(format!("{}/admin/models", server.url()))
        .json(
            &json!({"model_name": "rt", "api_type": "bedrock", "api_base": base(&mock),
            "api_key": "bedrock-runtime-SECRET", "aws_region_name": "us-east-2",
            "model": "amazon.nova-micro-v1:0"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let text = r.text().await.unwrap();
    assert!(!text.contains("bedrock-runtime-SECRET"), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let b = &v["model"]["backends"][0];
    assert_eq!(b["api_type"], "bedrock");
    assert_eq!(b["aws_region"], "us-east-2");
    assert_eq!(b["aws_credentials"], "api_key");
    let (status, _, body) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "rt", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let hit = &mock.hits()[0];
    assert_eq!(hit.path, "/model/amazon.nova-micro-v1%3A0/converse");
    assert_eq!(
        hit.headers["authorization"],
        "Bearer bedrock-runtime-SECRET"
    );
}

#[tokio::test]
async fn health_checks_skip_bedrock_backends() {
    let mock = Mock::start(Reply::Json(200, converse_answer("ok"))).await;
    let server = proxy(&yaml(
        &mock,
        "      health_check: {interval: 0.1, path: /models}\n",
    ))
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    // No unsigned GET went out, and the model still serves.
    assert_eq!(mock.count(), 0);
    let (status, _, body) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "claude", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(mock.count(), 1);
}
