//! The response parsers on their own: every vector of
//! tests/fixtures/parser-vectors/ parsed as a whole JSON response and as a
//! stream split at every character boundary (random splits for long ones),
//! plus a property test that the two forms always agree.

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Value, json};

use yallmp::config::parsers::ParsersSettings;
use yallmp::pipeline::response::Pipeline;

use crate::support::vectors::{Answer, all as vectors, check};

fn pipeline(parse_tags: &Value, extra: Value) -> Arc<Pipeline> {
    let mut settings = json!({"enabled": true, "parse_tags": parse_tags});
    if let (Some(s), Some(e)) = (settings.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    let s: ParsersSettings = serde_json::from_value(settings).unwrap();
    Pipeline::build(&s).unwrap()
}

fn tools_raw(v: &Value) -> Option<Box<serde_json::value::RawValue>> {
    v.get("tools")
        .map(|t| serde_json::value::to_raw_value(t).unwrap())
}

fn whole(p: &Arc<Pipeline>, tools: Option<&serde_json::value::RawValue>, content: &str) -> Answer {
    let body = json!({
        "id": "x", "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
    });
    let raw = body.to_string();
    let mut s = p.session(tools, false);
    let out = s.apply_json(raw.as_bytes());
    let v: Value = serde_json::from_slice(out.as_deref().unwrap_or(raw.as_bytes())).unwrap();
    let m = &v["choices"][0]["message"];
    let mut a = Answer {
        reasoning: m["reasoning_content"].as_str().unwrap_or("").to_string(),
        content: m["content"].as_str().unwrap_or("").to_string(),
        finish: v["choices"][0]["finish_reason"].as_str().map(String::from),
        ..Answer::default()
    };
    assert_eq!(
        m["reasoning"], m["reasoning_content"],
        "both reasoning fields"
    );
    for t in m["tool_calls"].as_array().into_iter().flatten() {
        assert_eq!(t["type"], "function");
        a.tools.push((
            t["id"].as_str().unwrap().to_string(),
            t["function"]["name"].as_str().unwrap().to_string(),
            t["function"]["arguments"].as_str().unwrap().to_string(),
        ));
    }
    a
}

fn chunk(delta: Value, finish: Option<&str>) -> Bytes {
    let c = json!({"id": "x", "object": "chat.completion.chunk", "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    Bytes::from(format!("data: {c}\n\n"))
}

/// Streams `parts` as content deltas and folds the client's frames back
/// into an answer, the way an OpenAI client does.
fn streamed(
    p: &Arc<Pipeline>,
    tools: Option<&serde_json::value::RawValue>,
    parts: &[&str],
) -> Answer {
    let mut s = p.session(tools, false);
    let mut frames = Vec::new();
    s.on_frame(
        &chunk(json!({"role": "assistant", "content": ""}), None),
        &mut frames,
    );
    for part in parts {
        s.on_frame(&chunk(json!({"content": part}), None), &mut frames);
    }
    s.on_frame(&chunk(json!({}), Some("stop")), &mut frames);
    s.on_frame(&Bytes::from_static(b"data: [DONE]\n\n"), &mut frames);
    fold(&frames)
}

fn fold(frames: &[Bytes]) -> Answer {
    let mut a = Answer::default();
    let mut args: Vec<String> = Vec::new();
    let mut done = false;
    for f in frames {
        let text = std::str::from_utf8(f).unwrap();
        assert!(
            text.starts_with("data: ") && text.ends_with("\n\n"),
            "{text:?}"
        );
        let data = text["data: ".len()..].trim();
        assert!(!done, "nothing after [DONE]");
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        let c = &v["choices"][0];
        let d = &c["delta"];
        assert_eq!(
            d["reasoning"], d["reasoning_content"],
            "both reasoning fields"
        );
        if let Some(r) = d["reasoning_content"].as_str() {
            a.reasoning.push_str(r);
        }
        if let Some(t) = d["content"].as_str() {
            a.content.push_str(t);
        }
        for t in d["tool_calls"].as_array().into_iter().flatten() {
            let i = t["index"].as_u64().unwrap() as usize;
            if let Some(name) = t["function"]["name"].as_str() {
                assert_eq!(i, a.tools.len(), "indexes count from 0");
                assert_eq!(t["type"], "function");
                a.tools.push((
                    t["id"].as_str().unwrap().to_string(),
                    name.to_string(),
                    String::new(),
                ));
                args.push(String::new());
            }
            if let Some(frag) = t["function"]["arguments"].as_str() {
                args[i].push_str(frag);
            }
        }
        if let Some(f) = c["finish_reason"].as_str() {
            a.finish = Some(f.to_string());
        }
    }
    assert!(done, "stream ends with [DONE]");
    for (t, a) in a.tools.iter_mut().zip(args) {
        t.2 = a;
    }
    a
}

/// Same answer, ids aside (generated ids differ between runs).
fn same(a: &Answer, b: &Answer) -> bool {
    a.reasoning == b.reasoning
        && a.content == b.content
        && a.finish == b.finish
        && a.tools.len() == b.tools.len()
        && a.tools
            .iter()
            .zip(&b.tools)
            .all(|(x, y)| x.1 == y.1 && x.2 == y.2)
}

/// `text` cut at these byte offsets (char boundaries, any order).
fn split_at_cuts(text: &str, mut cuts: Vec<usize>) -> Vec<&str> {
    cuts.sort_unstable();
    let mut parts = Vec::with_capacity(cuts.len() + 1);
    let mut last = 0;
    for c in cuts {
        parts.push(&text[last..c]);
        last = c;
    }
    parts.push(&text[last..]);
    parts
}

/// The answer of `text` streamed in two deltas, split at every character
/// boundary in turn.
fn every_split(
    p: &Arc<Pipeline>,
    tools: Option<&serde_json::value::RawValue>,
    text: &str,
) -> Vec<Answer> {
    char_bounds(text)
        .into_iter()
        .map(|i| streamed(p, tools, &[&text[..i], &text[i..]]))
        .collect()
}

fn char_bounds(s: &str) -> Vec<usize> {
    (0..=s.len()).filter(|&i| s.is_char_boundary(i)).collect()
}

#[test]
fn vectors_whole_and_streamed_at_every_split() {
    let vs = vectors();
    assert!(vs.len() >= 20);
    for v in &vs {
        let name = v["name"].as_str().unwrap();
        let content = v["content"].as_str().unwrap();
        let p = pipeline(&v["parse_tags"], json!({}));
        let tools = tools_raw(v);
        let w = whole(&p, tools.as_deref(), content);
        check(name, &w, &v["expect"]);
        // One delta per character, and two deltas split at every boundary.
        let chars: Vec<String> = content.chars().map(String::from).collect();
        let parts: Vec<&str> = chars.iter().map(String::as_str).collect();
        let s = streamed(&p, tools.as_deref(), &parts);
        check(name, &s, &v["expect"]);
        assert!(same(&w, &s), "{name}: per-char stream {s:?} vs whole {w:?}");
        for s in every_split(&p, tools.as_deref(), content) {
            assert!(same(&w, &s), "{name}: {s:?} vs whole {w:?}");
            check(name, &s, &v["expect"]);
        }
    }
}

#[test]
fn vectors_random_multi_splits() {
    let mut rng = fastrand::Rng::with_seed(7);
    for v in vectors() {
        let name = v["name"].as_str().unwrap();
        let content = v["content"].as_str().unwrap();
        let p = pipeline(&v["parse_tags"], json!({}));
        let tools = tools_raw(&v);
        let w = whole(&p, tools.as_deref(), content);
        let bounds = char_bounds(content);
        for _ in 0..50 {
            let cuts: Vec<usize> = (0..rng.usize(1..6))
                .map(|_| bounds[rng.usize(..bounds.len())])
                .collect();
            let parts = split_at_cuts(content, cuts);
            let s = streamed(&p, tools.as_deref(), &parts);
            assert!(same(&w, &s), "{name}: {parts:?}: {s:?} vs {w:?}");
        }
    }
}

#[test]
fn buffer_limit_releases_long_blocks_the_same_way_in_both_forms() {
    let p = pipeline(
        &json!({"tool_format": "hermes", "tool_buffer_limit": 20}),
        json!({}),
    );
    let long = format!(
        "a<tool_call>{{\"name\": \"f\", \"arguments\": {{\"x\": \"{}\"}}}}</tool_call>b",
        "y".repeat(40)
    );
    let w = whole(&p, None, &long);
    assert!(w.tools.is_empty());
    assert_eq!(w.content, long);
    let short = "<tool_call>{\"name\":\"f\"}</tool_call>";
    let w2 = whole(&p, None, short);
    assert_eq!(w2.tools.len(), 1);
    for text in [long.as_str(), short] {
        let w = whole(&p, None, text);
        for s in every_split(&p, None, text) {
            assert!(same(&w, &s), "{s:?} vs {w:?}");
        }
    }
}

#[test]
fn an_unclosed_tool_block_with_the_default_limit_does_not_hold_the_stream() {
    // `tool_buffer_limit: 0` (the default) is a bound too (1 MiB): an
    // unclosed block is released as content while the stream goes on,
    // not held until its end.
    let p = pipeline(&json!({"tool_format": "hermes"}), json!({}));
    let mut s = p.session(None, false);
    let mut frames = Vec::new();
    s.on_frame(
        &chunk(
            json!({"role": "assistant", "content": "a<tool_call>{"}),
            None,
        ),
        &mut frames,
    );
    let piece = "y".repeat(64 * 1024);
    for _ in 0..20 {
        s.on_frame(&chunk(json!({"content": piece}), None), &mut frames);
    }
    // Still streaming (no end yet), and the text already came out.
    let mut content = String::new();
    for f in &frames {
        let text = std::str::from_utf8(f).unwrap();
        let v: Value = serde_json::from_str(text["data: ".len()..].trim()).unwrap();
        let d = &v["choices"][0]["delta"];
        assert!(d.get("tool_calls").is_none(), "{d}");
        if let Some(t) = d["content"].as_str() {
            content.push_str(t);
        }
    }
    assert!(
        content.starts_with("a<tool_call>{yyy"),
        "{}",
        &content[..content.len().min(40)]
    );
    assert!(content.len() > 1024 * 1024, "{}", content.len());
    // A block within the bound is still a tool call.
    let short = "<tool_call>{\"name\":\"f\"}</tool_call>";
    assert_eq!(whole(&p, None, short).tools.len(), 1);
}

#[test]
fn swap_reasoning_to_content_with_affixes() {
    let p = pipeline(
        &json!({}),
        json!({"response": ["parse_tags", "swap_reasoning_content"],
               "swap_reasoning_content": {"mode": "reasoning_to_content",
                 "think_open": {"prefix": "", "suffix": "\n"},
                 "think_close": {"prefix": "\n", "suffix": ""}}}),
    );
    let text = "<think>plan</think>answer";
    let w = whole(&p, None, text);
    assert_eq!(w.content, "<think>\nplan\n</think>\nanswer");
    assert_eq!(w.reasoning, "");
    for s in every_split(&p, None, text) {
        assert!(same(&w, &s), "{s:?}");
    }
}

#[test]
fn swap_reasoning_field_into_content_in_a_stream() {
    let p = pipeline(
        &json!({}),
        json!({"response": ["swap_reasoning_content"],
               "swap_reasoning_content": {"include_newline": false}}),
    );
    let mut s = p.session(None, false);
    let mut frames = Vec::new();
    s.on_frame(
        &chunk(
            json!({"role": "assistant", "reasoning_content": "R1"}),
            None,
        ),
        &mut frames,
    );
    s.on_frame(
        &chunk(json!({"reasoning_content": "R2"}), None),
        &mut frames,
    );
    s.on_frame(&chunk(json!({"content": "A"}), None), &mut frames);
    s.on_frame(&chunk(json!({}), Some("stop")), &mut frames);
    s.on_frame(&Bytes::from_static(b"data: [DONE]\n\n"), &mut frames);
    let a = fold(&frames);
    assert_eq!(a.content, "<think>R1R2</think>A");
    assert_eq!(a.reasoning, "");
}

#[test]
fn swap_content_to_reasoning_and_auto() {
    for mode in ["content_to_reasoning", "auto"] {
        let p = pipeline(
            &json!({}),
            json!({"response": ["swap_reasoning_content"],
                   "swap_reasoning_content": {"mode": mode}}),
        );
        let w = whole(&p, None, "<think>R</think>\nA <think>not moved</think>");
        assert_eq!(w.reasoning, "R", "{mode}");
        assert_eq!(w.content, "A <think>not moved</think>", "{mode}");
        let w = whole(&p, None, "plain");
        assert_eq!((w.reasoning.as_str(), w.content.as_str()), ("", "plain"));
    }
    // auto with a reasoning field: folded into content.
    let p = pipeline(
        &json!({}),
        json!({"response": ["swap_reasoning_content"], "swap_reasoning_content": {"mode": "auto"}}),
    );
    let mut s = p.session(None, false);
    let body = json!({"choices": [{"index": 0, "message": {"role": "assistant", "reasoning_content": "R", "content": "A"}, "finish_reason": "stop"}]});
    let out: Value =
        serde_json::from_slice(&s.apply_json(body.to_string().as_bytes()).unwrap()).unwrap();
    assert_eq!(
        out["choices"][0]["message"]["content"],
        "<think>R</think>\nA"
    );
}

#[test]
fn normalize_reasoning_writes_the_configured_field() {
    let p = pipeline(
        &json!({}),
        json!({"response": ["normalize_reasoning"], "normalize_reasoning": {"fields": ["reasoning"]}}),
    );
    let mut s = p.session(None, false);
    let body = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "A",
        "reasoning_details": [{"type": "reasoning.text", "text": "R1"}, {"type": "reasoning.text", "text": "R2"}]}, "finish_reason": "stop"}]});
    let out: Value =
        serde_json::from_slice(&s.apply_json(body.to_string().as_bytes()).unwrap()).unwrap();
    let m = &out["choices"][0]["message"];
    assert_eq!(m["reasoning"], "R1R2");
    assert!(m.get("reasoning_content").is_none());
    assert_eq!(m["content"], "A");
    // Both names in: one reasoning out, not doubled.
    let body = json!({"choices": [{"index": 0, "message": {"content": "A", "reasoning_content": "R", "reasoning": "R"}}]});
    let out: Value =
        serde_json::from_slice(&s.apply_json(body.to_string().as_bytes()).unwrap()).unwrap();
    assert_eq!(out["choices"][0]["message"]["reasoning"], "R");
}

#[test]
fn untouched_stream_frames_pass_byte_for_byte() {
    let p = pipeline(&json!({}), json!({}));
    let mut s = p.session(None, false);
    let mut frames = Vec::new();
    let f = chunk(json!({"content": "hello world"}), None);
    s.on_frame(&f, &mut frames);
    assert_eq!(frames, vec![f]);
}

#[test]
fn parse_failures_stay_content_and_are_reported() {
    let p = pipeline(&json!({"tool_format": "hermes"}), json!({}));
    let mut s = p.session(None, true);
    let body = json!({"choices": [{"index": 0, "message": {"content": "x<tool_call>{bad}</tool_call>"}, "finish_reason": "stop"}]});
    let out = s.apply_json(body.to_string().as_bytes());
    let v: Value =
        serde_json::from_slice(out.as_deref().unwrap_or(body.to_string().as_bytes())).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "x<tool_call>{bad}</tool_call>"
    );
    assert!(!s.errors().is_empty());
    let parsed = s.parsed().unwrap();
    assert!(
        parsed["errors"][0].as_str().unwrap().contains("not parsed"),
        "{parsed}"
    );
}

/// Text built from pieces that look like markup, so the property test
/// reaches the interesting states.
fn markupish() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "<think>",
        "</think>",
        "<tool_call>",
        "</tool_call>",
        "<",
        "</",
        "<t",
        "think>",
        "{\"name\": \"f\", \"arguments\": {\"a\": 1}}",
        "{bad",
        " ",
        "\n",
        "hello",
        "é",
        "世界",
        "<minimax:tool_call>",
        "<invoke name=\"g\">",
        "<parameter name=\"k\">v</parameter>",
        "</invoke>",
        "</minimax:tool_call>",
        "<|tool_calls_section_begin|>",
        "<|tool_call_begin|>functions.h:0",
        "<|tool_call_argument_begin|>{\"q\":2}",
        "<|tool_call_end|>",
        "<|tool_calls_section_end|>",
        "<function=f>",
        "<parameter=a>",
        "1",
        "</parameter>",
        "</function>",
        "<arg_key>",
        "</arg_key>",
    ]);
    prop::collection::vec(atoms, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300), ..ProptestConfig::default() })]
    #[test]
    fn whole_and_stream_agree(text in markupish(), cuts in prop::collection::vec(0usize..400, 0..6), reasoning_first in any::<bool>(), limit in prop::sample::select(vec![0usize, 16, 64])) {
        let p = pipeline(&json!({"starts_in_reasoning": reasoning_first, "tool_buffer_limit": limit}), json!({}));
        let w = whole(&p, None, &text);
        let bounds = char_bounds(&text);
        let parts = split_at_cuts(&text, cuts.iter().map(|c| bounds[c % bounds.len()]).collect());
        let s = streamed(&p, None, &parts);
        prop_assert!(same(&w, &s), "{:?}: {:?} vs {:?}", parts, s, w);
        // Nothing is lost: without tool calls every non-space character of
        // the input is in the output (markers of think blocks aside).
        if w.tools.is_empty() && !text.contains("think>") {
            let strip = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
            prop_assert_eq!(strip(&format!("{}{}", w.reasoning, w.content)), strip(&text));
        }
    }
}

#[test]
fn reasoning_frames_keep_their_other_fields() {
    let p = pipeline(&json!({}), json!({}));
    let mut s = p.session(None, false);
    let mut frames = Vec::new();
    let f = |c: &str| {
        Bytes::from(format!(
            "data: {}\n\n",
            json!({"id": "x", "obfuscation": "abc", "choices": [{"index": 0, "delta": {"content": c}, "logprobs": null, "finish_reason": null}]})
        ))
    };
    s.on_frame(&f("<think>"), &mut frames);
    frames.clear();
    s.on_frame(&f("plan"), &mut frames);
    assert_eq!(
        std::str::from_utf8(&frames[0]).unwrap(),
        "data: {\"id\":\"x\",\"obfuscation\":\"abc\",\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"plan\",\"reasoning\":\"plan\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
    );
}

#[test]
fn null_reasoning_fields_in_deltas_are_not_written_twice() {
    // DeepSeek-style deltas carry `"reasoning_content": null` beside the text.
    let p = pipeline(&json!({}), json!({}));
    let mut s = p.session(None, false);
    let mut frames = Vec::new();
    let f = |c: &str| {
        Bytes::from(format!(
            "data: {}\n\n",
            json!({"id": "x", "choices": [{"index": 0, "delta": {"content": c, "reasoning_content": null}, "finish_reason": null}]})
        ))
    };
    s.on_frame(&f("<think>"), &mut frames);
    s.on_frame(&f("plan"), &mut frames);
    s.on_frame(&f("</think>ok"), &mut frames);
    for fr in &frames {
        let text = std::str::from_utf8(fr).unwrap();
        assert!(text.matches("\"reasoning_content\"").count() <= 1, "{text}");
    }
    s.on_frame(&chunk(json!({}), Some("stop")), &mut frames);
    s.on_frame(&Bytes::from_static(b"data: [DONE]\n\n"), &mut frames);
    let a = fold(&frames);
    assert_eq!((a.reasoning.as_str(), a.content.as_str()), ("plan", "ok"));
}
