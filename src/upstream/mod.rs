//! Talking to backends: one pooled HTTP client, the headers that go out, and
//! one response shape (status, headers, body stream) whatever the backend
//! type, so the router never cares whether an answer came over the network or
//! from the built-in stub.

pub mod bedrock;
pub mod form;
pub mod google;
pub mod google_auth;
pub mod hop;
pub mod stub;
mod stub_media;
pub mod ws;

use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

use crate::config::{ApiType, Backend};
use crate::endpoint::Endpoint;

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
    /// A Vertex AI backend could not get an access token (the token
    /// endpoint refused, was unreachable, or answered nonsense).
    #[error("access token: {0}")]
    Credentials(String),
    /// A whole answer larger than `proxy_settings.server.max_response_bytes`
    /// (declared or read so far); `status` is what the upstream answered
    /// (0 until the router knows it).
    #[error(
        "the upstream's answer is larger than the limit of {limit} bytes \
         (max_response_bytes); it was not read further"
    )]
    TooLarge { status: u16, limit: usize },
}

impl UpstreamError {
    /// Applies `f` to the upstream text the error carries (a scrubber).
    pub fn scrub(&mut self, f: impl Fn(String) -> String) {
        match self {
            UpstreamError::Connect(t)
            | UpstreamError::Body(t)
            | UpstreamError::Unsupported(t)
            | UpstreamError::Credentials(t)
            | UpstreamError::Malformed { message: t, .. } => *t = f(std::mem::take(t)),
            UpstreamError::Timeout(_)
            | UpstreamError::BodyTimeout(_)
            | UpstreamError::TooLarge { .. } => {}
        }
    }
}

/// How much of an error body is read (its start is all that is used: the
/// message, the code, a content-filter verdict); the rest is not read.
pub const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Idle connections kept open per backend host for reuse. Enough for a
/// steady 256 requests at a time to one host without new connections; after
/// a burst (say 1,000 streams ending together) the rest are closed at once
/// instead of idling for `pool_idle_timeout`, each holding about 25 KB of
/// buffers and a descriptor (docs/benchmarks.md, memory).
pub const POOL_MAX_IDLE_PER_HOST: usize = 256;

/// The body of an upstream request: the prepared bytes, whole; or a
/// stream (a spooled form, a file upload relayed as it arrives).
pub type OutBody =
    http_body_util::Either<http_body_util::Full<Bytes>, http_body_util::StreamBody<FrameStream>>;

/// A streamed request body's frames.
pub type FrameStream =
    Pin<Box<dyn Stream<Item = Result<hyper::body::Frame<Bytes>, std::io::Error>> + Send>>;

/// What an attempt sends.
pub enum Payload {
    /// Prepared bytes (a JSON body).
    Bytes(Bytes),
    /// A client's form, with the backend's model name for its `model` field.
    Form(std::sync::Arc<form::Form>, Option<String>),
    /// A body relayed as it arrives (not replayable), with its length when known.
    Stream(form::FormBody, Option<u64>),
}

impl Payload {
    /// The body, and the content length to declare when it is a stream.
    fn into_body(self) -> (OutBody, Option<u64>) {
        let frames = |s: form::FormBody| -> FrameStream {
            s.map(|r| r.map(hyper::body::Frame::data)).boxed()
        };
        match self {
            Payload::Bytes(b) => (
                http_body_util::Either::Left(http_body_util::Full::new(b)),
                None,
            ),
            Payload::Form(form, model) => {
                let (len, s) = form.body(model.as_deref());
                (
                    http_body_util::Either::Right(http_body_util::StreamBody::new(frames(s))),
                    Some(len),
                )
            }
            Payload::Stream(s, len) => (
                http_body_util::Either::Right(http_body_util::StreamBody::new(frames(s))),
                len,
            ),
        }
    }
}

type Connector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

/// The HTTP client requests go upstream with: hyper's pooled client (HTTP/1.1,
/// and HTTP/2 where TLS negotiates it), with nothing between the request and
/// the connection (no redirects, no URL re-parsing, no middleware stack).
#[derive(Clone)]
pub struct Http(hyper_util::client::legacy::Client<Connector, OutBody>);

thread_local! {
    /// This thread's own upstream client, when it has one: each thread of a
    /// thread-per-core server keeps its own connection pool, so a request's
    /// upstream connection is driven on the thread that serves the request.
    static THREAD_CLIENT: std::cell::OnceCell<Http> = const { std::cell::OnceCell::new() };
}

/// Gives the calling thread its own client (see [`client_here`]).
pub fn set_thread_client(client: Http) {
    THREAD_CLIENT.with(|c| {
        let _ = c.set(client);
    });
}

/// The calling thread's own client, else the shared one.
pub fn client_here(shared: &Http) -> Http {
    THREAD_CLIENT
        .with(|c| c.get().cloned())
        .unwrap_or_else(|| shared.clone())
}

/// How long opening a connection to a backend may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Builds the client for upstream requests (the shared one, and one per
/// serving thread).
pub fn http_client() -> Result<Http, String> {
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    let mut connector = HttpConnector::new();
    connector.enforce_http(false);
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .map_err(|e| format!("TLS setup: {e}"))?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(connector);
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(https);
    Ok(Http(client))
}

/// Builds a `reqwest` client for the proxy's own calls that are not a
/// client's request (health checks, model catalogs, replays).
pub fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
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

/// Upstream response headers relayed to the client by name (see
/// [`relayed_headers`] for the prefixes): what the answer is, the
/// provider's request id, and how long to back off. Anything else (cookies,
/// CORS, `server`, `via`, hop-by-hop headers, `content-length`, the
/// provider's organization and project) stays with the proxy.
const RELAYED_RESPONSE_HEADERS: &[&str] = &[
    "content-type",
    "retry-after",
    "retry-after-ms",
    // Anthropic's request id.
    "request-id",
    "openai-processing-ms",
    "openai-version",
];

/// Prefixes of relayed response headers: the rate-limit state of the
/// provider (OpenAI, Azure, Groq, … and Anthropic).
const RELAYED_RESPONSE_PREFIXES: &[&str] = &["x-ratelimit-", "anthropic-ratelimit-"];

/// The upstream's own `x-request-id`, relayed under this name (the client's
/// `x-request-id` is the proxy's).
pub const UPSTREAM_REQUEST_ID: HeaderName = HeaderName::from_static("x-upstream-request-id");

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
static API_KEY: HeaderName = HeaderName::from_static("api-key");
static OPENAI_ORGANIZATION: HeaderName = HeaderName::from_static("openai-organization");
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
    if let Some(org) = &backend.organization
        && let Ok(v) = HeaderValue::from_str(org)
    {
        out.insert(OPENAI_ORGANIZATION.clone(), v);
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
        ApiType::Gemini => (
            HeaderName::from_static("x-goog-api-key"),
            HeaderValue::from_str(key.expose()),
        ),
        _ => (
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {}", key.expose())),
        ),
    };
    let mut value = value.ok()?;
    value.set_sensitive(true);
    Some((name, value))
}

/// The upstream's response headers that go on to the client: an allow-list
/// ([`RELAYED_RESPONSE_HEADERS`], [`RELAYED_RESPONSE_PREFIXES`]), with the
/// upstream's `x-request-id` as `x-upstream-request-id`.
pub fn relayed_headers(upstream: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(8);
    for (name, value) in upstream {
        let n = name.as_str();
        if *name == REQUEST_ID {
            out.append(UPSTREAM_REQUEST_ID, value.clone());
        } else if RELAYED_RESPONSE_HEADERS.contains(&n)
            || RELAYED_RESPONSE_PREFIXES.iter().any(|p| n.starts_with(p))
        {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The `Content-Length` an upstream declared, when it is a number.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Sends one attempt (`endpoint` is the backend's own: see
/// [`crate::protocol::wire`]); resolves when the response headers arrive,
/// bounded by `timeout` (the backend's `request_timeout`, or its
/// `stream_timeout` for a stream: [`Backend::timeout_for`]), and each gap
/// of the body after them for Bedrock and Google backends. `limit`
/// (`max_response_bytes`) bounds an answer read here whole (Bedrock's).
pub async fn send(
    client: &Http,
    backend: &Backend,
    endpoint: Endpoint,
    headers: HeaderMap,
    body: Bytes,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<UpstreamResponse, UpstreamError> {
    match backend.api_type {
        ApiType::Bedrock => {
            return bedrock::send(client, backend, headers, body, limit, timeout).await;
        }
        ApiType::Gemini | ApiType::Vertex => {
            return Box::pin(google::send(
                client, backend, endpoint, headers, body, timeout,
            ))
            .await;
        }
        _ => {}
    }
    send_payload(
        client,
        backend,
        endpoint,
        headers,
        Payload::Bytes(body),
        timeout,
    )
    .await
}

/// [`send`] with any [`Payload`] (a form's content type is the caller's).
pub async fn send_payload(
    client: &Http,
    backend: &Backend,
    endpoint: Endpoint,
    headers: HeaderMap,
    payload: Payload,
    timeout: std::time::Duration,
) -> Result<UpstreamResponse, UpstreamError> {
    if backend.api_type == ApiType::Stub {
        let body = match payload {
            Payload::Bytes(b) => b,
            // The stub reads a form's text fields.
            Payload::Form(f, model) => Bytes::from(f.fields_json(model.as_deref()).to_string()),
            Payload::Stream(..) => Bytes::from_static(b"{}"),
        };
        return Ok(stub::respond(endpoint, &body));
    }
    let parsed;
    let target = match &backend.urls {
        Some(urls) => &urls[endpoint.index()],
        None => {
            let url = backend.endpoint_url(endpoint);
            parsed = crate::config::Target::parse(&url)
                .ok_or_else(|| UpstreamError::Connect(format!("bad URL: {url}")))?;
            &parsed
        }
    };
    let post = http::Method::POST;
    send_within(client, post, target, headers, payload, timeout).await
}

/// Sends one request to `target` with `method`; resolves when the response
/// headers arrive, bounded by the backend's `request_timeout`.
pub async fn send_to(
    client: &Http,
    backend: &Backend,
    method: http::Method,
    target: &crate::config::Target,
    headers: HeaderMap,
    payload: Payload,
) -> Result<UpstreamResponse, UpstreamError> {
    let timeout = backend.request_timeout;
    send_within(client, method, target, headers, payload, timeout).await
}

/// [`send_to`] bounded by `timeout`.
pub(super) async fn send_within(
    client: &Http,
    method: http::Method,
    target: &crate::config::Target,
    mut headers: HeaderMap,
    payload: Payload,
    timeout: std::time::Duration,
) -> Result<UpstreamResponse, UpstreamError> {
    if let Some(basic) = &target.basic
        && !headers.contains_key(header::AUTHORIZATION)
    {
        headers.insert(header::AUTHORIZATION, basic.clone());
    }
    if !headers.contains_key(header::ACCEPT) {
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    }
    let (body, length) = payload.into_body();
    if let Some(n) = length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    let mut request = http::Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = target.uri.clone();
    *request.headers_mut() = headers;
    let response = match tokio::time::timeout(timeout, client.0.request(request)).await {
        Err(_) => return Err(UpstreamError::Timeout(timeout)),
        Ok(Err(e)) if timed_out(&e) => {
            return Err(UpstreamError::Timeout(timeout));
        }
        Ok(Err(e)) => return Err(UpstreamError::Connect(error_chain(&e))),
        Ok(Ok(r)) => r,
    };
    let (parts, incoming) = response.into_parts();
    let body = http_body_util::BodyDataStream::new(incoming)
        .map(|r| r.map_err(|e| UpstreamError::Body(error_chain(&e))))
        .boxed();
    Ok(UpstreamResponse {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Whether a client error comes from a timeout (connecting, here).
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Kept at this path for its callers; the one definition is in the leaf.
/// A whole JSON answer made here (the stub backend, a WebSocket turn's
/// error), in the shape every backend answers with.
pub fn json_answer(status: StatusCode, body: Bytes) -> UpstreamResponse {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    UpstreamResponse {
        status,
        headers,
        body: futures::stream::once(async move { Ok(body) }).boxed(),
    }
}

pub use crate::errors::error_chain;

/// Reads a whole body of at most `limit` bytes, allowing at most `gap`
/// between chunks. Past `limit` (or when `declared`, the upstream's
/// `Content-Length`, is past it, before reading anything) it stops with
/// [`UpstreamError::TooLarge`], so one answer never costs more than
/// `limit`. The body is gathered in one buffer (sized by `declared` when
/// it is known), not collected and then copied; a body of one chunk is
/// not copied at all.
pub async fn read_body(
    body: &mut BodyStream,
    gap: Duration,
    limit: usize,
    declared: Option<u64>,
) -> Result<Bytes, UpstreamError> {
    let too_large = UpstreamError::TooLarge { status: 0, limit };
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large);
    }
    let mut first: Option<Bytes> = None;
    let mut gathered: Option<BytesMut> = None;
    let mut total = 0usize;
    loop {
        let chunk = match tokio::time::timeout(gap, body.next()).await {
            Err(_) => return Err(UpstreamError::BodyTimeout(gap)),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(e),
            Ok(Some(Ok(chunk))) => chunk,
        };
        total = total.saturating_add(chunk.len());
        if total > limit {
            return Err(too_large);
        }
        if let Some(buf) = &mut gathered {
            buf.extend_from_slice(&chunk);
        } else if let Some(one) = first.take() {
            let expected = declared.map_or(0, |n| n as usize);
            let mut buf = BytesMut::with_capacity(expected.max(total * 2).min(limit));
            buf.extend_from_slice(&one);
            buf.extend_from_slice(&chunk);
            gathered = Some(buf);
        } else {
            first = Some(chunk);
        }
    }
    Ok(match (gathered, first) {
        (Some(buf), _) => buf.freeze(),
        (None, Some(one)) => one,
        (None, None) => Bytes::new(),
    })
}

/// Reads the start of an error body: at most [`ERROR_BODY_LIMIT`] bytes,
/// the rest left unread (the connection is then not reused).
pub async fn read_error_body(body: &mut BodyStream, gap: Duration) -> Result<Bytes, UpstreamError> {
    let mut buf = BytesMut::new();
    while buf.len() < ERROR_BODY_LIMIT {
        match tokio::time::timeout(gap, body.next()).await {
            Err(_) => return Err(UpstreamError::BodyTimeout(gap)),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(e),
            Ok(Some(Ok(chunk))) => {
                let room = ERROR_BODY_LIMIT - buf.len();
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
        }
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(chunks: &[&'static [u8]]) -> BodyStream {
        let items: Vec<Result<Bytes, UpstreamError>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        futures::stream::iter(items).boxed()
    }

    const GAP: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn whole_bodies_are_bounded_and_gathered_once() {
        // One chunk: the same bytes, not copied.
        let one: &'static [u8] = b"{\"a\":1}";
        let got = read_body(&mut body(&[one]), GAP, 100, None).await.unwrap();
        assert_eq!(got.as_ptr(), one.as_ptr());
        let got = read_body(&mut body(&[b"ab", b"cd", b"ef"]), GAP, 6, Some(6))
            .await
            .unwrap();
        assert_eq!(&got[..], b"abcdef");
        assert!(
            read_body(&mut body(&[]), GAP, 6, None)
                .await
                .unwrap()
                .is_empty()
        );
        // Past the limit while reading, or by the declared length at once.
        let over = read_body(&mut body(&[b"abcd", b"efg"]), GAP, 6, None).await;
        assert!(matches!(
            over,
            Err(UpstreamError::TooLarge { limit: 6, .. })
        ));
        let declared = read_body(&mut body(&[b"ab"]), GAP, 6, Some(7)).await;
        assert!(matches!(declared, Err(UpstreamError::TooLarge { .. })));
        // A lying (small) declared length does not cap the buffer wrongly.
        let got = read_body(&mut body(&[b"abc", b"def"]), GAP, 10, Some(1))
            .await
            .unwrap();
        assert_eq!(&got[..], b"abcdef");
    }

    #[tokio::test]
    async fn error_bodies_are_read_to_their_first_64_kib() {
        static BIG: [u8; 40 * 1024] = [b'x'; 40 * 1024];
        let got = read_error_body(&mut body(&[&BIG, &BIG, &BIG]), GAP)
            .await
            .unwrap();
        assert_eq!(got.len(), ERROR_BODY_LIMIT);
        let got = read_error_body(&mut body(&[b"{}"]), GAP).await.unwrap();
        assert_eq!(&got[..], b"{}");
    }

    #[test]
    fn relayed_headers_are_an_allow_list() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("content-type", "application/json"),
            ("set-cookie", "a=1"),
            ("server", "x"),
            ("access-control-allow-origin", "*"),
            ("x-ratelimit-limit-requests", "10"),
            ("anthropic-ratelimit-tokens-remaining", "5"),
            ("x-request-id", "up-1"),
            ("request-id", "req_1"),
            ("content-length", "9"),
            ("transfer-encoding", "chunked"),
            ("connection", "keep-alive"),
            ("openai-organization", "org"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let out = relayed_headers(&h);
        let mut names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "anthropic-ratelimit-tokens-remaining",
                "content-type",
                "request-id",
                "x-ratelimit-limit-requests",
                "x-upstream-request-id",
            ]
        );
        assert_eq!(out["x-upstream-request-id"], "up-1");
    }
}
