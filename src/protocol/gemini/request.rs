//! A chat completions request as a Gemini `GenerateContentRequest`, and an
//! embeddings request as `batchEmbedContents` / `embedContent`. The result
//! carries only what Gemini defines; the rest is named in `dropped`.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::split_call_id;
use crate::protocol::TranslateError;

/// Chat fields mapped into the Gemini request (the rest is dropped).
const MAPPED: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "n",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "reasoning_effort",
    "tools",
    "tool_choice",
    // LiteLLM's names for Gemini's own fields.
    "safety_settings",
    "cached_content",
    "thinking",
];

/// Thinking budget (tokens) per `reasoning_effort`.
pub fn thinking_budget(effort: &str) -> Option<i64> {
    match effort {
        "none" => Some(0),
        "minimal" => Some(512),
        "low" => Some(1024),
        "medium" => Some(8192),
        "high" | "xhigh" => Some(24576),
        _ => None,
    }
}

/// A chat completions body → a Gemini request body.
pub fn from_chat(chat: &Value, dropped: &mut Vec<String>) -> Result<Value, TranslateError> {
    let obj = chat
        .as_object()
        .ok_or_else(|| TranslateError::new("the request is not a JSON object"))?;
    for k in obj.keys() {
        if !MAPPED.contains(&k.as_str()) {
            dropped.push(k.clone());
        }
    }
    let mut out = Map::new();
    let (system, contents) = contents(chat["messages"].as_array(), dropped)?;
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({"parts": system}));
    }
    out.insert("contents".into(), Value::Array(contents));
    if let Some(tools) = tools(&chat["tools"], dropped) {
        out.insert("tools".into(), tools);
    }
    if let Some(tc) = tool_config(&chat["tool_choice"]) {
        out.insert("toolConfig".into(), tc);
    }
    // LiteLLM's spellings of Gemini's own fields, passed on.
    if let Some(v) = obj.get("safety_settings").filter(|v| v.is_array()) {
        out.insert("safetySettings".into(), v.clone());
    }
    if let Some(v) = obj.get("cached_content").filter(|v| v.is_string()) {
        out.insert("cachedContent".into(), v.clone());
    }
    let config = generation_config(obj, dropped);
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(Value::Object(out))
}

fn generation_config(obj: &Map<String, Value>, dropped: &mut Vec<String>) -> Map<String, Value> {
    let mut g = Map::new();
    let mut copy = |from: &str, to: &str| {
        if let Some(v) = obj.get(from).filter(|v| v.is_number()) {
            g.insert(to.into(), v.clone());
        }
    };
    copy("temperature", "temperature");
    copy("top_p", "topP");
    copy("top_k", "topK");
    copy("max_tokens", "maxOutputTokens");
    copy("max_completion_tokens", "maxOutputTokens");
    copy("n", "candidateCount");
    copy("seed", "seed");
    copy("presence_penalty", "presencePenalty");
    copy("frequency_penalty", "frequencyPenalty");
    match obj.get("stop") {
        Some(Value::String(s)) => {
            g.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            g.insert("stopSequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    let rf = obj.get("response_format");
    match rf.and_then(|r| r["type"].as_str()) {
        Some("json_object") => {
            g.insert("responseMimeType".into(), json!("application/json"));
        }
        Some("json_schema") => {
            g.insert("responseMimeType".into(), json!("application/json"));
            if let Some(s) = rf.and_then(|r| r.pointer("/json_schema/schema")) {
                g.insert("responseJsonSchema".into(), s.clone());
            }
        }
        Some("text") | None => {}
        Some(other) => dropped.push(format!("response_format.type={other}")),
    }
    // Anthropic's `thinking` (as LiteLLM takes it for Gemini): its budget.
    match obj.get("thinking") {
        Some(t) if t["type"] == "enabled" => {
            let budget = t["budget_tokens"].as_i64().unwrap_or(-1);
            g.insert(
                "thinkingConfig".into(),
                json!({"thinkingBudget": budget, "includeThoughts": true}),
            );
        }
        Some(t) if t["type"] == "disabled" => {
            g.insert("thinkingConfig".into(), json!({"thinkingBudget": 0}));
        }
        Some(Value::Null) | None => {}
        Some(_) => dropped.push("thinking".into()),
    }
    if let Some(effort) = obj.get("reasoning_effort").and_then(Value::as_str) {
        match thinking_budget(effort) {
            Some(budget) => {
                g.insert(
                    "thinkingConfig".into(),
                    json!({"thinkingBudget": budget, "includeThoughts": budget > 0}),
                );
            }
            None => dropped.push("reasoning_effort".into()),
        }
    }
    g
}

/// The system text, and the turns as Gemini `contents` (consecutive turns
/// of one role merged: tool results answering one model turn go back in
/// one `user` turn).
fn contents(
    messages: Option<&Vec<Value>>,
    dropped: &mut Vec<String>,
) -> Result<(Vec<Value>, Vec<Value>), TranslateError> {
    let mut system = Vec::new();
    let mut out: Vec<(String, Vec<Value>)> = Vec::new();
    // Tool call id → function name, for the results.
    let mut names: HashMap<String, String> = HashMap::new();
    let push = |out: &mut Vec<(String, Vec<Value>)>, role: &str, parts: Vec<Value>| {
        if parts.is_empty() {
            return;
        }
        match out.last_mut() {
            Some((r, p)) if r == role => p.extend(parts),
            _ => out.push((role.to_string(), parts)),
        }
    };
    for (i, m) in messages.into_iter().flatten().enumerate() {
        let at = format!("messages[{i}]");
        match m["role"].as_str().unwrap_or("") {
            "system" | "developer" => system.extend(parts(&m["content"], &at, dropped)),
            "user" => {
                let p = parts(&m["content"], &at, dropped);
                push(&mut out, "user", p);
            }
            "assistant" => {
                let mut p = parts(&m["content"], &at, dropped);
                if m.get("reasoning_content").is_some_and(|r| !r.is_null()) {
                    dropped.push(format!("{at}.reasoning_content"));
                }
                for call in m["tool_calls"].as_array().into_iter().flatten() {
                    let id = call["id"].as_str().unwrap_or("");
                    let name = call["function"]["name"].as_str().unwrap_or("");
                    names.insert(id.to_string(), name.to_string());
                    let args = crate::protocol::anthropic::response::parse_arguments(
                        call["function"]["arguments"].as_str().unwrap_or(""),
                    );
                    let mut part = json!({"functionCall": {"name": name, "args": args}});
                    if let (_, Some(sig)) = split_call_id(id) {
                        part["thoughtSignature"] = json!(sig);
                    }
                    p.push(part);
                }
                push(&mut out, "model", p);
            }
            "tool" => {
                let id = m["tool_call_id"].as_str().unwrap_or("");
                let Some(name) = names.get(id).cloned() else {
                    return Err(TranslateError::new(format!(
                        "{at} answers tool_call_id `{id}`, which no earlier assistant turn made"
                    )));
                };
                let text = text_of(&m["content"]);
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => v,
                    Ok(v) if !text.trim().is_empty() => json!({"result": v}),
                    _ => json!({"result": text}),
                };
                push(
                    &mut out,
                    "user",
                    vec![json!({"functionResponse": {"name": name, "response": response}})],
                );
            }
            other => {
                return Err(TranslateError::new(format!(
                    "{at} has role `{other}`, which Gemini has no turn for"
                )));
            }
        }
    }
    let contents = out
        .into_iter()
        .map(|(role, parts)| json!({"role": role, "parts": parts}))
        .collect();
    Ok((system, contents))
}

/// A message's content as text (parts joined).
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        Value::Null => String::new(),
        v => v.to_string(),
    }
}

/// A message's content as Gemini parts.
fn parts(content: &Value, at: &str, dropped: &mut Vec<String>) -> Vec<Value> {
    match content {
        Value::String(s) if !s.is_empty() => vec![json!({"text": s})],
        Value::Array(a) => a
            .iter()
            .enumerate()
            .filter_map(|(j, p)| {
                let part = part(p);
                if part.is_none() {
                    dropped.push(format!("{at}.content[{j}]"));
                }
                part
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn part(p: &Value) -> Option<Value> {
    match p["type"].as_str()? {
        "text" | "input_text" => Some(json!({"text": p["text"].as_str()?})),
        "image_url" => {
            let url = p["image_url"]["url"].as_str().or(p["image_url"].as_str())?;
            Some(media(url, None))
        }
        "input_audio" => {
            let a = &p["input_audio"];
            Some(json!({"inlineData": {
                "mimeType": format!("audio/{}", a["format"].as_str().unwrap_or("wav")),
                "data": a["data"].as_str()?,
            }}))
        }
        "file" => {
            let data = p["file"]["file_data"].as_str()?;
            Some(media(data, None))
        }
        _ => None,
    }
}

/// A data URL as `inlineData`, any other URL as `fileData`.
fn media(url: &str, mime: Option<&str>) -> Value {
    if let Some(rest) = url.strip_prefix("data:")
        && let Some((meta, data)) = rest.split_once(',')
    {
        let mime = meta.strip_suffix(";base64").unwrap_or(meta);
        return json!({"inlineData": {"mimeType": mime, "data": data}});
    }
    let mime = mime.or_else(|| guess_mime(url));
    let mut fd = json!({"fileUri": url});
    if let Some(m) = mime {
        fd["mimeType"] = json!(m);
    }
    json!({"fileData": fd})
}

fn guess_mime(url: &str) -> Option<&'static str> {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    let ext = path.rsplit('.').next()?;
    Some(match ext {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "pdf" => "application/pdf",
        "mp3" => "audio/mp3",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        _ => return None,
    })
}

/// Chat tools → one Gemini tool with `functionDeclarations` (the JSON
/// Schema as `parametersJsonSchema`).
fn tools(tools: &Value, dropped: &mut Vec<String>) -> Option<Value> {
    let mut decls = Vec::new();
    for (i, t) in tools.as_array()?.iter().enumerate() {
        if t["type"] != "function" {
            dropped.push(format!("tools[{i}]"));
            continue;
        }
        let f = &t["function"];
        let mut d = json!({"name": f["name"]});
        if let Some(desc) = f["description"].as_str() {
            d["description"] = json!(desc);
        }
        // A function without parameters declares none (Gemini refuses an
        // object schema with no properties).
        if f["parameters"]["properties"]
            .as_object()
            .is_some_and(|p| !p.is_empty())
        {
            d["parametersJsonSchema"] = f["parameters"].clone();
        }
        decls.push(d);
    }
    (!decls.is_empty()).then(|| json!([{"functionDeclarations": decls}]))
}

fn tool_config(choice: &Value) -> Option<Value> {
    let (mode, names) = match choice {
        Value::String(s) => match s.as_str() {
            "auto" => ("AUTO", None),
            "none" => ("NONE", None),
            "required" => ("ANY", None),
            _ => return None,
        },
        Value::Object(_) => ("ANY", choice.pointer("/function/name").cloned()),
        _ => return None,
    };
    let mut fc = json!({"mode": mode});
    if let Some(n) = names {
        fc["allowedFunctionNames"] = json!([n]);
    }
    Some(json!({"functionCallingConfig": fc}))
}

/// An embeddings request: the Gemini body, whether it is one input
/// (`embedContent`), and whether the client wants base64.
pub fn embeddings(
    body: &Value,
    model: &str,
    dropped: &mut Vec<String>,
) -> Result<(Value, bool, bool), TranslateError> {
    for k in body.as_object().into_iter().flat_map(|o| o.keys()) {
        if !matches!(
            k.as_str(),
            "model" | "input" | "dimensions" | "encoding_format"
        ) {
            dropped.push(k.clone());
        }
    }
    let base64 = body["encoding_format"] == "base64";
    let dims = body["dimensions"].as_u64();
    let content = |text: &str| {
        let mut r = json!({"content": {"parts": [{"text": text}]}});
        if let Some(d) = dims {
            r["outputDimensionality"] = json!(d);
        }
        r
    };
    match &body["input"] {
        Value::String(s) => Ok((content(s), true, base64)),
        Value::Array(items) if items.iter().all(Value::is_string) && !items.is_empty() => {
            let model = format!("models/{}", model.strip_prefix("models/").unwrap_or(model));
            let requests: Vec<Value> = items
                .iter()
                .map(|t| {
                    let mut r = content(t.as_str().unwrap_or(""));
                    r["model"] = json!(model);
                    r
                })
                .collect();
            Ok((json!({"requests": requests}), false, base64))
        }
        _ => Err(TranslateError::new(
            "Gemini embeds text: `input` must be a string or a list of strings",
        )),
    }
}

/// An embeddings request as Vertex AI's `:predict` body
/// (`instances[].content`, `parameters.outputDimensionality`), and whether
/// the client wants base64.
pub fn vertex_embeddings(
    body: &Value,
    dropped: &mut Vec<String>,
) -> Result<(Value, bool), TranslateError> {
    let (_, _, base64) = embeddings(body, "", dropped)?;
    let texts: Vec<Value> = match &body["input"] {
        Value::String(s) => vec![json!({"content": s})],
        Value::Array(items) => items.iter().map(|t| json!({"content": t})).collect(),
        _ => Vec::new(),
    };
    let mut out = json!({"instances": texts});
    if let Some(d) = body["dimensions"].as_u64() {
        out["parameters"] = json!({"outputDimensionality": d});
    }
    Ok((out, base64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_becomes_contents() {
        let chat = json!({
            "model": "gemini-2.5-flash", "stream": true, "user": "u1", "parallel_tool_calls": true,
            "temperature": 0.2, "max_tokens": 100, "stop": "END", "reasoning_effort": "low",
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
            "tools": [{"type": "function", "function": {"name": "get", "description": "d",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}],
            "tool_choice": {"type": "function", "function": {"name": "get"}},
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://x.example/a.jpg"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": super::super::call_id(None, Some("c2ln")),
                    "type": "function", "function": {"name": "get", "arguments": "{\"q\":\"a\"}"}}]},
                {"role": "tool", "tool_call_id": "", "content": "{\"v\":1}"},
            ],
        });
        // The tool message answers the call above.
        let mut chat = chat;
        chat["messages"][3]["tool_call_id"] = chat["messages"][2]["tool_calls"][0]["id"].clone();
        let mut dropped = Vec::new();
        let g = from_chat(&chat, &mut dropped).unwrap();
        assert_eq!(dropped, ["user", "parallel_tool_calls"]);
        assert_eq!(
            g["systemInstruction"],
            json!({"parts": [{"text": "be brief"}]})
        );
        assert_eq!(g["contents"][0]["role"], "user");
        assert_eq!(
            g["contents"][0]["parts"][1],
            json!({"inlineData": {"mimeType": "image/png", "data": "AAAA"}})
        );
        assert_eq!(
            g["contents"][0]["parts"][2],
            json!({"fileData": {"fileUri": "https://x.example/a.jpg", "mimeType": "image/jpeg"}})
        );
        assert_eq!(
            g["contents"][1],
            json!({"role": "model", "parts": [{"functionCall": {"name": "get", "args": {"q": "a"}},
                "thoughtSignature": "c2ln"}]})
        );
        assert_eq!(
            g["contents"][2],
            json!({"role": "user", "parts": [{"functionResponse": {"name": "get", "response": {"v": 1}}}]})
        );
        let gc = &g["generationConfig"];
        assert_eq!(gc["temperature"], 0.2);
        assert_eq!(gc["maxOutputTokens"], 100);
        assert_eq!(gc["stopSequences"], json!(["END"]));
        assert_eq!(gc["responseMimeType"], "application/json");
        assert_eq!(gc["responseJsonSchema"], json!({"type": "object"}));
        assert_eq!(
            gc["thinkingConfig"],
            json!({"thinkingBudget": 1024, "includeThoughts": true})
        );
        assert_eq!(
            g["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get"]}})
        );
        assert_eq!(
            g["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]["type"],
            "object"
        );
        assert!(g.get("model").is_none() && g.get("stream").is_none());
    }

    #[test]
    fn litellm_spellings_of_gemini_fields() {
        let chat = json!({"messages": [{"role": "user", "content": "hi"}],
            "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
            "cached_content": "cachedContents/abc",
            "thinking": {"type": "enabled", "budget_tokens": 2048}});
        let mut dropped = Vec::new();
        let g = from_chat(&chat, &mut dropped).unwrap();
        assert!(dropped.is_empty(), "{dropped:?}");
        assert_eq!(g["safetySettings"][0]["threshold"], "BLOCK_NONE");
        assert_eq!(g["cachedContent"], "cachedContents/abc");
        assert_eq!(
            g["generationConfig"]["thinkingConfig"],
            json!({"thinkingBudget": 2048, "includeThoughts": true})
        );
    }

    #[test]
    fn unknown_tool_result_is_refused() {
        let chat = json!({"messages": [{"role": "tool", "tool_call_id": "x", "content": "1"}]});
        assert!(from_chat(&chat, &mut Vec::new()).is_err());
    }
}
