//! Streams between Anthropic Messages events and OpenAI chat chunks, both
//! ways, as pure state machines: one upstream SSE frame in, the frames of
//! the other protocol out.

use crate::protocol::{FromChat, next_chunk};
use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Value, json};

use super::response::{finish_reason, stop_reason, usage_to_anthropic, usage_to_openai};
use crate::protocol::Convert;
use crate::sse;

/// Anthropic events → OpenAI chat chunks.
pub struct MessagesToChat {
    id: Value,
    model: Value,
    created: u64,
    include_usage: bool,
    usage: serde_json::Map<String, Value>,
    /// Content block index → tool call index.
    tools: HashMap<u64, u64>,
    done: bool,
}

impl MessagesToChat {
    /// `include_usage`: the client's `stream_options.include_usage`.
    pub fn new(include_usage: bool) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self::at(include_usage, now)
    }

    /// As [`new`](Self::new), with the chunks' `created` given.
    pub fn at(include_usage: bool, created: u64) -> Self {
        MessagesToChat {
            id: json!("msg"),
            model: Value::Null,
            created,
            include_usage,
            usage: serde_json::Map::new(),
            tools: HashMap::new(),
            done: false,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Bytes {
        let c = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        sse::data_frame(c.to_string().as_bytes())
    }

    fn merge_usage(&mut self, u: &Value) {
        if let Some(u) = u.as_object() {
            for (k, v) in u {
                if !v.is_null() {
                    self.usage.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

impl Convert for MessagesToChat {
    fn frame(&mut self, frame: &[u8], out: &mut Vec<Bytes>) {
        if self.done {
            // `[DONE]` went out: nothing may follow it.
            return;
        }
        let ev = sse::parse(frame);
        let Some(data) = ev.data.as_deref() else {
            return;
        };
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        let index = v["index"].as_u64().unwrap_or(0);
        match v["type"].as_str().or(ev.event).unwrap_or("") {
            "message_start" => {
                let m = &v["message"];
                self.id = m["id"].clone();
                self.model = m["model"].clone();
                self.merge_usage(&m["usage"]);
                out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
            }
            "content_block_start" => {
                let b = &v["content_block"];
                match b["type"].as_str() {
                    Some("tool_use") => {
                        let n = self.tools.len() as u64;
                        self.tools.insert(index, n);
                        out.push(self.chunk(
                            json!({"tool_calls": [{"index": n, "id": b["id"], "type": "function",
                                "function": {"name": b["name"], "arguments": ""}}]}),
                            None,
                        ));
                    }
                    Some("text") => {
                        if let Some(t) = b["text"].as_str().filter(|t| !t.is_empty()) {
                            out.push(self.chunk(json!({"content": t}), None));
                        }
                    }
                    Some("thinking") => {
                        if let Some(t) = b["thinking"].as_str().filter(|t| !t.is_empty()) {
                            out.push(self.chunk(json!({"reasoning_content": t}), None));
                        }
                    }
                    Some("redacted_thinking") => {
                        out.push(self.chunk(json!({"thinking_blocks": [b]}), None));
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let d = &v["delta"];
                let delta = match d["type"].as_str() {
                    Some("text_delta") => json!({"content": d["text"]}),
                    Some("thinking_delta") => json!({"reasoning_content": d["thinking"]}),
                    Some("signature_delta") => json!({"thinking_blocks": [
                        {"type": "thinking", "thinking": "", "signature": d["signature"]}
                    ]}),
                    Some("input_json_delta") => {
                        let Some(n) = self.tools.get(&index) else {
                            return;
                        };
                        json!({"tool_calls": [{"index": n, "function": {"arguments": d["partial_json"]}}]})
                    }
                    _ => return,
                };
                out.push(self.chunk(delta, None));
            }
            "message_delta" => {
                self.merge_usage(&v["usage"]);
                let finish = v["delta"]["stop_reason"].as_str().map(finish_reason);
                if finish.is_some() {
                    out.push(self.chunk(json!({}), finish));
                }
            }
            "message_stop" => {
                if self.include_usage {
                    let c = json!({
                        "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [],
                        "usage": usage_to_openai(&Value::Object(self.usage.clone())),
                    });
                    out.push(sse::data_frame(c.to_string().as_bytes()));
                }
                out.push(Bytes::from_static(sse::DONE_FRAME));
                self.done = true;
            }
            "error" => {
                let e = &v["error"];
                let body = json!({"error": {
                    "message": e["message"].as_str().unwrap_or("upstream error"),
                    "type": e["type"].as_str().unwrap_or("upstream_error"),
                    "code": e["type"],
                }});
                out.push(sse::data_frame(body.to_string().as_bytes()));
            }
            _ => {}
        }
    }

    fn end(&mut self, _out: &mut Vec<Bytes>) {}
}

#[derive(Clone, Copy, PartialEq)]
enum Block {
    Text,
    Thinking,
    Tool(u64),
}

/// OpenAI chat chunks → Anthropic events.
pub struct ChatToMessages {
    started: bool,
    finished: bool,
    /// The open block: its index and kind.
    open: Option<(u64, Block)>,
    next: u64,
    /// Tool call index → its block index.
    tools: HashMap<u64, u64>,
    stop: Option<&'static str>,
    usage: Value,
    model: Value,
}

impl Default for ChatToMessages {
    fn default() -> Self {
        Self::new()
    }
}

impl ChatToMessages {
    pub fn new() -> Self {
        ChatToMessages {
            started: false,
            finished: false,
            open: None,
            next: 0,
            tools: HashMap::new(),
            stop: None,
            usage: Value::Null,
            model: Value::Null,
        }
    }

    fn event(out: &mut Vec<Bytes>, v: Value) {
        let name = v["type"].as_str().unwrap_or("message").to_string();
        out.push(sse::named_frame(&name, v.to_string().as_bytes()));
    }

    fn start(&mut self, chunk: &Value, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        self.model = chunk["model"].clone();
        let id = chunk["id"].as_str().unwrap_or("");
        let id = if id.starts_with("msg_") {
            id.to_string()
        } else {
            format!("msg_{id}")
        };
        Self::event(
            out,
            json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }}),
        );
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        if let Some((i, _)) = self.open.take() {
            Self::event(out, json!({"type": "content_block_stop", "index": i}));
        }
    }

    /// The open block if it is of `kind` (text or thinking), else a new one.
    fn ensure(&mut self, kind: Block, out: &mut Vec<Bytes>) -> u64 {
        if let Some((i, k)) = self.open
            && k == kind
        {
            return i;
        }
        self.close(out);
        let i = self.next;
        self.next += 1;
        // Tool blocks are opened by `tool_call`, with their id and name.
        let block = if kind == Block::Thinking {
            json!({"type": "thinking", "thinking": "", "signature": ""})
        } else {
            json!({"type": "text", "text": ""})
        };
        Self::event(
            out,
            json!({"type": "content_block_start", "index": i, "content_block": block}),
        );
        self.open = Some((i, kind));
        i
    }

    fn delta(out: &mut Vec<Bytes>, index: u64, delta: Value) {
        Self::event(
            out,
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
        );
    }

    fn tool_call(&mut self, tc: &Value, out: &mut Vec<Bytes>) {
        let n = tc["index"].as_u64().unwrap_or(0);
        let f = &tc["function"];
        let block = match self.tools.get(&n) {
            Some(b) => *b,
            None => {
                self.close(out);
                let i = self.next;
                self.next += 1;
                self.tools.insert(n, i);
                let id = tc["id"]
                    .as_str()
                    .map_or_else(|| format!("toolu_{i}"), str::to_string);
                Self::event(
                    out,
                    json!({"type": "content_block_start", "index": i, "content_block":
                        {"type": "tool_use", "id": id, "name": f["name"].as_str().unwrap_or(""), "input": {}}}),
                );
                self.open = Some((i, Block::Tool(n)));
                i
            }
        };
        if let Some(args) = f["arguments"].as_str().filter(|a| !a.is_empty()) {
            Self::delta(
                out,
                block,
                json!({"type": "input_json_delta", "partial_json": args}),
            );
        }
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) {
        if self.finished || !self.started {
            return;
        }
        self.finished = true;
        self.close(out);
        Self::event(
            out,
            json!({"type": "message_delta",
                "delta": {"stop_reason": self.stop.unwrap_or("end_turn"), "stop_sequence": null},
                "usage": usage_to_anthropic(&self.usage)}),
        );
        Self::event(out, json!({"type": "message_stop"}));
    }
}

impl FromChat for ChatToMessages {
    fn finished(&self) -> bool {
        self.finished
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) {
        ChatToMessages::finish(self, out);
    }

    fn error(&mut self, message: String, _: Value, out: &mut Vec<Bytes>) {
        Self::event(
            out,
            json!({"type": "error", "error": {"type": "api_error", "message": message}}),
        );
        self.finished = true;
    }
}

impl Convert for ChatToMessages {
    fn frame(&mut self, frame: &[u8], out: &mut Vec<Bytes>) {
        let Some(chunk) = next_chunk(self, frame, out) else {
            return;
        };
        self.start(&chunk, out);
        if chunk["usage"].is_object() {
            self.usage = chunk["usage"].clone();
        }
        for choice in chunk["choices"].as_array().into_iter().flatten() {
            if choice["index"].as_u64().unwrap_or(0) != 0 {
                continue;
            }
            let d = &choice["delta"];
            if let Some(r) = d
                .get("reasoning_content")
                .or_else(|| d.get("reasoning"))
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
            {
                let i = self.ensure(Block::Thinking, out);
                Self::delta(out, i, json!({"type": "thinking_delta", "thinking": r}));
            }
            for b in d["thinking_blocks"].as_array().into_iter().flatten() {
                if b["type"] == "redacted_thinking" {
                    self.close(out);
                    let i = self.next;
                    self.next += 1;
                    Self::event(
                        out,
                        json!({"type": "content_block_start", "index": i, "content_block": b}),
                    );
                    Self::event(out, json!({"type": "content_block_stop", "index": i}));
                } else if let Some(sig) = b["signature"].as_str().filter(|s| !s.is_empty()) {
                    let i = self.ensure(Block::Thinking, out);
                    Self::delta(out, i, json!({"type": "signature_delta", "signature": sig}));
                }
            }
            if let Some(t) = d["content"].as_str().filter(|t| !t.is_empty()) {
                let i = self.ensure(Block::Text, out);
                Self::delta(out, i, json!({"type": "text_delta", "text": t}));
            }
            for tc in d["tool_calls"].as_array().into_iter().flatten() {
                self.tool_call(tc, out);
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                self.stop = Some(stop_reason(f));
                self.close(out);
            }
        }
    }

    fn end(&mut self, out: &mut Vec<Bytes>) {
        self.finish(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::tests::{assemble_chat, assemble_messages, fixture, run_split};

    #[test]
    fn anthropic_stream_becomes_chunks_at_every_split() {
        let input = fixture("anthropic/stream_tool_thinking.sse");
        let whole = run_split(|| MessagesToChat::at(true, 1), &input, None);
        for split in 1..input.len() {
            assert_eq!(
                run_split(|| MessagesToChat::at(true, 1), &input, Some(split)),
                whole,
                "split at {split}"
            );
        }
        let text: String = whole
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        let msg = assemble_chat(&whole);
        assert_eq!(
            msg["reasoning_content"],
            "The user wants weather. I'll call the tool."
        );
        assert_eq!(msg["signature"], "EqQBCgIYAhIM1gbcDa9GJwZA2b3h");
        assert_eq!(msg["content"], "Let me check.");
        assert_eq!(msg["tool_calls"][0]["id"], "toolu_01A");
        assert_eq!(msg["tool_calls"][0]["function"]["name"], "get_weather");
        assert_eq!(
            msg["tool_calls"][0]["function"]["arguments"],
            r#"{"city": "Paris"}"#
        );
        assert_eq!(msg["finish_reason"], "tool_calls");
        assert_eq!(msg["usage"]["prompt_tokens"], 472 + 100 + 300);
        assert_eq!(msg["usage"]["completion_tokens"], 89);
        assert_eq!(msg["usage"]["prompt_tokens_details"]["cached_tokens"], 300);
        // Without include_usage there is no usage chunk.
        let plain = run_split(|| MessagesToChat::at(false, 1), &input, None);
        assert!(assemble_chat(&plain)["usage"].is_null());
    }

    #[test]
    fn anthropic_error_event_becomes_openai_error() {
        let mut c = MessagesToChat::at(false, 1);
        let mut out = Vec::new();
        c.frame(
            b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
            &mut out,
        );
        let v: Value = serde_json::from_str(&String::from_utf8_lossy(&out[0])[6..]).unwrap();
        assert_eq!(v["error"]["message"], "Overloaded");
        assert_eq!(v["error"]["type"], "overloaded_error");
    }

    #[test]
    fn chat_chunks_become_anthropic_events_at_every_split() {
        let input = fixture("anthropic/chat_stream_tool_reasoning.sse");
        let whole = run_split(ChatToMessages::new, &input, None);
        for split in 1..input.len() {
            assert_eq!(
                run_split(ChatToMessages::new, &input, Some(split)),
                whole,
                "split at {split}"
            );
        }
        let (msg, events) = assemble_messages(&whole);
        assert_eq!(
            events,
            vec![
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert_eq!(
            msg["content"][0],
            json!({"type": "thinking", "thinking": "Need the weather.", "signature": "sig-1"})
        );
        assert_eq!(
            msg["content"][1],
            json!({"type": "text", "text": "Checking."})
        );
        assert_eq!(
            msg["content"][2],
            json!({"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}})
        );
        assert_eq!(msg["stop_reason"], "tool_use");
        assert_eq!(msg["usage"]["input_tokens"], 40);
        assert_eq!(msg["usage"]["output_tokens"], 17);
    }

    #[test]
    fn nothing_follows_the_end_of_a_translated_stream() {
        // Found by fuzzing (fuzz/corpus/anthropic/regress-*): an upstream
        // that goes on after its end marker or an error made the client
        // stream go on after `message_stop` / `[DONE]`.
        let chunk =
            b"data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n";
        for end in [
            &b"data: [DONE]\n\n"[..],
            b"data: {\"error\":{\"message\":\"boom\"}}\n\n",
        ] {
            let mut c = ChatToMessages::new();
            let mut out = Vec::new();
            c.frame(chunk, &mut out);
            c.frame(end, &mut out);
            let n = out.len();
            c.frame(chunk, &mut out);
            c.frame(b"data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"function\":{\"name\":\"f\"}}]}}]}\n\n", &mut out);
            c.end(&mut out);
            assert_eq!(out.len(), n, "{:?}", &out[n..]);
        }
        let mut c = MessagesToChat::at(false, 1);
        let mut out = Vec::new();
        c.frame(
            b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
            &mut out,
        );
        assert_eq!(out.last().map(|b| &b[..]), Some(sse::DONE_FRAME));
        let n = out.len();
        c.frame(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"late\"}}\n\n", &mut out);
        c.frame(
            b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
            &mut out,
        );
        c.end(&mut out);
        assert_eq!(out.len(), n, "{:?}", &out[n..]);
    }

    #[test]
    fn chat_error_chunk_becomes_error_event() {
        let mut c = ChatToMessages::new();
        let mut out = Vec::new();
        c.frame(b"data: {\"error\":{\"message\":\"boom\"}}\n\n", &mut out);
        c.end(&mut out);
        assert_eq!(out.len(), 1);
        let text = String::from_utf8_lossy(&out[0]);
        assert!(text.starts_with("event: error\n"), "{text}");
        assert!(text.contains("boom"));
    }
}
