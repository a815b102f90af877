//! Gemini answers as chat completions: a whole `GenerateContentResponse`,
//! its usage and finish reasons, a prompt blocked by safety, errors, and
//! embeddings.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::call_id;
use crate::protocol::TranslateError;

/// Gemini `finishReason` → chat `finish_reason`.
pub fn finish_reason(reason: &str) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY"
        | "LANGUAGE" => "content_filter",
        "MALFORMED_FUNCTION_CALL" | "UNEXPECTED_TOOL_CALL" => "stop",
        _ => "stop",
    }
}

/// Gemini `usageMetadata` → chat usage. `promptTokenCount` includes the
/// cached part; thoughts are completion tokens (OpenAI counts reasoning in
/// `completion_tokens` too).
pub fn usage(u: &Value) -> Value {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let prompt = n("promptTokenCount").saturating_add(n("toolUsePromptTokenCount"));
    let thoughts = n("thoughtsTokenCount");
    let completion = n("candidatesTokenCount").saturating_add(thoughts);
    let total = match n("totalTokenCount") {
        0 => prompt.saturating_add(completion),
        t => t,
    };
    let mut out = json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total,
    });
    let cached = n("cachedContentTokenCount");
    if cached > 0 {
        out["prompt_tokens_details"] = json!({"cached_tokens": cached});
    }
    if thoughts > 0 {
        out["completion_tokens_details"] = json!({"reasoning_tokens": thoughts});
    }
    out
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One candidate's parts: text, reasoning and tool calls (ids carry the
/// parts' thought signatures).
pub struct Parts {
    pub text: String,
    pub reasoning: String,
    pub calls: Vec<Value>,
}

pub fn read_parts(content: &Value) -> Parts {
    let mut p = Parts {
        text: String::new(),
        reasoning: String::new(),
        calls: Vec::new(),
    };
    for part in content["parts"].as_array().into_iter().flatten() {
        if let Some(fc) = part.get("functionCall") {
            let args = fc.get("args").filter(|a| !a.is_null()).cloned();
            p.calls.push(json!({
                "id": call_id(fc["id"].as_str(), part["thoughtSignature"].as_str()),
                "type": "function",
                "function": {
                    "name": fc["name"],
                    "arguments": args.map_or_else(|| "{}".to_string(), |a| a.to_string()),
                },
            }));
        } else if let Some(t) = part["text"].as_str() {
            if part["thought"] == true {
                p.reasoning.push_str(t);
            } else {
                p.text.push_str(t);
            }
        }
    }
    p
}

/// The chat `finish_reason` of a candidate, `tool_calls` when it called
/// tools and stopped.
pub fn candidate_finish(c: &Value, called: bool) -> Option<&'static str> {
    let r = c["finishReason"].as_str()?;
    Some(match finish_reason(r) {
        "stop" if called => "tool_calls",
        f => f,
    })
}

/// A whole Gemini answer → a chat completion. A prompt blocked before any
/// candidate (`promptFeedback.blockReason`) becomes an empty answer with
/// `finish_reason: content_filter`.
pub fn to_chat(body: &[u8]) -> Result<Value, TranslateError> {
    let g: Value = serde_json::from_slice(body)
        .map_err(|e| TranslateError::new(format!("upstream answer is not JSON: {e}")))?;
    let mut choices = Vec::new();
    for (i, c) in g["candidates"].as_array().into_iter().flatten().enumerate() {
        let p = read_parts(&c["content"]);
        let mut message = Map::new();
        message.insert("role".into(), json!("assistant"));
        message.insert(
            "content".into(),
            if p.text.is_empty() && !p.calls.is_empty() {
                Value::Null
            } else {
                Value::String(p.text)
            },
        );
        if !p.reasoning.is_empty() {
            message.insert("reasoning_content".into(), Value::String(p.reasoning));
        }
        let called = !p.calls.is_empty();
        if called {
            message.insert("tool_calls".into(), Value::Array(p.calls));
        }
        choices.push(json!({
            "index": c["index"].as_u64().unwrap_or(i as u64),
            "message": message,
            "finish_reason": candidate_finish(c, called).or(Some("stop")),
        }));
    }
    if choices.is_empty() {
        let blocked = g.pointer("/promptFeedback/blockReason").is_some();
        choices.push(json!({
            "index": 0,
            "message": {"role": "assistant", "content": ""},
            "finish_reason": if blocked { "content_filter" } else { "stop" },
        }));
    }
    Ok(json!({
        "id": g["responseId"].as_str().map_or_else(|| "chatcmpl-gemini".to_string(), |id| format!("chatcmpl-{id}")),
        "object": "chat.completion",
        "created": now(),
        "model": g["modelVersion"],
        "choices": choices,
        "usage": usage(&g["usageMetadata"]),
    }))
}

/// OpenAI's error `type` for an HTTP status.
fn error_type(status: u16) -> &'static str {
    match status {
        400 | 404 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        _ => "api_error",
    }
}

/// A Gemini error (`{"error":{"code","message","status"}}`, or a list of
/// them as some Google front ends send) → OpenAI's
/// `{"error":{message,type,code}}` with Gemini's `status` as the code.
/// Any other body becomes a message of its text.
pub fn error_to_openai(status: u16, body: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let e = match &v {
        Value::Array(a) => a.first().map_or(&Value::Null, |x| &x["error"]),
        v => &v["error"],
    };
    let message = e["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    let code = e["status"]
        .as_str()
        .map_or_else(|| json!(status.to_string()), |s| json!(s));
    json!({"error": {"message": message, "type": error_type(status), "param": null, "code": code}})
}

/// Vertex AI's `:predict` embeddings (`predictions[].embeddings.values`,
/// with `statistics.token_count`) → OpenAI's embedding list, with the
/// token counts as usage.
pub fn predictions_to_openai(
    body: &[u8],
    model: &str,
    base64: bool,
) -> Result<Value, TranslateError> {
    let g: Value = serde_json::from_slice(body)
        .map_err(|e| TranslateError::new(format!("upstream answer is not JSON: {e}")))?;
    let list: Vec<Value> = g["predictions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| json!({"values": p["embeddings"]["values"]}))
        .collect();
    let tokens: u64 = g["predictions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.pointer("/embeddings/statistics/token_count")?.as_f64())
        .map(|n| n as u64)
        .sum();
    let mut out = embeddings_to_openai(
        json!({"embeddings": list}).to_string().as_bytes(),
        model,
        base64,
    )?;
    out["usage"] = json!({"prompt_tokens": tokens, "total_tokens": tokens});
    Ok(out)
}

/// Gemini embeddings (`embedding` of `embedContent`, `embeddings` of
/// `batchEmbedContents`) → OpenAI's embedding list; `base64`: each vector
/// as little-endian f32 bytes in base64, as OpenAI's `encoding_format`.
pub fn embeddings_to_openai(
    body: &[u8],
    model: &str,
    base64: bool,
) -> Result<Value, TranslateError> {
    let g: Value = serde_json::from_slice(body)
        .map_err(|e| TranslateError::new(format!("upstream answer is not JSON: {e}")))?;
    let vectors: Vec<&Value> = match g.get("embeddings").and_then(Value::as_array) {
        Some(list) => list.iter().map(|e| &e["values"]).collect(),
        None => vec![&g["embedding"]["values"]],
    };
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, values)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = values
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|x| (x.as_f64().unwrap_or(0.0) as f32).to_le_bytes())
                    .collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                values.clone()
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_with_thoughts_tools_and_usage() {
        let body = json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"text": "Let me think", "thought": true},
                {"text": "Calling."},
                {"functionCall": {"name": "get", "args": {"q": "a"}}, "thoughtSignature": "c2ln"},
            ]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 20,
                "thoughtsTokenCount": 30, "cachedContentTokenCount": 40, "totalTokenCount": 150},
            "modelVersion": "gemini-2.5-flash", "responseId": "r1",
        });
        let c = to_chat(body.to_string().as_bytes()).unwrap();
        let m = &c["choices"][0]["message"];
        assert_eq!(m["reasoning_content"], "Let me think");
        assert_eq!(m["content"], "Calling.");
        assert_eq!(m["tool_calls"][0]["function"]["arguments"], "{\"q\":\"a\"}");
        let id = m["tool_calls"][0]["id"].as_str().unwrap();
        assert_eq!(super::super::split_call_id(id).1.as_deref(), Some("c2ln"));
        assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            c["usage"],
            json!({"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150,
                "prompt_tokens_details": {"cached_tokens": 40},
                "completion_tokens_details": {"reasoning_tokens": 30}})
        );
        assert_eq!(c["model"], "gemini-2.5-flash");
    }

    #[test]
    fn blocked_prompt_and_errors() {
        let c = to_chat(br#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":5}}"#)
            .unwrap();
        assert_eq!(c["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(finish_reason("RECITATION"), "content_filter");
        assert_eq!(finish_reason("MAX_TOKENS"), "length");
        let e = error_to_openai(
            429,
            br#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}"#,
        );
        assert_eq!(e["error"]["message"], "Quota exceeded");
        assert_eq!(e["error"]["type"], "rate_limit_error");
        assert_eq!(e["error"]["code"], "RESOURCE_EXHAUSTED");
        let e = error_to_openai(502, b"bad gateway");
        assert_eq!(e["error"]["message"], "bad gateway");
    }

    #[test]
    fn embeddings_as_list() {
        let e = embeddings_to_openai(
            br#"{"embeddings":[{"values":[0.5,1.0]},{"values":[2.0]}]}"#,
            "m",
            false,
        )
        .unwrap();
        assert_eq!(e["data"][1]["embedding"], json!([2.0]));
        assert_eq!(e["data"][1]["index"], 1);
        let b = embeddings_to_openai(br#"{"embedding":{"values":[1.0]}}"#, "m", true).unwrap();
        assert_eq!(b["data"][0]["embedding"], "AACAPw==");
    }
}
