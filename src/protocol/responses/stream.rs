//! Chat completion chunks → Responses API events, as a pure state machine:
//! `response.created`, `response.in_progress`, then per output item
//! (reasoning, message, function call) its `output_item.added`, deltas and
//! `.done` events, and `response.completed` (or `response.incomplete`) with
//! the whole response and its usage.

use crate::protocol::{FromChat, next_chunk};
use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Value, json};

use super::response::{call_item, envelope, message_item, reasoning_item, usage};
use crate::protocol::Convert;
use crate::sse;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Reasoning,
    Message,
    Call,
}

struct Item {
    kind: Kind,
    id: String,
    text: String,
    call_id: Value,
    name: Value,
}

impl Item {
    fn done(&self) -> Value {
        match self.kind {
            Kind::Reasoning => reasoning_item(&self.id, &self.text),
            Kind::Message => message_item(&self.id, &self.text, "completed"),
            Kind::Call => call_item(&self.id, &self.call_id, &self.name, &self.text, "completed"),
        }
    }
}

/// Chat chunks → Responses events.
pub struct ChatToResponses {
    seq: u64,
    started: bool,
    finished: bool,
    id: String,
    model: Value,
    created: u64,
    items: Vec<Item>,
    open: Option<usize>,
    /// Tool call index → item index.
    calls: HashMap<u64, usize>,
    finish: Option<String>,
    usage: Option<Value>,
}

impl Default for ChatToResponses {
    fn default() -> Self {
        Self::new()
    }
}

impl ChatToResponses {
    pub fn new() -> Self {
        ChatToResponses {
            seq: 0,
            started: false,
            finished: false,
            id: String::new(),
            model: Value::Null,
            created: 0,
            items: Vec::new(),
            open: None,
            calls: HashMap::new(),
            finish: None,
            usage: None,
        }
    }

    /// The same, the response's id fixed to `id` (one yallmp made) instead
    /// of taken from the first chunk.
    pub fn with_id(id: String) -> Self {
        ChatToResponses { id, ..Self::new() }
    }

    fn emit(&mut self, out: &mut Vec<Bytes>, kind: &str, mut v: Value) {
        v["type"] = json!(kind);
        v["sequence_number"] = json!(self.seq);
        self.seq += 1;
        out.push(sse::named_frame(kind, v.to_string().as_bytes()));
    }

    fn response(&self, status: Option<&str>) -> Value {
        let output: Vec<Value> = self.items.iter().map(Item::done).collect();
        let mut r = envelope(
            &self.id,
            &self.model,
            self.created,
            output,
            self.finish.as_deref(),
            self.usage.as_ref().map(usage),
        );
        if let Some(s) = status {
            r["status"] = json!(s);
        }
        r
    }

    fn start(&mut self, chunk: &Value, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        if self.id.is_empty() {
            self.id = chunk["id"].as_str().unwrap_or("chat").to_string();
        }
        self.model = chunk["model"].clone();
        self.created = chunk["created"].as_u64().unwrap_or(0);
        let r = self.response(Some("in_progress"));
        self.emit(out, "response.created", json!({"response": r}));
        let r = self.response(Some("in_progress"));
        self.emit(out, "response.in_progress", json!({"response": r}));
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        let Some(i) = self.open.take() else { return };
        let (kind, id, text) = {
            let it = &self.items[i];
            (it.kind, it.id.clone(), it.text.clone())
        };
        let base = json!({"item_id": id, "output_index": i});
        match kind {
            Kind::Reasoning => {
                let mut v = base.clone();
                v["summary_index"] = json!(0);
                v["text"] = json!(text);
                self.emit(out, "response.reasoning_summary_text.done", v);
                let mut v = base;
                v["summary_index"] = json!(0);
                v["part"] = json!({"type": "summary_text", "text": text});
                self.emit(out, "response.reasoning_summary_part.done", v);
            }
            Kind::Message => {
                let mut v = base.clone();
                v["content_index"] = json!(0);
                v["text"] = json!(text);
                self.emit(out, "response.output_text.done", v);
                let mut v = base;
                v["content_index"] = json!(0);
                v["part"] = json!({"type": "output_text", "text": text, "annotations": []});
                self.emit(out, "response.content_part.done", v);
            }
            Kind::Call => {
                let mut v = base;
                v["arguments"] = json!(text);
                self.emit(out, "response.function_call_arguments.done", v);
            }
        }
        let item = self.items[i].done();
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": i, "item": item}),
        );
    }

    /// Opens a new item (closing the open one).
    fn open_item(
        &mut self,
        kind: Kind,
        call_id: Value,
        name: Value,
        out: &mut Vec<Bytes>,
    ) -> usize {
        self.close(out);
        let i = self.items.len();
        let prefix = match kind {
            Kind::Reasoning => "rs",
            Kind::Message => "msg",
            Kind::Call => "fc",
        };
        let item = Item {
            kind,
            id: format!("{prefix}_{}_{i}", self.id),
            text: String::new(),
            call_id,
            name,
        };
        let added = match kind {
            Kind::Reasoning => json!({"type": "reasoning", "id": item.id, "summary": []}),
            Kind::Message => json!({"type": "message", "id": item.id, "status": "in_progress",
                                    "role": "assistant", "content": []}),
            Kind::Call => call_item(&item.id, &item.call_id, &item.name, "", "in_progress"),
        };
        let id = item.id.clone();
        self.items.push(item);
        self.open = Some(i);
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": i, "item": added}),
        );
        match kind {
            Kind::Reasoning => self.emit(
                out,
                "response.reasoning_summary_part.added",
                json!({"item_id": id, "output_index": i, "summary_index": 0,
                       "part": {"type": "summary_text", "text": ""}}),
            ),
            Kind::Message => self.emit(
                out,
                "response.content_part.added",
                json!({"item_id": id, "output_index": i, "content_index": 0,
                       "part": {"type": "output_text", "text": "", "annotations": []}}),
            ),
            Kind::Call => {}
        }
        i
    }

    /// The open item of `kind`, or a new one.
    fn ensure(&mut self, kind: Kind, out: &mut Vec<Bytes>) -> usize {
        match self.open {
            Some(i) if self.items[i].kind == kind => i,
            _ => self.open_item(kind, Value::Null, Value::Null, out),
        }
    }

    fn delta(&mut self, i: usize, delta: &str, out: &mut Vec<Bytes>) {
        self.items[i].text.push_str(delta);
        let id = self.items[i].id.clone();
        let (name, mut v) = match self.items[i].kind {
            Kind::Reasoning => (
                "response.reasoning_summary_text.delta",
                json!({"summary_index": 0}),
            ),
            Kind::Message => (
                "response.output_text.delta",
                json!({"content_index": 0, "logprobs": []}),
            ),
            Kind::Call => ("response.function_call_arguments.delta", json!({})),
        };
        v["item_id"] = json!(id);
        v["output_index"] = json!(i);
        v["delta"] = json!(delta);
        self.emit(out, name, v);
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) {
        if self.finished || !self.started {
            return;
        }
        self.finished = true;
        self.close(out);
        let r = self.response(None);
        let name = if r["status"] == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.emit(out, name, json!({"response": r}));
    }
}

impl FromChat for ChatToResponses {
    fn finished(&self) -> bool {
        self.finished
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) {
        ChatToResponses::finish(self, out);
    }

    fn error(&mut self, message: String, e: Value, out: &mut Vec<Bytes>) {
        self.emit(
            out,
            "error",
            json!({"code": e.get("code").cloned().unwrap_or(Value::Null), "message": message, "param": null}),
        );
        self.finished = true;
    }
}

impl Convert for ChatToResponses {
    fn frame(&mut self, frame: &[u8], out: &mut Vec<Bytes>) {
        let Some(chunk) = next_chunk(self, frame, out) else {
            return;
        };
        self.start(&chunk, out);
        if chunk["usage"].is_object() {
            self.usage = Some(chunk["usage"].clone());
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
                let i = self.ensure(Kind::Reasoning, out);
                self.delta(i, r, out);
            }
            if let Some(t) = d["content"].as_str().filter(|t| !t.is_empty()) {
                let i = self.ensure(Kind::Message, out);
                self.delta(i, t, out);
            }
            for tc in d["tool_calls"].as_array().into_iter().flatten() {
                let n = tc["index"].as_u64().unwrap_or(0);
                let i = match self.calls.get(&n) {
                    Some(i) => *i,
                    None => {
                        let i = self.open_item(
                            Kind::Call,
                            tc["id"].clone(),
                            tc["function"]["name"].clone(),
                            out,
                        );
                        self.calls.insert(n, i);
                        i
                    }
                };
                if let Some(a) = tc["function"]["arguments"]
                    .as_str()
                    .filter(|a| !a.is_empty())
                {
                    self.delta(i, a, out);
                }
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                self.finish = Some(f.to_string());
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
    use crate::protocol::tests::{fixture, run_split};

    fn events(frames: &[Bytes]) -> Vec<Value> {
        frames
            .iter()
            .map(|f| {
                let ev = sse::parse(f);
                let v: Value = serde_json::from_str(ev.data.as_deref().unwrap()).unwrap();
                assert_eq!(ev.event, v["type"].as_str());
                v
            })
            .collect()
    }

    #[test]
    fn chat_chunks_become_responses_events_at_every_split() {
        let input = fixture("anthropic/chat_stream_tool_reasoning.sse");
        let whole = run_split(ChatToResponses::new, &input, None);
        for split in 1..input.len() {
            assert_eq!(
                run_split(ChatToResponses::new, &input, Some(split)),
                whole,
                "split at {split}"
            );
        }
        let evs = events(&whole);
        let names: Vec<&str> = evs.iter().map(|v| v["type"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            vec![
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.reasoning_summary_part.added",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.done",
                "response.reasoning_summary_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, v) in evs.iter().enumerate() {
            assert_eq!(v["sequence_number"], i);
        }
        let done = &evs.last().unwrap()["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"][0]["summary"][0]["text"], "Need the weather.");
        assert_eq!(done["output"][1]["content"][0]["text"], "Checking.");
        assert_eq!(done["output"][2]["call_id"], "call_1");
        assert_eq!(done["output"][2]["arguments"], r#"{"city":"Paris"}"#);
        assert_eq!(done["usage"]["input_tokens"], 40);
        assert_eq!(done["usage"]["output_tokens"], 17);
    }

    #[test]
    fn error_chunk_becomes_an_error_event() {
        let mut c = ChatToResponses::new();
        let mut out = Vec::new();
        c.frame(
            b"data: {\"error\":{\"message\":\"boom\",\"code\":\"x\"}}\n\n",
            &mut out,
        );
        c.end(&mut out);
        let evs = events(&out);
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0]["type"], "error");
        assert_eq!(evs[0]["message"], "boom");
    }

    #[test]
    fn nothing_follows_the_terminal_event() {
        // Found by fuzzing: chunks after `[DONE]` or an error chunk made
        // events (with new sequence numbers) after `response.completed`.
        let chunk =
            b"data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n";
        for end in [
            &b"data: [DONE]\n\n"[..],
            b"data: {\"error\":{\"message\":\"boom\"}}\n\n",
        ] {
            let mut c = ChatToResponses::new();
            let mut out = Vec::new();
            c.frame(chunk, &mut out);
            c.frame(end, &mut out);
            let n = out.len();
            c.frame(chunk, &mut out);
            c.frame(b"data: [DONE]\n\n", &mut out);
            c.end(&mut out);
            assert_eq!(out.len(), n, "{:?}", &out[n..]);
        }
    }
}
