//! Rebuilds a logged stream (its SSE frames, as stored) into one message:
//! reasoning, content and tool calls apart, with the finish reason and the
//! usage chunk. Knows OpenAI chat completion chunks, the Responses API's
//! events and Anthropic's message events; frames it does not understand are
//! counted, not guessed at.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// A tool call being assembled from deltas.
#[derive(Default)]
struct ToolCall {
    id: Option<String>,
    kind: Option<String>,
    name: String,
    arguments: String,
}

/// One choice being assembled.
#[derive(Default)]
struct Choice {
    role: Option<String>,
    content: String,
    reasoning: String,
    tool_calls: BTreeMap<u64, ToolCall>,
    finish_reason: Option<String>,
}

/// The `data:` payload of one SSE frame (multi-line data joined with `\n`).
fn frame_data(frame: &str) -> Option<String> {
    let mut lines = frame
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .peekable();
    lines.peek()?;
    Some(lines.collect::<Vec<_>>().join("\n"))
}

fn s(v: &Value) -> Option<&str> {
    v.as_str()
}

/// Assembles the frames (`[{"t_ms":..,"data":"data: ...\n\n"}, ...]`).
pub fn assemble(frames: &[Value]) -> Value {
    let mut choices: BTreeMap<u64, Choice> = BTreeMap::new();
    let mut usage = Value::Null;
    let mut model = Value::Null;
    let mut id = Value::Null;
    let mut done = false;
    let mut errors: Vec<Value> = Vec::new();
    let mut unknown = 0usize;
    let mut first_token_ms: Option<f64> = None;
    for f in frames {
        let Some(data) = f.get("data").and_then(s).and_then(frame_data) else {
            continue;
        };
        if data.trim() == "[DONE]" {
            done = true;
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(&data) else {
            unknown += 1;
            continue;
        };
        let before = text_len(&choices);
        if v.get("error").is_some_and(|e| !e.is_null()) || v["type"] == "error" {
            errors.push(v.get("error").cloned().unwrap_or(v.clone()));
        } else if let Some(list) = v.get("choices").and_then(Value::as_array) {
            openai_chunk(&mut choices, list);
            if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                usage = u.clone();
            }
            if model.is_null() {
                model = v["model"].clone();
            }
            if id.is_null() {
                id = v["id"].clone();
            }
        } else if let Some(t) = v.get("type").and_then(s) {
            if !responses_event(&mut choices, t, &v, &mut usage)
                && !anthropic_event(&mut choices, t, &v, &mut usage)
            {
                unknown += 1;
            }
            if let Some(m) = v.pointer("/response/model").or(v.pointer("/message/model")) {
                model = m.clone();
            }
        } else {
            unknown += 1;
        }
        if first_token_ms.is_none() && text_len(&choices) > before {
            first_token_ms = f.get("t_ms").and_then(Value::as_f64);
        }
    }
    let list: Vec<Value> = choices
        .into_iter()
        .map(|(index, c)| {
            let tool_calls: Vec<Value> = c
                .tool_calls
                .into_values()
                .map(|t| {
                    json!({
                        "id": t.id,
                        "type": t.kind.unwrap_or_else(|| "function".into()),
                        "function": {"name": t.name, "arguments": t.arguments},
                    })
                })
                .collect();
            let mut m = Map::new();
            m.insert("index".into(), json!(index));
            m.insert(
                "role".into(),
                json!(c.role.unwrap_or_else(|| "assistant".into())),
            );
            m.insert(
                "content".into(),
                if c.content.is_empty() && !tool_calls.is_empty() {
                    Value::Null
                } else {
                    json!(c.content)
                },
            );
            m.insert(
                "reasoning".into(),
                if c.reasoning.is_empty() {
                    Value::Null
                } else {
                    json!(c.reasoning)
                },
            );
            m.insert("tool_calls".into(), json!(tool_calls));
            m.insert("finish_reason".into(), json!(c.finish_reason));
            Value::Object(m)
        })
        .collect();
    json!({
        "id": id,
        "model": model,
        "message": list.first().cloned().unwrap_or(Value::Null),
        "choices": list,
        "usage": usage,
        "done": done,
        "errors": errors,
        "frames": frames.len(),
        "unrecognized_frames": unknown,
        "first_token_ms": first_token_ms,
    })
}

fn text_len(choices: &BTreeMap<u64, Choice>) -> usize {
    choices
        .values()
        .map(|c| {
            c.content.len()
                + c.reasoning.len()
                + c.tool_calls
                    .values()
                    .map(|t| t.arguments.len() + t.name.len())
                    .sum::<usize>()
        })
        .sum()
}

/// `chat.completion.chunk`: `choices[].delta`.
fn openai_chunk(choices: &mut BTreeMap<u64, Choice>, list: &[Value]) {
    for ch in list {
        let index = ch["index"].as_u64().unwrap_or(0);
        let c = choices.entry(index).or_default();
        let d = &ch["delta"];
        if let Some(r) = d["role"].as_str() {
            c.role = Some(r.to_string());
        }
        if let Some(t) = d["content"].as_str() {
            c.content.push_str(t);
        }
        for key in ["reasoning_content", "reasoning"] {
            if let Some(t) = d[key].as_str() {
                c.reasoning.push_str(t);
            }
        }
        if let Some(calls) = d["tool_calls"].as_array() {
            for (n, call) in calls.iter().enumerate() {
                let i = call["index"].as_u64().unwrap_or(n as u64);
                let t = c.tool_calls.entry(i).or_default();
                if let Some(v) = call["id"].as_str() {
                    t.id = Some(v.to_string());
                }
                if let Some(v) = call["type"].as_str() {
                    t.kind = Some(v.to_string());
                }
                if let Some(v) = call.pointer("/function/name").and_then(s) {
                    t.name.push_str(v);
                }
                if let Some(v) = call.pointer("/function/arguments").and_then(s) {
                    t.arguments.push_str(v);
                }
            }
        }
        if let Some(r) = ch["finish_reason"].as_str() {
            c.finish_reason = Some(r.to_string());
        }
    }
}

/// The Responses API's stream events.
fn responses_event(
    choices: &mut BTreeMap<u64, Choice>,
    t: &str,
    v: &Value,
    usage: &mut Value,
) -> bool {
    let c = choices.entry(0).or_default();
    let idx = v["output_index"].as_u64().unwrap_or(0);
    match t {
        "response.output_text.delta" => c.content.push_str(v["delta"].as_str().unwrap_or("")),
        "response.reasoning_text.delta" | "response.reasoning_summary_text.delta" => {
            c.reasoning.push_str(v["delta"].as_str().unwrap_or(""))
        }
        "response.output_item.added"
            if v.pointer("/item/type") == Some(&json!("function_call")) =>
        {
            let call = c.tool_calls.entry(idx).or_default();
            call.id = v.pointer("/item/call_id").and_then(s).map(str::to_string);
            call.name = v
                .pointer("/item/name")
                .and_then(s)
                .unwrap_or_default()
                .to_string();
        }
        "response.function_call_arguments.delta" => c
            .tool_calls
            .entry(idx)
            .or_default()
            .arguments
            .push_str(v["delta"].as_str().unwrap_or("")),
        "response.completed" | "response.incomplete" | "response.failed" => {
            c.finish_reason = v
                .pointer("/response/status")
                .and_then(s)
                .map(str::to_string);
            if let Some(u) = v.pointer("/response/usage").filter(|u| u.is_object()) {
                *usage = u.clone();
            }
        }
        _ if t.starts_with("response.") => {}
        _ => return false,
    }
    true
}

/// Anthropic's message stream events.
fn anthropic_event(
    choices: &mut BTreeMap<u64, Choice>,
    t: &str,
    v: &Value,
    usage: &mut Value,
) -> bool {
    let c = choices.entry(0).or_default();
    let idx = v["index"].as_u64().unwrap_or(0);
    match t {
        "message_start" => {
            c.role = v.pointer("/message/role").and_then(s).map(str::to_string);
            if let Some(u) = v.pointer("/message/usage").filter(|u| u.is_object()) {
                *usage = u.clone();
            }
        }
        "content_block_start" if v.pointer("/content_block/type") == Some(&json!("tool_use")) => {
            let call = c.tool_calls.entry(idx).or_default();
            call.id = v
                .pointer("/content_block/id")
                .and_then(s)
                .map(str::to_string);
            call.name = v
                .pointer("/content_block/name")
                .and_then(s)
                .unwrap_or_default()
                .to_string();
        }
        "content_block_delta" => {
            let d = &v["delta"];
            match d["type"].as_str() {
                Some("text_delta") => c.content.push_str(d["text"].as_str().unwrap_or("")),
                Some("thinking_delta") => {
                    c.reasoning.push_str(d["thinking"].as_str().unwrap_or(""))
                }
                Some("input_json_delta") => c
                    .tool_calls
                    .entry(idx)
                    .or_default()
                    .arguments
                    .push_str(d["partial_json"].as_str().unwrap_or("")),
                _ => {}
            }
        }
        "message_delta" => {
            if let Some(r) = v.pointer("/delta/stop_reason").and_then(s) {
                c.finish_reason = Some(r.to_string());
            }
            if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                let mut merged = usage.as_object().cloned().unwrap_or_default();
                if let Some(m) = u.as_object() {
                    merged.extend(m.clone());
                }
                *usage = Value::Object(merged);
            }
        }
        "content_block_start" | "content_block_stop" | "message_stop" | "ping" => {}
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(payloads: &[Value]) -> Vec<Value> {
        payloads
            .iter()
            .enumerate()
            .map(|(i, p)| json!({"t_ms": i as f64, "data": format!("data: {p}\n\n")}))
            .chain([json!({"t_ms": 99.0, "data": "data: [DONE]\n\n"})])
            .collect()
    }

    #[test]
    fn chat_chunks_with_reasoning_tools_and_usage() {
        let f = frames(&[
            json!({"id":"c","model":"m","choices":[{"index":0,"delta":{"role":"assistant","reasoning_content":"think "}}]}),
            json!({"choices":[{"index":0,"delta":{"reasoning_content":"more"}}]}),
            json!({"choices":[{"index":0,"delta":{"content":"Hel"}}]}),
            json!({"choices":[{"index":0,"delta":{"content":"lo"}}]}),
            json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_","arguments":"{\"a\""}}]}}]}),
            json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"weather","arguments":":1}"}}]}}]}),
            json!({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}),
            json!({"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}),
        ]);
        let a = assemble(&f);
        let m = &a["message"];
        assert_eq!(m["content"], "Hello");
        assert_eq!(m["reasoning"], "think more");
        assert_eq!(m["tool_calls"][0]["id"], "call_1");
        assert_eq!(m["tool_calls"][0]["function"]["name"], "get_weather");
        assert_eq!(m["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
        assert_eq!(m["finish_reason"], "tool_calls");
        assert_eq!(a["usage"]["total_tokens"], 7);
        assert_eq!(a["done"], true);
        assert_eq!(a["model"], "m");
        assert_eq!(a["first_token_ms"], 0.0);
        assert_eq!(a["unrecognized_frames"], 0);
    }

    #[test]
    fn responses_and_anthropic_events() {
        let a = assemble(&frames(&[
            json!({"type":"response.created","response":{"model":"r"}}),
            json!({"type":"response.output_text.delta","delta":"Hi"}),
            json!({"type":"response.completed","response":{"status":"completed","usage":{"total_tokens":2}}}),
        ]));
        assert_eq!(a["message"]["content"], "Hi");
        assert_eq!(a["usage"]["total_tokens"], 2);
        let b = assemble(&frames(&[
            json!({"type":"message_start","message":{"role":"assistant","usage":{"input_tokens":5}}}),
            json!({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hm"}}),
            json!({"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Yo"}}),
            json!({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":1}}),
        ]));
        assert_eq!(b["message"]["content"], "Yo");
        assert_eq!(b["message"]["reasoning"], "hm");
        assert_eq!(b["usage"], json!({"input_tokens":5,"output_tokens":1}));
    }

    #[test]
    fn errors_and_garbage_are_reported() {
        let f = vec![
            json!({"t_ms": 1.0, "data": "data: {\"error\":{\"message\":\"boom\"}}\n\n"}),
            json!({"t_ms": 2.0, "data": "data: not json\n\n"}),
            json!({"t_ms": 3.0, "data": ": comment\n\n"}),
        ];
        let a = assemble(&f);
        assert_eq!(a["errors"][0]["message"], "boom");
        assert_eq!(a["unrecognized_frames"], 1);
        assert_eq!(a["done"], false);
    }
}
