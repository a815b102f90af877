//! The Google transport (`api_type: gemini` and `vertex`): the router sends
//! these backends chat completions (or embeddings) like any OpenAI one; here
//! the body becomes Gemini's (`protocol::gemini`), goes to the model's
//! `generateContent` / `streamGenerateContent?alt=sse` /
//! `batchEmbedContents` URL with the key (`x-goog-api-key`) or an access
//! token (Vertex AI), and the answer comes back as chat: a whole answer, a
//! stream converted frame by frame, or an error in OpenAI's shape with the
//! upstream's status. Everything above (retries, fallbacks, parsers, the
//! log, other front doors) sees a chat backend.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, header};
use serde_json::Value;

use super::{BodyStream, Http, UpstreamError, UpstreamResponse};
use crate::config::{ApiType, Backend, Target, google_method};
use crate::endpoint::Endpoint;
use crate::protocol::Convert;
use crate::protocol::gemini;

/// The most a whole Gemini answer may be before it is translated (the
/// proxy's own `max_response_bytes` applies to the translation after).
const WHOLE_ANSWER_LIMIT: usize = 64 * 1024 * 1024;

/// Credential headers a client may have sent; the backend's own go instead.
const CLIENT_CREDENTIALS: &[&str] = &["authorization", "x-api-key", "api-key", "x-goog-api-key"];

/// The fields of a chat (or embeddings) body the Gemini request leaves out,
/// for the request record (`Translated.dropped`).
pub fn dropped(endpoint: Endpoint, body: &[u8]) -> Vec<String> {
    let mut dropped = Vec::new();
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let model = v["model"].as_str().unwrap_or("");
        let _ = match endpoint {
            Endpoint::Embeddings => {
                gemini::request::embeddings(&v, model, &mut dropped).map(|_| ())
            }
            _ => gemini::request::from_chat(&v, &mut dropped).map(|_| ()),
        };
    }
    dropped
}

/// The URL a prepared chat (or embeddings) body goes to, for the
/// request record.
pub fn url_for(backend: &Backend, endpoint: Endpoint, body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let model = v["model"].as_str().unwrap_or("{model}");
    let method = match (endpoint, backend.api_type) {
        (Endpoint::Embeddings, ApiType::Vertex) => "predict",
        _ => google_method(endpoint, v["stream"] == true, v["input"].is_string()),
    };
    backend.google_method_url(model, method)
}

/// A request the translation refused: a 400 in OpenAI's shape.
fn refused(message: String) -> UpstreamResponse {
    let body = serde_json::json!({"error": {
        "message": format!("cannot translate the request for Gemini: {message}"),
        "type": "invalid_request_error",
        "param": null,
        "code": "invalid_request",
    }});
    super::json_answer(http::StatusCode::BAD_REQUEST, Bytes::from(body.to_string()))
}

/// Sends one chat completions or embeddings request to a Google backend.
pub async fn send(
    client: &Http,
    backend: &Backend,
    endpoint: Endpoint,
    mut headers: HeaderMap,
    body: Bytes,
    timeout: std::time::Duration,
) -> Result<UpstreamResponse, UpstreamError> {
    let chat: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return Ok(refused(format!("the body is not JSON: {e}"))),
    };
    let model = chat["model"].as_str().unwrap_or("").to_string();
    let bare = model.strip_prefix("models/").unwrap_or(&model);
    if !crate::config::google::url_safe(bare) {
        return Ok(refused(format!("`{model}` is not a Gemini model id")));
    }
    let mut ignored = Vec::new();
    let stream = chat["stream"] == true;
    let (gbody, method, shape) = match endpoint {
        Endpoint::Embeddings if backend.api_type == ApiType::Vertex => {
            match gemini::request::vertex_embeddings(&chat, &mut ignored) {
                Ok((b, base64)) => (b, "predict", Shape::Predictions { base64 }),
                Err(e) => return Ok(refused(e.0)),
            }
        }
        Endpoint::Embeddings => match gemini::request::embeddings(&chat, bare, &mut ignored) {
            Ok((b, single, base64)) => (
                b,
                google_method(endpoint, false, single),
                Shape::Embeddings { base64 },
            ),
            Err(e) => return Ok(refused(e.0)),
        },
        Endpoint::ChatCompletions => match gemini::request::from_chat(&chat, &mut ignored) {
            Ok(b) => (
                b,
                google_method(endpoint, stream, false),
                if stream {
                    Shape::Stream {
                        include_usage: chat.pointer("/stream_options/include_usage")
                            == Some(&Value::Bool(true)),
                    }
                } else {
                    Shape::Chat
                },
            ),
            Err(e) => return Ok(refused(e.0)),
        },
        e => {
            return Err(UpstreamError::Unsupported(format!(
                "api_type {} does not serve {}",
                backend.api_type.as_str(),
                e.path()
            )));
        }
    };
    let url = backend.google_method_url(bare, method);
    let target =
        Target::parse(&url).ok_or_else(|| UpstreamError::Connect(format!("bad URL: {url}")))?;
    for name in CLIENT_CREDENTIALS {
        headers.remove(*name);
    }
    match (backend.api_type, backend.vertex.as_ref()) {
        (ApiType::Vertex, Some(v)) if v.credentials.is_some() => {
            let token = super::google_auth::token(client, v, backend.request_timeout).await?;
            headers.insert(header::AUTHORIZATION, token);
        }
        _ => {
            if let Some((name, value)) = super::key_header(backend) {
                headers.insert(name, value);
            }
        }
    }
    if stream {
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
    }
    let out = Bytes::from(gbody.to_string());
    let mut response = super::send_within(
        client,
        http::Method::POST,
        &target,
        headers,
        super::Payload::Bytes(out),
        timeout,
    )
    .await?;
    if !response.status.is_success() {
        // Read now: Gemini's retry delay is in the body, and the router
        // reads it from a header.
        let body = super::read_error_body(&mut response.body, timeout).await?;
        if let Some(ms) = retry_delay_ms(&body)
            && !response.headers.contains_key("retry-after-ms")
        {
            response
                .headers
                .insert("retry-after-ms", HeaderValue::from(ms));
        }
        response.body = futures::stream::once(async move { Ok(body) }).boxed();
    }
    Ok(translate(response, shape, bare.to_string(), timeout))
}

/// The delay a Gemini error asks for (`details[]` of type
/// `google.rpc.RetryInfo`, `retryDelay` such as `"17s"` or `"0.5s"`), in
/// milliseconds.
pub fn retry_delay_ms(body: &[u8]) -> Option<u64> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let e = match &v {
        Value::Array(a) => &a.first()?["error"],
        v => &v["error"],
    };
    e["details"].as_array()?.iter().find_map(|d| {
        let secs: f64 = d["retryDelay"].as_str()?.strip_suffix('s')?.parse().ok()?;
        (secs.is_finite() && secs >= 0.0).then(|| (secs * 1000.0).min(86_400_000.0) as u64)
    })
}

/// What the answer is turned into.
#[derive(Clone, Copy)]
enum Shape {
    Chat,
    Stream {
        include_usage: bool,
    },
    Embeddings {
        base64: bool,
    },
    /// Vertex AI's `:predict` embeddings.
    Predictions {
        base64: bool,
    },
}

/// The answer as chat: errors in OpenAI's shape (status kept), a whole
/// answer translated once read, a stream frame by frame.
fn translate(
    r: UpstreamResponse,
    shape: Shape,
    model: String,
    gap: std::time::Duration,
) -> UpstreamResponse {
    let UpstreamResponse {
        status,
        headers: mut h,
        body,
    } = r;
    if !status.is_success() {
        let body = whole(body, gap, true, move |b| {
            Ok(gemini::response::error_to_openai(status.as_u16(), &b))
        });
        json_type(&mut h);
        return UpstreamResponse {
            status,
            headers: h,
            body,
        };
    }
    let body = match shape {
        Shape::Chat => whole(body, gap, false, |b| gemini::response::to_chat(&b)),
        Shape::Predictions { base64 } => whole(body, gap, false, move |b| {
            gemini::response::predictions_to_openai(&b, &model, base64)
        }),
        Shape::Embeddings { base64 } => whole(body, gap, false, move |b| {
            gemini::response::embeddings_to_openai(&b, &model, base64)
        }),
        Shape::Stream { include_usage } => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            h.remove(header::CONTENT_LENGTH);
            return UpstreamResponse {
                status,
                headers: h,
                body: converted(
                    body,
                    Box::new(gemini::stream::GeminiToChat::new(include_usage)),
                ),
            };
        }
    };
    json_type(&mut h);
    UpstreamResponse {
        status,
        headers: h,
        body,
    }
}

fn json_type(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.remove(header::CONTENT_LENGTH);
}

/// A body read whole, then translated: one chunk. A success body that
/// does not translate (not JSON) is passed on as it came, for the router
/// to judge as it would any backend's.
fn whole<F>(mut body: BodyStream, gap: std::time::Duration, error: bool, f: F) -> BodyStream
where
    F: FnOnce(Bytes) -> Result<Value, crate::protocol::TranslateError> + Send + 'static,
{
    futures::stream::once(async move {
        let raw = if error {
            super::read_error_body(&mut body, gap).await?
        } else {
            super::read_body(&mut body, gap, WHOLE_ANSWER_LIMIT, None).await?
        };
        Ok(match f(raw.clone()) {
            Ok(v) => Bytes::from(v.to_string()),
            Err(_) => raw,
        })
    })
    .boxed()
}

/// A Gemini event stream as chat chunks, converted as the bytes arrive.
fn converted(body: BodyStream, convert: Box<dyn Convert>) -> BodyStream {
    struct State {
        body: BodyStream,
        decoder: crate::sse::Decoder,
        convert: Box<dyn Convert>,
        ended: bool,
    }
    let state = State {
        body,
        decoder: crate::sse::Decoder::new(),
        convert,
        ended: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if s.ended {
                return None;
            }
            let mut out = Vec::new();
            match s.body.next().await {
                Some(Ok(chunk)) => {
                    s.decoder.push(&chunk);
                    while let Some(f) = s.decoder.next_frame() {
                        s.convert.frame(&f, &mut out);
                    }
                }
                Some(Err(e)) => {
                    s.ended = true;
                    return Some((Err(e), s));
                }
                None => {
                    s.ended = true;
                    // A last event without its blank line.
                    if !s.decoder.remainder().iter().all(u8::is_ascii_whitespace) {
                        s.decoder.push(b"\n\n");
                        while let Some(f) = s.decoder.next_frame() {
                            s.convert.frame(&f, &mut out);
                        }
                    }
                    s.convert.end(&mut out);
                }
            }
            if !out.is_empty() {
                let mut joined = BytesMut::with_capacity(out.iter().map(Bytes::len).sum());
                for b in out {
                    joined.extend_from_slice(&b);
                }
                return Some((Ok(joined.freeze()), s));
            }
        }
    })
    // The relay may poll again after the end.
    .fuse()
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_is_read_from_retry_info() {
        let body =
            br#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED","details":[
            {"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[]},
            {"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"17s"}]}}"#;
        assert_eq!(retry_delay_ms(body), Some(17_000));
        assert_eq!(
            retry_delay_ms(br#"[{"error":{"details":[{"retryDelay":"0.25s"}]}}]"#),
            Some(250)
        );
        assert_eq!(retry_delay_ms(br#"{"error":{"code":500}}"#), None);
        assert_eq!(
            retry_delay_ms(br#"{"error":{"details":[{"retryDelay":"-1s"}]}}"#),
            None
        );
    }
}
