//! Structure-aware inputs for the translators: JSON documents shaped like
//! requests, answers and stream events. A generated input starts from a
//! real document (the fixtures) and takes a few structural mutations
//! driven by the fuzzer's bytes: a subtree replaced, a key added or
//! removed, a value's type changed, a `type` tag swapped for another. The
//! keys and strings come from the translators' own vocabulary, so the
//! mutations reach their branches instead of bouncing off at the first
//! missing field.

use arbitrary::{Result, Unstructured};
use serde_json::{Map, Number, Value};

/// Keys and string values the translators look at.
pub const KEYS: &[&str] = &[
    "model",
    "messages",
    "role",
    "content",
    "type",
    "text",
    "id",
    "name",
    "input",
    "tools",
    "tool_choice",
    "tool_calls",
    "tool_call_id",
    "tool_use_id",
    "function",
    "arguments",
    "parameters",
    "input_schema",
    "description",
    "system",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "stream",
    "stream_options",
    "include_usage",
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "stop_sequences",
    "metadata",
    "user",
    "user_id",
    "thinking",
    "budget_tokens",
    "signature",
    "reasoning",
    "reasoning_content",
    "reasoning_effort",
    "effort",
    "summary",
    "thinking_blocks",
    "choices",
    "delta",
    "message",
    "index",
    "finish_reason",
    "usage",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "prompt_tokens_details",
    "cached_tokens",
    "completion_tokens_details",
    "reasoning_tokens",
    "stop_reason",
    "stop_sequence",
    "content_block",
    "partial_json",
    "source",
    "media_type",
    "data",
    "url",
    "image_url",
    "detail",
    "is_error",
    "cache_control",
    "disable_parallel_tool_use",
    "parallel_tool_calls",
    "response_format",
    "json_schema",
    "schema",
    "strict",
    "instructions",
    "output",
    "status",
    "call_id",
    "item",
    "item_id",
    "output_index",
    "content_index",
    "sequence_number",
    "response",
    "created",
    "created_at",
    "object",
    "error",
    "code",
    "param",
    "refusal",
    "annotations",
    "format",
    "verbosity",
    "include",
    "store",
    "previous_response_id",
    "conversation",
    "n",
    "seed",
    "logprobs",
    "top_logprobs",
    "service_tier",
    "audio",
    "modalities",
    "prediction",
    "web_search_options",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
];

pub const STRINGS: &[&str] = &[
    "",
    "user",
    "assistant",
    "system",
    "developer",
    "tool",
    "function",
    "text",
    "image",
    "image_url",
    "document",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
    "text_delta",
    "thinking_delta",
    "signature_delta",
    "input_json_delta",
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
    "enabled",
    "disabled",
    "auto",
    "any",
    "none",
    "required",
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_calls",
    "stop",
    "length",
    "content_filter",
    "input_text",
    "output_text",
    "input_image",
    "message",
    "function_call",
    "function_call_output",
    "reasoning",
    "summary_text",
    "json_object",
    "json_schema",
    "base64",
    "url",
    "image/png",
    "low",
    "medium",
    "high",
    "minimal",
    "completed",
    "in_progress",
    "incomplete",
    "chat.completion",
    "chat.completion.chunk",
    "get_weather",
    "call_1",
    "toolu_1",
    "msg_1",
    "{\"city\": \"Paris\"}",
    "{",
    "{\"a\":",
    "[DONE]",
    "data: x\n\n",
    "<think>",
    "\n",
    "🦀",
    "\u{0}",
    "é",
    "\\",
    "\"",
];

fn string(u: &mut Unstructured) -> Result<String> {
    Ok(match u.int_in_range(0..=3)? {
        0 | 1 => u.choose(STRINGS)?.to_string(),
        2 => {
            let s: &str = u.arbitrary()?;
            s.chars().take(64).collect()
        }
        _ => u.choose(KEYS)?.to_string(),
    })
}

fn number(u: &mut Unstructured) -> Result<Value> {
    Ok(match u.int_in_range(0..=7)? {
        0 => Value::from(u.int_in_range(-2i64..=5)?),
        1 => Value::from(u64::MAX),
        2 => Value::from(i64::MIN),
        3 => Value::from(u.arbitrary::<i64>()?),
        4 => Value::from(u.arbitrary::<u32>()?),
        5 => Number::from_f64(u.arbitrary::<f64>()?).map_or(Value::Null, Value::Number),
        6 => Value::from(1024),
        _ => Number::from_f64(0.5).map_or(Value::Null, Value::Number),
    })
}

/// A random value, at most `depth` levels deep.
pub fn value(u: &mut Unstructured, depth: u32) -> Result<Value> {
    let top = if depth == 0 { 4 } else { 7 };
    Ok(match u.int_in_range(0..=top)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => number(u)?,
        3 | 4 => Value::String(string(u)?),
        5 => {
            let n = u.int_in_range(0..=3)?;
            let mut a = Vec::with_capacity(n);
            for _ in 0..n {
                a.push(value(u, depth - 1)?);
            }
            Value::Array(a)
        }
        _ => {
            let n = u.int_in_range(0..=4)?;
            let mut m = Map::new();
            for _ in 0..n {
                m.insert(u.choose(KEYS)?.to_string(), value(u, depth - 1)?);
            }
            Value::Object(m)
        }
    })
}

/// Up to `max` structural mutations of `v`.
pub fn mutate(u: &mut Unstructured, v: &mut Value, max: u32) -> Result<()> {
    let n = u.int_in_range(0..=max)?;
    for _ in 0..n {
        mutate_at(u, v, 0)?;
    }
    Ok(())
}

fn mutate_at(u: &mut Unstructured, v: &mut Value, depth: u32) -> Result<()> {
    let descend = match v {
        Value::Object(m) => !m.is_empty() && u.ratio(3, 4)?,
        Value::Array(a) => !a.is_empty() && u.ratio(3, 4)?,
        _ => false,
    };
    if descend && depth < 24 {
        match v {
            Value::Object(m) => {
                let i = u.choose_index(m.len())?;
                if let Some((_, child)) = m.iter_mut().nth(i) {
                    return mutate_at(u, child, depth + 1);
                }
            }
            Value::Array(a) => {
                let i = u.choose_index(a.len())?;
                return mutate_at(u, &mut a[i], depth + 1);
            }
            _ => {}
        }
    }
    match u.int_in_range(0..=6)? {
        0 => *v = value(u, 2)?,
        1 => match v {
            Value::Object(m) => {
                m.insert(u.choose(KEYS)?.to_string(), value(u, 2)?);
            }
            Value::Array(a) => {
                if !a.is_empty() && u.arbitrary()? {
                    let i = u.choose_index(a.len())?;
                    let dup = a[i].clone();
                    a.insert(i, dup);
                } else {
                    a.push(value(u, 2)?);
                }
            }
            other => *other = value(u, 1)?,
        },
        2 => match v {
            Value::Object(m) if !m.is_empty() => {
                let i = u.choose_index(m.len())?;
                if let Some(k) = m.keys().nth(i).cloned() {
                    m.shift_remove(&k);
                }
            }
            Value::Array(a) if !a.is_empty() => {
                let i = u.choose_index(a.len())?;
                a.remove(i);
            }
            other => *other = Value::Null,
        },
        3 => {
            // The same data, another type.
            *v = match std::mem::take(v) {
                Value::String(s) => match u.int_in_range(0..=2)? {
                    0 => s
                        .parse::<f64>()
                        .ok()
                        .and_then(Number::from_f64)
                        .map_or(Value::Array(vec![Value::String(s)]), Value::Number),
                    1 => Value::Array(vec![Value::String(s)]),
                    _ => {
                        let mut m = Map::new();
                        m.insert("text".into(), Value::String(s));
                        Value::Object(m)
                    }
                },
                Value::Number(n) => Value::String(n.to_string()),
                Value::Array(mut a) => {
                    if a.is_empty() {
                        Value::Object(Map::new())
                    } else {
                        a.swap_remove(0)
                    }
                }
                Value::Object(m) => Value::Array(m.into_iter().map(|(_, v)| v).collect()),
                Value::Bool(b) => Value::String(b.to_string()),
                Value::Null => Value::String(String::new()),
            }
        }
        4 => match v {
            Value::String(s) => match u.int_in_range(0..=2)? {
                0 => *s = u.choose(STRINGS)?.to_string(),
                1 => {
                    let cut = u.choose_index(s.len() + 1)?;
                    let cut = (0..=cut)
                        .rev()
                        .find(|&c| s.is_char_boundary(c))
                        .unwrap_or(0);
                    s.truncate(cut);
                }
                _ => s.push_str(&string(u)?),
            },
            other => *other = number(u)?,
        },
        5 => {
            if let Value::Object(m) = v {
                m.insert("type".into(), Value::String(u.choose(STRINGS)?.to_string()));
            } else {
                *v = Value::String(u.choose(STRINGS)?.to_string());
            }
        }
        _ => {
            // Deep nesting.
            let mut inner = std::mem::take(v);
            for _ in 0..u.int_in_range(1..=64)? {
                inner = Value::Array(vec![inner]);
            }
            *v = inner;
        }
    }
    Ok(())
}

/// One of `seeds` (JSON texts), mutated.
pub fn document(u: &mut Unstructured, seeds: &[&str]) -> Result<Value> {
    let seed = u.choose(seeds)?;
    let mut v: Value = serde_json::from_str(seed).unwrap_or(Value::Null);
    mutate(u, &mut v, 6)?;
    Ok(v)
}

/// A stream's events: (event name, JSON data) out of an SSE fixture.
pub fn events_of(sse: &str) -> Vec<(Option<String>, Value)> {
    let mut out = Vec::new();
    for frame in sse.split("\n\n") {
        let ev = yallmp::sse::parse(frame.as_bytes());
        let Some(data) = ev.data else { continue };
        let v = serde_json::from_str(&data).unwrap_or(Value::String(data.into_owned()));
        out.push((ev.event.map(String::from), v));
    }
    out
}

/// Raw frames a stream may carry besides events.
const NOISE: &[&str] = &[
    ": keep-alive\n\n",
    "data: [DONE]\n\n",
    "data: {bad\n\n",
    "event: ping\ndata: {\"type\": \"ping\"}\n\n",
    "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
    "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n",
    "retry: 10\n\n",
    "data\n\n",
    "\n\n",
];

/// A stream made from one of `seeds` (SSE texts): events dropped,
/// repeated, swapped or mutated, noise frames put in, written with `\n` or
/// `\r\n` line ends, with or without their `event:` lines.
pub fn stream(u: &mut Unstructured, seeds: &[&str]) -> Result<Vec<u8>> {
    let mut events = events_of(u.choose(seeds)?);
    for _ in 0..u.int_in_range(0..=6)? {
        if events.is_empty() {
            break;
        }
        let i = u.choose_index(events.len())?;
        match u.int_in_range(0..=4)? {
            0 => {
                events.remove(i);
            }
            1 => {
                let e = events[i].clone();
                events.insert(i, e);
            }
            2 => {
                let j = u.choose_index(events.len())?;
                events.swap(i, j);
            }
            _ => mutate_at(u, &mut events[i].1, 0)?,
        }
    }
    let crlf = u.ratio(1, 8)?;
    let named = u.ratio(7, 8)?;
    let mut out = Vec::new();
    for (name, data) in &events {
        if u.ratio(1, 12)? {
            out.extend_from_slice(u.choose(NOISE)?.as_bytes());
        }
        let nl = if crlf { "\r\n" } else { "\n" };
        if let Some(n) = name.as_deref().filter(|_| named) {
            out.extend_from_slice(format!("event: {n}{nl}").as_bytes());
        }
        let data = match data {
            Value::String(s) if !s.starts_with('{') => s.clone(),
            v => v.to_string(),
        };
        out.extend_from_slice(format!("data: {data}{nl}{nl}").as_bytes());
    }
    if u.ratio(1, 4)? {
        out.extend_from_slice(u.choose(NOISE)?.as_bytes());
    }
    Ok(out)
}
