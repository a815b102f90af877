//! Whole (non-streamed) answers between Anthropic Messages and OpenAI chat
//! completions, both ways, and error bodies between the two shapes.

use serde_json::{Value, json};

use crate::protocol::TranslateError;

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
pub fn finish_reason(stop: &str) -> &'static str {
    match stop {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// OpenAI `finish_reason` → Anthropic `stop_reason`.
pub fn stop_reason(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic usage → OpenAI usage. Anthropic counts cached input apart;
/// OpenAI's `prompt_tokens` includes it (`prompt_tokens_details`), and the
/// Anthropic cache fields are kept beside.
pub fn usage_to_openai(u: &Value) -> Value {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let (input, output) = (n("input_tokens"), n("output_tokens"));
    let (created, read) = (
        n("cache_creation_input_tokens"),
        n("cache_read_input_tokens"),
    );
    // Saturating: the counts are the upstream's numbers, any u64.
    let prompt = input.saturating_add(created).saturating_add(read);
    let mut out = json!({
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt.saturating_add(output),
    });
    if created > 0 || read > 0 {
        out["prompt_tokens_details"] = json!({"cached_tokens": read});
        out["cache_creation_input_tokens"] = json!(created);
        out["cache_read_input_tokens"] = json!(read);
    }
    out
}

/// OpenAI usage → Anthropic usage (`input_tokens` without the cached part).
pub fn usage_to_anthropic(u: &Value) -> Value {
    let n = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let prompt = n("/prompt_tokens").max(n("/input_tokens"));
    let output = n("/completion_tokens").max(n("/output_tokens"));
    let read = n("/prompt_tokens_details/cached_tokens").max(n("/cache_read_input_tokens"));
    let created = n("/cache_creation_input_tokens");
    json!({
        "input_tokens": prompt.saturating_sub(read.saturating_add(created)),
        "output_tokens": output,
        "cache_creation_input_tokens": created,
        "cache_read_input_tokens": read,
    })
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An Anthropic message → an OpenAI chat completion. Thinking becomes
/// `reasoning_content`, and the blocks themselves (with their signatures)
/// are kept in `thinking_blocks` so a client can send them back.
pub fn message_to_chat(body: &[u8]) -> Result<Value, TranslateError> {
    let m: Value = serde_json::from_slice(body)
        .map_err(|e| TranslateError::new(format!("upstream answer is not JSON: {e}")))?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut thinking_blocks = Vec::new();
    let mut calls = Vec::new();
    for b in m["content"].as_array().into_iter().flatten() {
        match b["type"].as_str() {
            Some("text") => text.push_str(b["text"].as_str().unwrap_or("")),
            Some("thinking") => {
                reasoning.push_str(b["thinking"].as_str().unwrap_or(""));
                thinking_blocks.push(b.clone());
            }
            Some("redacted_thinking") => thinking_blocks.push(b.clone()),
            Some("tool_use") => calls.push(json!({
                "id": b["id"],
                "type": "function",
                "function": {
                    "name": b["name"],
                    "arguments": b.get("input").map_or_else(|| "{}".to_string(), Value::to_string),
                },
            })),
            _ => {}
        }
    }
    let message = crate::protocol::assistant_message(text, reasoning, thinking_blocks, calls);
    let finish = m["stop_reason"].as_str().map(finish_reason);
    Ok(json!({
        "id": m["id"],
        "object": "chat.completion",
        "created": now(),
        "model": m["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage_to_openai(&m["usage"]),
    }))
}

/// An OpenAI chat completion → an Anthropic message (the first choice).
pub fn chat_to_message(body: &[u8]) -> Result<Value, TranslateError> {
    let c: Value = serde_json::from_slice(body)
        .map_err(|e| TranslateError::new(format!("upstream answer is not JSON: {e}")))?;
    let choice = &c["choices"][0];
    let msg = &choice["message"];
    let mut content = Vec::new();
    let signed: Vec<Value> = msg["thinking_blocks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !signed.is_empty() {
        content.extend(signed);
    } else if let Some(r) = msg
        .get("reasoning_content")
        .or_else(|| msg.get("reasoning"))
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        content.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
    }
    if let Some(t) = msg["content"].as_str().filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": t}));
    }
    for call in msg["tool_calls"].as_array().into_iter().flatten() {
        content.push(json!({
            "type": "tool_use",
            "id": call["id"],
            "name": call["function"]["name"],
            "input": parse_arguments(call["function"]["arguments"].as_str().unwrap_or("")),
        }));
    }
    let id = c["id"].as_str().unwrap_or("");
    Ok(json!({
        "id": if id.starts_with("msg_") { id.to_string() } else { format!("msg_{id}") },
        "type": "message",
        "role": "assistant",
        "model": c["model"],
        "content": content,
        "stop_reason": choice["finish_reason"].as_str().map(stop_reason).unwrap_or("end_turn"),
        "stop_sequence": null,
        "usage": usage_to_anthropic(&c["usage"]),
    }))
}

/// Tool arguments as an object (`{}` when they are not one).
pub fn parse_arguments(args: &str) -> Value {
    serde_json::from_str::<Value>(args)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}))
}

/// Anthropic's error `type` for an HTTP status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 | 503 => "overloaded_error",
        _ => "api_error",
    }
}

/// Any error body as Anthropic's `{"type":"error","error":{type,message}}`
/// (an Anthropic one is kept as it is).
pub fn error_to_anthropic(status: u16, body: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if v["type"] == "error" && v["error"].is_object() {
        return v;
    }
    let message = v
        .pointer("/error/message")
        .and_then(Value::as_str)
        .or_else(|| v["error"].as_str())
        .or_else(|| v["message"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    json!({"type": "error", "error": {"type": error_type(status), "message": message}})
}

/// An Anthropic error body as OpenAI's `{"error":{message,type,code}}`
/// (anything else is kept as it is).
pub fn error_to_openai(body: &[u8]) -> Option<Value> {
    let v: Value = serde_json::from_slice(body).ok()?;
    if v["type"] != "error" {
        return None;
    }
    let e = &v["error"];
    Some(json!({"error": {
        "message": e["message"].as_str().unwrap_or("upstream error"),
        "type": e["type"].as_str().unwrap_or("upstream_error"),
        "code": e["type"],
    }}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        crate::protocol::tests::fixture(&format!("anthropic/{name}"))
    }

    #[test]
    fn message_with_thinking_tools_and_cache_becomes_chat() {
        let mut out = message_to_chat(&fixture("message_response.json")).unwrap();
        out["created"] = json!(0);
        let want: Value =
            serde_json::from_slice(&fixture("message_response.as_chat.json")).unwrap();
        assert_eq!(out, want, "{}", serde_json::to_string_pretty(&out).unwrap());
    }

    #[test]
    fn chat_answer_becomes_message_and_back() {
        let chat = fixture("message_response.as_chat.json");
        let msg = chat_to_message(&chat).unwrap();
        let orig: Value = serde_json::from_slice(&fixture("message_response.json")).unwrap();
        assert_eq!(msg["content"], orig["content"]);
        assert_eq!(msg["stop_reason"], "tool_use");
        assert_eq!(msg["usage"]["input_tokens"], orig["usage"]["input_tokens"]);
        assert_eq!(msg["usage"]["cache_read_input_tokens"], 1800);
        assert_eq!(msg["usage"]["cache_creation_input_tokens"], 200);
    }

    #[test]
    fn unsigned_reasoning_and_bad_arguments() {
        let msg = chat_to_message(
            br#"{"id":"c","model":"m","choices":[{"message":{"role":"assistant","reasoning_content":"hmm","content":"hi",
                "tool_calls":[{"id":"t","type":"function","function":{"name":"f","arguments":"not json"}}]},"finish_reason":"length"}],
                "usage":{"prompt_tokens":10,"completion_tokens":3}}"#,
        )
        .unwrap();
        assert_eq!(
            msg["content"][0],
            json!({"type": "thinking", "thinking": "hmm", "signature": ""})
        );
        assert_eq!(msg["content"][2]["input"], json!({}));
        assert_eq!(msg["stop_reason"], "max_tokens");
        assert_eq!(msg["id"], "msg_c");
        assert_eq!(msg["usage"]["input_tokens"], 10);
    }

    #[test]
    fn huge_usage_counts_saturate() {
        // Found by fuzzing (fuzz/corpus/anthropic/regress-usage-overflow):
        // the sums overflowed (a panic with overflow checks, wrapped
        // counts without).
        let max = u64::MAX;
        let o = usage_to_openai(&json!({"input_tokens": max, "output_tokens": max,
            "cache_creation_input_tokens": max, "cache_read_input_tokens": max}));
        assert_eq!(o["prompt_tokens"], max);
        assert_eq!(o["total_tokens"], max);
        let a = usage_to_anthropic(&json!({"prompt_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": max}, "cache_creation_input_tokens": max}));
        assert_eq!(a["input_tokens"], 0);
    }

    #[test]
    fn errors_both_ways() {
        let a = error_to_anthropic(
            404,
            br#"{"error":{"message":"no model","type":"invalid_request_error"}}"#,
        );
        assert_eq!(
            a,
            json!({"type": "error", "error": {"type": "not_found_error", "message": "no model"}})
        );
        let kept = br#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#;
        assert_eq!(
            error_to_anthropic(529, kept),
            serde_json::from_slice::<Value>(kept).unwrap()
        );
        let o = error_to_openai(kept).unwrap();
        assert_eq!(o["error"]["message"], "busy");
        assert_eq!(o["error"]["type"], "overloaded_error");
        assert!(error_to_openai(br#"{"error":{"message":"x"}}"#).is_none());
    }
}
