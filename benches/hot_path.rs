//! Micro-benchmarks of the proxy's per-request hot path:
//!
//! - `sse_decoder`: cutting a realistic 200-frame chat stream fed in 1 KiB
//!   chunks into frames (what every streamed answer goes through);
//! - `request_body`: parsing a ~10 KB chat request and producing the body for
//!   a backend, both when nothing is rewritten (the original bytes go out)
//!   and when `model` is replaced and the reasoning switch added.
//!
//! `cargo bench --bench hot_path`; `cargo test --all-targets` runs each once.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use yallmp::config::{ApiType, Backend, Secret};
use yallmp::pipeline::request::RequestBody;
use yallmp::sse::Decoder;

const WORDS: &[&str] = &[
    " The",
    " quick",
    " brown",
    " fox",
    " jumps",
    " over",
    " the",
    " lazy",
    " dog",
    ".",
    " Résumé",
    " naïve",
    " \"quoted\"",
    "\\n",
    " 🙂",
    " 1234",
    ",",
    " and",
    " then",
    " some",
];

/// 200 `chat.completion.chunk` frames as an OpenAI-compatible upstream sends
/// them: a role chunk, content chunks, a finish chunk, a usage chunk, `[DONE]`.
fn chat_stream() -> Vec<u8> {
    let chunk = |delta: serde_json::Value, finish: Option<&str>, usage: serde_json::Value| {
        json!({
            "id": "chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz012",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000u64,
            "model": "gpt-4o-mini-2024-07-18",
            "service_tier": "default",
            "system_fingerprint": "fp_0123456789",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
            "usage": usage,
        })
    };
    let mut frames = Vec::new();
    frames.push(chunk(
        json!({"role": "assistant", "content": "", "refusal": null}),
        None,
        json!(null),
    ));
    for i in 0..196 {
        frames.push(chunk(
            json!({"content": WORDS[i % WORDS.len()]}),
            None,
            json!(null),
        ));
    }
    frames.push(chunk(json!({}), Some("stop"), json!(null)));
    let mut usage = chunk(json!({}), None, json!(null));
    usage["choices"] = json!([]);
    usage["usage"] = json!({"prompt_tokens": 1200, "completion_tokens": 196, "total_tokens": 1396});
    frames.push(usage);

    let mut out = Vec::new();
    for f in &frames {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(f.to_string().as_bytes());
        out.extend_from_slice(b"\n\n");
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    out
}

fn bench_sse_decoder(c: &mut Criterion) {
    let stream = chat_stream();
    let mut group = c.benchmark_group("sse_decoder");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("chat_200_frames_1KiB_chunks", |b| {
        b.iter(|| {
            let mut decoder = Decoder::new();
            let mut frames = 0usize;
            for chunk in black_box(&stream[..]).chunks(1024) {
                decoder.push(chunk);
                while let Some(frame) = decoder.next_frame() {
                    black_box(&frame);
                    frames += 1;
                }
            }
            assert_eq!(frames, 200);
            assert!(decoder.remainder().is_empty());
            frames
        })
    });
    group.finish();
}

/// A ~10 KB chat request: a system prompt, a few turns, tools, options.
fn chat_request() -> Bytes {
    let para = "Explain, step by step, how an HTTP proxy relays a streamed answer \
                without buffering it; mention back-pressure, cancellation and \"SSE\" \
                framing (\\n\\n terminators). ";
    let mut messages = vec![json!({
        "role": "system",
        "content": format!("You are a careful assistant. {}", para.repeat(11)),
    })];
    for i in 0..10 {
        messages
            .push(json!({"role": "user", "content": format!("Question {i}: {}", para.repeat(2))}));
        messages.push(
            json!({"role": "assistant", "content": format!("Answer {i}: {}", para.repeat(2))}),
        );
    }
    messages.push(json!({"role": "user", "content": "Now summarise it in one line. 🙂"}));
    let body = json!({
        "model": "bench",
        "messages": messages,
        "temperature": 0.2,
        "top_p": 1.0,
        "max_tokens": 512,
        "stream": true,
        "stream_options": {"include_usage": true},
        "tools": [{
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
                    "required": ["city"]
                }
            }
        }],
        "tool_choice": "auto",
        "user": "bench-user-0001",
        "metadata": {"trace": "abc123", "n": 1e-3},
    });
    let raw = body.to_string();
    assert!(
        (9 * 1024..=11 * 1024).contains(&raw.len()),
        "bench request is {} bytes, expected ~10 KB",
        raw.len()
    );
    Bytes::from(raw)
}

fn backend(upstream_model: Option<&str>, reasoning: bool) -> Backend {
    Backend {
        name: "bench#1".into(),
        model_name: "bench".into(),
        api_type: ApiType::Openai,
        api_base: "http://127.0.0.1:9/v1".into(),
        api_key: Some(Secret::new("sk-bench")),
        upstream_model: upstream_model.map(String::from),
        request_timeout: Duration::from_secs(30),
        supports_reasoning: reasoning,
        reasoning: None,
        supports_responses: true,
        responses_websocket: false,
        pricing: None,
        parameters: Vec::new().into(),
        urls: None,
        routing: Default::default(),
        thinking: None,
        azure: None,
        bedrock: None,
        vertex: None,
        strip_prefix: false,
        organization: None,
        stream_timeout: None,
        max_retries: None,
        limits: Default::default(),
        drop: Default::default(),
    }
}

fn bench_request_body(c: &mut Criterion) {
    let raw = chat_request();
    let passthrough = backend(None, false);
    let rewrite = backend(Some("vendor/model-large"), true);
    // Sanity: the rewrite path really rewrites, the other does not.
    {
        let parsed = RequestBody::parse(&raw).expect("valid request");
        assert_eq!(parsed.model().unwrap(), "bench");
        assert!(parsed.stream());
        assert_eq!(parsed.for_backend(&raw, &passthrough), raw);
        assert_ne!(parsed.for_backend(&raw, &rewrite), raw);
    }

    let mut group = c.benchmark_group("request_body");
    group.throughput(Throughput::Bytes(raw.len() as u64));
    group.bench_function("parse_10KB", |b| {
        b.iter(|| {
            let parsed = RequestBody::parse(black_box(&raw)).unwrap();
            black_box(parsed.model().unwrap())
        })
    });
    group.bench_function("parse_for_backend_passthrough_10KB", |b| {
        b.iter(|| {
            let parsed = RequestBody::parse(black_box(&raw)).unwrap();
            let model = parsed.model().unwrap();
            let stream = parsed.stream();
            black_box((model, stream, parsed.for_backend(&raw, &passthrough)))
        })
    });
    group.bench_function("parse_for_backend_rewrite_10KB", |b| {
        b.iter(|| {
            let parsed = RequestBody::parse(black_box(&raw)).unwrap();
            let model = parsed.model().unwrap();
            let stream = parsed.stream();
            black_box((model, stream, parsed.for_backend(&raw, &rewrite)))
        })
    });
    group.finish();
}

criterion_group!(benches, bench_sse_decoder, bench_request_body);
criterion_main!(benches);
