//! Request bodies between OpenAI chat completions and Anthropic Messages,
//! both ways. A translated request carries only what the target dialect
//! defines: each field of the client's dialect is mapped or dropped (see
//! docs/providers.md), a field the client's dialect does not define passes
//! only when the target's does, and every dropped field is named in the
//! `dropped` list the caller puts in the request record.

use serde_json::{Map, Value, json};

use crate::protocol::TranslateError;

/// `max_tokens` sent to Anthropic when the OpenAI request has none (the
/// Messages API requires one).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Every top-level field of an OpenAI chat completions request.
pub const CHAT_FIELDS: &[&str] = &[
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
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "metadata",
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

/// The chat fields [`chat_to_messages`] maps (the other chat fields are
/// dropped).
const CHAT_MAPPED: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "temperature",
    "top_p",
    "stream",
    // Honoured by the stream translator (the usage chunk).
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning_effort",
    "user",
    "safety_identifier",
    "service_tier",
];

/// Every top-level field of an Anthropic Messages request.
pub const MESSAGES_FIELDS: &[&str] = &[
    "model",
    "messages",
    "system",
    "max_tokens",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "stream",
    "tools",
    "tool_choice",
    "thinking",
    "metadata",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
    "output_config",
    "output_format",
    "cache_control",
    "inference_geo",
    "speed",
];

/// The Messages fields [`messages_to_chat`] maps (the other Messages fields
/// are dropped).
const MESSAGES_MAPPED: &[&str] = &[
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
    "metadata",
    "service_tier",
    "output_config",
    "output_format",
];

/// The fields left after a translation mapped what it maps: a field of
/// the client's dialect (`source`) is dropped; one it does not define
/// passes when the target dialect defines it, else it is dropped too.
pub(crate) fn carry_rest(
    rest: Map<String, Value>,
    source: &[&str],
    mapped: &[&str],
    target: &[&str],
    out: &mut Map<String, Value>,
    dropped: &mut Vec<String>,
) {
    let start = dropped.len();
    for (k, v) in rest {
        if mapped.contains(&k.as_str()) {
            continue;
        }
        // A field the mapping already wrote wins over the client's own.
        if !out.contains_key(&k) && !source.contains(&k.as_str()) && target.contains(&k.as_str()) {
            out.insert(k, v);
        } else {
            dropped.push(k);
        }
    }
    // In name order: the client's order is not kept by the time they get here.
    dropped[start..].sort();
}

/// The keys of an object field other than `kept`, as `field.key` (what a
/// translation drops of an object it maps in part).
pub(crate) fn drop_subkeys(
    field: &str,
    value: Option<&Value>,
    kept: &[&str],
    dropped: &mut Vec<String>,
) {
    match value {
        Some(Value::Object(m)) => {
            for k in m.keys().filter(|k| !kept.contains(&k.as_str())) {
                dropped.push(format!("{field}.{k}"));
            }
        }
        Some(Value::Null) | None => {}
        Some(_) => dropped.push(field.to_string()),
    }
}

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

/// Whether Anthropic can verify a thinking block: a `thinking` block with a
/// non-empty `signature`, or a `redacted_thinking` block (its `data` is
/// the proof). A block another backend produced (its signature `""` or
/// none, as the translation to Messages writes it) cannot be.
pub fn verifiable(b: &Value) -> bool {
    match b.get("type").and_then(Value::as_str) {
        Some("thinking") => b
            .get("signature")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty()),
        Some("redacted_thinking") => b
            .get("data")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty()),
        _ => true,
    }
}

/// An Anthropic `messages` array without the thinking blocks Anthropic
/// cannot verify (see [`verifiable`]), when it has any: the array and one
/// `dropped` entry per block (`messages[i].content[j] (unsigned thinking)`).
/// `None` when every block is kept. Cheap checks come first (no thinking
/// at all, then every block read without building values): a long history
/// of signed blocks is only ever scanned.
pub fn strip_unverifiable(messages: &str) -> Option<(Value, Vec<String>)> {
    memchr::memmem::find(messages.as_bytes(), b"thinking")?;
    if all_verifiable(messages) == Some(true) {
        return None;
    }
    let mut v: Value = serde_json::from_str(messages).ok()?;
    let mut dropped = Vec::new();
    for (i, m) in v.as_array_mut()?.iter_mut().enumerate() {
        if m.get("role").and_then(Value::as_str) != Some("assistant") {
            continue;
        }
        let Some(Value::Array(blocks)) = m.get_mut("content") else {
            continue;
        };
        let mut j = 0;
        blocks.retain(|b| {
            let keep = verifiable(b);
            if !keep {
                dropped.push(format!("messages[{i}].content[{j}] (unsigned thinking)"));
            }
            j += 1;
            keep
        });
    }
    (!dropped.is_empty()).then_some((v, dropped))
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

/// A turn's role and content, borrowed (for [`all_verifiable`]).
#[derive(serde::Deserialize)]
struct TurnRef<'a> {
    #[serde(borrow, default)]
    role: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<&'a serde_json::value::RawValue>,
}

/// What [`verifiable`] reads of a block, borrowed.
#[derive(serde::Deserialize)]
struct BlockRef<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    signature: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<std::borrow::Cow<'a, str>>,
}

/// Whether every assistant thinking block in `messages` can be verified,
/// read without building values; `None` when the shape is not the usual
/// one (the caller then reads it in full).
fn all_verifiable(messages: &str) -> Option<bool> {
    let turns: Vec<TurnRef<'_>> = serde_json::from_str(messages).ok()?;
    for t in turns
        .iter()
        .filter(|t| t.role.as_deref() == Some("assistant"))
    {
        let Some(content) = t.content.filter(|c| c.get().starts_with('[')) else {
            continue;
        };
        let blocks: Vec<BlockRef<'_>> = serde_json::from_str(content.get()).ok()?;
        let nonempty =
            |s: &Option<std::borrow::Cow<'_, str>>| s.as_deref().is_some_and(|s| !s.is_empty());
        let bad = blocks.iter().any(|b| match b.kind.as_deref() {
            Some("thinking") => !nonempty(&b.signature),
            Some("redacted_thinking") => !nonempty(&b.data),
            _ => false,
        });
        if bad {
            return Some(false);
        }
    }
    Some(true)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        crate::protocol::tests::fixture(&format!("anthropic/{name}"))
    }

    #[test]
    fn chat_request_becomes_messages() {
        let mut dropped = Vec::new();
        let out = chat_to_messages(&fixture("chat_request.json"), &mut dropped).unwrap();
        let want: Value =
            serde_json::from_slice(&fixture("chat_request.as_messages.json")).unwrap();
        assert_eq!(out, want, "{}", serde_json::to_string_pretty(&out).unwrap());
        // `top_k` is Anthropic's own: it passes; chat's `frequency_penalty` has no equivalent.
        assert_eq!(dropped, ["frequency_penalty"]);
    }

    #[test]
    fn messages_request_becomes_chat() {
        let mut dropped = Vec::new();
        let out = messages_to_chat(&fixture("messages_request.json"), &mut dropped).unwrap();
        let want: Value =
            serde_json::from_slice(&fixture("messages_request.as_chat.json")).unwrap();
        assert_eq!(out, want, "{}", serde_json::to_string_pretty(&out).unwrap());
        assert_eq!(dropped, ["custom_field", "thinking"]);
    }

    #[test]
    fn reasoning_effort_and_choices() {
        let out = chat_to_messages(
            br#"{"model":"c","messages":[{"role":"user","content":"hi"}],"reasoning_effort":"low","max_tokens":16000,
                "tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required","parallel_tool_calls":false,"stop":"END","temperature":1.7}"#,
            &mut Vec::new(),
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
        assert!(chat_to_messages(b"[]", &mut Vec::new()).is_err());
        assert!(chat_to_messages(br#"{"model":"m"}"#, &mut Vec::new()).is_err());
    }

    #[test]
    fn claude_code_fields_are_mapped_or_dropped() {
        let mut dropped = Vec::new();
        let out = messages_to_chat(
            br#"{"model":"c","max_tokens":32000,"messages":[{"role":"user","content":"hi"}],
                "context_management":{"edits":[]},"output_config":{"effort":"high","task_budget":1},
                "thinking":{"type":"enabled","budget_tokens":4000},"metadata":{"user_id":"u","x":1},
                "service_tier":"standard_only","top_k":5,"container":"c1","seed":7,"chat_template_kwargs":{}}"#,
            &mut dropped,
        )
        .unwrap();
        assert_eq!(out["reasoning_effort"], "high");
        assert_eq!(out["user"], "u");
        assert_eq!(out["service_tier"], "default");
        // `seed` is chat's own: it passes.
        assert_eq!(out["seed"], 7);
        for gone in [
            "context_management",
            "output_config",
            "thinking",
            "metadata",
            "top_k",
            "container",
            "chat_template_kwargs",
        ] {
            assert!(out.get(gone).is_none(), "{gone}: {out}");
        }
        dropped.sort();
        assert_eq!(
            dropped,
            [
                "chat_template_kwargs",
                "container",
                "context_management",
                "metadata.x",
                "output_config.task_budget",
                "thinking",
                "top_k"
            ]
        );
        // Thinking switched off: no effort; `max` is chat's highest.
        let mut dropped = Vec::new();
        let out = messages_to_chat(
            br#"{"model":"c","messages":[],"thinking":{"type":"disabled"},"output_config":{"effort":"max"}}"#,
            &mut dropped,
        )
        .unwrap();
        assert!(out.get("reasoning_effort").is_none());
        assert!(dropped.contains(&"output_config.effort".to_string()));
        let out = messages_to_chat(
            br#"{"model":"c","messages":[],"output_config":{"effort":"max","format":{"type":"json_schema","schema":{"type":"object"}}}}"#,
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(out["reasoning_effort"], "xhigh");
        assert_eq!(
            out["response_format"]["json_schema"]["schema"],
            json!({"type": "object"})
        );
    }

    #[test]
    fn unsigned_thinking_is_not_sent_to_anthropic() {
        let mut dropped = Vec::new();
        let out = chat_to_messages(
            br#"{"model":"c","messages":[{"role":"user","content":"hi"},
                {"role":"assistant","content":"ok","thinking_blocks":[{"type":"thinking","thinking":"t","signature":""}]},
                {"role":"user","content":"more"}]}"#,
            &mut dropped,
        )
        .unwrap();
        assert_eq!(
            out["messages"][1]["content"],
            json!([{"type": "text", "text": "ok"}])
        );
        assert_eq!(dropped, ["messages[1].thinking_blocks (unsigned)"]);
        let messages = r#"[{"role":"user","content":"hi"},{"role":"assistant","content":[
            {"type":"thinking","thinking":"a","signature":""},{"type":"thinking","thinking":"b"},
            {"type":"thinking","thinking":"c","signature":"sig"},{"type":"redacted_thinking","data":"d"},
            {"type":"text","text":"x"}]}]"#;
        let (clean, dropped) = strip_unverifiable(messages).unwrap();
        assert_eq!(
            clean[1]["content"],
            json!([{"type": "thinking", "thinking": "c", "signature": "sig"},
                   {"type": "redacted_thinking", "data": "d"}, {"type": "text", "text": "x"}])
        );
        assert_eq!(
            dropped,
            [
                "messages[1].content[0] (unsigned thinking)",
                "messages[1].content[1] (unsigned thinking)"
            ]
        );
        assert_eq!(all_verifiable(messages), Some(false));
        assert!(strip_unverifiable(r#"[{"role":"user","content":"no thinking here"}]"#).is_none());
        // Text blocks may say anything, signatures may be escaped.
        let signed = r#"[{"role":"assistant","content":[{"type":"text","text":"\"type\":\"thinking\""},
            {"type":"thinking","thinking":"t","signature":"a\/b"}]},{"role":"assistant","content":"thinking"}]"#;
        assert_eq!(all_verifiable(signed), Some(true));
        assert!(strip_unverifiable(signed).is_none());
        assert!(strip_unverifiable(r#"[{"role":"assistant","content":[{"type":"thinking","thinking":"c","signature":"s"}]}]"#).is_none());
    }
}
