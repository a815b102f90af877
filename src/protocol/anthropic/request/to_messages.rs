//! OpenAI chat request → Anthropic Messages request.

use serde_json::{Map, Value, json};

use super::fields::{CHAT_FIELDS, CHAT_MAPPED, MESSAGES_FIELDS, carry_rest};
use super::signed::verifiable;
use super::{DEFAULT_MAX_TOKENS, object, text_of};
use crate::protocol::TranslateError;

/// OpenAI chat request → Anthropic Messages request; what it drops is
/// pushed onto `dropped`.
pub fn chat_to_messages(body: &[u8], dropped: &mut Vec<String>) -> Result<Value, TranslateError> {
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
    for (i, m) in messages.into_iter().enumerate() {
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
            "assistant" => {
                let (blocks, unsigned) = assistant_blocks(&m);
                if unsigned {
                    dropped.push(format!("messages[{i}].thinking_blocks (unsigned)"));
                }
                push_turn(&mut turns, "assistant", blocks)
            }
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
            .and_then(crate::pipeline::reasoning::client_effort)
    {
        let budget = e
            .budget()
            .min(max_tokens / 2)
            .max(crate::protocol::MIN_THINKING);
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
    // Anthropic's one end-user field: `user`, else `safety_identifier`.
    let user = chat.get("user").and_then(Value::as_str);
    let safety = chat.get("safety_identifier").and_then(Value::as_str);
    if let Some(u) = user.or(safety) {
        out.insert("metadata".into(), json!({"user_id": u}));
    }
    if user.is_some() && safety.is_some() {
        dropped.push("safety_identifier".into());
    }
    match chat.get("service_tier").and_then(Value::as_str) {
        Some("auto") => {
            out.insert("service_tier".into(), json!("auto"));
        }
        Some("default") => {
            out.insert("service_tier".into(), json!("standard_only"));
        }
        Some(_) => dropped.push("service_tier".into()),
        None => {}
    }
    carry_rest(
        chat,
        CHAT_FIELDS,
        CHAT_MAPPED,
        MESSAGES_FIELDS,
        &mut out,
        dropped,
    );
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
/// Anthropic checks), text, then tool calls; and whether a thinking block
/// was left out for want of a signature.
fn assistant_blocks(m: &Value) -> (Vec<Value>, bool) {
    let mut blocks = Vec::new();
    let mut unsigned = false;
    if let Some(Value::Array(tb)) = m.get("thinking_blocks") {
        for b in tb.iter().filter(|b| b.is_object()) {
            if verifiable(b) {
                blocks.push(b.clone());
            } else {
                unsigned = true;
            }
        }
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
    (blocks, unsigned)
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
