//! Chat completion chunks → Responses API events, as a pure state machine:
//! `response.created`, `response.in_progress`, then per output item
//! (reasoning, message, function call) its `output_item.added`, deltas and
//! `.done` events, and `response.completed` (or `response.incomplete`) with
//! the whole response and its usage. A stream that fails ends as the
//! Responses API ends one: an `error` event, then `response.failed` with
//! the error in `response.error`; every event numbered.
//!
//! [`NativeResponses`] follows a native Responses stream relayed as it is,
//! so that an error the proxy makes ends it the same way.

use crate::protocol::{FromChat, StreamFailure, next_chunk};
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
        self.with_status("completed")
    }

    fn with_status(&self, status: &str) -> Value {
        match self.kind {
            Kind::Reasoning => reasoning_item(&self.id, &self.text),
            Kind::Message => message_item(&self.id, &self.text, status),
            Kind::Call => call_item(&self.id, &self.call_id, &self.name, &self.text, status),
        }
    }
}

/// One event, numbered `seq` (then the next number).
fn emit_at(seq: &mut u64, out: &mut Vec<Bytes>, kind: &str, mut v: Value) {
    v["type"] = json!(kind);
    v["sequence_number"] = json!(*seq);
    *seq += 1;
    out.push(sse::named_frame(kind, v.to_string().as_bytes()));
}

/// The events that end a failed stream, numbered from `seq`: `error`, with
/// the fields of OpenAI's `ResponseErrorEvent` at the top (`code`,
/// `message`, `param`) and the same as an `error` object (as OpenAI's own
/// streams send it, and what the SDKs that look for `error` read), then
/// `response.failed`: `response` with status `failed` and
/// `error: {code, message}`.
pub fn failure_events(seq: &mut u64, mut response: Value, f: &StreamFailure, out: &mut Vec<Bytes>) {
    let error = json!({"type": f.kind, "code": f.code, "message": f.message, "param": f.param});
    emit_at(
        seq,
        out,
        "error",
        json!({"code": f.code, "message": f.message, "param": f.param, "error": error}),
    );
    if !response.is_object() {
        response = json!({"object": "response", "output": []});
    }
    response["status"] = json!("failed");
    response["error"] = json!({"code": f.code, "message": f.message});
    response["incomplete_details"] = Value::Null;
    emit_at(seq, out, "response.failed", json!({"response": response}));
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

    /// The model name the response carries when the chunks carry none
    /// (Responses clients such as the AI SDK require a string `model` in
    /// `response.created`): the one the client asked for.
    pub fn with_model(self, model: &str) -> Self {
        ChatToResponses {
            model: json!(model),
            ..self
        }
    }

    fn emit(&mut self, out: &mut Vec<Bytes>, kind: &str, v: Value) {
        emit_at(&mut self.seq, out, kind, v);
    }

    /// Ends the stream as failed (nothing, when its terminal event went
    /// out already): the items so far in `response.output`, the open one
    /// `incomplete`.
    fn fail_with(&mut self, f: &StreamFailure, out: &mut Vec<Bytes>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let output: Vec<Value> = self
            .items
            .iter()
            .enumerate()
            .map(|(i, it)| {
                if self.open == Some(i) {
                    it.with_status("incomplete")
                } else {
                    it.done()
                }
            })
            .collect();
        let mut r = self.response(None);
        r["output"] = json!(output);
        failure_events(&mut self.seq, r, f, out);
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
        if let Some(m) = chunk.get("model").filter(|m| m.is_string()) {
            self.model = m.clone();
        }
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
        self.fail_with(&StreamFailure::upstream(message, &e), out);
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

    fn fail(&mut self, f: &StreamFailure, out: &mut Vec<Bytes>) -> bool {
        self.fail_with(f, out);
        true
    }
}

/// A native Responses stream, relayed as the backend sent it, followed
/// just enough to end it well-formed when the proxy breaks it: the next
/// sequence number (one past the highest seen, or the count of events when
/// the backend numbers none), the `response` of `response.created` /
/// `response.in_progress`, and whether a terminal event (or an `error`)
/// went by, after which nothing is added. Cheap per frame: the type is read
/// from the event name (or the data's start), the number by a byte search,
/// and only the two opening events are parsed.
#[derive(Default)]
pub struct NativeResponses {
    next_seq: u64,
    response: Option<Value>,
    finished: bool,
}

impl NativeResponses {
    pub fn new() -> Self {
        Self::default()
    }

    /// One frame the client was sent.
    pub fn on_frame(&mut self, frame: &[u8]) {
        let ev = sse::parse(frame);
        let Some(data) = ev.data.as_deref() else {
            return;
        };
        let next = sequence_number(data).map_or(self.next_seq + 1, |n| n.saturating_add(1));
        self.next_seq = self.next_seq.max(next);
        let kind = ev.event.or_else(|| leading_type(data));
        match kind {
            Some("response.created" | "response.in_progress") => {
                if let Ok(mut v) = serde_json::from_str::<Value>(data)
                    && v["response"].is_object()
                {
                    self.response = Some(v["response"].take());
                }
            }
            Some("response.completed" | "response.failed" | "response.incomplete" | "error") => {
                self.finished = true;
            }
            _ => {}
        }
    }

    /// The proxy broke the stream: its `error` and `response.failed`
    /// events (none after a terminal event).
    pub fn fail(&mut self, f: &StreamFailure, out: &mut Vec<Bytes>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let response = self.response.take().unwrap_or(Value::Null);
        failure_events(&mut self.next_seq, response, f, out);
    }
}

/// The value of the last `"sequence_number":` in an event's data (the
/// Responses API has it once, at the top; inside a JSON string the quotes
/// would be escaped).
fn sequence_number(data: &str) -> Option<u64> {
    const KEY: &[u8] = b"\"sequence_number\":";
    let at = memchr::memmem::rfind(data.as_bytes(), KEY)? + KEY.len();
    let rest = data[at..].trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The event type when the data starts with it (`{"type":"…"`), for
/// events sent without an `event:` name.
fn leading_type(data: &str) -> Option<&str> {
    let rest = data.trim_start().strip_prefix("{\"type\":\"")?;
    rest.split('"').next()
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
    fn chunks_without_model_name_the_response_after_the_requested_model() {
        let chunk = b"data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\n";
        let mut c = ChatToResponses::new().with_model("asked");
        let mut out = Vec::new();
        c.frame(chunk, &mut out);
        c.frame(b"data: [DONE]\n\n", &mut out);
        c.end(&mut out);
        let evs = events(&out);
        assert_eq!(evs[0]["type"], "response.created");
        assert_eq!(evs[0]["response"]["model"], "asked");
        let done = evs.last().unwrap();
        assert_eq!(done["type"], "response.completed");
        assert_eq!(done["response"]["model"], "asked");

        // A chunk's own model wins.
        let named = b"data: {\"id\":\"x\",\"model\":\"backend-m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n";
        let mut c = ChatToResponses::new().with_model("asked");
        let mut out = Vec::new();
        c.frame(named, &mut out);
        assert_eq!(events(&out)[0]["response"]["model"], "backend-m");

        // A stream that fails before its first chunk names it too.
        let mut c = ChatToResponses::new().with_model("asked");
        let mut out = Vec::new();
        c.frame(
            b"data: {\"error\":{\"message\":\"boom\",\"code\":\"x\"}}\n\n",
            &mut out,
        );
        let evs = events(&out);
        assert_eq!(evs.last().unwrap()["response"]["model"], "asked");
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
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0]["type"], "error");
        assert_eq!(evs[0]["message"], "boom");
        assert_eq!(evs[1]["type"], "response.failed");
        assert_eq!(
            evs[1]["response"]["error"],
            json!({"code": "x", "message": "boom"})
        );
    }

    /// Sequence numbers 0, 1, … and the `error` + `response.failed` pair at
    /// the end, with `message` and `code`.
    fn assert_failed_ending(evs: &[Value], code: &str, message: &str) {
        for (i, v) in evs.iter().enumerate() {
            assert_eq!(v["sequence_number"], i, "{v}");
        }
        let [.., error, failed] = evs else {
            panic!("{evs:?}")
        };
        assert_eq!(
            *error,
            json!({"type": "error", "code": code, "message": message, "param": null,
                   "sequence_number": evs.len() - 2,
                   "error": {"type": error["error"]["type"], "code": code, "message": message, "param": null}})
        );
        assert_eq!(failed["type"], "response.failed");
        assert_eq!(failed["response"]["status"], "failed");
        assert_eq!(
            failed["response"]["error"],
            json!({"code": code, "message": message})
        );
    }

    #[test]
    fn an_upstream_error_mid_stream_ends_the_response_as_failed() {
        let chunk =
            b"data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n";
        let mut c = ChatToResponses::new();
        let mut out = Vec::new();
        c.frame(chunk, &mut out);
        // No code: the error's type stands in (clients want a string).
        c.frame(
            b"data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\",\"code\":null}}\n\n",
            &mut out,
        );
        c.end(&mut out);
        let evs = events(&out);
        assert_failed_ending(&evs, "server_error", "overloaded");
        let failed = &evs.last().unwrap()["response"];
        assert_eq!(failed["id"], "resp_x");
        // The message so far, cut short.
        assert_eq!(failed["output"][0]["status"], "incomplete");
        assert_eq!(failed["output"][0]["content"][0]["text"], "hi");
    }

    #[test]
    fn a_proxy_error_continues_the_numbering_and_nothing_follows_the_end() {
        let chunk =
            b"data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n";
        let f = StreamFailure::proxy("stream_interrupted", "upstream stream failed: cut".into());
        let mut c = ChatToResponses::new();
        let mut out = Vec::new();
        c.frame(chunk, &mut out);
        assert!(c.fail(&f, &mut out));
        assert_failed_ending(
            &events(&out),
            "stream_interrupted",
            "upstream stream failed: cut",
        );
        let n = out.len();
        assert!(c.fail(&f, &mut out));
        c.frame(chunk, &mut out);
        assert_eq!(out.len(), n);
        // After `response.completed`, a break adds nothing.
        let mut c = ChatToResponses::new();
        let mut out = Vec::new();
        c.frame(chunk, &mut out);
        c.frame(b"data: [DONE]\n\n", &mut out);
        let n = out.len();
        assert!(c.fail(&f, &mut out));
        assert_eq!(out.len(), n);
    }

    #[test]
    fn a_native_stream_broken_by_the_proxy_ends_numbered_after_it() {
        let f = StreamFailure::proxy("upstream_timeout", "upstream stream failed: slow".into());
        let created = json!({"type": "response.created", "sequence_number": 0,
            "response": {"id": "resp_n", "object": "response", "status": "in_progress", "output": []}});
        let delta = json!({"type": "response.output_text.delta", "sequence_number": 7,
            "delta": "\"sequence_number\":99"});
        let mut n = NativeResponses::new();
        n.on_frame(&sse::named_frame(
            "response.created",
            created.to_string().as_bytes(),
        ));
        // Unnamed, and a number inside a string that is not the event's.
        n.on_frame(&sse::data_frame(delta.to_string().as_bytes()));
        n.on_frame(b": keep-alive\n\n");
        let mut out = Vec::new();
        n.fail(&f, &mut out);
        let evs = events(&out);
        assert_eq!(evs[0]["sequence_number"], 8);
        assert_eq!(evs[0]["code"], "upstream_timeout");
        assert_eq!(evs[1]["sequence_number"], 9);
        assert_eq!(evs[1]["response"]["id"], "resp_n");
        assert_eq!(evs[1]["response"]["status"], "failed");
        assert_eq!(
            evs[1]["response"]["error"]["message"],
            "upstream stream failed: slow"
        );
        // Nothing after the terminal event, the backend's or ours.
        let mut out = Vec::new();
        n.fail(&f, &mut out);
        assert!(out.is_empty());
        let mut n = NativeResponses::new();
        n.on_frame(&sse::named_frame(
            "response.completed",
            b"{\"type\":\"response.completed\"}",
        ));
        n.fail(&f, &mut out);
        assert!(out.is_empty());
        // A backend that numbers nothing: the count of its events.
        let mut n = NativeResponses::new();
        n.on_frame(&sse::data_frame(b"{\"type\":\"response.created\"}"));
        n.on_frame(&sse::data_frame(
            b"{\"type\":\"response.output_text.delta\"}",
        ));
        n.fail(&f, &mut out);
        assert_eq!(events(&out)[0]["sequence_number"], 2);
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
