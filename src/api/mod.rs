//! The HTTP surface: routes, shared state, and the layers every request
//! passes (request id, panic guard, OpenAI-shaped errors for unknown routes
//! and methods).

pub mod admin;
pub mod anthropic;
pub mod auth;
pub mod cache;
pub mod docs;
pub mod door;
pub mod error;
pub mod files;
pub mod guard;
pub mod health;
pub mod keys;
pub mod litellm_compat;
pub mod logs;
pub mod media;
pub mod metrics;
pub mod openai;
pub mod previous;
pub mod responses_ws;
pub mod routes;
pub mod session;
pub mod throttle;
pub mod ui;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::HeaderValue;

use crate::proxy::Proxy;
use crate::upstream::REQUEST_ID;
use error::ApiError;

/// State shared by every handler: the proxy layer's ([`Proxy`], reached
/// through `Deref`, so `state.live` reads as before) and the HTTP layer's
/// own (admin, sessions, WebSocket slots).
pub struct AppState {
    /// What a request's life needs.
    pub proxy: Proxy,
    pub started: Instant,
    /// Serializes admin changes (register, delete, copy, reload).
    pub admin_lock: tokio::sync::Mutex<()>,
    /// Shared state across instances (`proxy_settings.redis_url`), fixed
    /// at start-up; a reload does not reconnect.
    pub redis: Option<Arc<crate::redis::SharedRedis>>,
    /// Runtime models shared through PostgreSQL, when the database is.
    pub model_store: Option<Arc<crate::model_store::ModelStore>>,
    /// The stored version this instance runs (0: none).
    pub model_version: std::sync::atomic::AtomicI64,
    /// This proxy's own base URL (`http://127.0.0.1:PORT` when it listens
    /// on every address), for replays from the admin API.
    pub self_url: String,
    /// The client for requests to `self_url` when it is `https://`: the
    /// listener's certificate names a host, not the address, so it is not
    /// checked on this one loopback-or-own-address hop (`None` over HTTP).
    pub self_client: Option<reqwest::Client>,
    /// Admin UI sessions (logins with the admin password).
    pub sessions: session::Sessions,
    /// The address the proxy listens on (the admin API's `Host` check).
    pub listen: std::net::SocketAddr,
    /// Wrong admin passwords per client address (Bearer and UI login).
    pub auth_throttle: throttle::Throttle,
    /// Open Responses WebSocket sockets (an upgraded connection leaves the
    /// server's connection count): at most `max_connections` of them.
    pub ws_slots: Arc<tokio::sync::Semaphore>,
}

pub type Shared = Arc<AppState>;

impl std::ops::Deref for AppState {
    type Target = Proxy;
    fn deref(&self) -> &Proxy {
        &self.proxy
    }
}

/// The request's id, from the client's `x-request-id` or made here: the
/// one echoed on the response and sent upstream.
#[derive(Clone)]
pub struct RequestId(pub HeaderValue);

/// The request log's ids for a request: the proxy's own (a UUIDv7, made
/// for every request; a record's key, never chosen by a client) and the
/// client's `x-request-id` when it sent a usable one (kept beside it,
/// searchable, never a key: a client cannot overwrite or hide a record).
#[derive(Clone)]
pub struct LogIds {
    pub own: HeaderValue,
    pub client: Option<HeaderValue>,
}

/// Every route of [`routes`], the client ones with and without the `/v1`
/// prefix.
pub fn router(state: Shared) -> Router {
    let table = |group: routes::Group| {
        group
            .routes()
            .into_iter()
            .fold(Router::new(), |router, r| router.route(r.path, r.handler))
    };
    // The client groups are served under `/v1` and at the root: each route
    // at both paths of one router, not a nested one (a nested router costs
    // every request a second lookup and a rewritten URI).
    let flat = |group: routes::Group| {
        group.routes().into_iter().fold(Router::new(), |router, r| {
            group.prefixes().iter().fold(router, |router, prefix| {
                router.route(&format!("{prefix}{}", r.path), r.handler.clone())
            })
        })
    };
    let api = flat(routes::Group::OpenAi)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::client_key,
        ))
        // Anthropic's routes answer errors (auth included) in its shape.
        .merge(
            flat(routes::Group::Anthropic)
                .route_layer(middleware::from_fn_with_state(
                    state.clone(),
                    auth::client_key,
                ))
                .layer(middleware::from_fn(anthropic::error_shape)),
        );
    let admin = table(routes::Group::Admin)
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::admin));
    // LiteLLM's management endpoints: the master key or the admin password.
    let litellm = table(routes::Group::LiteLlm).route_layer(middleware::from_fn_with_state(
        state.clone(),
        litellm_compat::auth,
    ));
    let cors = state.live.load().config.cors.as_ref().map(cors_layer);
    let router = Router::new()
        .merge(api)
        .nest("/admin", admin)
        .merge(litellm)
        .merge(table(routes::Group::Root))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), edge))
        .with_state(state)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ));
    // Outside everything else, so preflights need no key.
    match cors {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

/// `proxy_settings.cors` as a layer (read at start-up). `x-request-id` and
/// `Retry-After` are exposed to scripts.
fn cors_layer(c: &crate::config::CorsSettings) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};
    let origins = if c.allow_origins.is_empty() {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            c.allow_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    let headers = match &c.allow_headers {
        Some(h) if h.iter().any(|h| h == "*") => AllowHeaders::any(),
        Some(h) => AllowHeaders::list(
            h.iter()
                .filter_map(|h| http::HeaderName::from_bytes(h.trim().as_bytes()).ok()),
        ),
        None => AllowHeaders::mirror_request(),
    };
    let methods = match &c.allow_methods {
        Some(m) if m.iter().any(|m| m == "*") => AllowMethods::any(),
        Some(m) => AllowMethods::list(
            m.iter()
                .filter_map(|m| http::Method::from_bytes(m.trim().as_bytes()).ok()),
        ),
        None => AllowMethods::mirror_request(),
    };
    let mut layer = CorsLayer::new()
        .allow_origin(origins)
        .allow_headers(headers)
        .allow_methods(methods)
        .expose_headers([REQUEST_ID, http::header::RETRY_AFTER]);
    if let Some(age) = c.max_age {
        layer = layer.max_age(age);
    }
    layer
}

async fn not_found(req: Request) -> ApiError {
    ApiError::RouteNotFound(format!("{} {}", req.method(), req.uri().path()))
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::MethodNotAllowed(format!("{} on {}", req.method(), req.uri().path()))
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::Internal("the proxy hit a bug handling this request".into()).into_response()
}

/// The one layer every route passes, in this order (one layer rather than
/// three: each layer costs every request a boxed future and a cloned
/// service):
/// 1. the request id: the client's `x-request-id` (if sane) or a new one,
///    set on the response whatever the outcome;
/// 2. the metrics' count and timing ([`metrics::begin`]);
/// 3. the admin API's edge rules ([`guard::admin_refusal`]).
async fn edge(
    axum::extract::State(state): axum::extract::State<Shared>,
    mut req: Request,
    next: Next,
) -> Response {
    let client = req
        .headers()
        .get(REQUEST_ID)
        .filter(|v| !v.is_empty() && v.len() <= 200 && v.to_str().is_ok())
        .cloned();
    let own = new_request_id();
    let id = client.clone().unwrap_or_else(|| own.clone());
    req.extensions_mut().insert(RequestId(id.clone()));
    req.extensions_mut().insert(LogIds { own, client });
    let observed = metrics::begin(&mut req);
    let response = match guard::admin_refusal(&state, &req) {
        Some(refused) => refused,
        None => next.run(req).await,
    };
    let mut response = metrics::end(observed, response);
    response.headers_mut().insert(REQUEST_ID, id);
    response
}

/// A UUIDv7 (time-ordered, so ids sort like the log), its random part from
/// a fast user-space generator instead of a system call per request.
pub(super) fn new_request_id() -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let random: [u8; 10] = std::array::from_fn(|_| fastrand::u8(..));
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
    let s = id.hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("unknown"))
}
