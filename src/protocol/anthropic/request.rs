//! Request bodies between OpenAI chat completions and Anthropic Messages,
//! both ways. Fields a side knows are mapped (or dropped when the other side
//! has no equivalent, see docs/providers.md); fields neither side knows pass
//! through unchanged.

use serde_json::{Map, Value, json};

use crate::config::reasoning::Effort;
use crate::protocol::TranslateError;

/// `max_tokens` sent to Anthropic when the OpenAI request has none (the
/// Messages API requires one).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// OpenAI chat fields this translation reads; every other field is passed on.
const CHAT_FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "temperature",
    "top_p",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning_effort",
    "user",
    "n",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "seed",
    "response_format",
    "functions",
    "function_call",
    "store",
    "modalities",
    "audio",
    "prediction",
    "service_tier",
    "web_search_options",
    "verbosity",
];

/// Anthropic Messages fields this translation reads.
const MESSAGES_FIELDS: &[&str] = &[
    "model",
    "messages",
    "system",
    "max_tokens",
    "stop_sequences",
    "temperature",
    "top_p",
    "stream",
    "tools",
    "tool_choice",
    "thinking",
    "metadata",
    "service_tier",
    "container",
    "mcp_servers",
];

fn object(body: &[u8]) -> Result<Map<String, Value>, TranslateError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(TranslateError::new(
            "the request body must be a JSON object",
        )),
        Err(e) => Err(TranslateError::new(format!(
            "the request body is not valid JSON: {e}"
        ))),
    }
}

/// The text of OpenAI content (a string, or parts whose text is joined).
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// OpenAI chat request → Anthropic Messages request.
pub fn chat_to_messages(body: &[u8]) -> Result<Value, TranslateError> {
    let mut chat = object(body)?;
    let mut out = Map::new();
    if let Some(m) = chat.get("model") {
        out.insert("model".into(), m.clone());
    }
    let messages = match chat.remove("messages") {
        Some(Value::Array(m)) => m,
        _ => return Err(TranslateError::new("`messages` must be an array")),
    };
    let mut system: Vec<Value> = Vec::new();
    let mut turns: Vec<Value> = Vec::new();
    for m in messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        match role {
            "system" | "developer" => match m.get("content") {
                Some(Value::Array(parts)) => {
                    for p in parts {
                        if let Some(t) = p.get("text").and_then(Value::as_str) {
                            let mut b = json!({"type": "text", "text": t});
                            if let Some(c) = p.get("cache_control") {
                                b["cache_control"] = c.clone();
                            }
                            system.push(b);
                        }
                    }
                }
                Some(c) => system.push(json!({"type": "text", "text": text_of(c)})),
                None => {}
            },
            "assistant" => push_turn(&mut turns, "assistant", assistant_blocks(&m)),
            "tool" | "function" => {
                let id = m
                    .get("tool_call_id")
                    .or_else(|| m.get("name"))
                    .cloned()
                    .unwrap_or(Value::String(String::new()));
                let content = match m.get("content") {
                    Some(Value::Array(parts)) => {
                        Value::Array(parts.iter().filter_map(user_part).collect())
                    }
                    Some(c) => Value::String(text_of(c)),
                    None => Value::String(String::new()),
                };
                push_turn(
                    &mut turns,
                    "user",
                    vec![json!({"type": "tool_result", "tool_use_id": id, "content": content})],
                );
            }
            _ => {
                let blocks = match m.get("content") {
                    Some(Value::String(s)) => vec![json!({"type": "text", "text": s})],
                    Some(Value::Array(parts)) => parts.iter().filter_map(user_part).collect(),
                    _ => Vec::new(),
                };
                push_turn(&mut turns, "user", blocks);
            }
        }
    }
    if !system.is_empty() {
        let plain = system.iter().all(|b| b.get("cache_control").is_none());
        out.insert(
            "system".into(),
            if plain {
                Value::String(
                    system
                        .iter()
                        .filter_map(|b| b["text"].as_str())
                        .collect::<Vec<_>>()
                        .join("\n\n"),
                )
            } else {
                Value::Array(system)
            },
        );
    }
    out.insert("messages".into(), Value::Array(turns));
    let max_tokens = chat
        .get("max_completion_tokens")
        .and_then(Value::as_u64)
        .or_else(|| chat.get("max_tokens").and_then(Value::as_u64))
        .unwrap_or(DEFAULT_MAX_TOKENS);
    out.insert("max_tokens".into(), json!(max_tokens));
    match chat.get("stop") {
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            out.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(t) = chat.get("temperature").and_then(Value::as_f64) {
        // Anthropic's range is 0..1, OpenAI's 0..2.
        out.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    if let Some(p) = chat.get("top_p").filter(|v| v.is_number()) {
        out.insert("top_p".into(), p.clone());
    }
    if chat.get("stream") == Some(&Value::Bool(true)) {
        out.insert("stream".into(), Value::Bool(true));
    }
    if let Some(Value::Array(tools)) = chat.get("tools") {
        let tools: Vec<Value> = tools.iter().filter_map(tool_to_anthropic).collect();
        if !tools.is_empty() {
            out.insert("tools".into(), Value::Array(tools));
        }
    }
    let mut choice = match chat.get("tool_choice") {
        Some(Value::String(s)) => match s.as_str() {
            "none" => Some(json!({"type": "none"})),
            "required" => Some(json!({"type": "any"})),
            _ => Some(json!({"type": "auto"})),
        },
        Some(Value::Object(o)) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .map(|n| json!({"type": "tool", "name": n})),
        _ => None,
    };
    if chat.get("parallel_tool_calls") == Some(&Value::Bool(false)) && out.contains_key("tools") {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if c["type"] != "none" {
            c["disable_parallel_tool_use"] = Value::Bool(true);
        }
    }
    if let Some(c) = choice.filter(|_| out.contains_key("tools")) {
        out.insert("tool_choice".into(), c);
    }
    if !chat.contains_key("thinking")
        && let Some(e) = chat
            .get("reasoning_effort")
            .and_then(Value::as_str)
            .and_then(Effort::parse)
    {
        let budget = e
            .budget()
            .min(max_tokens / 2)
            .max(super::super::MIN_THINKING);
        if max_tokens > budget {
            out.insert(
                "thinking".into(),
                json!({"type": "enabled", "budget_tokens": budget}),
            );
            // Anthropic refuses any other temperature while thinking.
            if out.contains_key("temperature") {
                out.insert("temperature".into(), json!(1));
            }
        }
    }
    if let Some(u) = chat.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({"user_id": u}));
    }
    for (k, v) in chat {
        if !CHAT_FIELDS.contains(&k.as_str()) && !out.contains_key(&k) {
            out.insert(k, v);
        }
    }
    Ok(Value::Object(out))
}

/// Adds blocks as a turn, merged into the previous turn of the same role
/// (tool results and the user's next words make one user turn).
fn push_turn(turns: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = turns.last_mut()
        && last["role"] == role
        && let Some(Value::Array(content)) = last.get_mut("content")
    {
        content.extend(blocks);
        return;
    }
    turns.push(json!({"role": role, "content": blocks}));
}

/// An OpenAI user content part as an Anthropic block.
fn user_part(p: &Value) -> Option<Value> {
    match p.get("type").and_then(Value::as_str)? {
        "text" | "input_text" => {
            let mut b = json!({"type": "text", "text": p.get("text")?});
            if let Some(c) = p.get("cache_control") {
                b["cache_control"] = c.clone();
            }
            Some(b)
        }
        "image_url" | "input_image" => {
            let url = p
                .get("image_url")
                .map(|u| u.get("url").unwrap_or(u))
                .and_then(Value::as_str)?;
            Some(json!({"type": "image", "source": image_source(url)}))
        }
        _ => None,
    }
}

/// A data URL as a base64 source, anything else as a URL source.
fn image_source(url: &str) -> Value {
    if let Some(rest) = url.strip_prefix("data:")
        && let Some((meta, data)) = rest.split_once(',')
        && let Some(media) = meta.strip_suffix(";base64")
    {
        return json!({"type": "base64", "media_type": media, "data": data});
    }
    json!({"type": "url", "url": url})
}

/// An assistant message's blocks: thinking (only with a signature, which
/// Anthropic checks), text, then tool calls.
fn assistant_blocks(m: &Value) -> Vec<Value> {
    let mut blocks = Vec::new();
    if let Some(Value::Array(tb)) = m.get("thinking_blocks") {
        blocks.extend(tb.iter().filter(|b| b.is_object()).cloned());
    }
    let text = m.get("content").map(text_of).unwrap_or_default();
    if !text.is_empty() {
        blocks.push(json!({"type": "text", "text": text}));
    }
    if let Some(Value::Array(calls)) = m.get("tool_calls") {
        for c in calls {
            let f = &c["function"];
            let args = f["arguments"].as_str().unwrap_or("{}");
            let input = serde_json::from_str::<Value>(args)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({}));
            blocks.push(
                json!({"type": "tool_use", "id": c["id"], "name": f["name"], "input": input}),
            );
        }
    }
    blocks
}

fn tool_to_anthropic(t: &Value) -> Option<Value> {
    let f = t.get("function")?;
    let mut out = json!({
        "name": f.get("name")?,
        "input_schema": f.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}})),
    });
    if let Some(d) = f.get("description") {
        out["description"] = d.clone();
    }
    if let Some(c) = t.get("cache_control") {
        out["cache_control"] = c.clone();
    }
    Some(out)
}

/// Anthropic Messages request → OpenAI chat request.
pub fn messages_to_chat(body: &[u8]) -> Result<Value, TranslateError> {
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
    if let Some(u) = msg.get("metadata").and_then(|m| m.get("user_id")) {
        out.insert("user".into(), u.clone());
    }
    for (k, v) in msg {
        if !MESSAGES_FIELDS.contains(&k.as_str()) && !out.contains_key(&k) {
            out.insert(k, v);
        }
    }
    Ok(Value::Object(out))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        crate::protocol::tests::fixture(&format!("anthropic/{name}"))
    }

    #[test]
    fn chat_request_becomes_messages() {
        let out = chat_to_messages(&fixture("chat_request.json")).unwrap();
        let want: Value =
            serde_json::from_slice(&fixture("chat_request.as_messages.json")).unwrap();
        assert_eq!(out, want, "{}", serde_json::to_string_pretty(&out).unwrap());
    }

    #[test]
    fn messages_request_becomes_chat() {
        let out = messages_to_chat(&fixture("messages_request.json")).unwrap();
        let want: Value =
            serde_json::from_slice(&fixture("messages_request.as_chat.json")).unwrap();
        assert_eq!(out, want, "{}", serde_json::to_string_pretty(&out).unwrap());
    }

    #[test]
    fn reasoning_effort_and_choices() {
        let out = chat_to_messages(
            br#"{"model":"c","messages":[{"role":"user","content":"hi"}],"reasoning_effort":"low","max_tokens":16000,
                "tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required","parallel_tool_calls":false,"stop":"END","temperature":1.7}"#,
        )
        .unwrap();
        assert_eq!(
            out["thinking"],
            json!({"type": "enabled", "budget_tokens": 2048})
        );
        assert_eq!(
            out["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        assert_eq!(out["stop_sequences"], json!(["END"]));
        // Thinking (from reasoning_effort) means temperature 1.
        assert_eq!(out["temperature"], json!(1));
        assert_eq!(
            out["tools"][0]["input_schema"],
            json!({"type": "object", "properties": {}})
        );
        assert!(chat_to_messages(b"[]").is_err());
        assert!(chat_to_messages(br#"{"model":"m"}"#).is_err());
    }
}
