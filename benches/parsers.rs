//! The streaming response parser: MB/s of SSE input (upstream frames)
//! turned into client frames, on one core. Three shapes of stream: plain
//! text (the common case: nothing to parse), a reasoning model writing
//! `<think>` in its content, and text ending in a Hermes tool call.
//!
//!   cargo bench --bench parsers

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use yallmp::config::parsers::ParsersSettings;
use yallmp::pipeline::response::Pipeline;

/// Upstream frames carrying `text` in deltas of about 4 characters (a
/// token each), then the finish chunk and `[DONE]`.
fn frames(text: &str) -> Vec<Bytes> {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<Bytes> = chars
        .chunks(4)
        .map(|c| {
            let s: String = c.iter().collect();
            let v = json!({"id": "chatcmpl-8x7AbCdEfGhIjKlMnOpQrStUvWxYz", "object": "chat.completion.chunk",
                "created": 1_763_769_600, "model": "qwen3-32b", "system_fingerprint": "fp_1",
                "choices": [{"index": 0, "delta": {"content": s}, "logprobs": null, "finish_reason": null}]});
            Bytes::from(format!("data: {v}\n\n"))
        })
        .collect();
    out.push(Bytes::from(format!(
        "data: {}\n\n",
        json!({"id": "chatcmpl-8x7", "object": "chat.completion.chunk", "created": 1, "model": "qwen3-32b",
               "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    )));
    out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    out
}

fn bench_stream_parser(c: &mut Criterion) {
    let settings: ParsersSettings =
        serde_json::from_value(json!({"enabled": true, "response": ["parse_tags"]})).unwrap();
    let pipeline = Pipeline::build(&settings).unwrap();
    let prose =
        "The quick brown fox jumps over the lazy dog; a sentence of ordinary model output. "
            .repeat(40);
    let cases = [
        ("plain", prose.clone()),
        ("think", format!("<think>{prose}</think>{prose}")),
        (
            "tool_call",
            format!(
                "{prose}<tool_call>\n{{\"name\": \"search\", \"arguments\": {{\"query\": \"{}\"}}}}\n</tool_call>",
                "rust async ".repeat(30)
            ),
        ),
    ];
    let mut group = c.benchmark_group("parse_tags_stream");
    for (name, text) in cases {
        let input = frames(&text);
        let bytes: usize = input.iter().map(Bytes::len).sum();
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(name, |b| {
            let mut out = Vec::with_capacity(input.len() * 2);
            b.iter(|| {
                let mut s = pipeline.session(None, false);
                out.clear();
                for f in &input {
                    s.on_frame(f, &mut out);
                }
                std::hint::black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_stream_parser);
criterion_main!(benches);
