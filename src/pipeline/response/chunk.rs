//! The chat-chunk wire side of the parsers: reading a chunk's text without
//! parsing it whole (`peek`), taking a message or delta apart into
//! [`Piece`]s, and writing pieces back as a message or as chunk frames.

use std::borrow::Cow;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::{ChoiceState, Piece, Pipeline, ToolCall};
use crate::sse;

#[allow(clippy::ptr_arg)] // borrowed or not is the point
/// Where the member `"content":"<text>"` is in `data`, when `text` was
/// borrowed from it (no escapes): (start of the key, end of the value).
pub(super) fn content_span(data: &str, text: &Cow<'_, str>) -> Option<(usize, usize)> {
    let Cow::Borrowed(t) = text else {
        return None;
    };
    let off = (t.as_ptr() as usize).checked_sub(data.as_ptr() as usize)?;
    let end = off + t.len();
    if off == 0
        || end >= data.len()
        || data.as_bytes()[off - 1] != b'"'
        || data.as_bytes()[end] != b'"'
    {
        return None;
    }
    let key = data[..off - 1]
        .trim_end()
        .strip_suffix(':')?
        .trim_end()
        .strip_suffix("\"content\"")?;
    Some((key.len(), end + 1))
}

/// Typed views of a chunk that read only what the parsers need.
pub(super) mod peek {
    use std::borrow::Cow;

    use serde::Deserialize;
    use serde::de::IgnoredAny;

    #[derive(Deserialize)]
    pub struct Chunk<'a> {
        #[serde(borrow)]
        pub choices: Vec<Choice<'a>>,
        pub usage: Option<IgnoredAny>,
    }

    #[derive(Deserialize)]
    pub struct Choice<'a> {
        pub index: Option<u64>,
        #[serde(borrow)]
        pub delta: Option<Delta<'a>>,
        pub finish_reason: Option<IgnoredAny>,
    }

    #[derive(Deserialize)]
    pub struct Delta<'a> {
        #[serde(borrow)]
        pub content: Option<Text<'a>>,
        reasoning_content: Option<IgnoredAny>,
        reasoning: Option<IgnoredAny>,
        reasoning_details: Option<IgnoredAny>,
        tool_calls: Option<IgnoredAny>,
    }

    /// A string borrowed from the input when it has no escapes (serde's
    /// own `Option<Cow<str>>` always copies).
    pub struct Text<'a>(pub Cow<'a, str>);

    impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Text<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a string")
                }
                fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                    Ok(Text(Cow::Borrowed(v)))
                }
                fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                    Ok(Text(Cow::Owned(v.to_string())))
                }
                fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                    Ok(Text(Cow::Owned(v)))
                }
            }
            d.deserialize_str(V)
        }
    }

    impl Chunk<'_> {
        /// Only text content: no reasoning or tool calls to rewrite.
        pub fn is_plain(&self, read_details: bool) -> bool {
            !self.choices.is_empty()
                && self.choices.iter().all(|c| {
                    c.delta.as_ref().is_none_or(|d| {
                        d.reasoning_content.is_none()
                            && d.reasoning.is_none()
                            && d.tool_calls.is_none()
                            && !(read_details && d.reasoning_details.is_some())
                    })
                })
        }
    }
}

pub(super) fn chunk_frame(envelope: &Map<String, Value>, choices: Vec<Value>) -> Bytes {
    let mut c = envelope.clone();
    c.insert("choices".into(), Value::Array(choices));
    sse::data_frame(Value::Object(c).to_string().as_bytes())
}

/// Takes what the stages own out of a message or delta: reasoning (the
/// first of `reasoning_content`, `reasoning`, and with normalization
/// `reasoning_details[].text`), text content, and `tool_calls`. Returns
/// the pieces and whether a reasoning field was there.
pub(super) fn take_pieces(obj: &mut Map<String, Value>, p: &Pipeline) -> (Vec<Piece>, bool) {
    let mut pieces = Vec::new();
    let mut had_reasoning = false;
    let mut reasoning = String::new();
    for key in ["reasoning_content", "reasoning"] {
        match obj.get(key) {
            Some(Value::String(s)) => {
                had_reasoning = true;
                if reasoning.is_empty() {
                    reasoning = s.clone();
                }
                obj.shift_remove(key);
            }
            Some(Value::Null) => {
                obj.shift_remove(key);
            }
            _ => {}
        }
    }
    if reasoning.is_empty()
        && p.read_details
        && let Some(Value::Array(details)) = obj.get("reasoning_details")
    {
        for d in details {
            if let Some(t) = d.get("text").and_then(Value::as_str) {
                reasoning.push_str(t);
            }
        }
        had_reasoning |= !reasoning.is_empty();
    }
    if !reasoning.is_empty() {
        pieces.push(Piece::Reasoning(reasoning));
    }
    if matches!(obj.get("content"), Some(Value::String(_)))
        && let Some(Value::String(s)) = obj.shift_remove("content")
        && !s.is_empty()
    {
        pieces.push(Piece::Content(s));
    }
    if matches!(obj.get("tool_calls"), Some(Value::Array(_)))
        && let Some(Value::Array(calls)) = obj.shift_remove("tool_calls")
    {
        pieces.extend(calls.into_iter().map(Piece::Native));
    }
    (pieces, had_reasoning)
}

/// Puts unchanged pieces back where they came from.
pub(super) fn restore(obj: &mut Map<String, Value>, pieces: &[Piece]) {
    let mut natives = Vec::new();
    for p in pieces {
        match p {
            Piece::Content(t) => {
                obj.insert("content".into(), Value::from(t.as_str()));
            }
            Piece::Native(v) => natives.push(v.clone()),
            _ => {}
        }
    }
    if !natives.is_empty() {
        obj.insert("tool_calls".into(), Value::Array(natives));
    }
}

pub(super) fn tool_call_json(c: &ToolCall, index: Option<usize>) -> Value {
    let mut v = json!({
        "id": c.id,
        "type": "function",
        "function": {"name": c.name, "arguments": c.arguments},
    });
    if let Some(i) = index {
        v["index"] = json!(i);
    }
    v
}

/// Writes a whole answer into a message; returns whether it holds tool
/// calls read from the text.
pub(super) fn write_message(
    message: &mut Map<String, Value>,
    pieces: &[Piece],
    fields: &[String],
) -> bool {
    let mut reasoning = String::new();
    let mut content = String::new();
    let mut calls = Vec::new();
    let mut made = false;
    for p in pieces {
        match p {
            Piece::Reasoning(t) => reasoning.push_str(t),
            Piece::Content(t) => content.push_str(t),
            Piece::Tool(c) => {
                made = true;
                calls.push(tool_call_json(c, None));
            }
            Piece::Native(v) => calls.push(v.clone()),
        }
    }
    message.insert(
        "content".into(),
        if content.is_empty() {
            Value::Null
        } else {
            Value::String(content)
        },
    );
    if !reasoning.is_empty() {
        for f in fields {
            message.insert(f.clone(), Value::String(reasoning.clone()));
        }
    }
    if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    made
}

/// The deltas for a choice's pieces, in order: one per run of text of one
/// kind; a tool call is two (name, then arguments).
pub(super) fn deltas_for(
    state: &mut ChoiceState,
    pieces: &[Piece],
    fields: &[String],
) -> Vec<Map<String, Value>> {
    let mut out = Vec::new();
    for p in pieces {
        let mut d = Map::new();
        match p {
            Piece::Reasoning(t) => {
                for f in fields {
                    d.insert(f.clone(), Value::String(t.clone()));
                }
            }
            Piece::Content(t) => {
                d.insert("content".into(), Value::String(t.clone()));
            }
            Piece::Tool(c) => {
                state.made_tools = true;
                let i = state.next_tool;
                state.next_tool += 1;
                d.insert(
                    "tool_calls".into(),
                    json!([{"index": i, "id": c.id, "type": "function",
                            "function": {"name": c.name, "arguments": ""}}]),
                );
                out.push(d);
                let mut a = Map::new();
                a.insert(
                    "tool_calls".into(),
                    json!([{"index": i, "function": {"arguments": c.arguments}}]),
                );
                out.push(a);
                continue;
            }
            Piece::Native(v) => {
                if let Some(i) = v.get("index").and_then(Value::as_u64) {
                    state.next_tool = state.next_tool.max(i as usize + 1);
                }
                d.insert("tool_calls".into(), Value::Array(vec![v.clone()]));
            }
        }
        out.push(d);
    }
    out
}
