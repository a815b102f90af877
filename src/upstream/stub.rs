//! The built-in `api_type: stub` backend: answers locally, without a network
//! or a key, so the shipped config runs anywhere. Chat echoes the last user
//! message (streams word by word), embeddings are deterministic vectors, and
//! the Responses API gets a minimal response. Its answers have the exact shape
//! of an OpenAI-compatible server's, so every proxy path treats it the same.

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::{UpstreamError, UpstreamResponse};
use crate::endpoint::Endpoint;
use crate::sse;

const GREETING: &str = "Hello from the yallmp stub backend.";
const EMBEDDING_DIMS: usize = 16;

/// Answers one request.
pub fn respond(endpoint: Endpoint, body: &[u8]) -> UpstreamResponse {
    let request: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
    };
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("stub")
        .to_string();
    let stream = request.get("stream").and_then(Value::as_bool) == Some(true);
    match endpoint {
        Endpoint::ChatCompletions => {
            let text = last_user_text(&request).unwrap_or_else(|| GREETING.to_string());
            if stream {
                let usage = request
                    .pointer("/stream_options/include_usage")
                    .and_then(Value::as_bool)
                    == Some(true);
                chat_stream(&model, &text, usage)
            } else {
                chat(&model, &text)
            }
        }
        Endpoint::Embeddings => embeddings(&model, &request),
        Endpoint::Responses => {
            let text = responses_input_text(&request).unwrap_or_else(|| GREETING.to_string());
            if stream {
                responses_stream(&model, &text)
            } else {
                json_response(StatusCode::OK, &responses_object(&model, &text))
            }
        }
        Endpoint::Completions => {
            let prompt = match request.get("prompt") {
                Some(Value::String(p)) => p.clone(),
                Some(Value::Array(a)) => {
                    a.first().and_then(Value::as_str).unwrap_or("").to_string()
                }
                _ => GREETING.to_string(),
            };
            let n = tokens(&prompt);
            json_response(
                StatusCode::OK,
                &json!({
                    "id": id("cmpl-stub"), "object": "text_completion", "created": created(), "model": model,
                    "choices": [{"index": 0, "text": prompt, "logprobs": null, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": n, "completion_tokens": n, "total_tokens": 2 * n}
                }),
            )
        }
        Endpoint::Messages | Endpoint::CountTokens => error(
            StatusCode::NOT_FOUND,
            "the stub speaks OpenAI: Messages requests reach it translated",
        ),
        e => super::stub_media::respond(e, &model, &request),
    }
}

fn json_response(status: StatusCode, body: &Value) -> UpstreamResponse {
    super::json_answer(status, Bytes::from(body.to_string()))
}

fn sse_response(frames: Vec<Bytes>) -> UpstreamResponse {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    UpstreamResponse {
        status: StatusCode::OK,
        headers,
        body: futures::stream::iter(frames.into_iter().map(Ok::<_, UpstreamError>)).boxed(),
    }
}

fn error(status: StatusCode, message: &str) -> UpstreamResponse {
    json_response(
        status,
        &json!({"error": {"message": message, "type": "invalid_request_error", "code": null}}),
    )
}

/// Text of a message's `content`: a string, or the text parts of an array.
fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            (!texts.is_empty()).then(|| texts.join("\n"))
        }
        _ => None,
    }
}

fn last_user_text(request: &Value) -> Option<String> {
    request
        .get("messages")?
        .as_array()?
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content"))
        .and_then(content_text)
}

fn responses_input_text(request: &Value) -> Option<String> {
    match request.get("input")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => items
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .and_then(|m| m.get("content"))
            .and_then(content_text),
        _ => None,
    }
}

/// A rough token count: words, at least one.
fn tokens(text: &str) -> u64 {
    text.split_whitespace().count().max(1) as u64
}

pub(super) fn created() -> i64 {
    chrono::Utc::now().timestamp()
}

pub(super) fn id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

fn chat(model: &str, text: &str) -> UpstreamResponse {
    let n = tokens(text);
    json_response(
        StatusCode::OK,
        &json!({
            "id": id("chatcmpl-stub"),
            "object": "chat.completion",
            "created": created(),
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop"
            }],
            "usage": {"prompt_tokens": n, "completion_tokens": n, "total_tokens": 2 * n}
        }),
    )
}

fn chat_stream(model: &str, text: &str, include_usage: bool) -> UpstreamResponse {
    let id = id("chatcmpl-stub");
    let created = created();
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        });
        if include_usage {
            c["usage"] = Value::Null;
        }
        sse::data_frame(c.to_string().as_bytes())
    };
    let mut frames = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    // Words keep their following whitespace, so the pieces join to the text.
    let mut start = 0;
    let bytes = text.as_bytes();
    while start < text.len() {
        let mut end = start;
        while end < text.len() && !bytes[end].is_ascii_whitespace() {
            end += 1;
        }
        while end < text.len() && bytes[end].is_ascii_whitespace() {
            end += 1;
        }
        frames.push(chunk(json!({"content": &text[start..end]}), Value::Null));
        start = end;
    }
    frames.push(chunk(json!({}), json!("stop")));
    if include_usage {
        let n = tokens(text);
        let usage = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [],
            "usage": {"prompt_tokens": n, "completion_tokens": n, "total_tokens": 2 * n}
        });
        frames.push(sse::data_frame(usage.to_string().as_bytes()));
    }
    frames.push(Bytes::from_static(sse::DONE_FRAME));
    sse_response(frames)
}

fn embeddings(model: &str, request: &Value) -> UpstreamResponse {
    // A string, a list of strings, or token arrays (hashed as their JSON).
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    let inputs: Vec<String> = match request.get("input") {
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => {
            vec![text(&Value::Array(items.clone()))]
        }
        Some(Value::Array(items)) => items.iter().map(text).collect(),
        Some(v @ Value::String(_)) => vec![text(v)],
        _ => return error(StatusCode::BAD_REQUEST, "`input` is required"),
    };
    let base64 = request.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let v = vector(text);
            let embedding = if base64 {
                // Little-endian f32s, as OpenAI sends them.
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    bytes,
                ))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let n: u64 = inputs.iter().map(|t| tokens(t)).sum();
    json_response(
        StatusCode::OK,
        &json!({
            "object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": n, "total_tokens": n}
        }),
    )
}

/// A deterministic unit vector from the text (FNV-1a seeded per dimension).
fn vector(text: &str) -> Vec<f32> {
    let raw: Vec<f32> = (0..EMBEDDING_DIMS as u64)
        .map(|d| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ d;
            for b in text.bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            (h % 2001) as f32 / 1000.0 - 1.0
        })
        .collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    raw.iter().map(|x| x / norm).collect()
}

fn responses_object(model: &str, text: &str) -> Value {
    let n = tokens(text);
    json!({
        "id": id("resp-stub"),
        "object": "response",
        "created_at": created(),
        "status": "completed",
        "model": model,
        "output": [{
            "type": "message", "id": id("msg-stub"), "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]
        }],
        "output_text": text,
        "usage": {"input_tokens": n, "output_tokens": n, "total_tokens": 2 * n}
    })
}

fn responses_stream(model: &str, text: &str) -> UpstreamResponse {
    let done = responses_object(model, text);
    let mut created = done.clone();
    created["status"] = json!("in_progress");
    created["output"] = json!([]);
    let item = done["output"][0].clone();
    let item_id = item["id"].clone();
    let mut in_progress = item.clone();
    in_progress["status"] = json!("in_progress");
    in_progress["content"] = json!([]);
    let part = json!({"type": "output_text", "text": text, "annotations": []});
    let ids = json!({"item_id": item_id, "output_index": 0, "content_index": 0});
    let with = |mut v: Value, extra: &Value| {
        if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
            m.extend(e.clone());
        }
        v
    };
    let events = [
        json!({"type": "response.created", "response": created}),
        json!({"type": "response.in_progress", "response": created}),
        json!({"type": "response.output_item.added", "output_index": 0, "item": in_progress}),
        with(
            json!({"type": "response.content_part.added", "part": {"type": "output_text", "text": "", "annotations": []}}),
            &ids,
        ),
        with(
            json!({"type": "response.output_text.delta", "delta": text}),
            &ids,
        ),
        with(
            json!({"type": "response.output_text.done", "text": text}),
            &ids,
        ),
        with(
            json!({"type": "response.content_part.done", "part": part}),
            &ids,
        ),
        json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
        json!({"type": "response.completed", "response": done}),
    ];
    sse_response(
        events
            .into_iter()
            .enumerate()
            .map(|(n, mut data)| {
                data["sequence_number"] = json!(n);
                let name = data["type"].as_str().unwrap_or("message").to_string();
                sse::named_frame(&name, data.to_string().as_bytes())
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(r: UpstreamResponse) -> String {
        let parts: Vec<Bytes> = r.body.map(|c| c.unwrap()).collect().await;
        String::from_utf8(parts.concat()).unwrap()
    }

    #[tokio::test]
    async fn chat_echoes_last_user_message() {
        let r = respond(
            Endpoint::ChatCompletions,
            br#"{"model":"m","messages":[{"role":"user","content":"first"},{"role":"assistant","content":"x"},{"role":"user","content":[{"type":"text","text":"hi there"}]}]}"#,
        );
        let v: Value = serde_json::from_str(&body_of(r).await).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "hi there");
    }

    #[tokio::test]
    async fn stream_pieces_join_to_the_text_and_end_with_done() {
        let r = respond(
            Endpoint::ChatCompletions,
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"a  b c"}]}"#,
        );
        let body = body_of(r).await;
        let mut text = String::new();
        let mut saw_usage = false;
        for frame in body.split("\n\n").filter(|f| !f.is_empty()) {
            let data = frame.strip_prefix("data: ").unwrap();
            if data == "[DONE]" {
                continue;
            }
            let v: Value = serde_json::from_str(data).unwrap();
            if let Some(c) = v
                .pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
            {
                text.push_str(c);
            }
            saw_usage |= v["usage"].is_object();
        }
        assert_eq!(text, "a  b c");
        assert!(saw_usage);
        assert!(body.ends_with("data: [DONE]\n\n"));
    }

    #[tokio::test]
    async fn embeddings_of_a_string_and_a_one_item_list_agree() {
        let one: Value = serde_json::from_str(
            &body_of(respond(
                Endpoint::Embeddings,
                br#"{"model":"m","input":"hello"}"#,
            ))
            .await,
        )
        .unwrap();
        let list: Value = serde_json::from_str(
            &body_of(respond(
                Endpoint::Embeddings,
                br#"{"model":"m","input":["hello"]}"#,
            ))
            .await,
        )
        .unwrap();
        assert_eq!(one["data"][0]["embedding"], list["data"][0]["embedding"]);
        let b64: Value = serde_json::from_str(
            &body_of(respond(
                Endpoint::Embeddings,
                br#"{"model":"m","input":"hello","encoding_format":"base64"}"#,
            ))
            .await,
        )
        .unwrap();
        assert!(b64["data"][0]["embedding"].is_string());
    }

    #[test]
    fn vectors_are_deterministic_unit_length() {
        let a = vector("hello");
        assert_eq!(a, vector("hello"));
        assert_ne!(a, vector("world"));
        let norm: f32 = a.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4);
    }
}
