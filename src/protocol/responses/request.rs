//! A Responses API request as a chat completions request, for backends that
//! only speak chat (`supports_responses: false`, Anthropic backends through
//! chat). The result carries only what chat defines: each Responses field
//! is mapped or dropped (see docs/providers.md), a field Responses does not
//! define passes only when chat does, and what is dropped is named in the
//! `dropped` list the caller puts in the request record.

use serde_json::{Map, Value, json};

use crate::protocol::TranslateError;
use crate::protocol::anthropic::request::{CHAT_FIELDS, carry_rest, drop_subkeys};

/// The Responses fields this translation maps (the other fields of
/// [`RESPONSES_FIELDS`] are dropped).
const RESPONSES_MAPPED: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_output_tokens",
    "temperature",
    "top_p",
    "user",
    "reasoning",
    "text",
    "stream",
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
    "service_tier",
    // Refused when set; `null` is nothing to carry.
    "previous_response_id",
    "conversation",
];

/// Every top-level field of a Responses API request.
pub const RESPONSES_FIELDS: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_output_tokens",
    "temperature",
    "top_p",
    "reasoning",
    "text",
    "stream",
    "stream_options",
    "user",
    "store",
    "metadata",
    "include",
    "background",
    "truncation",
    "service_tier",
    "previous_response_id",
    "conversation",
    "prompt",
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
    "max_tool_calls",
    "top_logprobs",
    "context_management",
];

/// Responses request → chat completions request; what it drops is pushed
/// onto `dropped`.
pub fn to_chat(body: &[u8], dropped: &mut Vec<String>) -> Result<Value, TranslateError> {
    let r: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            return Err(TranslateError::new(
                "the request body must be a JSON object",
            ));
        }
        Err(e) => {
            return Err(TranslateError::new(format!(
                "the request body is not valid JSON: {e}"
            )));
        }
    };
    if r.get("previous_response_id").is_some_and(|v| !v.is_null())
        || r.get("conversation").is_some_and(|v| !v.is_null())
    {
        return Err(TranslateError::new(
            "`previous_response_id` and `conversation` need a backend with the Responses API \
             (this one gets the request as chat completions): send the whole input instead",
        ));
    }
    let mut out = Map::new();
    if let Some(m) = r.get("model") {
        out.insert("model".into(), m.clone());
    }
    let mut messages = Vec::new();
    if let Some(i) = r.get("instructions").and_then(Value::as_str) {
        messages.push(json!({"role": "system", "content": i}));
    }
    match r.get("input") {
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            for item in items {
                input_item(item, &mut messages);
            }
        }
        _ => return Err(TranslateError::new("`input` must be a string or a list")),
    }
    out.insert("messages".into(), Value::Array(messages));
    if let Some(Value::Array(tools)) = r.get("tools") {
        let tools: Vec<Value> = tools
            .iter()
            .filter(|t| t["type"] == "function")
            .map(|t| {
                let mut f = json!({"name": t["name"]});
                for k in ["description", "parameters", "strict"] {
                    if let Some(v) = t.get(k).filter(|v| !v.is_null()) {
                        f[k] = v.clone();
                    }
                }
                json!({"type": "function", "function": f})
            })
            .collect();
        if !tools.is_empty() {
            out.insert("tools".into(), Value::Array(tools));
        }
    }
    if out.contains_key("tools") {
        match r.get("tool_choice") {
            Some(Value::String(s)) => {
                out.insert("tool_choice".into(), json!(s));
            }
            Some(Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("function") => {
                out.insert(
                    "tool_choice".into(),
                    json!({"type": "function", "function": {"name": o.get("name")}}),
                );
            }
            _ => {}
        }
        if let Some(p) = r.get("parallel_tool_calls").filter(|v| v.is_boolean()) {
            out.insert("parallel_tool_calls".into(), p.clone());
        }
    }
    if let Some(m) = r.get("max_output_tokens").filter(|v| v.is_number()) {
        out.insert("max_tokens".into(), m.clone());
    }
    // The same name and meaning in chat.
    for k in [
        "temperature",
        "top_p",
        "user",
        "prompt_cache_key",
        "prompt_cache_retention",
        "safety_identifier",
        "service_tier",
    ] {
        if let Some(v) = r.get(k).filter(|v| !v.is_null()) {
            out.insert(k.into(), v.clone());
        }
    }
    if let Some(e) = r
        .get("reasoning")
        .and_then(|x| x.get("effort"))
        .filter(|v| v.is_string())
    {
        out.insert("reasoning_effort".into(), e.clone());
    }
    drop_subkeys("reasoning", r.get("reasoning"), &["effort"], dropped);
    if let Some(v) = r
        .get("text")
        .and_then(|t| t.get("verbosity"))
        .filter(|v| v.is_string())
    {
        out.insert("verbosity".into(), v.clone());
    }
    drop_subkeys("text", r.get("text"), &["format", "verbosity"], dropped);
    if let Some(f) = r.get("text").and_then(|t| t.get("format")) {
        match f.get("type").and_then(Value::as_str) {
            Some("json_schema") => {
                let mut schema = json!({"name": f.get("name").cloned().unwrap_or(json!("response")), "schema": f.get("schema")});
                if let Some(s) = f.get("strict") {
                    schema["strict"] = s.clone();
                }
                if let Some(d) = f.get("description") {
                    schema["description"] = d.clone();
                }
                out.insert(
                    "response_format".into(),
                    json!({"type": "json_schema", "json_schema": schema}),
                );
            }
            Some("json_object") => {
                out.insert("response_format".into(), json!({"type": "json_object"}));
            }
            _ => {}
        }
    }
    if r.get("stream") == Some(&Value::Bool(true)) {
        out.insert("stream".into(), Value::Bool(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    carry_rest(
        r,
        RESPONSES_FIELDS,
        RESPONSES_MAPPED,
        CHAT_FIELDS,
        &mut out,
        dropped,
    );
    Ok(Value::Object(out))
}

/// One input item as chat messages.
fn input_item(item: &Value, messages: &mut Vec<Value>) {
    match item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message")
    {
        "message" => {
            let role = match item["role"].as_str().unwrap_or("user") {
                "developer" => "system",
                r => r,
            };
            let content = match &item["content"] {
                Value::String(s) => Value::String(s.clone()),
                Value::Array(parts) => {
                    let parts: Vec<Value> = parts.iter().filter_map(content_part).collect();
                    if parts.iter().all(|p| p["type"] == "text") {
                        Value::String(
                            parts
                                .iter()
                                .filter_map(|p| p["text"].as_str())
                                .collect::<Vec<_>>()
                                .join(""),
                        )
                    } else {
                        Value::Array(parts)
                    }
                }
                _ => Value::String(String::new()),
            };
            messages.push(json!({"role": role, "content": content}));
        }
        "function_call" => {
            let call = json!({
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"].as_str().unwrap_or("{}")},
            });
            // Calls in a row are one assistant turn.
            if let Some(last) = messages.last_mut()
                && last["role"] == "assistant"
                && let Some(Value::Array(calls)) = last.get_mut("tool_calls")
            {
                calls.push(call);
                return;
            }
            if let Some(last) = messages.last_mut()
                && last["role"] == "assistant"
                && last.get("tool_calls").is_none()
            {
                last["tool_calls"] = json!([call]);
                return;
            }
            messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]}));
        }
        "function_call_output" => {
            let output = match &item["output"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join(""),
                other => other.to_string(),
            };
            messages
                .push(json!({"role": "tool", "tool_call_id": item["call_id"], "content": output}));
        }
        // Reasoning items, built-in tool calls, item references: chat has no place for them.
        _ => {}
    }
}

/// A Responses content part as a chat content part.
fn content_part(p: &Value) -> Option<Value> {
    match p.get("type").and_then(Value::as_str)? {
        "input_text" | "output_text" | "text" => Some(json!({"type": "text", "text": p["text"]})),
        "refusal" => Some(json!({"type": "text", "text": p["refusal"]})),
        "input_image" => {
            let url = p.get("image_url").and_then(Value::as_str)?;
            let mut image = json!({"url": url});
            if let Some(d) = p.get("detail").filter(|d| d.is_string()) {
                image["detail"] = d.clone();
            }
            Some(json!({"type": "image_url", "image_url": image}))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_tools_and_options_become_chat() {
        let body = br#"{
          "model": "m", "instructions": "Be brief.",
          "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Weather in "}, {"type": "input_text", "text": "Paris?"}]},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call", "call_id": "call_2", "name": "get_time", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png", "detail": "low"}]}
          ],
          "tools": [{"type": "function", "name": "get_weather", "description": "d", "parameters": {"type": "object"}, "strict": true},
                    {"type": "web_search"}],
          "tool_choice": {"type": "function", "name": "get_weather"},
          "max_output_tokens": 500, "temperature": 0.2,
          "reasoning": {"effort": "high"},
          "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": true}},
          "stream": true, "store": false, "x_vendor": 1, "seed": 3,
          "client_metadata": {"x": "y"}, "prompt_cache_key": "k", "safety_identifier": "s",
          "prompt_cache_retention": "24h", "include": [], "service_tier": "flex"
        }"#;
        let mut dropped = Vec::new();
        let out = to_chat(body, &mut dropped).unwrap();
        dropped.sort();
        assert_eq!(dropped, ["client_metadata", "include", "store", "x_vendor"]);
        assert_eq!(
            out,
            json!({
                "model": "m",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Weather in Paris?"},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                        {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
                    ]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}]}
                ],
                "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d", "parameters": {"type": "object"}, "strict": true}}],
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                "max_tokens": 500,
                "temperature": 0.2,
                "reasoning_effort": "high",
                "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": true}},
                "prompt_cache_key": "k",
                "prompt_cache_retention": "24h",
                "safety_identifier": "s",
                "service_tier": "flex",
                "stream": true,
                "stream_options": {"include_usage": true},
                "seed": 3
            })
        );
    }

    #[test]
    fn string_input_and_refusals() {
        let out = to_chat(br#"{"model":"m","input":"hi"}"#, &mut Vec::new()).unwrap();
        assert_eq!(out["messages"], json!([{"role": "user", "content": "hi"}]));
        assert!(to_chat(br#"{"model":"m"}"#, &mut Vec::new()).is_err());
        assert!(
            to_chat(
                br#"{"model":"m","input":"x","previous_response_id":"resp_1"}"#,
                &mut Vec::new()
            )
            .is_err()
        );
    }
}
