//! On the way out: the reasoning of each assistant turn the client gets,
//! read from the answer after the response parsers ran: a JSON message, or
//! a stream's deltas gathered until `[DONE]`. Reasoning is taken from the
//! first of `reasoning_content`, `reasoning`, `reasoning_details[].text`,
//! `thinking_blocks[].thinking`, else a think block at the start of the
//! content (the form `swap_reasoning_content` folds it into, or `<think>`),
//! exactly as sent.

use serde_json::{Map, Value};

use super::keys::{self, Call};
use super::tags::Wrap;
use crate::sse;

/// One assistant turn as it will be remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub reasoning: String,
    pub signature: Option<String>,
    /// Normalized content (think block out, trimmed).
    pub content: String,
    pub calls: Vec<Call>,
}

/// The turn of one message; `None` without reasoning.
pub fn read_message(m: &Map<String, Value>, fold: Option<&Wrap>) -> Option<Turn> {
    let mut signature = None;
    let text = |k: &str| match m.get(k) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    let joined = |k: &str, field: &str| match m.get(k) {
        Some(Value::Array(a)) => {
            let s: String = a
                .iter()
                .filter_map(|d| d.get(field).and_then(Value::as_str))
                .collect();
            (!s.is_empty()).then_some(s)
        }
        _ => None,
    };
    let content = match m.get("content") {
        Some(Value::String(s)) => s.as_str(),
        _ => "",
    };
    let mut rest = content;
    let reasoning = match text("reasoning_content")
        .or_else(|| text("reasoning"))
        .or_else(|| joined("reasoning_details", "text"))
    {
        Some(r) => r,
        None => match joined("thinking_blocks", "thinking") {
            Some(r) => {
                signature = m
                    .get("thinking_blocks")
                    .and_then(Value::as_array)
                    .and_then(|a| a.iter().rev().find_map(|b| b.get("signature")))
                    .and_then(Value::as_str)
                    .map(String::from);
                r
            }
            None => {
                let default = Wrap::default();
                let (r, after) = fold
                    .and_then(|w| w.split(content))
                    .or_else(|| default.split(content))?;
                rest = after;
                r.to_string()
            }
        },
    };
    if reasoning.is_empty() {
        return None;
    }
    if rest.len() == content.len() {
        // Reasoning in its own field; content may still open with a block.
        if let Some((_, after)) = fold.and_then(|w| w.split(content)) {
            rest = after;
        }
    }
    let calls = match m.get("tool_calls") {
        Some(Value::Array(a)) => a.iter().filter_map(Call::from_json).collect(),
        _ => Vec::new(),
    };
    Some(Turn {
        reasoning,
        signature,
        content: keys::content_text(Some(&Value::String(rest.to_string()))),
        calls,
    })
}

/// The turns of a chat completion body (one per choice with reasoning).
pub fn from_body(body: &[u8], fold: Option<&Wrap>) -> Vec<Turn> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    v.get("choices")
        .and_then(Value::as_array)
        .map(|choices| {
            choices
                .iter()
                .filter_map(|c| c.get("message").and_then(Value::as_object))
                .filter_map(|m| read_message(m, fold))
                .collect()
        })
        .unwrap_or_default()
}

/// A stream's turns, gathered from the frames the client gets.
#[derive(Debug, Default)]
pub struct StreamTurns {
    choices: Vec<(u64, Gathered)>,
    /// `[DONE]` went by.
    pub done: bool,
}

#[derive(Debug, Default)]
struct Gathered {
    reasoning: String,
    content: String,
    /// By `index`: id, name, arguments.
    calls: Vec<(u64, String, String, String)>,
    signature: Option<String>,
}

impl StreamTurns {
    /// One frame (as sent to the client).
    pub fn on_frame(&mut self, frame: &[u8]) {
        let ev = sse::parse(frame);
        if ev.is_done() {
            self.done = true;
            return;
        }
        if ev.event.is_some_and(|e| e != "message") {
            return;
        }
        let Some(data) = ev.data.as_deref() else {
            return;
        };
        let Ok(Value::Object(chunk)) = serde_json::from_str::<Value>(data) else {
            return;
        };
        let Some(Value::Array(choices)) = chunk.get("choices") else {
            return;
        };
        for (pos, c) in choices.iter().enumerate() {
            let index = c.get("index").and_then(Value::as_u64).unwrap_or(pos as u64);
            let Some(Value::Object(delta)) = c.get("delta") else {
                continue;
            };
            let g = match self.choices.iter().position(|(i, _)| *i == index) {
                Some(p) => &mut self.choices[p].1,
                None => {
                    self.choices.push((index, Gathered::default()));
                    let last = self.choices.len() - 1;
                    &mut self.choices[last].1
                }
            };
            g.add(delta);
        }
    }

    /// The turns with reasoning.
    pub fn turns(&self, fold: Option<&Wrap>) -> Vec<Turn> {
        self.choices
            .iter()
            .filter_map(|(_, g)| {
                let mut m = Map::new();
                m.insert("content".into(), Value::String(g.content.clone()));
                if !g.reasoning.is_empty() {
                    m.insert(
                        "reasoning_content".into(),
                        Value::String(g.reasoning.clone()),
                    );
                }
                let calls: Vec<Value> = g
                    .calls
                    .iter()
                    .map(|(_, id, name, args)| {
                        serde_json::json!({"id": id, "type": "function",
                            "function": {"name": name, "arguments": args}})
                    })
                    .collect();
                m.insert("tool_calls".into(), Value::Array(calls));
                let mut t = read_message(&m, fold)?;
                t.signature = g.signature.clone();
                Some(t)
            })
            .collect()
    }
}

impl Gathered {
    fn add(&mut self, d: &Map<String, Value>) {
        // The parsers write one text to several fields: take one.
        let piece = ["reasoning_content", "reasoning"]
            .iter()
            .find_map(|k| d.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()));
        match piece {
            Some(p) => self.reasoning.push_str(p),
            None => {
                for (list, field) in [
                    ("reasoning_details", "text"),
                    ("thinking_blocks", "thinking"),
                ] {
                    if let Some(Value::Array(a)) = d.get(list) {
                        for item in a {
                            if let Some(t) = item.get(field).and_then(Value::as_str) {
                                self.reasoning.push_str(t);
                            }
                            if let Some(s) = item.get("signature").and_then(Value::as_str) {
                                self.signature = Some(s.to_string());
                            }
                        }
                    }
                }
            }
        }
        if let Some(Value::String(c)) = d.get("content") {
            self.content.push_str(c);
        }
        if let Some(Value::Array(calls)) = d.get("tool_calls") {
            for (pos, call) in calls.iter().enumerate() {
                let index = call
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(pos as u64);
                let p = match self.calls.iter().position(|c| c.0 == index) {
                    Some(p) => p,
                    None => {
                        self.calls
                            .push((index, String::new(), String::new(), String::new()));
                        self.calls.len() - 1
                    }
                };
                let slot = &mut self.calls[p];
                if let Some(id) = call.get("id").and_then(Value::as_str) {
                    slot.1.push_str(id);
                }
                if let Some(f) = call.get("function") {
                    if let Some(n) = f.get("name").and_then(Value::as_str) {
                        slot.2.push_str(n);
                    }
                    if let Some(a) = f.get("arguments").and_then(Value::as_str) {
                        slot.3.push_str(a);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn frame(v: Value) -> String {
        format!("data: {v}\n\n")
    }

    #[test]
    fn json_reasoning_fields_in_order() {
        let m = json!({"content": " hi ", "reasoning_content": "a", "reasoning": "b"});
        let t = read_message(m.as_object().unwrap(), None).unwrap();
        assert_eq!((t.reasoning.as_str(), t.content.as_str()), ("a", "hi"));
        let m = json!({"content": "<think>x\n</think>\n\nok"});
        let t = read_message(m.as_object().unwrap(), None).unwrap();
        assert_eq!((t.reasoning.as_str(), t.content.as_str()), ("x\n", "ok"));
        let m = json!({"content": "", "thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": "s"}]});
        let t = read_message(m.as_object().unwrap(), None).unwrap();
        assert_eq!(t.signature.as_deref(), Some("s"));
        assert!(read_message(json!({"content": "plain"}).as_object().unwrap(), None).is_none());
    }

    #[test]
    fn stream_gathers_reasoning_content_and_parallel_calls() {
        let mut s = StreamTurns::default();
        let frames = [
            frame(
                json!({"choices": [{"index": 0, "delta": {"role": "assistant", "reasoning_content": "why ", "reasoning": "why "}}]}),
            ),
            frame(
                json!({"choices": [{"index": 0, "delta": {"reasoning_content": "\"so\"", "reasoning": "\"so\""}}]}),
            ),
            frame(
                json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{\"x\":"}}]}}]}),
            ),
            frame(
                json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g", "arguments": "{}"}}]}}]}),
            ),
            frame(
                json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": " 1}"}}]}}]}),
            ),
            frame(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})),
        ];
        for f in &frames {
            s.on_frame(f.as_bytes());
        }
        assert!(!s.done);
        s.on_frame(b"data: [DONE]\n\n");
        assert!(s.done);
        let turns = s.turns(None);
        assert_eq!(turns.len(), 1);
        assert_eq!(turns[0].reasoning, "why \"so\"");
        assert_eq!(turns[0].calls.len(), 2);
        assert_eq!(turns[0].calls[0].arguments, r#"{"x":1}"#);
        assert_eq!(turns[0].calls[1].id.as_deref(), Some("b"));
    }
}
