//! A Converse answer → a chat completion; Bedrock errors → OpenAI's shape.

use serde_json::{Value, json};

use super::{finish_reason, usage_to_openai};
use crate::protocol::TranslateError;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A chat completion id for a Bedrock answer: its request id when it has
/// one.
pub fn completion_id(request_id: Option<&str>) -> String {
    match request_id.filter(|r| !r.is_empty()) {
        Some(r) => format!("chatcmpl-{r}"),
        None => format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
    }
}

/// A Converse answer as a chat completion (`model` is the id it was sent
/// to: Converse does not name it).
pub fn converse_to_chat(body: &[u8], model: &str, id: &str) -> Result<Value, TranslateError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| TranslateError::new(format!("upstream answer is not JSON: {e}")))?;
    let Some(content) = v
        .pointer("/output/message/content")
        .and_then(Value::as_array)
    else {
        return Err(TranslateError::new(
            "upstream answer has no output.message.content",
        ));
    };
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut thinking_blocks = Vec::new();
    let mut calls = Vec::new();
    for b in content {
        if let Some(t) = b.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(r) = b.get("reasoningContent") {
            if let Some(rt) = r.get("reasoningText") {
                let t = rt["text"].as_str().unwrap_or("");
                reasoning.push_str(t);
                thinking_blocks.push(json!({"type": "thinking", "thinking": t,
                    "signature": rt["signature"].as_str().unwrap_or("")}));
            } else if let Some(d) = r.get("redactedContent").and_then(Value::as_str) {
                thinking_blocks.push(json!({"type": "redacted_thinking", "data": d}));
            }
        } else if let Some(u) = b.get("toolUse") {
            calls.push(json!({
                "id": u["toolUseId"],
                "type": "function",
                "function": {
                    "name": u["name"],
                    "arguments": u.get("input").map_or_else(|| "{}".to_string(), Value::to_string),
                },
            }));
        }
    }
    let message = crate::protocol::assistant_message(text, reasoning, thinking_blocks, calls);
    let finish = v["stopReason"].as_str().map(finish_reason);
    Ok(json!({
        "id": id,
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage_to_openai(&v["usage"]),
    }))
}

/// The error type of an `x-amzn-ErrorType` header value
/// (`ThrottlingException:http://internal.amazon.com/...` → the name).
pub fn error_type(header: &str) -> &str {
    header.split(':').next().unwrap_or(header).trim()
}

/// The status a Bedrock error type is answered with (where Bedrock's own
/// would be misread: a model timeout is a 408 from Bedrock, a gateway
/// timeout to clients; a model error a 424, a bad gateway), else `status`.
pub fn error_status(kind: &str, status: u16) -> u16 {
    match kind {
        "ThrottlingException" | "ServiceQuotaExceededException" | "ModelNotReadyException" => 429,
        "ValidationException" => 400,
        "AccessDeniedException" | "UnrecognizedClientException" => 403,
        "ResourceNotFoundException" => 404,
        "ModelTimeoutException" => 504,
        "ServiceUnavailableException" => 503,
        "ModelErrorException" => 502,
        "InternalServerException" => 500,
        _ => status,
    }
}

/// OpenAI's error `type` for a Bedrock error type.
fn openai_type(kind: &str, status: u16) -> &'static str {
    match (kind, status) {
        ("ThrottlingException" | "ServiceQuotaExceededException", _) | (_, 429) => {
            "rate_limit_error"
        }
        ("ValidationException", _) | (_, 400) => "invalid_request_error",
        ("AccessDeniedException" | "UnrecognizedClientException", _) | (_, 401 | 403) => {
            "permission_error"
        }
        (_, 404) => "not_found_error",
        _ => "upstream_error",
    }
}

/// A Bedrock error (`{"message": ...}`, or `Message`; the type from the
/// header) as OpenAI's `{"error":{message,type,code}}`.
pub fn error_to_openai(kind: &str, status: u16, body: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = v
        .get("message")
        .or_else(|| v.get("Message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    let message = if message.is_empty() {
        format!("Bedrock answered {status}")
    } else {
        message
    };
    let code = if kind.is_empty() {
        Value::Null
    } else {
        json!(kind)
    };
    json!({"error": {"message": message, "type": openai_type(kind, status), "code": code}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_with_reasoning_tools_and_cache() {
        let body = br#"{"output":{"message":{"role":"assistant","content":[
            {"reasoningContent":{"reasoningText":{"text":"hmm","signature":"s1"}}},
            {"reasoningContent":{"redactedContent":"cmVk"}},
            {"text":"ok"},
            {"toolUse":{"toolUseId":"tu1","name":"f","input":{"a":1}}}]}},
            "stopReason":"tool_use",
            "usage":{"inputTokens":10,"outputTokens":5,"totalTokens":35,"cacheReadInputTokens":20,"cacheWriteInputTokens":0},
            "metrics":{"latencyMs":10}}"#;
        let c = converse_to_chat(body, "m", "chatcmpl-x").unwrap();
        let m = &c["choices"][0]["message"];
        assert_eq!(m["content"], "ok");
        assert_eq!(m["reasoning_content"], "hmm");
        assert_eq!(m["thinking_blocks"][0]["signature"], "s1");
        assert_eq!(m["thinking_blocks"][1]["type"], "redacted_thinking");
        assert_eq!(m["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
        assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(c["usage"]["prompt_tokens"], 30);
        assert_eq!(c["usage"]["prompt_tokens_details"]["cached_tokens"], 20);
    }

    #[test]
    fn errors() {
        let kind = error_type("ThrottlingException:http://internal.amazon.com/coral/x/");
        assert_eq!(kind, "ThrottlingException");
        assert_eq!(error_status(kind, 400), 429);
        let e = error_to_openai(kind, 429, br#"{"message":"Too many requests"}"#);
        assert_eq!(e["error"]["message"], "Too many requests");
        assert_eq!(e["error"]["type"], "rate_limit_error");
        assert_eq!(e["error"]["code"], "ThrottlingException");
        assert_eq!(error_status("ModelTimeoutException", 408), 504);
    }
}
