//! A fast OpenAI-compatible mock upstream for benchmarks (`scripts/bench.sh`).
//!
//! Every answer is built once at start-up; a request only costs reading its
//! body, a cheap byte search for `"stream": true`, and cloning `Bytes`.
//!
//! ```text
//! cargo run --release --example mock_upstream -- --port 0 --chunks 20
//! ```
//!
//! Routes (also without the `/v1` prefix):
//! - `POST /v1/chat/completions`: a `chat.completion`, or with `"stream": true`
//!   an event stream of `--chunks` `chat.completion.chunk` frames, a usage
//!   chunk and `data: [DONE]`;
//! - `POST /v1/embeddings`: a small embedding list;
//! - `POST /fail/v1/chat/completions`: `503` with an OpenAI-shaped error, at
//!   once (a backend that is down, for failover in `scripts/soak.sh`);
//! - `GET /healthz`: `ok`.
//!
//! Request bodies up to `--max-body-mb` (default 64) are read, so the bench's
//! 1 MB prompts are accepted.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::response::Response;
use axum::routing::{get, post};
use clap::Parser;
use http::{HeaderValue, header};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(about = "Fast OpenAI-compatible mock upstream for benchmarks")]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Fixed delay before answering, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Content chunks in a streamed answer.
    #[arg(long, default_value_t = 20)]
    chunks: usize,
    /// Gap between streamed chunks, in milliseconds.
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
    /// Stream a reasoning model's raw markup: the first half of the chunks
    /// inside `<think>...</think>` in `content` (for the parsers' bench).
    #[arg(long)]
    think: bool,
    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Largest request body read, in MiB.
    #[arg(long, default_value_t = 64)]
    max_body_mb: usize,
}

/// The pre-built answers.
struct Mock {
    latency: Duration,
    chunk_delay: Duration,
    completion: Bytes,
    /// Every frame of a streamed answer, `[DONE]` included.
    frames: Arc<[Bytes]>,
    embeddings: Bytes,
}

const MODEL: &str = "bench";
const ID: &str = "chatcmpl-bench0123456789abcdefghijklmn";
const CREATED: u64 = 1_700_000_000;
const FINGERPRINT: &str = "fp_bench0001";
const PROMPT_TOKENS: usize = 24;
const WORDS: &[&str] = &[
    "Hello",
    " there",
    "!",
    " This",
    " is",
    " a",
    " benchmark",
    " answer",
    " from",
    " the",
    " mock",
    " upstream",
    ",",
    " streamed",
    " one",
    " token",
    " at",
    " a",
    " time",
    ".",
];

static JSON: HeaderValue = HeaderValue::from_static("application/json");
static EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");
static NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");

impl Mock {
    fn new(args: &Args) -> Mock {
        let n = args.chunks;
        let think = args.think;
        let word = |i: usize| -> String {
            let w = WORDS[i % WORDS.len()];
            match i {
                0 if think => format!("<think>{w}"),
                i if think && i == n / 2 => format!("</think>{w}"),
                _ => w.to_string(),
            }
        };
        let content: String = (0..n).map(word).collect();
        let usage = json!({
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": n,
            "total_tokens": PROMPT_TOKENS + n,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        });
        let completion = json!({
            "id": ID,
            "object": "chat.completion",
            "created": CREATED,
            "model": MODEL,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": null, "annotations": []},
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT
        });

        let chunk = |delta: serde_json::Value, finish: Option<&str>| {
            json!({
                "id": ID,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": MODEL,
                "service_tier": "default",
                "system_fingerprint": FINGERPRINT,
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
                "usage": null
            })
        };
        let mut frames: Vec<Bytes> = (0..n)
            .map(|i| {
                let delta = if i == 0 {
                    json!({"role": "assistant", "content": word(i), "refusal": null})
                } else {
                    json!({"content": word(i)})
                };
                let finish = (i + 1 == n).then_some("stop");
                sse(&chunk(delta, finish))
            })
            .collect();
        // The usage chunk: no choices, the usage filled in.
        let mut last = chunk(json!({}), None);
        last["choices"] = json!([]);
        last["usage"] = usage.clone();
        frames.push(sse(&last));
        frames.push(Bytes::from_static(b"data: [DONE]\n\n"));

        let vector = |seed: usize| -> Vec<f64> {
            (0..16)
                .map(|i| (((seed * 31 + i * 17) % 200) as f64 - 100.0) / 1000.0)
                .collect()
        };
        let embeddings = json!({
            "object": "list",
            "data": [
                {"object": "embedding", "index": 0, "embedding": vector(1)},
                {"object": "embedding", "index": 1, "embedding": vector(2)}
            ],
            "model": MODEL,
            "usage": {"prompt_tokens": 8, "total_tokens": 8}
        });

        Mock {
            latency: Duration::from_millis(args.latency_ms),
            chunk_delay: Duration::from_millis(args.chunk_delay_ms),
            completion: Bytes::from(completion.to_string()),
            frames: frames.into(),
            embeddings: Bytes::from(embeddings.to_string()),
        }
    }
}

fn sse(v: &serde_json::Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// `"stream"` followed by `:` and `true` (whitespace allowed): a byte search,
/// not a parse. A `"stream"` inside a string value is followed by `"`, `,`
/// or `}`, never by `:`, so it does not match.
fn wants_stream(body: &[u8]) -> bool {
    let skip_ws = |s: &[u8]| {
        s.iter()
            .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .count()
    };
    let mut rest = body;
    while let Some(at) = memchr::memmem::find(rest, b"\"stream\"") {
        rest = &rest[at + 8..];
        let after = &rest[skip_ws(rest)..];
        if let Some(value) = after.strip_prefix(b":") {
            return value[skip_ws(value)..].starts_with(b"true");
        }
    }
    false
}

fn with_type(body: Body, content_type: &HeaderValue) -> Response {
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, content_type.clone());
    r
}

async fn chat(State(mock): State<Arc<Mock>>, body: Bytes) -> Response {
    if !mock.latency.is_zero() {
        tokio::time::sleep(mock.latency).await;
    }
    if !wants_stream(&body) {
        return with_type(Body::from(mock.completion.clone()), &JSON);
    }
    let frames = mock.frames.clone();
    let body = if mock.chunk_delay.is_zero() {
        let n = frames.len();
        Body::from_stream(futures::stream::iter(
            (0..n).map(move |i| Ok::<_, Infallible>(frames[i].clone())),
        ))
    } else {
        let gap = mock.chunk_delay;
        Body::from_stream(futures::stream::unfold(0usize, move |i| {
            let frames = frames.clone();
            async move {
                let frame = frames.get(i)?.clone();
                if i > 0 {
                    tokio::time::sleep(gap).await;
                }
                Some((Ok::<_, Infallible>(frame), i + 1))
            }
        }))
    };
    let mut r = with_type(body, &EVENT_STREAM);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, NO_CACHE.clone());
    r
}

async fn embeddings(State(mock): State<Arc<Mock>>, _body: Bytes) -> Response {
    if !mock.latency.is_zero() {
        tokio::time::sleep(mock.latency).await;
    }
    with_type(Body::from(mock.embeddings.clone()), &JSON)
}

/// A backend that is down: `503` at once, whatever was asked.
async fn fail(_body: Bytes) -> Response {
    let mut r = with_type(
        Body::from(
            r#"{"error":{"message":"mock: backend down","type":"server_error","code":"unavailable"}}"#,
        ),
        &JSON,
    );
    *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    r
}

async fn healthz() -> &'static str {
    "ok"
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = builder.enable_all().build()?;
    let mock = Arc::new(Mock::new(&args));
    let max_body = args.max_body_mb.saturating_mul(1024 * 1024);
    runtime.block_on(async move {
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/chat/completions", post(chat))
            .route("/v1/embeddings", post(embeddings))
            .route("/embeddings", post(embeddings))
            .route("/fail/v1/chat/completions", post(fail))
            .route("/fail/chat/completions", post(fail))
            .route("/healthz", get(healthz))
            .layer(DefaultBodyLimit::max(max_body))
            .with_state(mock);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
        let addr = listener.local_addr()?;
        {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            writeln!(out, "listening on http://{addr}")?;
            out.flush()?;
        }
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app).await
    })
}

#[cfg(test)]
mod tests {
    use super::wants_stream;

    #[test]
    fn stream_detection() {
        assert!(wants_stream(br#"{"model":"m","stream":true}"#));
        assert!(wants_stream(b"{\"stream\" :\n true}"));
        assert!(!wants_stream(br#"{"model":"m","stream":false}"#));
        assert!(!wants_stream(br#"{"content":"stream","stream":false}"#));
        assert!(!wants_stream(br#"{"content":"\"stream\"","x":1}"#));
        assert!(!wants_stream(br#"{"model":"m"}"#));
    }
}
