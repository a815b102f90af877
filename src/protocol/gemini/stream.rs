//! A Gemini stream (`streamGenerateContent?alt=sse`: each event a whole
//! `GenerateContentResponse` holding the next parts) → chat chunks, as a
//! pure state machine.

use bytes::Bytes;
use serde_json::{Value, json};

use super::response::{candidate_finish, error_to_openai, read_parts, usage};
use crate::protocol::Convert;
use crate::sse;

/// Gemini events → OpenAI chat chunks.
pub struct GeminiToChat {
    id: String,
    model: Value,
    created: u64,
    include_usage: bool,
    usage: Value,
    started: bool,
    /// Tool calls sent so far (their index).
    calls: u64,
    /// Whether a choice called tools (its `STOP` is `tool_calls`).
    called: bool,
    finished: bool,
    done: bool,
}

impl GeminiToChat {
    /// `include_usage`: the client's `stream_options.include_usage`.
    pub fn new(include_usage: bool) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        GeminiToChat {
            id: "chatcmpl-gemini".into(),
            model: Value::Null,
            created: now,
            include_usage,
            usage: Value::Null,
            started: false,
            calls: 0,
            called: false,
            finished: false,
            done: false,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Bytes {
        crate::protocol::chat_chunk(&self.id, self.created, &self.model, delta, finish)
    }
}

impl Convert for GeminiToChat {
    fn frame(&mut self, frame: &[u8], out: &mut Vec<Bytes>) {
        if self.done {
            return;
        }
        let ev = sse::parse(frame);
        let Some(Ok(v)) = ev.data.as_deref().map(serde_json::from_str::<Value>) else {
            return;
        };
        if v.get("error").is_some_and(|e| !e.is_null()) {
            let status = v
                .pointer("/error/code")
                .and_then(Value::as_u64)
                .unwrap_or(500) as u16;
            let body = error_to_openai(status, frame_data(&ev));
            out.push(sse::data_frame(body.to_string().as_bytes()));
            self.done = true;
            return;
        }
        if let Some(id) = v["responseId"].as_str() {
            self.id = format!("chatcmpl-{id}");
        }
        if !v["modelVersion"].is_null() {
            self.model = v["modelVersion"].clone();
        }
        if v["usageMetadata"].is_object() {
            self.usage = v["usageMetadata"].clone();
        }
        if !self.started {
            self.started = true;
            out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
        }
        let candidates = v["candidates"].as_array();
        if candidates.is_none_or(Vec::is_empty)
            && v.pointer("/promptFeedback/blockReason").is_some()
            && !self.finished
        {
            self.finished = true;
            out.push(self.chunk(json!({}), Some("content_filter")));
            return;
        }
        // The first candidate (chat streams of n > 1 are not split).
        let Some(c) = candidates.and_then(|c| c.first()) else {
            return;
        };
        let p = read_parts(&c["content"]);
        if !p.reasoning.is_empty() {
            out.push(self.chunk(json!({"reasoning_content": p.reasoning}), None));
        }
        if !p.text.is_empty() {
            out.push(self.chunk(json!({"content": p.text}), None));
        }
        if !p.calls.is_empty() {
            self.called = true;
            let calls: Vec<Value> = p
                .calls
                .into_iter()
                .map(|mut call| {
                    call["index"] = json!(self.calls);
                    self.calls += 1;
                    call
                })
                .collect();
            out.push(self.chunk(json!({"tool_calls": calls}), None));
        }
        if let Some(f) = candidate_finish(c, self.called)
            && !self.finished
        {
            self.finished = true;
            out.push(self.chunk(json!({}), Some(f)));
        }
    }

    fn end(&mut self, out: &mut Vec<Bytes>) {
        if self.done {
            return;
        }
        self.done = true;
        if !self.finished {
            out.push(self.chunk(
                json!({}),
                Some(if self.called { "tool_calls" } else { "stop" }),
            ));
        }
        if self.include_usage {
            let c = json!({
                "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [], "usage": usage(&self.usage),
            });
            out.push(sse::data_frame(c.to_string().as_bytes()));
        }
        out.push(Bytes::from_static(sse::DONE_FRAME));
    }
}

fn frame_data<'a>(ev: &'a sse::Event<'_>) -> &'a [u8] {
    ev.data.as_deref().map_or(b"", str::as_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::tests::{assemble_chat, run_split};

    const STREAM: &str = concat!(
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hmm\",\"thought\":true}],\"role\":\"model\"},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":10,\"totalTokenCount\":10},\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"abc\"}\r\n\r\n",
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hel\"}],\"role\":\"model\"},\"index\":0}],\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"abc\"}\r\n\r\n",
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"lo\"},{\"functionCall\":{\"name\":\"f\",\"args\":{\"a\":1}},\"thoughtSignature\":\"c2ln\"}],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":10,\"candidatesTokenCount\":5,\"thoughtsTokenCount\":3,\"totalTokenCount\":18},\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"abc\"}\r\n\r\n",
    );

    #[test]
    fn stream_at_every_split() {
        // Tool call ids are fresh per answer: compared apart.
        let assemble = |frames: &[Bytes]| {
            let mut v = assemble_chat(frames);
            let id = v["tool_calls"][0]["id"].take();
            assert!(id.as_str().unwrap().ends_with("__ts_c2ln"), "{id}");
            v
        };
        let whole = assemble(&run_split(
            || GeminiToChat::new(true),
            STREAM.as_bytes(),
            None,
        ));
        assert_eq!(whole["content"], "Hello");
        assert_eq!(whole["reasoning_content"], "Hmm");
        assert_eq!(whole["finish_reason"], "tool_calls");
        assert_eq!(whole["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
        assert_eq!(whole["usage"]["completion_tokens"], 8);
        assert_eq!(
            whole["usage"]["completion_tokens_details"]["reasoning_tokens"],
            3
        );
        for at in 0..STREAM.len() {
            let split = assemble(&run_split(
                || GeminiToChat::new(true),
                STREAM.as_bytes(),
                Some(at),
            ));
            assert_eq!(split, whole, "split at {at}");
        }
    }

    #[test]
    fn error_event_becomes_error_chunk() {
        let s = "data: {\"error\":{\"code\":503,\"message\":\"overloaded\",\"status\":\"UNAVAILABLE\"}}\n\n";
        let out = run_split(|| GeminiToChat::new(false), s.as_bytes(), None);
        let text = String::from_utf8_lossy(&out[0]).to_string();
        assert!(
            text.contains("\"error\"") && text.contains("overloaded"),
            "{text}"
        );
        assert_eq!(out.len(), 1, "nothing after the error");
    }
}
