//! Anthropic Messages request → OpenAI chat request.

use serde_json::{Map, Value, json};

use super::fields::{CHAT_FIELDS, MESSAGES_FIELDS, MESSAGES_MAPPED, carry_rest, drop_subkeys};
use super::object;
use crate::protocol::TranslateError;

/// Anthropic Messages request → OpenAI chat request; what it drops is
/// pushed onto `dropped`. `output_config.effort` becomes chat's
/// `reasoning_effort` (the caller moves it into the backend's own reasoning
/// field, see [`crate::pipeline::reasoning::restyle`]).
pub fn messages_to_chat(body: &[u8], dropped: &mut Vec<String>) -> Result<Value, TranslateError> {
    let mut msg = object(body)?;
    let mut out = Map::new();
    if let Some(m) = msg.get("model") {
        out.insert("model".into(), m.clone());
    }
    let mut messages: Vec<Value> = Vec::new();
    match msg.get("system") {
        Some(Value::String(s)) if !s.is_empty() => {
            messages.push(json!({"role": "system", "content": s}));
        }
        Some(Value::Array(blocks)) => {
            let text = blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n\n");
            if !text.is_empty() {
                messages.push(json!({"role": "system", "content": text}));
            }
        }
        _ => {}
    }
    let turns = match msg.remove("messages") {
        Some(Value::Array(m)) => m,
        _ => return Err(TranslateError::new("`messages` must be an array")),
    };
    for t in turns {
        let role = t.get("role").and_then(Value::as_str).unwrap_or("user");
        let blocks = match t.get("content") {
            Some(Value::String(s)) => {
                messages.push(json!({"role": role, "content": s}));
                continue;
            }
            Some(Value::Array(b)) => b.clone(),
            _ => Vec::new(),
        };
        if role == "assistant" {
            messages.push(assistant_message(&blocks));
        } else {
            user_messages(&blocks, &mut messages);
        }
    }
    out.insert("messages".into(), Value::Array(messages));
    if let Some(m) = msg.get("max_tokens") {
        out.insert("max_tokens".into(), m.clone());
    }
    if let Some(Value::Array(s)) = msg.get("stop_sequences")
        && !s.is_empty()
    {
        out.insert("stop".into(), Value::Array(s.clone()));
    }
    for k in ["temperature", "top_p"] {
        if let Some(v) = msg.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    if msg.get("stream") == Some(&Value::Bool(true)) {
        out.insert("stream".into(), Value::Bool(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(Value::Array(tools)) = msg.get("tools") {
        let tools: Vec<Value> = tools
            .iter()
            .filter(|t| t.get("type").is_none_or(|ty| ty == "custom"))
            .filter_map(|t| {
                let mut f = json!({
                    "name": t.get("name")?,
                    "parameters": t.get("input_schema").cloned().unwrap_or_else(|| json!({"type": "object"})),
                });
                if let Some(d) = t.get("description") {
                    f["description"] = d.clone();
                }
                Some(json!({"type": "function", "function": f}))
            })
            .collect();
        if !tools.is_empty() {
            out.insert("tools".into(), Value::Array(tools));
        }
    }
    if out.contains_key("tools")
        && let Some(c) = msg.get("tool_choice")
    {
        let choice = match c.get("type").and_then(Value::as_str) {
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => json!({"type": "function", "function": {"name": c["name"]}}),
            _ => json!("auto"),
        };
        out.insert("tool_choice".into(), choice);
        if c.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
            out.insert("parallel_tool_calls".into(), Value::Bool(false));
        }
    }
    if let Some(u) = msg
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .filter(|u| u.is_string())
    {
        out.insert("user".into(), u.clone());
    }
    drop_subkeys("metadata", msg.get("metadata"), &["user_id"], dropped);
    match msg.get("service_tier").and_then(Value::as_str) {
        Some("auto") => {
            out.insert("service_tier".into(), json!("auto"));
        }
        Some("standard_only") => {
            out.insert("service_tier".into(), json!("default"));
        }
        Some(_) => dropped.push("service_tier".into()),
        None => {}
    }
    // Effort: chat's `reasoning_effort`, unless the client switched thinking off.
    let thinking_off = msg
        .get("thinking")
        .and_then(|t| t.get("type"))
        .and_then(Value::as_str)
        == Some("disabled");
    let output = msg.get("output_config");
    if let Some(e) = output
        .and_then(|o| o.get("effort"))
        .filter(|e| !e.is_null())
    {
        match e.as_str().map(chat_effort) {
            Some(Some(effort)) if !thinking_off => {
                out.insert("reasoning_effort".into(), json!(effort));
            }
            _ => dropped.push("output_config.effort".into()),
        }
    }
    drop_subkeys("output_config", output, &["effort", "format"], dropped);
    // Structured output: `output_config.format` (or the older top-level
    // `output_format`), `{type: json_schema, schema}`.
    let format = output
        .and_then(|o| o.get("format"))
        .filter(|f| !f.is_null())
        .map(|f| ("output_config.format", f))
        .or_else(|| {
            msg.get("output_format")
                .filter(|f| !f.is_null())
                .map(|f| ("output_format", f))
        });
    if let Some((name, f)) = format {
        match f.get("type").and_then(Value::as_str) {
            Some("json_schema") if f.get("schema").is_some_and(Value::is_object) => {
                out.insert(
                    "response_format".into(),
                    json!({"type": "json_schema", "json_schema": {"name": "output", "schema": f["schema"], "strict": true}}),
                );
            }
            _ => dropped.push(name.into()),
        }
    }
    if format.is_some_and(|(n, _)| n == "output_config.format")
        && msg.get("output_format").is_some_and(|f| !f.is_null())
    {
        dropped.push("output_format".into());
    }
    carry_rest(
        msg,
        MESSAGES_FIELDS,
        MESSAGES_MAPPED,
        CHAT_FIELDS,
        &mut out,
        dropped,
    );
    Ok(Value::Object(out))
}

/// Anthropic's `output_config.effort` as chat's `reasoning_effort`: the
/// same names, `max` (above `xhigh`, which chat has) as `xhigh`.
fn chat_effort(e: &str) -> Option<&'static str> {
    Some(match e {
        "low" => "low",
        "medium" => "medium",
        "high" => "high",
        "xhigh" | "max" => "xhigh",
        _ => return None,
    })
}

/// Anthropic assistant blocks → one OpenAI assistant message.
fn assistant_message(blocks: &[Value]) -> Value {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(b["text"].as_str().unwrap_or("")),
            Some("thinking") => reasoning.push_str(b["thinking"].as_str().unwrap_or("")),
            Some("tool_use") => calls.push(json!({
                "id": b["id"],
                "type": "function",
                "function": {"name": b["name"], "arguments": b.get("input").map_or_else(|| "{}".to_string(), Value::to_string)},
            })),
            _ => {}
        }
    }
    let mut m = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
    if !reasoning.is_empty() {
        m["reasoning_content"] = Value::String(reasoning);
    }
    if !calls.is_empty() {
        m["tool_calls"] = Value::Array(calls);
    }
    m
}

/// Anthropic user blocks → `tool` messages (tool results, first) and one
/// user message with the rest.
fn user_messages(blocks: &[Value], out: &mut Vec<Value>) {
    let mut parts = Vec::new();
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("tool_result") => {
                let content = match b.get("content") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(c)) => c
                        .iter()
                        .filter_map(|x| x.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    _ => String::new(),
                };
                let content = if b.get("is_error") == Some(&Value::Bool(true)) {
                    format!("Error: {content}")
                } else {
                    content
                };
                out.push(
                    json!({"role": "tool", "tool_call_id": b["tool_use_id"], "content": content}),
                );
            }
            Some("text") => parts.push(json!({"type": "text", "text": b["text"]})),
            Some("image") => {
                let s = &b["source"];
                let url = match s.get("type").and_then(Value::as_str) {
                    Some("base64") => format!(
                        "data:{};base64,{}",
                        s["media_type"].as_str().unwrap_or("image/png"),
                        s["data"].as_str().unwrap_or("")
                    ),
                    _ => s["url"].as_str().unwrap_or("").to_string(),
                };
                parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
            }
            _ => {}
        }
    }
    if parts.is_empty() {
        return;
    }
    let all_text = parts.iter().all(|p| p["type"] == "text");
    let content = if all_text {
        Value::String(
            parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        )
    } else {
        Value::Array(parts)
    };
    out.push(json!({"role": "user", "content": content}));
}
