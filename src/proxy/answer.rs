//! The answer half of a request's life: what the router found, through the
//! response chain ([`super::chain`]), as the client's response: a whole
//! answer at once, a stream through the relay; or a cache entry.

use std::convert::Infallible;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::chain::{Frames, Whole};
use super::error::{ATTEMPTS_HEADER, ApiError, BACKEND_HEADER};
use super::relay::{Relay, relay};
use super::usage::{self, Tokens};
use super::{Forwarded, Proxy, previous};
use crate::cache;
use crate::endpoint::Endpoint;
use crate::limits::Ticket;
use crate::live::Live;
use crate::pipeline::request::RequestBody;
use crate::protocol;
use crate::reqlog::{Outcome, RecordGuard};
use crate::router::Answer;
use crate::thinking::ForRequest;
use crate::upstream;
use crate::usage::StreamUsage;

/// What the request half leaves for the answer.
/// The cost of a whole answer in USD, when its price is known
/// (docs/keys-and-spend.md).
pub const COST_HEADER: &str = "x-yallmp-cost";

pub(super) struct Context<'a> {
    pub proxy: &'a Proxy,
    pub live: &'a Live,
    /// The client's endpoint.
    pub endpoint: Endpoint,
    /// The requested model.
    pub model: &'a str,
    /// The client's path.
    pub path: &'a str,
    /// The body as sent (the client's, `cache` field gone).
    pub raw: &'a Bytes,
    pub parsed: &'a RequestBody<'a>,
    pub ticket: Option<Ticket>,
    /// Where the answer is stored, on a cache miss.
    pub pending: Option<cache::Pending>,
    pub cache_status: Option<cache::Status>,
    pub previous: Option<previous::Chain>,
    pub thinking: Option<ForRequest>,
    /// Who pays for the answer (a virtual key's budgets).
    pub bill: usage::Bill,
}

pub(super) async fn answer(
    cx: Context<'_>,
    answer: Answer,
    guard: &mut RecordGuard,
) -> Result<Forwarded, ApiError> {
    let Context {
        proxy,
        live,
        endpoint,
        model,
        path,
        raw,
        parsed,
        ticket,
        pending,
        cache_status,
        previous,
        thinking,
        bill,
    } = cx;
    let logging = &live.config.logging;
    match answer {
        Answer::Complete {
            status,
            headers,
            body,
            backend,
            wire,
            usage: read,
        } => {
            tracing::debug!(%model, backend = %backend.name, status = status.as_u16(), "answered");
            let price = backend.price_for(backend.upstream_model.as_deref().unwrap_or(model));
            let cost = usage::observe(&proxy.backends, &backend, price, read, ticket, &bill);
            if let Some(r) = guard.record() {
                r.backend = Some(backend.name.clone());
                r.price = price;
                r.usage = read;
            }
            // The record keeps what the upstream said; the client gets the
            // parsed answer, in its own dialect.
            let sent = if status.is_success() {
                let chain = Whole {
                    endpoint,
                    wire,
                    model,
                    parsers: live
                        .pipeline(&backend.model_name, pipeline_path(endpoint, wire, path))
                        .filter(|_| protocol::via_chat(endpoint, wire))
                        .map(|p| {
                            p.session(parsed.get("tools"), logging.log_parsed_response)
                                .with_keep_limit(logging.max_body_bytes)
                        }),
                    recorder: thinking.as_ref().and_then(|t| t.recorder(&backend)),
                    previous: previous.as_ref().filter(|_| wire != Endpoint::Responses),
                    scrubber: &live.scrubber,
                };
                let sent = chain.run(body.clone(), guard).await?;
                if let Some(p) = pending {
                    p.store_body(status.as_u16(), &headers, sent.clone());
                }
                sent
            } else {
                protocol::error(endpoint, wire, status.as_u16(), &body)
            };
            let mut response = respond(status, &headers, Body::from(sent));
            if let Some(usd) = cost
                && let Ok(v) = HeaderValue::from_str(&format!("{usd:.6}"))
            {
                response.headers_mut().insert(COST_HEADER, v);
            }
            mark(&mut response, cache_status);
            routing_headers(&mut response, &backend.name, guard.attempts().len());
            if let Some((k, v)) = thinking.as_ref().and_then(|t| t.header(&backend)) {
                response.headers_mut().insert(k, v);
            }
            Ok(Forwarded::Complete(response, body))
        }
        Answer::Raw {
            status,
            headers,
            body,
            backend,
        } => {
            tracing::debug!(%model, backend = %backend.name, "relaying a binary answer");
            let price = backend.price_for(backend.upstream_model.as_deref().unwrap_or(model));
            usage::observe(&proxy.backends, &backend, price, None, ticket, &bill);
            let attempts = guard.attempts().len();
            let owned = std::mem::replace(
                guard,
                RecordGuard::new(None, proxy.log.clone(), proxy.shutting_down.clone()),
            );
            Ok(Forwarded::Stream(super::media::relay_raw(
                status, &headers, body, &backend, attempts, owned,
            )))
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
            let price = backend.price_for(backend.upstream_model.as_deref().unwrap_or(model));
            if let Some(r) = guard.record() {
                r.backend = Some(backend.name.clone());
                r.price = price;
                r.status = Some(status.as_u16());
                r.response_headers = Some(response.headers().clone());
            }
            let mut owned = std::mem::replace(
                guard,
                RecordGuard::new(None, proxy.log.clone(), proxy.shutting_down.clone()),
            );
            let parsers = live
                .pipeline(&backend.model_name, pipeline_path(endpoint, wire, path))
                .filter(|_| protocol::via_chat(endpoint, wire))
                .map(|p| {
                    p.session(parsed.get("tools"), logging.log_parsed_stream)
                        .with_keep_limit(logging.max_body_bytes)
                });
            let from_chat = match previous.filter(|_| {
                status.is_success()
                    && endpoint == Endpoint::Responses
                    && wire != Endpoint::Responses
            }) {
                Some(c) => Some(c.stream(&mut owned, model)),
                None => protocol::stream_from_chat(endpoint, wire, model),
            };
            let recorder = thinking
                .as_ref()
                .and_then(|t| t.recorder(&backend))
                .filter(|_| status.is_success())
                .map(crate::thinking::Recorder::stream);
            let chain = Frames::new(
                protocol::stream_to_chat(endpoint, wire, raw),
                parsers,
                recorder,
                from_chat,
            );
            let (mut parts, _) = response.into_parts();
            parts.headers.remove(header::CONTENT_LENGTH);
            if chain.translates() {
                parts.headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                );
            }
            let tokens = Tokens {
                backends: proxy.backends.clone(),
                backend,
                usage: StreamUsage::default(),
                ticket,
                price,
                bill,
            };
            let body = relay(
                first,
                rest,
                Relay {
                    endpoint,
                    guard: owned,
                    chain,
                    tokens,
                    tee,
                    scrubber: live.scrubber.clone(),
                },
            );
            Ok(Forwarded::Stream(Response::from_parts(parts, body)))
        }
    }
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

/// `x-yallmp-backend` (who answered) and `x-yallmp-attempts` (how many
/// attempts it took).
fn routing_headers(response: &mut Response, backend: &str, attempts: usize) {
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(backend) {
        h.insert(BACKEND_HEADER, v);
    }
    h.insert(ATTEMPTS_HEADER, HeaderValue::from(attempts));
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
pub(super) fn from_cache(entry: &cache::Entry, guard: &mut RecordGuard) -> Forwarded {
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

/// A JSON answer of the proxy's own.
pub fn json_body(status: StatusCode, body: Bytes) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
