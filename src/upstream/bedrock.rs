//! `api_type: bedrock`: one chat request sent as a Bedrock Converse (or
//! ConverseStream) request, SigV4-signed (aws-sigv4) or with a Bedrock API
//! key, and its answer brought back as chat: a JSON answer translated
//! whole, an event stream (`application/vnd.amazon.eventstream`, decoded
//! with aws-smithy-eventstream) turned into chat SSE frames as its
//! messages arrive, an error into OpenAI's error shape with its status
//! from `x-amzn-ErrorType`. The rest of the proxy sees a chat backend
//! (`src/protocol/bedrock/mod.rs`).

use std::collections::VecDeque;
use std::time::SystemTime;

use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

use super::{BodyStream, Http, UpstreamError, UpstreamResponse, error_chain, timed_out};
use crate::config::Backend;
use crate::config::bedrock::{BedrockAuth, BedrockCredentials};
use crate::protocol::bedrock::{request, response, stream};

/// The content type of a ConverseStream answer.
pub const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";

/// The largest event-stream message taken (AWS's own limit is 16 MiB):
/// a longer one's prelude ends the stream before it is buffered.
pub const MAX_MESSAGE_BYTES: usize = crate::sse::DEFAULT_MAX_EVENT_BYTES;

static X_AMZN_ERROR_TYPE: HeaderName = HeaderName::from_static("x-amzn-errortype");
static X_AMZN_REQUEST_ID: HeaderName = HeaderName::from_static("x-amzn-requestid");

/// Headers not sent to Bedrock: the client's credentials (the request is
/// signed with the backend's), and what the client computes again.
const STRIPPED: &[&str] = &[
    "authorization",
    "x-api-key",
    "api-key",
    "host",
    "content-length",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

/// Sends the chat request `body` to a Bedrock backend; `limit` bounds a
/// whole answer (`max_response_bytes`), `timeout` the wait for the
/// headers and each gap of the body (`request_timeout`, or `stream_timeout`
/// for a stream).
pub async fn send(
    client: &Http,
    backend: &Backend,
    mut headers: HeaderMap,
    body: Bytes,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<UpstreamResponse, UpstreamError> {
    let Some(auth) = backend.bedrock.as_deref() else {
        return Err(UpstreamError::Unsupported(format!(
            "backend {} has no Bedrock credentials",
            backend.name
        )));
    };
    let converse = request::chat_to_converse(&body)
        .map_err(|e| UpstreamError::Unsupported(format!("cannot translate for Bedrock: {e}")))?;
    if !converse.dropped.is_empty() {
        tracing::debug!(backend = %backend.name, dropped = ?converse.dropped,
            "fields Bedrock's Converse API has no place for");
    }
    let url = backend.bedrock_url(&converse.model, converse.stream);
    let target = crate::config::Target::parse(&url)
        .ok_or_else(|| UpstreamError::Connect(format!("bad URL: {url}")))?;
    let payload = Bytes::from(converse.body.to_string());
    for name in STRIPPED {
        headers.remove(*name);
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static(if converse.stream {
            EVENT_STREAM
        } else {
            "application/json"
        }),
    );
    if let Some(authority) = target.uri.authority()
        && let Ok(v) = HeaderValue::from_str(authority.as_str())
    {
        headers.insert(header::HOST, v);
    }
    let mut req = http::Request::new(http_body_util::Full::new(payload.clone()));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = target.uri.clone();
    *req.headers_mut() = headers;
    authorize(&mut req, auth, &payload, SystemTime::now())?;
    let response = match tokio::time::timeout(
        timeout,
        client.0.request(req.map(http_body_util::Either::Left)),
    )
    .await
    {
        Err(_) => return Err(UpstreamError::Timeout(timeout)),
        Ok(Err(e)) if timed_out(&e) => return Err(UpstreamError::Timeout(timeout)),
        Ok(Err(e)) => return Err(UpstreamError::Connect(error_chain(&e))),
        Ok(Ok(r)) => r,
    };
    let (parts, incoming) = response.into_parts();
    let mut raw: BodyStream = http_body_util::BodyDataStream::new(incoming)
        .map(|r| r.map_err(|e| UpstreamError::Body(error_chain(&e))))
        .boxed();
    let request_id = parts
        .headers
        .get(&X_AMZN_REQUEST_ID)
        .and_then(|v| v.to_str().ok());
    let id = response::completion_id(request_id);
    let mut out_headers = parts.headers.clone();
    out_headers.remove(header::CONTENT_LENGTH);
    if let Some(r) = parts.headers.get(&X_AMZN_REQUEST_ID) {
        out_headers.insert(super::REQUEST_ID, r.clone());
    }
    let gap = timeout;
    if !parts.status.is_success() {
        let text = super::read_error_body(&mut raw, gap).await?;
        let kind = parts
            .headers
            .get(&X_AMZN_ERROR_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(response::error_type)
            .unwrap_or("");
        let status = response::error_status(kind, parts.status.as_u16());
        let body = response::error_to_openai(kind, status, &text);
        out_headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Ok(UpstreamResponse {
            status: StatusCode::from_u16(status).unwrap_or(parts.status),
            headers: out_headers,
            body: futures::stream::once(async move { Ok(Bytes::from(body.to_string())) }).boxed(),
        });
    }
    let is_event_stream = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with(EVENT_STREAM));
    if is_event_stream {
        out_headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        let convert = stream::ConverseToChat::new(id, converse.model, converse.include_usage);
        return Ok(UpstreamResponse {
            status: parts.status,
            headers: out_headers,
            body: event_stream(raw, convert),
        });
    }
    // A whole answer: read (bounded), translated, handed on as one chunk.
    let declared = super::content_length(&parts.headers);
    let model = converse.model;
    let body = futures::stream::once(async move {
        let text = super::read_body(&mut raw, gap, limit, declared).await?;
        response::converse_to_chat(&text, &model, &id)
            .map(|v| Bytes::from(v.to_string()))
            .map_err(|e| UpstreamError::Malformed {
                status: 200,
                message: e.to_string(),
            })
    })
    .boxed();
    out_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(UpstreamResponse {
        status: parts.status,
        headers: out_headers,
        body,
    })
}

/// Signs `req` (SigV4: service `bedrock`, the backend's region; the
/// `host`, `content-type`, `accept` and `x-amz-*` headers and the body's
/// hash signed), or puts the Bedrock API key in `Authorization: Bearer`.
pub fn authorize(
    req: &mut http::Request<http_body_util::Full<Bytes>>,
    auth: &BedrockAuth,
    payload: &[u8],
    time: SystemTime,
) -> Result<(), UpstreamError> {
    let (access_key_id, secret, token) = match &auth.credentials {
        BedrockCredentials::Bearer(key) => {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
                .map_err(|_| UpstreamError::Unsupported("bad Bedrock API key".into()))?;
            v.set_sensitive(true);
            req.headers_mut().insert(header::AUTHORIZATION, v);
            return Ok(());
        }
        BedrockCredentials::Keys {
            access_key_id,
            secret_access_key,
            session_token,
        } => (access_key_id, secret_access_key, session_token),
    };
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let credentials = aws_credential_types::Credentials::new(
        access_key_id.clone(),
        secret.expose().to_string(),
        token.as_ref().map(|t| t.expose().to_string()),
        None,
        "yallmp",
    );
    let identity = credentials.into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&auth.region)
        .name("bedrock")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| UpstreamError::Unsupported(format!("SigV4: {e}")))?;
    let signed_names = ["host", "content-type", "accept"];
    let uri = req.uri().to_string();
    let pairs: Vec<(&str, &str)> = req
        .headers()
        .iter()
        .filter(|(n, _)| signed_names.contains(&n.as_str()))
        .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?)))
        .collect();
    let signable =
        SignableRequest::new("POST", uri, pairs.into_iter(), SignableBody::Bytes(payload))
            .map_err(|e| UpstreamError::Unsupported(format!("SigV4: {e}")))?;
    let (instructions, _signature) = sign(signable, &params.into())
        .map_err(|e| UpstreamError::Unsupported(format!("SigV4: {e}")))?
        .into_parts();
    instructions.apply_to_request_http1x(req);
    for name in [header::AUTHORIZATION.as_str(), "x-amz-security-token"] {
        if let Some(v) = req.headers_mut().get_mut(name) {
            v.set_sensitive(true);
        }
    }
    Ok(())
}

/// An event-stream body as chat SSE frames: each complete message decoded
/// (its CRCs checked) and translated as it arrives; a message longer than
/// [`MAX_MESSAGE_BYTES`], a bad frame or a cut in a message ends the body
/// with an error.
fn event_stream(raw: BodyStream, convert: stream::ConverseToChat) -> BodyStream {
    struct State {
        raw: BodyStream,
        buf: BytesMut,
        convert: stream::ConverseToChat,
        ready: VecDeque<Bytes>,
        ended: bool,
    }
    let state = State {
        raw,
        buf: BytesMut::new(),
        convert,
        ready: VecDeque::new(),
        ended: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(b) = s.ready.pop_front() {
                return Some((Ok(b), s));
            }
            if s.ended {
                return None;
            }
            // Whole messages in the buffer first.
            match next_message(&mut s.buf) {
                Err(e) => {
                    s.ended = true;
                    return Some((Err(e), s));
                }
                Ok(Some(m)) => {
                    let mut out = Vec::new();
                    translate(&m, &mut s.convert, &mut out);
                    s.ready.extend(out);
                    continue;
                }
                Ok(None) => {}
            }
            match s.raw.next().await {
                Some(Ok(chunk)) => s.buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    s.ended = true;
                    return Some((Err(e), s));
                }
                None => {
                    s.ended = true;
                    if !s.buf.is_empty() {
                        return Some((
                            Err(UpstreamError::Body(
                                "the event stream ended inside a message".into(),
                            )),
                            s,
                        ));
                    }
                    let mut out = Vec::new();
                    s.convert.end(&mut out);
                    s.ready.extend(out);
                }
            }
        }
    })
    .boxed()
}

/// The next whole message of `buf`, taken out of it.
fn next_message(
    buf: &mut BytesMut,
) -> Result<Option<aws_smithy_types::event_stream::Message>, UpstreamError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let total = (&buf[..4]).get_u32() as usize;
    if total > MAX_MESSAGE_BYTES {
        return Err(UpstreamError::Body(format!(
            "an event-stream message of {total} bytes is over the limit of {MAX_MESSAGE_BYTES}"
        )));
    }
    if buf.len() < total {
        return Ok(None);
    }
    let mut one = buf.split_to(total).freeze();
    aws_smithy_eventstream::frame::read_message_from(&mut one)
        .map(Some)
        .map_err(|e| UpstreamError::Body(format!("bad event-stream message: {e}")))
}

/// A string header of a message.
fn header_str<'a>(m: &'a aws_smithy_types::event_stream::Message, name: &str) -> Option<&'a str> {
    m.headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| h.value().as_string().ok())
        .map(|s| s.as_str())
}

fn translate(
    m: &aws_smithy_types::event_stream::Message,
    convert: &mut stream::ConverseToChat,
    out: &mut Vec<Bytes>,
) {
    let kind = match header_str(m, ":message-type").unwrap_or("event") {
        "exception" => stream::Kind::Exception(header_str(m, ":exception-type").unwrap_or("")),
        "error" => stream::Kind::Error(header_str(m, ":error-code").unwrap_or("")),
        _ => stream::Kind::Event(header_str(m, ":event-type").unwrap_or("")),
    };
    if let stream::Kind::Error(_) = kind {
        // The framing's errors carry their message in a header.
        let message = header_str(m, ":error-message").unwrap_or("event stream error");
        let payload = serde_json::json!({"message": message}).to_string();
        convert.message(kind, payload.as_bytes(), out);
        return;
    }
    convert.message(kind, m.payload(), out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_types::event_stream::{Header, HeaderValue as EvValue, Message};

    fn frame(event: &str, payload: &str) -> Vec<u8> {
        let m = Message::new(payload.as_bytes().to_vec())
            .add_header(Header::new(
                ":message-type",
                EvValue::String("event".into()),
            ))
            .add_header(Header::new(
                ":event-type",
                EvValue::String(event.to_string().into()),
            ))
            .add_header(Header::new(
                ":content-type",
                EvValue::String("application/json".into()),
            ));
        let mut out = Vec::new();
        aws_smithy_eventstream::frame::write_message_to(&m, &mut out).unwrap();
        out
    }

    #[tokio::test]
    async fn messages_split_anywhere_become_frames() {
        let mut all = Vec::new();
        all.extend(frame("messageStart", r#"{"role":"assistant"}"#));
        all.extend(frame(
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"Hello"}}"#,
        ));
        all.extend(frame("messageStop", r#"{"stopReason":"end_turn"}"#));
        all.extend(frame(
            "metadata",
            r#"{"usage":{"inputTokens":1,"outputTokens":1,"totalTokens":2}}"#,
        ));
        for cut in [1, 7, 13, all.len() / 2, all.len() - 1] {
            let parts: Vec<Result<Bytes, UpstreamError>> = vec![
                Ok(Bytes::copy_from_slice(&all[..cut])),
                Ok(Bytes::copy_from_slice(&all[cut..])),
            ];
            let conv = stream::ConverseToChat::new("c".into(), "m".into(), false);
            let body = event_stream(futures::stream::iter(parts).boxed(), conv);
            let frames: Vec<Bytes> = body.map(|r| r.unwrap()).collect().await;
            let text: String = frames
                .iter()
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect();
            assert!(text.contains("\"Hello\""), "{text}");
            assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        }
        // Cut inside a message: an error, no [DONE].
        let parts: Vec<Result<Bytes, UpstreamError>> =
            vec![Ok(Bytes::copy_from_slice(&all[..all.len() - 3]))];
        let conv = stream::ConverseToChat::new("c".into(), "m".into(), false);
        let items: Vec<_> = event_stream(futures::stream::iter(parts).boxed(), conv)
            .collect()
            .await;
        assert!(items.last().unwrap().is_err());
        // A prelude past the limit is refused before buffering.
        let mut big = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        assert!(next_message(&mut big).is_err());
    }
}
