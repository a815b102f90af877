//! One request's life, from the moment the HTTP layer has decoded it to the
//! answer it hands back, in this order (read [`Proxy::handle`] then
//! [`forward`] top to bottom):
//!
//! 1. **admit**: the rate limits (before the body is read: a refused
//!    request costs nothing);
//! 2. **read** the body (`server.max_body_bytes`), parse it, resolve the
//!    model, refuse a loop;
//! 3. **identify** the client (its key; its address without configured
//!    keys) for the limits, the cache and the `previous_response_id` scope;
//! 4. **cache**: the `cache` field stripped, the answer looked up;
//! 5. **previous**: a Responses conversation rebuilt (`previous`);
//! 6. **thinking**: earlier turns' reasoning looked up;
//! 7. **dispatch** to the router (backends, fallbacks, retries);
//! 8. **response chain** ([`chain`]): to chat, parsers, thinking recorder,
//!    from chat; a whole answer and a stream walk the same stages;
//! 9. **record**: the request log, whatever happened ([`Proxy::handle`];
//!    a stream's record is finished by its relay).
//!
//! Its inputs are plain values ([`Request`]); its output an HTTP response
//! or an [`ApiError`] that the HTTP layer encodes.

mod answer;
pub mod chain;
pub mod error;
mod forward;
mod media;
pub mod previous;
pub mod relay;
pub mod usage;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

use crate::endpoint::Endpoint;
use crate::live::Live;
use crate::metrics_names::ModelSlot;
use crate::reqlog::{Outcome, RecordGuard};
pub use answer::json_body;
pub use error::ApiError;
pub use forward::ESTIMATE_HEADER;
pub use media::relay_raw;

/// What a request's life needs of the running proxy (the HTTP layer's own
/// state, sessions, admin lock and so on, lives beside it in `AppState`).
pub struct Proxy {
    /// The current snapshot; requests load it once.
    pub live: ArcSwap<Live>,
    /// The proxy's own calls' client (health checks, model catalogs,
    /// replays); clients' requests go through [`Proxy::http`].
    pub client: reqwest::Client,
    /// The pooled client for clients' requests upstream, used where the
    /// serving thread has none of its own ([`Proxy::http`]).
    pub http: crate::upstream::Http,
    /// The request log.
    pub log: crate::reqlog::RequestLog,
    /// Set when shutdown begins (requests cut after it count as cancelled).
    pub shutting_down: Arc<AtomicBool>,
    /// Every backend's runtime state (in flight, cooldowns, health, stats);
    /// kept across reloads.
    pub backends: Arc<crate::router::state::Registry>,
    /// Rate limits' state (the limits come from the live config).
    pub limits: Arc<crate::limits::Limiter>,
    /// The response cache (`proxy_settings.cache`), when on; fixed at
    /// start-up.
    pub cache: Option<Arc<crate::cache::ResponseCache>>,
    /// A read-only pool on the request log's database, for the admin API
    /// and `previous_response_id` (`None` when the log has no database).
    pub log_reader: Option<crate::reqlog::db::Db>,
    /// Interleaved thinking's stores (`model_params.interleaved_thinking`).
    pub thinking: Arc<crate::thinking::Thinking>,
    /// Translated Responses answers kept for `previous_response_id` until
    /// the log's writer has stored them (see [`previous`]).
    pub recent_responses: Arc<previous::Recent>,
    /// Virtual keys and teams, and their spend (docs/keys-and-spend.md).
    pub keys: Arc<crate::keys::service::Keys>,
}

impl Proxy {
    /// The upstream client for a request served on this thread: the
    /// thread's own under a thread-per-core server (its connections are
    /// driven where the request runs), else the shared one.
    pub fn http(&self) -> crate::upstream::Http {
        crate::upstream::client_here(&self.http)
    }

    /// The client for the proxy's own calls (a model catalog, a replay).
    pub fn upstream(&self) -> reqwest::Client {
        self.client.clone()
    }
}

/// One request, as the HTTP layer decoded it.
pub struct Request {
    pub endpoint: Endpoint,
    pub method: http::Method,
    /// The URI as the client sent it (`/v1` included): the log's path, and
    /// the path the response parsers are matched against.
    pub uri: http::Uri,
    pub peer: Option<SocketAddr>,
    /// The client's headers: forwarded upstream (those that may be), and
    /// read for the cache controls, the loop marker and the client's key.
    pub headers: HeaderMap,
    /// Read here, after the rate limits.
    pub body: Body,
    /// The id echoed to the client and sent upstream.
    pub request_id: HeaderValue,
    /// The record's key: the proxy's own id (a UUIDv7).
    pub own_id: String,
    /// The client's `x-request-id`, kept beside the record's key.
    pub client_request_id: Option<String>,
    /// Where the configured model goes once known (the metrics' label).
    pub model_slot: Option<ModelSlot>,
    /// A Responses WebSocket's own upstream sockets, reused turn after turn.
    pub sockets: Option<Arc<crate::upstream::ws::Sockets>>,
    /// The virtual key (and team) that made the request, when it was one.
    pub identity: Option<crate::keys::service::Identity>,
}

/// What [`forward`] made of a request.
enum Forwarded {
    /// A whole answer (and its body, for the record).
    Complete(Response, Bytes),
    /// A stream; the relay owns the record from here.
    Stream(Response),
}

impl Proxy {
    /// A request's whole life; it is recorded whatever happens to it.
    pub async fn handle(&self, req: Request) -> Result<Response, ApiError> {
        let record = self.log.start(
            req.own_id.clone(),
            req.method.to_string(),
            req.uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string(),
            req.peer,
            &req.headers,
        );
        let mut guard = RecordGuard::new(record, self.log.clone(), self.shutting_down.clone());
        if let Some(r) = guard.record() {
            r.client_request_id = req.client_request_id.clone();
        }
        // `on_full: wait`: room in the log's queue before anything else.
        let admitted = self
            .log
            .admit(|| crate::reqlog::wait_bound(&self.live.load().config))
            .await;
        let forwarded = match admitted {
            Ok(()) => forward::forward(self, req, &mut guard).await,
            Err(e) => Err(e.into()),
        };
        match forwarded {
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
}

/// The answer for a model nobody configured (its message lists the
/// configured ones).
pub fn model_not_found(model: &str, names: &[String]) -> ApiError {
    ApiError::ModelNotFound {
        model: model.to_string(),
        available: if names.is_empty() {
            "(none configured)".into()
        } else {
            names.join(", ")
        },
    }
}
