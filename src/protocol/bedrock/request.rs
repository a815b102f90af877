//! A chat completions request → a Converse request body.

use serde_json::{Map, Value, json};

use crate::protocol::TranslateError;

/// A chat request as Converse: the body, the model id (for the URL),
/// whether it streams (`/converse-stream`), whether the client asked for
/// usage in the stream, and the chat fields left out.
#[derive(Debug)]
pub struct Converse {
    pub body: Value,
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
    pub dropped: Vec<String>,
}

/// Chat fields Converse has no place for, dropped quietly: they shape how
/// an OpenAI server answers, and Bedrock answers one choice either way.
const QUIET: &[&str] = &["model", "messages", "stream", "stream_options", "n"];

/// Translates a chat request body.
pub fn chat_to_converse(raw: &[u8]) -> Result<Converse, TranslateError> {
    let chat: Map<String, Value> = serde_json::from_slice(raw)
        .map_err(|e| TranslateError::new(format!("request body is not a JSON object: {e}")))?;
    let model = chat
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| TranslateError::new("`model` is required"))?
        .to_string();
    let stream = chat.get("stream").and_then(Value::as_bool) == Some(true);
    let include_usage = chat
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        == Some(true);
    let mut dropped = Vec::new();
    let mut out = Map::new();
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    let empty = Vec::new();
    let list = match chat.get("messages") {
        Some(Value::Array(a)) => a,
        None => &empty,
        Some(_) => return Err(TranslateError::new("`messages` must be an array")),
    };
    for (i, m) in list.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or("");
        match role {
            "system" | "developer" => match &m["content"] {
                // Parts may carry Anthropic's `cache_control`: a cache point
                // after them.
                Value::Array(parts) => {
                    for p in parts {
                        if let Some(t) = p
                            .get("text")
                            .and_then(Value::as_str)
                            .filter(|t| !t.is_empty())
                        {
                            system.push(json!({"text": t}));
                            if p.get("cache_control").is_some() {
                                system.push(cache_point());
                            }
                        }
                    }
                }
                c => {
                    for t in texts(c) {
                        system.push(json!({"text": t}));
                    }
                }
            },
            "user" => {
                let blocks = user_blocks(&m["content"], i)?;
                push(&mut messages, "user", blocks);
            }
            "assistant" => {
                let blocks = assistant_blocks(m, i, &mut dropped);
                push(&mut messages, "assistant", blocks);
            }
            "tool" | "function" => {
                let id = m["tool_call_id"].as_str().unwrap_or("");
                let text = texts(&m["content"]).join("");
                let content = if text.is_empty() {
                    json!([{"text": "(empty)"}])
                } else {
                    json!([{"text": text}])
                };
                push(
                    &mut messages,
                    "user",
                    vec![
                        json!({"toolResult": {"toolUseId": id, "content": content, "status": "success"}}),
                    ],
                );
            }
            other => {
                return Err(TranslateError::new(format!(
                    "messages[{i}]: unknown role `{other}`"
                )));
            }
        }
    }
    out.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    // inferenceConfig
    let mut inference = Map::new();
    let max_tokens = chat
        .get("max_completion_tokens")
        .or_else(|| chat.get("max_tokens"))
        .and_then(Value::as_u64);
    if let Some(t) = chat.get("temperature").filter(|t| t.is_number()) {
        inference.insert("temperature".into(), t.clone());
    }
    if let Some(t) = chat.get("top_p").filter(|t| t.is_number()) {
        inference.insert("topP".into(), t.clone());
    }
    match chat.get("stop") {
        Some(Value::String(s)) => {
            inference.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            inference.insert("stopSequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    // Thinking (Claude models): the client's `thinking` as it is, else
    // its effort as a budget.
    let claude = model.contains("anthropic.claude") || model.contains("claude-");
    let mut fields = Map::new();
    let mut max_tokens = max_tokens;
    if let Some(t) = chat.get("thinking").filter(|t| t.is_object()) {
        if claude {
            fields.insert("thinking".into(), t.clone());
        } else {
            dropped.push("thinking".into());
        }
    } else if let Some(e) = chat
        .get("reasoning_effort")
        .and_then(Value::as_str)
        .and_then(crate::pipeline::reasoning::client_effort)
    {
        if claude {
            let max = *max_tokens.get_or_insert(DEFAULT_THINKING_MAX_TOKENS);
            let budget = e.budget().min(max / 2).max(crate::protocol::MIN_THINKING);
            if max > budget {
                fields.insert(
                    "thinking".into(),
                    json!({"type": "enabled", "budget_tokens": budget}),
                );
                // Claude refuses any other temperature while thinking.
                if inference.contains_key("temperature") {
                    inference.insert("temperature".into(), json!(1));
                }
                inference.remove("topP");
            }
        } else {
            dropped.push("reasoning_effort".into());
        }
    }
    if let Some(m) = max_tokens {
        inference.insert("maxTokens".into(), json!(m));
    }
    if !inference.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(inference));
    }
    if !fields.is_empty() {
        out.insert("additionalModelRequestFields".into(), Value::Object(fields));
    }
    // toolConfig
    let tools: Vec<Value> = chat
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let f = t.get("function")?;
            let mut spec = Map::new();
            spec.insert("name".into(), f.get("name")?.clone());
            if let Some(d) = f.get("description").filter(|d| d.is_string()) {
                spec.insert("description".into(), d.clone());
            }
            let schema = f
                .get("parameters")
                .filter(|p| p.is_object())
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            spec.insert("inputSchema".into(), json!({"json": schema}));
            let mut out = vec![json!({"toolSpec": spec})];
            if t.get("cache_control").is_some() {
                out.push(cache_point());
            }
            Some(out)
        })
        .flatten()
        .collect();
    if !tools.is_empty() {
        let mut config = Map::new();
        config.insert("tools".into(), Value::Array(tools));
        let choice = match chat.get("tool_choice") {
            Some(Value::String(s)) => match s.as_str() {
                "required" => Some(json!({"any": {}})),
                "auto" => Some(json!({"auto": {}})),
                _ => {
                    // `none`: Converse has no such choice; the tools stay
                    // (earlier toolUse blocks need them).
                    dropped.push("tool_choice".into());
                    None
                }
            },
            Some(Value::Object(o)) => o
                .get("function")
                .and_then(|f| f.get("name"))
                .map(|n| json!({"tool": {"name": n}})),
            _ => None,
        };
        if let Some(c) = choice {
            config.insert("toolChoice".into(), c);
        }
        out.insert("toolConfig".into(), Value::Object(config));
    }
    for k in chat.keys() {
        let used = matches!(
            k.as_str(),
            "max_tokens"
                | "max_completion_tokens"
                | "temperature"
                | "top_p"
                | "stop"
                | "tools"
                | "tool_choice"
                | "thinking"
                | "reasoning_effort"
        );
        if !used && !QUIET.contains(&k.as_str()) && !dropped.contains(k) {
            dropped.push(k.clone());
        }
    }
    Ok(Converse {
        body: Value::Object(out),
        model,
        stream,
        include_usage,
        dropped,
    })
}

/// The `maxTokens` asked for when the client asks for thinking without a
/// limit (the budget must be below it).
pub const DEFAULT_THINKING_MAX_TOKENS: u64 = 16_384;

/// A prompt-cache checkpoint: what comes before it is cached (Anthropic's
/// `cache_control` on a chat part or tool).
fn cache_point() -> Value {
    json!({"cachePoint": {"type": "default"}})
}

/// Appends `blocks` as a `role` message, merged into the last one when it
/// has the same role (Converse wants the roles to alternate).
fn push(messages: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = messages.last_mut()
        && last["role"] == role
        && let Some(c) = last["content"].as_array_mut()
    {
        c.extend(blocks);
        return;
    }
    messages.push(json!({"role": role, "content": blocks}));
}

/// The texts of a content (a string, or `text` parts); empty ones left out
/// (Bedrock refuses blank text blocks).
fn texts(content: &Value) -> Vec<String> {
    match content {
        Value::String(s) if !s.is_empty() => vec![s.clone()],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

fn user_blocks(content: &Value, i: usize) -> Result<Vec<Value>, TranslateError> {
    let Value::Array(parts) = content else {
        return Ok(texts(content)
            .into_iter()
            .map(|t| json!({"text": t}))
            .collect());
    };
    let mut out = Vec::new();
    for p in parts {
        let before = out.len();
        match p["type"].as_str() {
            Some("text") => {
                if let Some(t) = p["text"].as_str().filter(|t| !t.is_empty()) {
                    out.push(json!({"text": t}));
                }
            }
            Some("image_url") => {
                let url = p["image_url"]["url"]
                    .as_str()
                    .or_else(|| p["image_url"].as_str())
                    .unwrap_or("");
                out.push(image(url).ok_or_else(|| {
                    TranslateError::new(format!(
                        "messages[{i}]: Bedrock takes images as data: URLs \
                         (png, jpeg, gif or webp, base64)"
                    ))
                })?);
            }
            _ => {
                return Err(TranslateError::new(format!(
                    "messages[{i}]: content part `{}` has no Bedrock form",
                    p["type"].as_str().unwrap_or("?")
                )));
            }
        }
        if out.len() > before && p.get("cache_control").is_some() {
            out.push(cache_point());
        }
    }
    Ok(out)
}

/// A `data:image/<fmt>;base64,<data>` URL as a Converse image block.
fn image(url: &str) -> Option<Value> {
    let rest = url.strip_prefix("data:image/")?;
    let (format, data) = rest.split_once(";base64,")?;
    let format = match format {
        "jpg" | "jpeg" => "jpeg",
        f @ ("png" | "gif" | "webp") => f,
        _ => return None,
    };
    Some(json!({"image": {"format": format, "source": {"bytes": data}}}))
}

fn assistant_blocks(m: &Value, i: usize, dropped: &mut Vec<String>) -> Vec<Value> {
    let mut out = Vec::new();
    let reasoning = m
        .get("reasoning_content")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut unsigned = false;
    for b in m["thinking_blocks"].as_array().into_iter().flatten() {
        match b["type"].as_str() {
            Some("thinking") => {
                let signature = b["signature"].as_str().unwrap_or("");
                if signature.is_empty() {
                    unsigned = true;
                    continue;
                }
                // A stream's signature came in a block of its own, without
                // the text: the turn's reasoning is its text.
                let text = b["thinking"]
                    .as_str()
                    .filter(|t| !t.is_empty())
                    .unwrap_or(reasoning);
                out.push(json!({"reasoningContent": {"reasoningText": {
                    "text": text, "signature": signature}}}));
            }
            Some("redacted_thinking") => {
                if let Some(d) = b["data"].as_str() {
                    out.push(json!({"reasoningContent": {"redactedContent": d}}));
                }
            }
            _ => {}
        }
    }
    if unsigned || (out.is_empty() && !reasoning.is_empty()) {
        dropped.push(format!("messages[{i}].reasoning_content (unsigned)"));
    }
    for t in texts(&m["content"]) {
        out.push(json!({"text": t}));
    }
    for c in m["tool_calls"].as_array().into_iter().flatten() {
        let args = c["function"]["arguments"].as_str().unwrap_or("");
        out.push(json!({"toolUse": {
            "toolUseId": c["id"],
            "name": c["function"]["name"],
            "input": crate::protocol::anthropic::response::parse_arguments(args),
        }}));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_turn_with_thinking() {
        let c = chat_to_converse(
            br#"{"model":"anthropic.claude-sonnet-4-20250514-v1:0","max_tokens":2000,"temperature":0.5,
            "stop":"END","reasoning_effort":"low","tool_choice":"required","user":"u",
            "messages":[{"role":"system","content":"be brief"},
              {"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},
              {"role":"assistant","content":null,"reasoning_content":"think",
               "thinking_blocks":[{"type":"thinking","thinking":"","signature":"sig1"}],
               "tool_calls":[{"id":"t1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
              {"role":"tool","tool_call_id":"t1","content":"42"},
              {"role":"user","content":"go on"}],
            "tools":[{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object"}}}]}"#,
        )
        .unwrap();
        let b = &c.body;
        assert_eq!(b["system"], json!([{"text": "be brief"}]));
        assert_eq!(b["messages"][0]["content"][1]["image"]["format"], "png");
        assert_eq!(
            b["messages"][1]["content"][0],
            json!({"reasoningContent": {"reasoningText": {"text": "think", "signature": "sig1"}}})
        );
        assert_eq!(
            b["messages"][1]["content"][1]["toolUse"],
            json!({"toolUseId": "t1", "name": "f", "input": {"a": 1}})
        );
        // The tool result and the next user text in one user message.
        assert_eq!(b["messages"].as_array().unwrap().len(), 3);
        assert_eq!(
            b["messages"][2]["content"][0]["toolResult"]["toolUseId"],
            "t1"
        );
        assert_eq!(b["messages"][2]["content"][1], json!({"text": "go on"}));
        assert_eq!(b["inferenceConfig"]["maxTokens"], 2000);
        assert_eq!(b["inferenceConfig"]["temperature"], 1);
        assert_eq!(b["inferenceConfig"]["stopSequences"], json!(["END"]));
        assert_eq!(
            b["additionalModelRequestFields"]["thinking"]["type"],
            "enabled"
        );
        assert_eq!(b["toolConfig"]["toolChoice"], json!({"any": {}}));
        assert_eq!(
            b["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"],
            json!({"type": "object"})
        );
        assert_eq!(c.dropped, ["user"]);
        assert!(!c.stream);
    }

    #[test]
    fn cache_control_becomes_cache_points() {
        let c = chat_to_converse(
            br#"{"model":"m","messages":[
              {"role":"system","content":[{"type":"text","text":"long","cache_control":{"type":"ephemeral"}}]},
              {"role":"user","content":[{"type":"text","text":"doc","cache_control":{"type":"ephemeral"}},{"type":"text","text":"q"}]}],
              "tools":[{"type":"function","function":{"name":"f"},"cache_control":{"type":"ephemeral"}}]}"#,
        )
        .unwrap();
        let point = json!({"cachePoint": {"type": "default"}});
        assert_eq!(c.body["system"], json!([{"text": "long"}, point]));
        assert_eq!(
            c.body["messages"][0]["content"],
            json!([{"text": "doc"}, point, {"text": "q"}])
        );
        assert_eq!(c.body["toolConfig"]["tools"][1], point);
    }

    #[test]
    fn remote_images_are_refused() {
        let e = chat_to_converse(
            br#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}"#,
        );
        assert!(e.is_err());
    }
}
