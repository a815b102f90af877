//! OpenAI-compatible endpoints: chat completions, embeddings, responses and
//! the model list. Each proxied call reads the body once, loads the live
//! snapshot once, lets the router find an answer, and relays it.

use std::convert::Infallible;

use axum::body::Body;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, OriginalUri, Path, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::json;

use super::error::ApiError;
use super::metrics::ModelSlot;
use super::relay::{Converters, relay};
use super::{RequestId, Shared};
use crate::cache;
use crate::config::Backend;
use crate::endpoint::Endpoint;
use crate::limits::Ticket;
use crate::pipeline::request::RequestBody;
use crate::pipeline::response::Session;
use crate::protocol;
use crate::reqlog::{Outcome, RecordGuard};
use crate::router::{Answer, Dispatch};
use crate::upstream;
use crate::usage::{StreamUsage, Usage};

pub async fn chat_completions(
    State(state): State<Shared>,
    req: Request,
) -> Result<Response, ApiError> {
    proxy(state, Endpoint::ChatCompletions, req).await
}

/// Legacy text completions: passed through to OpenAI-compatible backends.
pub async fn completions(State(state): State<Shared>, req: Request) -> Result<Response, ApiError> {
    proxy(state, Endpoint::Completions, req).await
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
    let body = state.live.load().models_listing(&state.upstream());
    json_body(StatusCode::OK, body)
}

pub async fn get_model(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let live = state.live.load();
    if live.resolve(&id).is_none() {
        return Err(model_not_found(&id, &live.model_names));
    }
    let body = json!({"id": id, "object": "model", "created": live.created, "owned_by": "yallmp"});
    Ok(json_body(StatusCode::OK, Bytes::from(body.to_string())))
}

/// A backend answer that could not be translated for the client (the
/// parser's message may quote the answer: scrubbed like any upstream text).
fn translation_failed(
    e: &protocol::TranslateError,
    scrubber: &crate::reqlog::redact::Scrubber,
) -> ApiError {
    ApiError::Internal(
        scrubber.scrub_upstream(format!("cannot translate the backend's answer: {e}")),
    )
}

/// The path the response parsers are matched against: chat completions
/// whenever the answer passes through chat (a translated request), else the
/// client's own.
fn pipeline_path(client: Endpoint, wire: Endpoint, path: &str) -> &str {
    if client != wire && protocol::via_chat(client, wire) {
        "/v1/chat/completions"
    } else {
        path
    }
}

pub(super) fn model_not_found(model: &str, names: &[String]) -> ApiError {
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
pub(super) async fn proxy(
    state: Shared,
    endpoint: Endpoint,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or(HeaderValue::from_static("unknown"));
    // The record's key is the proxy's own id; the client's `x-request-id`
    // is kept beside it (see `LogIds`).
    let ids = parts.extensions.get::<super::LogIds>();
    let own_id = ids
        .and_then(|i| i.own.to_str().ok())
        .unwrap_or("unknown")
        .to_string();
    let client_request_id = ids
        .and_then(|i| i.client.as_ref())
        .and_then(|c| c.to_str().ok())
        .map(str::to_string);
    let record = state.log.start(
        own_id,
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
    if let Some(r) = guard.record() {
        r.client_request_id = client_request_id;
    }
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
                ApiError::LoopDetected(_) => Outcome::ClientError,
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
    // Rate limits come first: a refused request costs no body read.
    let ticket = if live.config.rate_limits.any() {
        // A key counts as the client only when it is a configured one
        // (the client-key layer let it through); without configured keys
        // any token would do, so a key-less client counts by its address.
        let key = if live.config.auth.api_keys.is_empty() {
            None
        } else {
            crate::identity::presented(&parts.headers)
        };
        let client = crate::limits::client_id(
            key,
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        );
        state
            .limits
            .admit(&live.config.rate_limits, &client)
            .await
            .map_err(ApiError::RateLimited)?
    } else {
        None
    };
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
    // The configured model: the exact name, else a wildcard (`local-*`).
    let configured = live
        .resolve(&model)
        .ok_or_else(|| model_not_found(&model, &live.model_names))?
        .to_string();
    // Back round a loop (this proxy's own marker for this model): refused
    // once, instead of going round again.
    if upstream::hop::seen(&parts.headers, &configured) {
        return Err(ApiError::LoopDetected(configured));
    }
    let plan = live
        .plan(&configured)
        .ok_or_else(|| model_not_found(&model, &live.model_names))?;
    if let Some(slot) = parts.extensions.get::<ModelSlot>() {
        slot.set(&configured);
    }
    // The `cache` field is the proxy's: it never goes upstream.
    let (controls, stripped) = match parsed.get("cache") {
        Some(field) => (
            Some(cache::Controls::read(Some(field), &parts.headers)?),
            Some(parsed.without("cache")),
        ),
        None => (None, None),
    };
    let holder;
    let (raw, parsed) = match stripped {
        Some(b) => {
            holder = b;
            (&holder, RequestBody::parse(&holder)?)
        }
        None => (&raw, parsed),
    };
    // `previous_response_id` on translated backends: the conversation
    // rebuilt from the turns yallmp kept (see `previous`).
    let mut chain = None;
    let chain_holder;
    let own_id = parts
        .extensions
        .get::<super::LogIds>()
        .and_then(|i| i.own.to_str().ok())
        .unwrap_or("");
    let prepared = match endpoint {
        Endpoint::Responses => {
            super::previous::prepare(state, &live, &plan, raw, &parts.headers, own_id).await?
        }
        _ => None,
    };
    let (raw, parsed) = match prepared {
        Some((c, expanded)) => {
            chain = Some(c);
            match expanded {
                Some(b) => {
                    chain_holder = b;
                    (&chain_holder, RequestBody::parse(&chain_holder)?)
                }
                None => (raw, parsed),
            }
        }
        None => (raw, parsed),
    };
    let mut pending = None;
    let mut cache_status = None;
    if let Some(c) = state.cache.as_ref().filter(|c| c.covers(endpoint)) {
        let controls = match controls {
            Some(c) => c,
            None => cache::Controls::read(None, &parts.headers)?,
        };
        let key = c.key(endpoint, &model, &parsed, &parts.headers);
        let (status, found) = c.lookup(&key, &controls, &configured).await;
        if let Some(r) = guard.record() {
            r.cache = Some(status.as_str());
        }
        if let Some(entry) = found {
            return Ok(from_cache(&entry, guard));
        }
        cache_status = Some(status);
        if !controls.no_store {
            pending = Some(cache::Pending {
                cache: c.clone(),
                key,
                ttl: controls.ttl,
            });
        }
    }
    let path = parts
        .extensions
        .get::<OriginalUri>()
        .map_or(parts.uri.path(), |u| u.0.path());
    // Interleaved thinking: earlier turns' reasoning, looked up before
    // anything goes upstream.
    let thinking = state
        .thinking
        .for_request(
            &live,
            &plan,
            &model,
            &parsed,
            &parts.headers,
            endpoint,
            path,
        )
        .await
        .map_err(ApiError::ReasoningNotFound)?;
    let client = state.upstream();
    let dispatch = Dispatch {
        client: &client,
        settings: &live.config.router,
        streaming: &live.config.streaming,
        plan: &plan,
        endpoint,
        body: &parsed,
        raw,
        headers: &parts.headers,
        request_id,
        stream,
        forward_credentials: live.config.auth.api_keys.is_empty(),
        registry: &state.backends,
        thinking: thinking
            .as_ref()
            .and_then(|t| t.restore.as_ref())
            .map(|r| r as &dyn crate::router::Restored),
        scrubber: &live.scrubber,
        max_response_bytes: live.config.server.max_response_bytes,
        sockets: parts
            .extensions
            .get::<std::sync::Arc<crate::upstream::ws::Sockets>>(),
    };
    let answer = match dispatch.run(guard.attempts()).await {
        Ok(answer) => answer,
        Err(_) if endpoint == Endpoint::CountTokens => {
            // No backend could count: the documented estimate.
            let tokens = serde_json::from_slice::<serde_json::Value>(raw)
                .map(|v| protocol::tokens::estimate(&v))
                .unwrap_or(0);
            let body = Bytes::from(json!({ "input_tokens": tokens }).to_string());
            let mut response = json_body(StatusCode::OK, body.clone());
            response.headers_mut().insert(
                super::anthropic::ESTIMATE_HEADER,
                HeaderValue::from_static("estimate"),
            );
            return Ok(Forwarded::Complete(response, body));
        }
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
            wire,
        } => {
            tracing::debug!(%model, backend = %backend.name, status = status.as_u16(), "answered");
            observe_usage(&state.backends, &backend, Usage::from_body(&body), ticket);
            if let Some(r) = guard.record() {
                r.backend = Some(backend.name.clone());
            }
            // The record keeps what the upstream said; the client gets the
            // parsed answer, in its own dialect.
            let mut sent = body.clone();
            if !status.is_success() {
                sent = protocol::error(endpoint, wire, status.as_u16(), &body);
            } else if let Some(chat) = protocol::to_chat(endpoint, wire, &body) {
                sent = chat.map_err(|e| translation_failed(&e, &live.scrubber))?;
            }
            if let Some(p) = live
                .pipeline(&backend.model_name, pipeline_path(endpoint, wire, path))
                .filter(|_| status.is_success() && protocol::via_chat(endpoint, wire))
            {
                let mut session = p
                    .session(parsed.get("tools"), live.config.logging.log_parsed_response)
                    .with_keep_limit(live.config.logging.max_body_bytes);
                if let Some(new) = session.apply_json(&sent) {
                    sent = new;
                }
                note_parsed(guard, &session);
            }
            if status.is_success()
                && let Some(out) = protocol::from_chat(endpoint, wire, &sent, &model)
            {
                sent = out.map_err(|e| translation_failed(&e, &live.scrubber))?;
            }
            if let Some(c) = chain
                .as_ref()
                .filter(|_| status.is_success() && wire != Endpoint::Responses)
            {
                sent = c.json(&sent, guard);
            }
            if let Some(p) = pending.filter(|_| status.is_success()) {
                p.store_body(status.as_u16(), &headers, sent.clone());
            }
            if let Some(r) = thinking
                .as_ref()
                .and_then(|t| t.recorder(&backend))
                .filter(|_| status.is_success())
            {
                r.json(&sent).await;
            }
            let mut response = respond(status, &headers, Body::from(sent));
            mark(&mut response, cache_status);
            routing_headers(&mut response, &backend.name, guard.attempts().len());
            if let Some((k, v)) = thinking.as_ref().and_then(|t| t.header(&backend)) {
                response.headers_mut().insert(k, v);
            }
            Ok(Forwarded::Complete(response, body))
        }
        Answer::Stream {
            status,
            headers,
            first,
            rest,
            backend,
            wire,
        } => {
            tracing::debug!(%model, backend = %backend.name, "streaming");
            let mut response = respond(status, &headers, Body::empty());
            routing_headers(&mut response, &backend.name, guard.attempts().len());
            if let Some((k, v)) = thinking.as_ref().and_then(|t| t.header(&backend)) {
                response.headers_mut().insert(k, v);
            }
            mark(&mut response, cache_status);
            let tee = pending
                .filter(|_| status.is_success())
                .map(|p| p.tee(status.as_u16(), &headers));
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
                .pipeline(&backend.model_name, pipeline_path(endpoint, wire, path))
                .filter(|_| protocol::via_chat(endpoint, wire))
                .map(|p| {
                    p.session(parsed.get("tools"), live.config.logging.log_parsed_stream)
                        .with_keep_limit(live.config.logging.max_body_bytes)
                });
            let mut owned = owned;
            let from_chat = match chain.filter(|_| {
                status.is_success()
                    && endpoint == Endpoint::Responses
                    && wire != Endpoint::Responses
            }) {
                Some(c) => Some(c.stream(&mut owned, &model)),
                None => protocol::stream_from_chat(endpoint, wire, &model),
            };
            let convert = Converters {
                to_chat: protocol::stream_to_chat(endpoint, wire, raw),
                from_chat,
            };
            let remember = thinking
                .as_ref()
                .and_then(|t| t.recorder(&backend))
                .filter(|_| status.is_success())
                .map(crate::thinking::Recorder::stream);
            let (mut parts, _) = response.into_parts();
            parts.headers.remove(header::CONTENT_LENGTH);
            if convert.to_chat.is_some() || convert.from_chat.is_some() {
                parts.headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                );
            }
            Ok(Forwarded::Stream(Response::from_parts(
                parts,
                relay(
                    first,
                    rest,
                    endpoint,
                    owned,
                    session,
                    convert,
                    Tokens {
                        backends: state.backends.clone(),
                        backend,
                        usage: StreamUsage::default(),
                        ticket,
                    },
                    tee,
                    remember,
                    live.scrubber.clone(),
                ),
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

/// Says what the cache did, when it was involved.
fn mark(response: &mut Response, status: Option<cache::Status>) {
    if let Some(s) = status {
        response
            .headers_mut()
            .insert(cache::HEADER, HeaderValue::from_static(s.as_str()));
    }
}

/// The answer from a cache entry: the stored body, or the stored chunks
/// replayed as a stream. The record notes the hit and what was sent.
fn from_cache(entry: &cache::Entry, guard: &mut RecordGuard) -> Forwarded {
    let status = StatusCode::from_u16(entry.status).unwrap_or(StatusCode::OK);
    let content_type = entry
        .content_type
        .as_ref()
        .and_then(|c| HeaderValue::from_bytes(c).ok());
    let body = match &entry.stored {
        cache::Stored::Body(b) => Body::from(b.clone()),
        cache::Stored::Stream(chunks) => Body::from_stream(futures::stream::iter(
            chunks.clone().into_iter().map(Ok::<_, Infallible>),
        )),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        content_type.unwrap_or(HeaderValue::from_static("application/json")),
    );
    h.insert(cache::HEADER, HeaderValue::from_static("hit"));
    match &entry.stored {
        cache::Stored::Body(b) => Forwarded::Complete(response, b.clone()),
        cache::Stored::Stream(chunks) => {
            if let Some(r) = guard.record() {
                r.status = Some(status.as_u16());
                r.response_headers = Some(response.headers().clone());
                for c in chunks {
                    r.push_frame(c);
                }
            }
            guard.finish(Outcome::Ok);
            Forwarded::Stream(response)
        }
    }
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
        } else if let Some(t) = crate::conn::body_timeout_in(inner.as_ref()) {
            ApiError::BodyTimeout(*t)
        } else {
            ApiError::ReadBody(upstream::error_chain(inner.as_ref()))
        }
    })
}

/// A stream's token usage, observed when the relay ends however it ends
/// (done, broken, or the client gone).
pub(super) struct Tokens {
    backends: std::sync::Arc<crate::router::state::Registry>,
    backend: std::sync::Arc<Backend>,
    pub(super) usage: StreamUsage,
    ticket: Option<Ticket>,
}

impl Drop for Tokens {
    fn drop(&mut self) {
        observe_usage(
            &self.backends,
            &self.backend,
            self.usage.get(),
            self.ticket.take(),
        );
    }
}

/// Where an answer's token usage becomes known: counted in
/// `yallmp_tokens_total` (by the configured model of the backend that
/// answered) and charged to the tokens-per-minute limits.
fn observe_usage(
    backends: &crate::router::state::Registry,
    backend: &Backend,
    usage: Option<Usage>,
    ticket: Option<Ticket>,
) {
    let Some(usage) = usage else { return };
    let model = backend.model_name.clone();
    let (input, output) = (usage.input(), usage.output());
    backends.add_tokens(&backend.name, input, output);
    if input > 0 {
        metrics::counter!(crate::metrics_names::TOKENS, "model" => model.clone(), "direction" => "in")
            .increment(input);
    }
    if output > 0 {
        metrics::counter!(crate::metrics_names::TOKENS, "model" => model, "direction" => "out")
            .increment(output);
    }
    if let Some(t) = ticket {
        t.charge(usage.total());
    }
}

/// The parsers' output and failures, into the record.
pub(super) fn note_parsed(guard: &mut RecordGuard, session: &Session) {
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

impl crate::router::Restored for crate::thinking::restore::Restore {
    fn messages_for(&self, backend: &Backend) -> Option<String> {
        crate::thinking::restore::Restore::messages_for(self, backend)
    }
}
