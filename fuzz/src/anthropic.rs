//! OpenAI chat ⇄ Anthropic Messages: request and answer translators both
//! ways, errors, the token estimate, and the stream translators.
//!
//! Input: byte 0 picks the translator (bits 0-2) and the input form (bit
//! 3: 0 = the rest is the body or stream as is, 1 = the rest drives the
//! structure-aware generator seeded with tests/fixtures/anthropic); stream
//! modes read the cut points first (`split_spec`). Properties: no panic;
//! a result is a JSON object or a `TranslateError`; translated errors are
//! JSON in the client's shape; stream output is the same whatever the
//! split and follows the protocol's event order.

use arbitrary::Unstructured;
use bytes::Bytes;
use serde_json::Value;
use yallmp::endpoint::Endpoint as E;
use yallmp::protocol::anthropic::stream::{ChatToMessages, MessagesToChat};
use yallmp::protocol::{self, Convert};

use crate::{cuts_from, shapes, streams};

pub const CHAT_REQUEST: &str = include_str!("../../tests/fixtures/anthropic/chat_request.json");
pub const MESSAGES_REQUEST: &str =
    include_str!("../../tests/fixtures/anthropic/messages_request.json");
pub const MESSAGE: &str = include_str!("../../tests/fixtures/anthropic/message_response.json");
pub const CHAT_ANSWER: &str =
    include_str!("../../tests/fixtures/anthropic/message_response.as_chat.json");
pub const MESSAGES_STREAM: &str =
    include_str!("../../tests/fixtures/anthropic/stream_tool_thinking.sse");
pub const CHAT_STREAM: &str =
    include_str!("../../tests/fixtures/anthropic/chat_stream_tool_reasoning.sse");
const ERRORS: &[&str] = &[
    r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    r#"{"error":{"message":"bad key","type":"invalid_request_error","code":"invalid_api_key"}}"#,
    r#"{"detail":"Not found"}"#,
];
const STATUSES: [u16; 8] = [400, 401, 403, 404, 413, 429, 500, 529];

/// A body: the bytes as they are, or a generated document.
pub fn body(generated: bool, rest: &[u8], seeds: &[&str]) -> Vec<u8> {
    if !generated {
        return rest.to_vec();
    }
    let mut u = Unstructured::new(rest);
    shapes::document(&mut u, seeds)
        .map(|v| v.to_string().into_bytes())
        .unwrap_or_default()
}

/// A stream and its cut points: byte 0 = number of cuts (mod 9), two bytes
/// per cut, then the stream as it is or the generator's bytes.
pub fn split_spec(generated: bool, rest: &[u8], seeds: &[&str]) -> (Vec<u8>, Vec<usize>) {
    let Some((&n, rest)) = rest.split_first() else {
        return (Vec::new(), Vec::new());
    };
    let n = usize::from(n % 9);
    let (spec, rest) = rest.split_at((2 * n).min(rest.len()));
    let input = if generated {
        let mut u = Unstructured::new(rest);
        shapes::stream(&mut u, seeds).unwrap_or_default()
    } else {
        rest.to_vec()
    };
    let cuts = cuts_from(spec, input.len(), n);
    (input, cuts)
}

/// A translated body: JSON, and an object; `None` when it is nested deeper
/// than serde_json reads back by default (the client sent it that deep,
/// and the translation wraps it a few levels more): nothing to check.
pub fn object(what: &str, b: &[u8]) -> Option<Value> {
    let v: Value = match serde_json::from_slice(b) {
        Ok(v) => v,
        Err(e) if e.to_string().starts_with("recursion limit exceeded") => return None,
        Err(e) => panic!("{what}: output not JSON: {e}"),
    };
    assert!(v.is_object(), "{what}: output not an object: {v}");
    Some(v)
}

pub fn run(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let generated = sel & 8 != 0;
    let raw = |seeds: &[&str]| Bytes::from(body(generated, rest, seeds));
    match sel & 7 {
        0 => {
            if let Ok(out) =
                protocol::request(E::ChatCompletions, E::Messages, &raw(&[CHAT_REQUEST]))
            {
                let Some(v) = object("chat → messages", &out) else {
                    return;
                };
                assert!(v["messages"].is_array(), "messages: {v}");
            }
        }
        1 => {
            if let Ok(out) =
                protocol::request(E::Messages, E::ChatCompletions, &raw(&[MESSAGES_REQUEST]))
            {
                let Some(v) = object("messages → chat", &out) else {
                    return;
                };
                assert!(v["messages"].is_array(), "messages: {v}");
            }
        }
        2 => {
            if let Some(Ok(out)) =
                protocol::to_chat(E::ChatCompletions, E::Messages, &raw(&[MESSAGE]))
            {
                let Some(v) = object("message → chat", &out) else {
                    return;
                };
                assert!(v["choices"].is_array(), "choices: {v}");
            }
        }
        3 => {
            if let Some(Ok(out)) =
                protocol::from_chat(E::Messages, E::ChatCompletions, &raw(&[CHAT_ANSWER]), "m")
            {
                let Some(v) = object("chat → message", &out) else {
                    return;
                };
                assert!(v["content"].is_array(), "content: {v}");
            }
        }
        4 => {
            let b = raw(ERRORS);
            let status = STATUSES[usize::from(sel >> 4) % STATUSES.len()];
            // To an Anthropic client: always its error shape (an Anthropic
            // error body is kept as it is; any other gets a message).
            let out = protocol::error(E::Messages, E::ChatCompletions, status, &b);
            let Some(v) = object("error → anthropic", &out) else {
                return;
            };
            assert_eq!(v["type"], "error", "{v}");
            assert!(v["error"].is_object(), "{v}");
            let kept = serde_json::from_slice::<Value>(&b)
                .is_ok_and(|i| i["type"] == "error" && i["error"].is_object());
            if !kept {
                assert!(v["error"]["message"].is_string(), "{v}");
            }
            // To an OpenAI client: its shape, or the body as it was.
            let out = protocol::error(E::ChatCompletions, E::Messages, status, &b);
            if out != b {
                let Some(v) = object("error → openai", &out) else {
                    return;
                };
                assert!(v["error"]["message"].is_string(), "{v}");
            }
        }
        5 => {
            let b = raw(&[MESSAGES_REQUEST, CHAT_REQUEST]);
            if let Ok(v) = serde_json::from_slice::<Value>(&b) {
                let _ = protocol::tokens::estimate(&v);
            }
        }
        6 => {
            let include_usage = sel & 16 != 0;
            let (input, cuts) = split_spec(generated, rest, &[MESSAGES_STREAM]);
            let chain = move || -> Vec<Box<dyn Convert>> {
                vec![Box::new(MessagesToChat::at(include_usage, 1))]
            };
            let out = streams::check_splits(&chain, &input, &cuts);
            streams::check_chat(&out);
        }
        _ => {
            let (input, cuts) = split_spec(generated, rest, &[CHAT_STREAM]);
            let chain = || -> Vec<Box<dyn Convert>> { vec![Box::new(ChatToMessages::new())] };
            let out = streams::check_splits(&chain, &input, &cuts);
            streams::check_messages(&out);
        }
    }
}
