//! OpenAI-compatible endpoints: chat completions, embeddings, responses and
//! the model list. Each proxied call reads the body once, loads the live
//! snapshot once, lets the router find an answer, and relays it.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::body::Body;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, OriginalUri, Path, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::json;

use super::error::ApiError;
use super::{RequestId, Shared};
use crate::pipeline::request::RequestBody;
use crate::pipeline::response::Session;
use crate::reqlog::{Outcome, RecordGuard};
use crate::router::stream::SseSource;
use crate::router::{Answer, Dispatch};
use crate::sse;
use crate::upstream::{self, Endpoint, UpstreamError};

pub async fn chat_completions(
    State(state): State<Shared>,
    req: Request,
) -> Result<Response, ApiError> {
    proxy(state, Endpoint::ChatCompletions, req).await
}

pub async fn embeddings(State(state): State<Shared>, req: Request) -> Result<Response, ApiError> {
    proxy(state, Endpoint::Embeddings, req).await
}

pub async fn responses(State(state): State<Shared>, req: Request) -> Result<Response, ApiError> {
    if !state.live.load().config.enable_responses_endpoint {
        return Err(ApiError::EndpointDisabled(
            "The Responses endpoint is off. Set `proxy_settings.enable_responses_endpoint: true` \
             (or `general_settings.enable_responses_endpoint: true`) in the config to enable it."
                .into(),
        ));
    }
    proxy(state, Endpoint::Responses, req).await
}

pub async fn list_models(State(state): State<Shared>) -> Response {
    json_body(StatusCode::OK, state.live.load().models_json.clone())
}

pub async fn get_model(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let live = state.live.load();
    if live.plan(&id).is_none() {
        return Err(model_not_found(&id, &live.model_names));
    }
    let body = json!({"id": id, "object": "model", "created": live.created, "owned_by": "yallmp"});
    Ok(json_body(StatusCode::OK, Bytes::from(body.to_string())))
}

fn model_not_found(model: &str, names: &[String]) -> ApiError {
    ApiError::ModelNotFound {
        model: model.to_string(),
        available: if names.is_empty() {
            "(none configured)".into()
        } else {
            names.join(", ")
        },
    }
}

fn json_body(status: StatusCode, body: Bytes) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The shared path of every proxied endpoint: the request is recorded
/// whatever happens to it.
async fn proxy(state: Shared, endpoint: Endpoint, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or(HeaderValue::from_static("unknown"));
    let record = state.log.start(
        request_id.to_str().unwrap_or("unknown").to_string(),
        parts.method.to_string(),
        // Nested routes see the path without `/v1`; the log wants the original.
        parts
            .extensions
            .get::<OriginalUri>()
            .map_or(&parts.uri, |u| &u.0)
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string(),
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0),
        &parts.headers,
    );
    let mut guard = RecordGuard::new(record, state.log.clone(), state.shutting_down.clone());
    match forward(&state, endpoint, parts, body, &request_id, &mut guard).await {
        Ok(Forwarded::Complete(response, body)) => {
            if let Some(r) = guard.record() {
                r.status = Some(response.status().as_u16());
                r.response_headers = Some(response.headers().clone());
                r.response_body = Some(body);
            }
            let outcome = if response.status().is_success() {
                Outcome::Ok
            } else {
                Outcome::ClientError
            };
            guard.finish(outcome);
            Ok(response)
        }
        Ok(Forwarded::Stream(response)) => Ok(response),
        Err(e) => {
            if let Some(r) = guard.record() {
                r.status = Some(e.status().as_u16());
                r.response_body = Some(Bytes::from(e.body().to_string()));
                r.error = Some(e.to_string());
            }
            let outcome = match &e {
                ApiError::Upstream { .. } => Outcome::AllFailed,
                e if e.status().is_client_error() => Outcome::ClientError,
                _ => Outcome::UpstreamError,
            };
            guard.finish(outcome);
            Err(e)
        }
    }
}

enum Forwarded {
    /// A whole answer (and its body, for the record).
    Complete(Response, Bytes),
    /// A stream; the relay owns the record from here.
    Stream(Response),
}

async fn forward(
    state: &Shared,
    endpoint: Endpoint,
    parts: http::request::Parts,
    body: Body,
    request_id: &HeaderValue,
    guard: &mut RecordGuard,
) -> Result<Forwarded, ApiError> {
    let live = state.live.load_full();
    let raw = read_body(body, &parts.headers, live.config.server.max_body_bytes).await?;
    if let Some(r) = guard.record() {
        r.request_body = raw.clone();
    }
    let parsed = RequestBody::parse(&raw)?;
    let model = parsed.model()?;
    let stream = endpoint.can_stream() && parsed.stream();
    if let Some(r) = guard.record() {
        r.model = Some(model.clone());
        r.stream = stream;
    }
    let plan = live
        .plan(&model)
        .ok_or_else(|| model_not_found(&model, &live.model_names))?;
    let dispatch = Dispatch {
        client: &state.client,
        settings: &live.config.router,
        plan: &plan,
        endpoint,
        body: &parsed,
        raw: &raw,
        headers: &parts.headers,
        request_id,
        stream,
        forward_credentials: live.config.auth.api_keys.is_empty(),
        registry: &state.backends,
    };
    let path = parts
        .extensions
        .get::<OriginalUri>()
        .map_or(parts.uri.path(), |u| u.0.path());
    let answer = match dispatch.run(guard.attempts()).await {
        Ok(answer) => answer,
        Err(failure) => {
            let attempts = guard.attempts().clone();
            return Err(ApiError::Upstream { failure, attempts });
        }
    };
    match answer {
        Answer::Complete {
            status,
            headers,
            body,
            backend,
        } => {
            tracing::debug!(%model, backend = %backend.name, status = status.as_u16(), "answered");
            if let Some(r) = guard.record() {
                r.backend = Some(backend.name.clone());
            }
            // The record keeps what the upstream said; the client gets the
            // parsed answer.
            let mut sent = body.clone();
            if let Some(p) = live
                .pipeline(&backend.model_name, path)
                .filter(|_| status.is_success())
            {
                let mut session =
                    p.session(parsed.get("tools"), live.config.logging.log_parsed_response);
                if let Some(new) = session.apply_json(&body) {
                    sent = new;
                }
                note_parsed(guard, &session);
            }
            let mut response = respond(status, &headers, Body::from(sent));
            routing_headers(&mut response, &backend.name, guard.attempts().len());
            Ok(Forwarded::Complete(response, body))
        }
        Answer::Stream {
            status,
            headers,
            first,
            rest,
            backend,
        } => {
            tracing::debug!(%model, backend = %backend.name, "streaming");
            let mut response = respond(status, &headers, Body::empty());
            routing_headers(&mut response, &backend.name, guard.attempts().len());
            if let Some(r) = guard.record() {
                r.backend = Some(backend.name.clone());
                r.status = Some(status.as_u16());
                r.response_headers = Some(response.headers().clone());
            }
            let owned = std::mem::replace(
                guard,
                RecordGuard::new(None, state.log.clone(), state.shutting_down.clone()),
            );
            let session = live
                .pipeline(&backend.model_name, path)
                .map(|p| p.session(parsed.get("tools"), live.config.logging.log_parsed_stream));
            let (mut parts, _) = response.into_parts();
            parts.headers.remove(header::CONTENT_LENGTH);
            Ok(Forwarded::Stream(Response::from_parts(
                parts,
                relay(first, rest, endpoint, owned, session),
            )))
        }
    }
}

/// `x-yallmp-backend` (who answered) and `x-yallmp-attempts` (how many
/// attempts it took).
fn routing_headers(response: &mut Response, backend: &str, attempts: usize) {
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(backend) {
        h.insert(super::error::BACKEND_HEADER, v);
    }
    h.insert(super::error::ATTEMPTS_HEADER, HeaderValue::from(attempts));
}

fn respond(status: StatusCode, upstream: &HeaderMap, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = upstream::relayed_headers(upstream);
    response
}

/// Reads the request body up to `limit` bytes.
async fn read_body(body: Body, headers: &HeaderMap, limit: u64) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::TooLarge { limit });
    }
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, limit_usize).await.map_err(|e| {
        let inner = e.into_inner();
        if inner
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            ApiError::TooLarge { limit }
        } else {
            ApiError::ReadBody(upstream::error_chain(inner.as_ref()))
        }
    })
}

/// The client's event stream: the peeked frames, then the rest as they
/// arrive. An upstream failure after the first byte ends the stream with an
/// error event (never a fake `[DONE]`). Dropping the body (client gone)
/// drops the upstream response, which cancels the upstream request, and the
/// record guard notes the disconnect.
fn relay(
    first: Vec<Bytes>,
    rest: SseSource,
    endpoint: Endpoint,
    guard: RecordGuard,
    session: Option<Session>,
) -> Body {
    struct Relay {
        queue: VecDeque<Bytes>,
        source: Option<SseSource>,
        guard: RecordGuard,
        ends: Vec<usize>,
        /// The response parsers, when they apply.
        session: Option<Session>,
        parsed: Vec<Bytes>,
    }
    impl Relay {
        /// Upstream frames through the parsers, recording the raw ones.
        fn parse(&mut self, batch: &Bytes) -> Bytes {
            let mut start = 0;
            self.parsed.clear();
            for &end in &self.ends {
                let frame = batch.slice(start..end);
                start = end;
                if let Some(r) = self.guard.record() {
                    r.push_frame(&frame);
                }
                if let Some(s) = &mut self.session {
                    s.on_frame(&frame, &mut self.parsed);
                }
            }
            if self.session.is_none() {
                return batch.clone();
            }
            join(&self.parsed)
        }

        /// The stream ended: what the parsers still hold, and their notes
        /// for the record.
        fn end(&mut self) -> Option<Bytes> {
            let mut s = self.session.take()?;
            let mut out = Vec::new();
            s.end(&mut out);
            note_parsed(&mut self.guard, &s);
            (!out.is_empty()).then(|| join(&out))
        }
    }
    let state = Relay {
        queue: VecDeque::from(first),
        source: Some(rest),
        guard,
        ends: Vec::new(),
        session,
        parsed: Vec::new(),
    };
    // Frames that arrived together leave together: one write per upstream
    // read, each frame still recorded on its own.
    let frames = futures::stream::unfold(state, move |mut st| async move {
        loop {
            if let Some(frame) = st.queue.pop_front() {
                st.ends.clear();
                st.ends.push(frame.len());
                let out = st.parse(&frame);
                if out.is_empty() {
                    continue;
                }
                return Some((Ok::<_, Infallible>(out), st));
            }
            let src = st.source.as_mut()?;
            match src.next_batch(&mut st.ends).await {
                Ok(Some(batch)) => {
                    let out = st.parse(&batch);
                    if out.is_empty() {
                        continue;
                    }
                    return Some((Ok(out), st));
                }
                Ok(None) => {
                    st.source = None;
                    let tail = st.end();
                    st.guard.finish(Outcome::Ok);
                    return tail.map(|t| (Ok(t), st));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "upstream stream failed after the first byte");
                    let frame = stream_error_frame(&e, endpoint);
                    st.source = None;
                    // Whatever the parsers held goes out before the error.
                    let tail = st.end();
                    if let Some(r) = st.guard.record() {
                        r.push_frame(&frame);
                        r.error = Some(format!("upstream stream failed: {e}"));
                    }
                    st.guard.finish(Outcome::UpstreamError);
                    let out = match tail {
                        Some(t) => join(&[t, frame]),
                        None => frame,
                    };
                    return Some((Ok(out), st));
                }
            }
        }
    });
    Body::from_stream(frames)
}

/// Frames as one write.
fn join(frames: &[Bytes]) -> Bytes {
    match frames {
        [] => Bytes::new(),
        [one] => one.clone(),
        many => {
            let mut out = bytes::BytesMut::with_capacity(many.iter().map(Bytes::len).sum());
            for f in many {
                out.extend_from_slice(f);
            }
            out.freeze()
        }
    }
}

/// The parsers' output and failures, into the record.
fn note_parsed(guard: &mut RecordGuard, session: &Session) {
    let Some(r) = guard.record() else { return };
    if let Some(p) = session.parsed() {
        r.parsed = Some(p);
    }
    let errors = session.errors();
    if !errors.is_empty() {
        let msg = format!("response parsers: {}", errors.join("; "));
        r.error = Some(match r.error.take() {
            Some(e) => format!("{e}; {msg}"),
            None => msg,
        });
    }
}

/// The event that ends a stream the upstream broke.
pub fn stream_error_frame(e: &UpstreamError, endpoint: Endpoint) -> Bytes {
    let code = match e {
        UpstreamError::BodyTimeout(_) | UpstreamError::Timeout(_) => "upstream_timeout",
        _ => "stream_interrupted",
    };
    let error = json!({
        "message": format!("upstream stream failed: {e}"),
        "type": "upstream_error",
        "code": code,
    });
    match endpoint {
        Endpoint::Responses => sse::named_frame(
            "error",
            json!({"type": "error", "code": code, "message": error["message"], "error": error})
                .to_string()
                .as_bytes(),
        ),
        _ => sse::data_frame(json!({ "error": error }).to_string().as_bytes()),
    }
}
