//! The response parsers (`parse_tags` in every tool format, with
//! `swap_reasoning_content` and `normalize_reasoning` after it), a whole
//! JSON answer against the same text streamed in content deltas.
//!
//! Input: byte 0 = tool format, byte 1 and 2 = settings (see `settings`),
//! bytes 3..5 = the seed of the split points, the rest = the model's text
//! (UTF-8, lossy). Properties (docs/parsers.md: "parsing it whole and
//! parsing it as a stream split at any points gives the same reasoning,
//! content and tool calls"):
//! - no panic; the stream's frames are well formed chat chunks, tool call
//!   indexes count from 0, nothing follows `[DONE]`;
//! - the stream's reasoning, content, tool calls (name, arguments) and
//!   finish reason equal the whole answer's, for any split;
//! - with `parse_tags` alone and no tool call read, no non-space character
//!   is lost (think markers aside).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use yallmp::config::parsers::ParsersSettings;
use yallmp::pipeline::response::Pipeline;

pub const FORMATS: [&str; 9] = [
    "auto",
    "hermes",
    "qwen3_coder",
    "glm",
    "kimi_k2",
    "minimax_m2",
    "deepseek_v31",
    "xml",
    "json",
];

const THINK_TAGS: [&str; 4] = ["think", "thinking", "seed:think", "reasoning"];
const LIMITS: [usize; 4] = [0, 16, 64, 1024];

/// Tools with typed parameters, so arguments are converted by type.
const TOOLS: &str = r#"[
 {"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{
   "a":{"type":"integer"},"b":{"type":"boolean"},"c":{"type":"object"},"d":{"type":"array"},
   "n":{"type":"number"},"s":{"type":"string"},"k":{"type":["integer","null"]}}}}},
 {"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{
   "city":{"type":"string"},"days":{"type":"integer"}}}}}
]"#;

/// The parsers block the first three bytes describe, and the reasoning
/// fields the client reads, and whether `parse_tags` runs alone.
pub struct Setup {
    pub settings: Value,
    pub fields: Vec<String>,
    pub tags_only: bool,
    pub think_tag: &'static str,
    pub parse_thinking: bool,
    pub tools: bool,
}

/// byte 0: format; byte 1: bit 0 no thinking, bit 1 starts_in_reasoning,
/// bit 2 no tool calls, bit 3 JSON arguments, bits 4-5 buffer limit, bit 6
/// typed tools, bit 7 custom tool markers; byte 2: bits 0-1 think tag, bits
/// 2-4 the modules after parse_tags.
pub fn settings(b0: u8, b1: u8, b2: u8) -> Setup {
    let format = FORMATS[usize::from(b0) % FORMATS.len()];
    let parse_thinking = b1 & 1 == 0;
    let think_tag = THINK_TAGS[usize::from(b2 & 3)];
    let mut parse_tags = json!({
        "parse_thinking": parse_thinking,
        "think_tag": think_tag,
        "starts_in_reasoning": b1 & 2 != 0,
        "parse_tool_calls": b1 & 4 == 0,
        "tool_format": format,
        "tool_arg_format": if b1 & 8 != 0 { "json" } else { "xml" },
        "tool_buffer_limit": LIMITS[usize::from((b1 >> 4) & 3)],
    });
    if b1 & 128 != 0 {
        parse_tags["tool_open"] = json!("[TOOL_CALLS]");
        parse_tags["tool_close"] = json!("[/TOOL_CALLS]");
    }
    let (modules, swap, fields): (Value, Value, Option<Vec<&str>>) = match (b2 >> 2) & 7 {
        1 => (
            json!(["parse_tags", "swap_reasoning_content"]),
            json!({"mode": "reasoning_to_content"}),
            None,
        ),
        2 => (
            json!(["parse_tags", "swap_reasoning_content"]),
            json!({"mode": "reasoning_to_content", "include_newline": false,
                   "think_open": {"prefix": "", "suffix": "\n"}, "think_close": {"prefix": "\n", "suffix": ""}}),
            None,
        ),
        3 => (
            json!(["parse_tags", "swap_reasoning_content"]),
            json!({"mode": "content_to_reasoning"}),
            None,
        ),
        4 => (
            json!(["swap_reasoning_content", "parse_tags"]),
            json!({"mode": "auto", "think_tag": think_tag}),
            None,
        ),
        5 => (
            json!(["parse_tags", "normalize_reasoning"]),
            json!({}),
            Some(vec!["reasoning"]),
        ),
        6 => (
            json!(["normalize_reasoning", "parse_tags"]),
            json!({}),
            Some(vec!["reasoning_content", "thinking"]),
        ),
        _ => (json!(["parse_tags"]), json!({}), None),
    };
    let mut settings = json!({
        "enabled": true,
        "response": modules,
        "parse_tags": parse_tags,
        "swap_reasoning_content": swap,
    });
    if let Some(f) = &fields {
        settings["normalize_reasoning"] = json!({ "fields": f });
    }
    Setup {
        tags_only: modules == json!(["parse_tags"]),
        settings,
        fields: fields
            .unwrap_or(vec!["reasoning_content", "reasoning"])
            .into_iter()
            .map(String::from)
            .collect(),
        think_tag,
        parse_thinking,
        tools: b1 & 64 != 0,
    }
}

/// What a client ended up with.
#[derive(Debug, Default, PartialEq)]
pub struct Answer {
    pub reasoning: String,
    pub content: String,
    /// (name, arguments)
    pub tools: Vec<(String, String)>,
    pub finish: Option<String>,
}

pub fn run(data: &[u8]) {
    if data.len() < 5 {
        return;
    }
    let setup = settings(data[0], data[1], data[2]);
    let seed = u64::from(u16::from_le_bytes([data[3], data[4]]));
    let text = String::from_utf8_lossy(&data[5..]);
    check(&setup, seed, &text);
}

/// Whole against streamed for `text` (the split points from `seed`).
pub fn check(setup: &Setup, seed: u64, text: &str) {
    let s: ParsersSettings = serde_json::from_value(setup.settings.clone())
        .unwrap_or_else(|e| panic!("settings {}: {e}", setup.settings));
    let Some(p) = Pipeline::build(&s) else {
        panic!("parsers on: a pipeline");
    };
    let raw_tools = setup
        .tools
        .then(|| RawValue::from_string(TOOLS.to_string()).unwrap_or_else(|e| panic!("TOOLS: {e}")));
    let tools = raw_tools.as_deref();

    let w = whole(&p, tools, text, &setup.fields);
    let parts = split(text, seed);
    let s = streamed(&p, tools, &parts, &setup.fields);
    assert_eq!(w, s, "whole vs streamed in {parts:?}");
    if parts.len() > 1 {
        // One delta per character too, for short texts.
        if text.len() <= 300 {
            let chars: Vec<String> = text.chars().map(String::from).collect();
            let parts: Vec<&str> = chars.iter().map(String::as_str).collect();
            assert_eq!(w, streamed(&p, tools, &parts, &setup.fields), "per char");
        }
    }
    if setup.tags_only && w.tools.is_empty() {
        let tag = format!("{}>", setup.think_tag);
        if !setup.parse_thinking || !text.contains(&tag) {
            let strip = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
            assert_eq!(
                strip(&format!("{}{}", w.reasoning, w.content)),
                strip(text),
                "nothing lost"
            );
        }
    }
}

/// Up to 7 cut points at character boundaries, from `seed`.
fn split(text: &str, seed: u64) -> Vec<&str> {
    let bounds: Vec<usize> = (0..=text.len())
        .filter(|&i| text.is_char_boundary(i))
        .collect();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut cuts: Vec<usize> = (0..rng.usize(0..8))
        .map(|_| bounds[rng.usize(..bounds.len())])
        .collect();
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

fn reasoning_of(m: &Value, fields: &[String]) -> String {
    let first = &m[fields[0].as_str()];
    for f in &fields[1..] {
        assert_eq!(&m[f.as_str()], first, "every reasoning field the same");
    }
    first.as_str().unwrap_or("").to_string()
}

fn whole(p: &Arc<Pipeline>, tools: Option<&RawValue>, text: &str, fields: &[String]) -> Answer {
    let body = json!({
        "id": "x", "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    })
    .to_string();
    let mut s = p.session(tools, true);
    let out = s.apply_json(body.as_bytes());
    let v: Value = serde_json::from_slice(out.as_deref().unwrap_or(body.as_bytes()))
        .unwrap_or_else(|e| panic!("the answer stays JSON: {e}"));
    let _ = s.parsed();
    let _ = s.errors();
    let m = &v["choices"][0]["message"];
    let mut a = Answer {
        reasoning: reasoning_of(m, fields),
        content: m["content"].as_str().unwrap_or("").to_string(),
        finish: v["choices"][0]["finish_reason"].as_str().map(String::from),
        ..Answer::default()
    };
    for t in m["tool_calls"].as_array().into_iter().flatten() {
        assert_eq!(t["type"], "function");
        assert!(t["id"].is_string(), "a tool call has an id: {t}");
        a.tools.push((
            t["function"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            t["function"]["arguments"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ));
    }
    a
}

fn chunk(delta: Value, finish: Option<&str>) -> Bytes {
    let c = json!({"id": "x", "object": "chat.completion.chunk", "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    Bytes::from(format!("data: {c}\n\n"))
}

fn streamed(
    p: &Arc<Pipeline>,
    tools: Option<&RawValue>,
    parts: &[&str],
    fields: &[String],
) -> Answer {
    let mut s = p.session(tools, true);
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
    let _ = s.parsed();
    fold(&frames, fields)
}

/// The client's frames folded back into an answer, the way an OpenAI
/// client does; panics on a malformed frame.
fn fold(frames: &[Bytes], fields: &[String]) -> Answer {
    let mut a = Answer::default();
    let mut done = false;
    for f in frames {
        let text = std::str::from_utf8(f).unwrap_or_else(|e| panic!("frame not UTF-8: {e}"));
        assert!(
            text.starts_with("data: ") && text.ends_with("\n\n"),
            "{text:?}"
        );
        let data = text["data: ".len()..].trim();
        assert!(!done, "nothing after [DONE]: {text:?}");
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let v: Value =
            serde_json::from_str(data).unwrap_or_else(|e| panic!("chunk not JSON {data:?}: {e}"));
        let c = &v["choices"][0];
        let d = &c["delta"];
        a.reasoning.push_str(&reasoning_of(d, fields));
        if let Some(t) = d["content"].as_str() {
            a.content.push_str(t);
        }
        for t in d["tool_calls"].as_array().into_iter().flatten() {
            let Some(i) = t["index"].as_u64() else {
                panic!("a tool call delta without index: {t}");
            };
            let i = i as usize;
            if let Some(name) = t["function"]["name"].as_str() {
                assert_eq!(i, a.tools.len(), "tool call indexes count from 0");
                assert_eq!(t["type"], "function");
                assert!(t["id"].is_string(), "a new tool call has an id: {t}");
                a.tools.push((name.to_string(), String::new()));
            }
            assert!(i < a.tools.len(), "arguments of an unknown call: {t}");
            if let Some(frag) = t["function"]["arguments"].as_str() {
                a.tools[i].1.push_str(frag);
            }
        }
        if let Some(f) = c["finish_reason"].as_str() {
            a.finish = Some(f.to_string());
        }
    }
    assert!(done, "the stream ends with [DONE]");
    a
}
