//! ConverseStream events → chat chunk frames: a pure state machine fed one
//! decoded event-stream message at a time (its `:event-type`, or the
//! `:exception-type` of an exception, and its JSON payload).

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Value, json};

use super::{finish_reason, usage_to_openai};
use crate::sse;

/// One ConverseStream message, as the upstream client decoded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind<'a> {
    /// `:message-type: event`, with its `:event-type`.
    Event(&'a str),
    /// `:message-type: exception`, with its `:exception-type`.
    Exception(&'a str),
    /// `:message-type: error` (the framing's own), with its `:error-code`.
    Error(&'a str),
}

/// ConverseStream → chat chunks.
pub struct ConverseToChat {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    /// Content block index → tool call index.
    tools: HashMap<u64, u64>,
    /// `messageStop` came: the stream may end.
    stopped: bool,
    /// `[DONE]` (or an error) went out: nothing may follow.
    done: bool,
}

impl ConverseToChat {
    pub fn new(id: String, model: String, include_usage: bool) -> Self {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        ConverseToChat {
            id,
            model,
            created,
            include_usage,
            tools: HashMap::new(),
            stopped: false,
            done: false,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Bytes {
        crate::protocol::chat_chunk(&self.id, self.created, &self.model, delta, finish)
    }

    /// An error chunk (`{"error":{...}}`): the relay and the router read it
    /// as an upstream error event; nothing follows it.
    fn error(&mut self, kind: &str, message: &str, out: &mut Vec<Bytes>) {
        let status = super::response::error_status(kind, 500);
        let e = super::response::error_to_openai(
            kind,
            status,
            json!({"message": message}).to_string().as_bytes(),
        );
        out.push(sse::data_frame(e.to_string().as_bytes()));
        self.done = true;
    }

    /// One message: its kind and payload.
    pub fn message(&mut self, kind: Kind<'_>, payload: &[u8], out: &mut Vec<Bytes>) {
        if self.done {
            return;
        }
        let v: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
        let event = match kind {
            Kind::Exception(t) | Kind::Error(t) => {
                let message = v
                    .get("message")
                    .or_else(|| v.get("Message"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| String::from_utf8_lossy(payload).into_owned());
                // The framing names exceptions in lower camel case.
                let mut name = t.to_string();
                if let Some(first) = name.get_mut(0..1) {
                    first.make_ascii_uppercase();
                }
                self.error(&name, &message, out);
                return;
            }
            Kind::Event(e) => e,
        };
        let index = v["contentBlockIndex"].as_u64().unwrap_or(0);
        match event {
            "messageStart" => {
                out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
            }
            "contentBlockStart" => {
                if let Some(t) = v.pointer("/start/toolUse") {
                    let n = self.tools.len() as u64;
                    self.tools.insert(index, n);
                    out.push(self.chunk(
                        json!({"tool_calls": [{"index": n, "id": t["toolUseId"], "type": "function",
                            "function": {"name": t["name"], "arguments": ""}}]}),
                        None,
                    ));
                }
            }
            "contentBlockDelta" => {
                let d = &v["delta"];
                let delta = if let Some(t) = d.get("text") {
                    json!({"content": t})
                } else if let Some(u) = d.get("toolUse") {
                    let Some(n) = self.tools.get(&index) else {
                        return;
                    };
                    json!({"tool_calls": [{"index": n, "function": {"arguments": u["input"]}}]})
                } else if let Some(r) = d.get("reasoningContent") {
                    if let Some(t) = r.get("text") {
                        json!({"reasoning_content": t})
                    } else if let Some(s) = r.get("signature") {
                        json!({"thinking_blocks": [
                            {"type": "thinking", "thinking": "", "signature": s}
                        ]})
                    } else if let Some(data) = r.get("redactedContent") {
                        json!({"thinking_blocks": [{"type": "redacted_thinking", "data": data}]})
                    } else {
                        return;
                    }
                } else {
                    return;
                };
                out.push(self.chunk(delta, None));
            }
            "messageStop" => {
                let finish = v["stopReason"].as_str().map_or("stop", finish_reason);
                out.push(self.chunk(json!({}), Some(finish)));
                self.stopped = true;
            }
            "metadata" => {
                if self.include_usage {
                    let c = json!({
                        "id": self.id, "object": "chat.completion.chunk",
                        "created": self.created, "model": self.model, "choices": [],
                        "usage": usage_to_openai(&v["usage"]),
                    });
                    out.push(sse::data_frame(c.to_string().as_bytes()));
                }
                if self.stopped {
                    out.push(Bytes::from_static(sse::DONE_FRAME));
                    self.done = true;
                }
            }
            _ => {}
        }
    }

    /// The upstream stream ended: `[DONE]` when the message had stopped
    /// (a stream cut before `messageStop` ends without it, so the relay
    /// reports it cut).
    pub fn end(&mut self, out: &mut Vec<Bytes>) {
        if !self.done && self.stopped {
            out.push(Bytes::from_static(sse::DONE_FRAME));
            self.done = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_chunks() {
        let mut c = ConverseToChat::new("chatcmpl-1".into(), "m".into(), true);
        let mut out = Vec::new();
        let ev = |c: &mut ConverseToChat, out: &mut Vec<Bytes>, e: &str, p: &str| {
            c.message(Kind::Event(e), p.as_bytes(), out)
        };
        ev(&mut c, &mut out, "messageStart", r#"{"role":"assistant"}"#);
        ev(
            &mut c,
            &mut out,
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"th"}}}"#,
        );
        ev(
            &mut c,
            &mut out,
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"reasoningContent":{"signature":"sg"}}}"#,
        );
        ev(
            &mut c,
            &mut out,
            "contentBlockDelta",
            r#"{"contentBlockIndex":1,"delta":{"text":"Hi"}}"#,
        );
        ev(
            &mut c,
            &mut out,
            "contentBlockStart",
            r#"{"contentBlockIndex":2,"start":{"toolUse":{"toolUseId":"t1","name":"f"}}}"#,
        );
        ev(
            &mut c,
            &mut out,
            "contentBlockDelta",
            r#"{"contentBlockIndex":2,"delta":{"toolUse":{"input":"{\"a\":"}}}"#,
        );
        ev(
            &mut c,
            &mut out,
            "contentBlockDelta",
            r#"{"contentBlockIndex":2,"delta":{"toolUse":{"input":"1}"}}}"#,
        );
        ev(
            &mut c,
            &mut out,
            "messageStop",
            r#"{"stopReason":"tool_use"}"#,
        );
        ev(
            &mut c,
            &mut out,
            "metadata",
            r#"{"usage":{"inputTokens":3,"outputTokens":4,"totalTokens":7},"metrics":{"latencyMs":1}}"#,
        );
        c.end(&mut out);
        let a = crate::protocol::tests::assemble_chat(&out);
        assert_eq!(a["content"], "Hi");
        assert_eq!(a["reasoning_content"], "th");
        assert_eq!(a["signature"], "sg");
        assert_eq!(a["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
        assert_eq!(a["finish_reason"], "tool_calls");
        assert_eq!(a["usage"]["total_tokens"], 7);
        assert_eq!(out.last().map(|b| &b[..]), Some(sse::DONE_FRAME));
        assert_eq!(out.iter().filter(|b| &b[..] == sse::DONE_FRAME).count(), 1);
    }

    #[test]
    fn exceptions_become_error_chunks() {
        let mut c = ConverseToChat::new("x".into(), "m".into(), false);
        let mut out = Vec::new();
        c.message(
            Kind::Exception("throttlingException"),
            br#"{"message":"slow down"}"#,
            &mut out,
        );
        c.end(&mut out);
        assert_eq!(out.len(), 1);
        let s = String::from_utf8_lossy(&out[0]);
        assert!(
            s.contains("slow down") && s.contains("ThrottlingException"),
            "{s}"
        );
    }
}
