//! The stub backend's answers on the pass-through endpoints (audio,
//! images, moderations, rerank): minimal, valid shapes, so the shipped
//! config can demo them. A multipart request reaches the stub as its form
//! fields in JSON (see [`super::form`]).

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::stub::{created, id};
use super::{UpstreamError, UpstreamResponse};
use crate::endpoint::Endpoint;

const SPOKEN: &str = "Hello from the yallmp stub backend.";

/// A 1×1 transparent PNG.
const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

pub(super) fn respond(endpoint: Endpoint, model: &str, request: &Value) -> UpstreamResponse {
    match endpoint {
        Endpoint::AudioTranscriptions | Endpoint::AudioTranslations => {
            match request.get("response_format").and_then(Value::as_str) {
                Some("text" | "srt" | "vtt") => {
                    answer("text/plain; charset=utf-8", Bytes::from(SPOKEN))
                }
                _ => json(&json!({"text": SPOKEN})),
            }
        }
        Endpoint::AudioSpeech => answer("audio/wav", silence_wav(1600)),
        Endpoint::ImagesGenerations | Endpoint::ImagesEdits => {
            let n = request
                .get("n")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .clamp(1, 10);
            let data: Vec<Value> = (0..n)
                .map(|_| json!({"b64_json": PNG_1X1, "revised_prompt": request.get("prompt")}))
                .collect();
            json(&json!({"created": created(), "data": data}))
        }
        Endpoint::Moderations => {
            let inputs = match request.get("input") {
                Some(Value::Array(a)) => a.len().max(1),
                _ => 1,
            };
            let result = json!({"flagged": false, "categories": {}, "category_scores": {}});
            json(&json!({
                "id": id("modr-stub"), "model": model,
                "results": vec![result; inputs],
            }))
        }
        Endpoint::Rerank => rerank(model, request),
        _ => json(&json!({"error": {"message": "not a pass-through endpoint",
            "type": "invalid_request_error", "code": null}})),
    }
}

/// Scores each document by the query words it contains.
fn rerank(model: &str, request: &Value) -> UpstreamResponse {
    let query = request.get("query").and_then(Value::as_str).unwrap_or("");
    let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    let docs = request
        .get("documents")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut scored: Vec<(usize, f64, Value)> = docs
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let text = match &d {
                Value::String(s) => s.to_lowercase(),
                other => other
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_lowercase(),
            };
            let hits = words.iter().filter(|w| text.contains(w.as_str())).count();
            let score = if words.is_empty() {
                0.0
            } else {
                hits as f64 / words.len() as f64
            };
            (i, score, d)
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if let Some(n) = request.get("top_n").and_then(Value::as_u64) {
        scored.truncate(usize::try_from(n).unwrap_or(usize::MAX));
    }
    let results: Vec<Value> = scored
        .into_iter()
        .map(|(i, s, d)| json!({"index": i, "relevance_score": s, "document": {"text": d}}))
        .collect();
    json(
        &json!({"id": id("rerank-stub"), "model": model, "results": results,
        "usage": {"total_tokens": 0}}),
    )
}

fn json(body: &Value) -> UpstreamResponse {
    super::json_answer(StatusCode::OK, Bytes::from(body.to_string()))
}

fn answer(content_type: &'static str, body: Bytes) -> UpstreamResponse {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    UpstreamResponse {
        status: StatusCode::OK,
        headers,
        body: futures::stream::once(async move { Ok::<_, UpstreamError>(body) }).boxed(),
    }
}

/// A mono 16-bit 16 kHz WAV of `samples` silent samples.
pub fn silence_wav(samples: u32) -> Bytes {
    let data = samples * 2;
    let mut v = Vec::with_capacity(44 + data as usize);
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&16_000u32.to_le_bytes());
    v.extend_from_slice(&32_000u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data.to_le_bytes());
    v.resize(44 + data as usize, 0);
    Bytes::from(v)
}
