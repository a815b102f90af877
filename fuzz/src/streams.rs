//! Stream translators (`protocol::Convert`) fed an SSE byte stream through
//! the shared decoder, whole and cut at arbitrary points.

use bytes::Bytes;
use serde_json::Value;
use yallmp::protocol::Convert;
use yallmp::sse::{self, Decoder};

use crate::pieces;

/// Runs `input` cut at `cuts` through the converters `chain` makes (each
/// one's output is the next one's input), then ends them in turn.
pub fn run_chain(
    chain: &dyn Fn() -> Vec<Box<dyn Convert>>,
    input: &[u8],
    cuts: &[usize],
) -> Vec<Bytes> {
    let mut convs = chain();
    let mut d = Decoder::new();
    let mut frames = Vec::new();
    for p in pieces(input, cuts) {
        d.push(p);
        while let Some(f) = d.next_frame() {
            frames.push(f);
        }
    }
    let Some((first, rest)) = convs.split_first_mut() else {
        return frames;
    };
    let mut out = Vec::new();
    for f in &frames {
        first.frame(f, &mut out);
    }
    first.end(&mut out);
    for c in rest {
        let mut next = Vec::new();
        for f in &out {
            c.frame(f, &mut next);
        }
        c.end(&mut next);
        out = next;
    }
    out
}

/// The output is the same for the whole input, for `cuts`, and one byte at
/// a time (short inputs); every output frame is one well-formed SSE frame.
/// Returns the output.
pub fn check_splits(
    chain: &dyn Fn() -> Vec<Box<dyn Convert>>,
    input: &[u8],
    cuts: &[usize],
) -> Vec<Bytes> {
    let whole = run_chain(chain, input, &[]);
    let split = run_chain(chain, input, cuts);
    assert_eq!(whole, split, "whole vs cut at {cuts:?}");
    if input.len() <= 1024 {
        let all: Vec<usize> = (1..input.len()).collect();
        assert_eq!(whole, run_chain(chain, input, &all), "one byte at a time");
    }
    for f in &whole {
        let mut d = Decoder::new();
        d.push(f);
        let one = d.next_frame();
        assert_eq!(one.as_deref(), Some(&f[..]), "one whole frame: {f:?}");
        assert!(d.remainder().is_empty());
    }
    whole
}

/// An output frame's event name and JSON data (`None` for `[DONE]`).
pub type Event = (Option<String>, Option<Value>);

/// The output frames' events, or `None` when one is nested deeper than
/// serde_json reads by default (the upstream sent it that deep; the
/// translators' wrapping adds a few levels): the order checks are skipped.
pub fn events(frames: &[Bytes]) -> Option<Vec<Event>> {
    let mut out = Vec::with_capacity(frames.len());
    for f in frames {
        let ev = sse::parse(f);
        if ev.is_done() {
            out.push((ev.event.map(String::from), None));
            continue;
        }
        let data = ev
            .data
            .unwrap_or_else(|| panic!("an output frame without data: {f:?}"));
        match serde_json::from_str(&data) {
            Ok(v) => out.push((ev.event.map(String::from), Some(v))),
            Err(e) if e.to_string().starts_with("recursion limit exceeded") => return None,
            Err(e) => panic!("output not JSON {data:?}: {e}"),
        }
    }
    Some(out)
}

/// Chat chunks: `data:` JSON chunks, `[DONE]` at most once and last.
pub fn check_chat(frames: &[Bytes]) {
    let Some(events) = events(frames) else { return };
    let mut done = false;
    for (name, data) in events {
        assert!(!done, "nothing after [DONE]: {name:?} {data:?}");
        assert_eq!(name, None, "chat chunks have no event name");
        match data {
            None => done = true,
            Some(v) => assert!(
                v["object"] == "chat.completion.chunk" || v.get("error").is_some(),
                "a chat chunk: {v}"
            ),
        }
    }
}

/// Anthropic events: the name is the data's type, `message_start` first and
/// once, content blocks opened in order (0, 1, ...) one at a time, deltas
/// only for blocks opened, stops for the open block, nothing after
/// `message_stop` or `error`.
pub fn check_messages(frames: &[Bytes]) {
    let mut started = false;
    let mut stopped = false;
    let mut next_block = 0;
    let mut open: Option<u64> = None;
    let Some(events) = events(frames) else { return };
    for (name, data) in events {
        let v = data.unwrap_or_else(|| panic!("[DONE] in an Anthropic stream"));
        let ty = v["type"].as_str().unwrap_or_default();
        assert_eq!(name.as_deref(), Some(ty), "event name = type: {v}");
        assert!(!stopped, "nothing after message_stop or error: {v}");
        if ty == "error" {
            stopped = true;
            continue;
        }
        if ty == "message_start" {
            assert!(!started, "one message_start");
            started = true;
            continue;
        }
        assert!(started, "message_start first: {v}");
        let index = v["index"].as_u64();
        match ty {
            "content_block_start" => {
                assert_eq!(open, None, "a block opened while another is open: {v}");
                assert_eq!(index, Some(next_block), "blocks open in order: {v}");
                next_block += 1;
                open = index;
            }
            // Usually the open block; tool call arguments that come after
            // their block closed (upstream chunks out of order) go to that
            // block, as SDK accumulators expect: a block that was opened.
            "content_block_delta" => assert!(
                index.is_some_and(|i| i < next_block),
                "a delta for a block that was opened: {v}"
            ),
            "content_block_stop" => {
                assert_eq!(index, open, "the open block stops: {v}");
                open = None;
            }
            "message_delta" => assert_eq!(open, None, "message_delta with a block open"),
            "message_stop" => {
                assert_eq!(open, None, "message_stop with a block open");
                stopped = true;
            }
            "ping" => {}
            other => panic!("unknown event {other}: {v}"),
        }
    }
}

/// Responses events: the name is the data's type, sequence numbers count
/// from 0, one terminal `response.*` event at most, and it is last; an
/// `error` is followed by `response.failed` (with the error's code and
/// message in `response.error`) and nothing else; output items are added in order (0, 1, ...), one open at a time,
/// `done` for the open one, other events only for items added.
pub fn check_responses(frames: &[Bytes]) {
    let mut ended = false;
    let mut error: Option<Value> = None;
    let mut next_item = 0;
    let mut open: Option<u64> = None;
    let Some(events) = events(frames) else { return };
    for (i, (name, data)) in events.into_iter().enumerate() {
        let v = data.unwrap_or_else(|| panic!("[DONE] in a Responses stream"));
        let ty = v["type"].as_str().unwrap_or_default();
        assert_eq!(name.as_deref(), Some(ty), "event name = type: {v}");
        assert_eq!(v["sequence_number"], i as u64, "sequence numbers: {v}");
        assert!(!ended, "nothing after the terminal event: {v}");
        if let Some(e) = error.take() {
            assert_eq!(ty, "response.failed", "response.failed after error: {v}");
            assert_eq!(v["response"]["status"], "failed", "{v}");
            assert_eq!(v["response"]["error"]["code"], e["code"], "{v}");
            assert_eq!(v["response"]["error"]["message"], e["message"], "{v}");
        }
        if ty == "error" {
            assert!(v["code"].is_string() && v["message"].is_string(), "{v}");
            error = Some(v.clone());
        }
        if i == 0 {
            assert!(
                ty == "response.created" || ty == "error",
                "response.created first: {v}"
            );
        }
        ended = matches!(
            ty,
            "response.completed" | "response.failed" | "response.incomplete"
        );
        let index = v["output_index"].as_u64();
        match ty {
            "response.output_item.added" => {
                assert_eq!(open, None, "an item added while another is open: {v}");
                assert_eq!(index, Some(next_item), "items added in order: {v}");
                next_item += 1;
                open = index;
            }
            "response.output_item.done" => {
                assert_eq!(index, open, "the open item is done: {v}");
                open = None;
            }
            // As for Messages: late arguments go to their (done) item.
            _ if index.is_some() => assert!(
                index.is_some_and(|i| i < next_item),
                "an event for an item that was added: {v}"
            ),
            _ => {}
        }
    }
}
