//! Talking to backends: one pooled HTTP client, the headers that go out, and
//! one response shape (status, headers, body stream) whatever the backend
//! type, so the router never cares whether an answer came over the network or
//! from the built-in stub.

pub mod hop;
pub mod stub;

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

use crate::config::{ApiType, Backend};

/// The endpoint a request is for; the path appended to `api_base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Embeddings,
    Responses,
    /// Legacy text completions.
    Completions,
    /// Anthropic Messages.
    Messages,
    /// Anthropic's token counter.
    CountTokens,
}

impl Endpoint {
    /// Every endpoint, in [`index`](Self::index) order.
    pub const ALL: [Endpoint; 6] = [
        Endpoint::ChatCompletions,
        Endpoint::Embeddings,
        Endpoint::Responses,
        Endpoint::Completions,
        Endpoint::Messages,
        Endpoint::CountTokens,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Responses => "/responses",
            Endpoint::Completions => "/completions",
            Endpoint::Messages => "/messages",
            Endpoint::CountTokens => "/messages/count_tokens",
        }
    }

    /// Its place in [`Backend::urls`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the endpoint can answer with an event stream.
    pub fn can_stream(self) -> bool {
        !matches!(self, Endpoint::Embeddings | Endpoint::CountTokens)
    }
}

/// A response body as it arrives.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, UpstreamError>> + Send>>;

/// What a backend answered (headers received, body not yet read).
pub struct UpstreamResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: BodyStream,
}

/// A failure to get an answer from a backend.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("no data for {0:?} while reading the response")]
    BodyTimeout(Duration),
    #[error("response body failed: {0}")]
    Body(String),
    /// A success status whose body is not what the endpoint answers (an
    /// HTML error page from a gateway, JSON cut short).
    #[error("{message}")]
    Malformed { status: u16, message: String },
    #[error("{0}")]
    Unsupported(String),
}

/// Idle connections kept open per backend host for reuse. Enough for a
/// steady 256 requests at a time to one host without new connections; after
/// a burst (say 1,000 streams ending together) the rest are closed at once
/// instead of idling for `pool_idle_timeout`, each holding about 25 KB of
/// buffers and a descriptor (docs/benchmarks.md, memory).
pub const POOL_MAX_IDLE_PER_HOST: usize = 256;

thread_local! {
    /// This thread's own upstream client, when it has one: each thread of a
    /// thread-per-core server keeps its own connection pool, so a request's
    /// upstream connection is driven on the thread that serves the request.
    static THREAD_CLIENT: std::cell::OnceCell<reqwest::Client> = const { std::cell::OnceCell::new() };
}

/// Gives the calling thread its own client (see [`client_here`]).
pub fn set_thread_client(client: reqwest::Client) {
    THREAD_CLIENT.with(|c| {
        let _ = c.set(client);
    });
}

/// The calling thread's own client, else the shared one.
pub fn client_here(shared: &reqwest::Client) -> reqwest::Client {
    THREAD_CLIENT
        .with(|c| c.get().cloned())
        .unwrap_or_else(|| shared.clone())
}

/// Builds an HTTP client for upstream requests (the shared one, and one per
/// serving thread).
pub fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
        .build()
}

/// Request headers never sent upstream: hop-by-hop ones, those the client
/// computes again, and the proxy's own.
const DROPPED_REQUEST_HEADERS: &[HeaderName] = &[
    header::CONNECTION,
    header::HOST,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    // The proxy reads bodies (SSE peeking, logging), so it asks for identity.
    header::ACCEPT_ENCODING,
];

/// Credential headers: replaced when the backend has its own key.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "x-api-key", "api-key"];

/// Response headers not relayed to the client.
const DROPPED_RESPONSE_HEADERS: &[HeaderName] = &[
    header::CONNECTION,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::TRAILER,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::SET_COOKIE,
];

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
static API_KEY: HeaderName = HeaderName::from_static("api-key");
static ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");

/// The headers for the upstream request, from the client's. The client's
/// credentials go upstream only to a backend without a key of its own, and
/// only when they are not the proxy's own client keys (`forward_credentials`).
pub fn outgoing_headers(
    client: &HeaderMap,
    backend: &Backend,
    request_id: &HeaderValue,
    forward_credentials: bool,
) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(client.len() + 2);
    for (name, value) in client {
        if DROPPED_REQUEST_HEADERS.contains(name)
            || name == KEEP_ALIVE
            || name == REQUEST_ID
            || ((backend.api_key.is_some() || !forward_credentials)
                && CREDENTIAL_HEADERS.contains(&name.as_str()))
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if backend.api_type == ApiType::Anthropic {
        // Anthropic takes the key as `x-api-key`, and wants a version.
        if let Some(key) = &backend.api_key
            && let Ok(mut v) = HeaderValue::from_str(key.expose())
        {
            v.set_sensitive(true);
            out.insert(X_API_KEY.clone(), v);
        }
        if !out.contains_key(&ANTHROPIC_VERSION) {
            out.insert(
                ANTHROPIC_VERSION.clone(),
                HeaderValue::from_static(crate::protocol::anthropic::VERSION),
            );
        }
    } else if let Some((name, value)) = key_header(backend) {
        out.insert(name, value);
    }
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    out.insert(REQUEST_ID, request_id.clone());
    // The loop marker, after any `Via` the client sent (see `hop`).
    out.append(header::VIA, hop::marker(&backend.model_name));
    out
}

/// The header carrying the backend's own key, marked sensitive: `api-key`
/// for Azure, `x-api-key` for Anthropic, else `Authorization: Bearer`.
pub fn key_header(backend: &Backend) -> Option<(HeaderName, HeaderValue)> {
    let key = backend.api_key.as_ref()?;
    let (name, value) = match backend.api_type {
        ApiType::Azure => (API_KEY.clone(), HeaderValue::from_str(key.expose())),
        ApiType::Anthropic => (X_API_KEY.clone(), HeaderValue::from_str(key.expose())),
        _ => (
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {}", key.expose())),
        ),
    };
    let mut value = value.ok()?;
    value.set_sensitive(true);
    Some((name, value))
}

/// The upstream's response headers that go on to the client.
pub fn relayed_headers(upstream: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(upstream.len());
    for (name, value) in upstream {
        if DROPPED_RESPONSE_HEADERS.contains(name) || name == KEEP_ALIVE || name == REQUEST_ID {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// Sends one attempt (`endpoint` is the backend's own: see
/// [`crate::protocol::wire`]); resolves when the response headers arrive,
/// bounded by the backend's `request_timeout`.
pub async fn send(
    client: &reqwest::Client,
    backend: &Backend,
    endpoint: Endpoint,
    headers: HeaderMap,
    body: Bytes,
) -> Result<UpstreamResponse, UpstreamError> {
    if backend.api_type == ApiType::Stub {
        return Ok(stub::respond(endpoint, &body));
    }
    let url = match &backend.urls {
        Some(urls) => urls[endpoint.index()].clone(),
        None => reqwest::Url::parse(&backend.endpoint_url(endpoint))
            .map_err(|e| UpstreamError::Connect(format!("bad URL: {e}")))?,
    };
    let request = client.post(url).headers(headers).body(body).send();
    let response = match tokio::time::timeout(backend.request_timeout, request).await {
        Err(_) => return Err(UpstreamError::Timeout(backend.request_timeout)),
        Ok(Err(e)) if e.is_timeout() => {
            return Err(UpstreamError::Timeout(backend.request_timeout));
        }
        Ok(Err(e)) => return Err(UpstreamError::Connect(error_chain(&e))),
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .bytes_stream()
        .map(|r| r.map_err(|e| UpstreamError::Body(error_chain(&e))))
        .boxed();
    Ok(UpstreamResponse {
        status,
        headers,
        body,
    })
}

/// An error and its causes on one line, most general first.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Reads a whole body, allowing at most `gap` between chunks.
pub async fn read_body(body: &mut BodyStream, gap: Duration) -> Result<Bytes, UpstreamError> {
    let mut parts: Vec<Bytes> = Vec::new();
    loop {
        match tokio::time::timeout(gap, body.next()).await {
            Err(_) => return Err(UpstreamError::BodyTimeout(gap)),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(e),
            Ok(Some(Ok(chunk))) => parts.push(chunk),
        }
    }
    Ok(match parts.len() {
        0 => Bytes::new(),
        1 => parts.pop().unwrap_or_default(),
        _ => Bytes::from(parts.concat()),
    })
}
