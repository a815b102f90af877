//! The HTTP forwarder: a reverse proxy (hyper) in front of one target.
//! Bodies stream in both directions frame by frame (large JSON is never held
//! whole; each SSE event goes out as it arrives), connections to the target
//! are kept alive in a pool, hop-by-hop headers are dropped, and
//! `X-Forwarded-For`/`-Proto`/`-Host` are added. The client's `Host` goes to
//! the target when `preserve_host` is on. A target that cannot be reached is
//! a 502 with an OpenAI-shaped JSON error, one that does not begin its
//! answer within `response_timeout` a 504. Clients get the limits of
//! [`crate::conn`]: a header read timeout, a body read timeout (408) and a
//! cap on open connections (503).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{ForwardError, Forwarder, bind, drain, stopped};
use crate::config::forward::{HttpForwardSettings, Scheme};
use crate::conn::{Slot, Slots, TimedBody};
use crate::errors::error_chain;

type Body = BoxBody<Bytes, hyper::Error>;
type TargetClient = Client<HttpsConnector<HttpConnector>, TimedBody<Incoming>>;

/// What every request reads.
struct Ctx {
    settings: HttpForwardSettings,
    client: TargetClient,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// `Host` for the target when the client's is not kept.
    host: HeaderValue,
    /// Connections open right now.
    active: AtomicUsize,
    /// The cap on them.
    slots: Slots,
}

/// Binds the listen address and starts forwarding.
pub async fn start(settings: &HttpForwardSettings) -> Result<Forwarder, ForwardError> {
    let ctx = Arc::new(Ctx::new(settings)?);
    let listener = bind("http", &settings.listen).await?;
    let addr = listener.local_addr().map_err(|source| ForwardError::Bind {
        which: "http",
        addr: settings.listen.authority(),
        source,
        hint: "",
    })?;
    let (stop, rx) = watch::channel(false);
    tracing::info!(
        listen = %addr,
        target = %settings.target_url(),
        preserve_host = settings.preserve_host,
        "http forwarder listening"
    );
    let task = tokio::spawn(accept_loop(listener, ctx, rx));
    Ok(Forwarder {
        name: "http",
        addr,
        stop,
        task,
    })
}

impl Ctx {
    fn new(settings: &HttpForwardSettings) -> Result<Ctx, ForwardError> {
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(settings.connect_timeout));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let https = match &settings.ca_file {
            None => hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_webpki_roots(provider)
                .map_err(|e| ForwardError::Client(format!("TLS setup: {e}")))?,
            Some(file) => hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls_with_ca(provider, file)?),
        };
        let https = https
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(settings.pool_idle_timeout)
            .pool_timer(TokioTimer::new())
            .build(https);
        let authority: http::uri::Authority = settings
            .target
            .authority()
            .parse()
            .map_err(|e| ForwardError::Client(format!("target {}: {e}", settings.target)))?;
        let default_port = match settings.scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        // The port is left out of `Host` when it is the scheme's own.
        let host_text = if settings.target.port == default_port {
            authority.host().to_string()
        } else {
            authority.as_str().to_string()
        };
        let host = HeaderValue::from_str(&host_text)
            .map_err(|e| ForwardError::Client(format!("target {}: {e}", settings.target)))?;
        Ok(Ctx {
            settings: settings.clone(),
            client,
            scheme: match settings.scheme {
                Scheme::Http => http::uri::Scheme::HTTP,
                Scheme::Https => http::uri::Scheme::HTTPS,
            },
            authority,
            host,
            active: AtomicUsize::new(0),
            slots: Slots::new(settings.max_connections, "http_forwarder"),
        })
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    ctx: Arc<Ctx>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((sock, peer)) => match ctx.slots.try_take() {
                    Some(slot) => {
                        conns.spawn(connection(sock, peer, slot, ctx.clone(), stop.clone()));
                    }
                    // Best effort: a client that has sent nothing yet
                    // reads the 503 before the close.
                    None => {
                        let _ = sock.try_write(crate::conn::BUSY_RESPONSE);
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "http forwarder: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
    drop(listener);
    if !conns.is_empty() {
        tracing::info!(
            open = conns.len(),
            grace = ?ctx.settings.shutdown_grace,
            "http forwarder: finishing in-flight requests"
        );
    }
    let cut = drain(&mut conns, ctx.settings.shutdown_grace).await;
    if cut > 0 {
        tracing::warn!(
            cut,
            "http forwarder: grace period over; closed the connections still open"
        );
    }
}

/// Serves one client connection; on stop, finishes the request in flight
/// and closes.
async fn connection(
    sock: tokio::net::TcpStream,
    peer: SocketAddr,
    slot: Slot,
    ctx: Arc<Ctx>,
    mut stop: watch::Receiver<bool>,
) {
    let _slot = slot;
    let _ = sock.set_nodelay(true);
    ctx.active.fetch_add(1, Ordering::Relaxed);
    let service_ctx = ctx.clone();
    let service = hyper::service::service_fn(move |req| handle(req, peer, service_ctx.clone()));
    // hyper's header read timeout runs from when the connection is ready
    // for a request: it bounds an idle keep-alive connection too.
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(ctx.settings.header_read_timeout)
        .serve_connection(TokioIo::new(sock), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "http forwarder: client connection ended with an error");
    }
    ctx.active.fetch_sub(1, Ordering::Relaxed);
}

async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    ctx: Arc<Ctx>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let (mut parts, body) = req.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let uri = match Uri::builder()
        .scheme(ctx.scheme.clone())
        .authority(ctx.authority.clone())
        .path_and_query(path_and_query)
        .build()
    {
        Ok(u) => u,
        Err(e) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_uri",
                &format!("forwarder: cannot forward this request target: {e}"),
            ));
        }
    };
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    prepare_request_headers(&mut parts.headers, peer, &ctx);
    let fired = Arc::new(AtomicBool::new(false));
    let body = TimedBody::new(body, ctx.settings.body_read_timeout, fired.clone());
    let req = Request::from_parts(parts, body);
    let sent = ctx.client.request(req);
    let answered = match ctx.settings.response_timeout {
        Some(t) => match tokio::time::timeout(t, sent).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(
                    %peer,
                    %method,
                    path,
                    target = %ctx.settings.target_url(),
                    timeout = ?t,
                    "http forwarder: the target did not answer in time"
                );
                return Ok(error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_error",
                    "target_timeout",
                    &format!(
                        "forwarder: the target {} did not begin its answer within {} s",
                        ctx.settings.target_url(),
                        t.as_secs_f64()
                    ),
                ));
            }
        },
        None => sent.await,
    };
    match answered {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            tracing::info!(
                %peer,
                %method,
                path,
                status = parts.status.as_u16(),
                took_ms = started.elapsed().as_millis() as u64,
                active = ctx.active.load(Ordering::Relaxed),
                "http forwarder: forwarded"
            );
            Ok(Response::from_parts(parts, body.boxed()))
        }
        Err(_) if fired.load(Ordering::Relaxed) => {
            let after = ctx.settings.body_read_timeout.unwrap_or_default();
            tracing::info!(%peer, %method, path, "http forwarder: the client stopped sending the request body");
            let mut resp = error(
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request_error",
                "request_timeout",
                &format!("forwarder: {}", crate::conn::BodyTimeout(after)),
            );
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            Ok(resp)
        }
        Err(e) => {
            let cause = error_chain(&e);
            tracing::warn!(
                %peer,
                %method,
                path,
                target = %ctx.settings.target_url(),
                error = %cause,
                "http forwarder: the target did not answer"
            );
            Ok(error(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "target_unreachable",
                &format!(
                    "forwarder: cannot reach the target {}: {cause}",
                    ctx.settings.target_url()
                ),
            ))
        }
    }
}

/// Hop-by-hop headers out; `Host` and the `X-Forwarded-*` headers in.
fn prepare_request_headers(headers: &mut HeaderMap, peer: SocketAddr, ctx: &Ctx) {
    let original_host = headers.get(header::HOST).cloned();
    strip_hop_by_hop(headers);
    // This forwarder has already answered any `100-continue`.
    headers.remove(header::EXPECT);
    if !ctx.settings.preserve_host || original_host.is_none() {
        headers.insert(header::HOST, ctx.host.clone());
    }
    let ip = peer.ip().to_canonical().to_string();
    let xff = HeaderName::from_static("x-forwarded-for");
    let before: Vec<&str> = headers
        .get_all(&xff)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let value = if before.is_empty() {
        ip
    } else {
        format!("{}, {ip}", before.join(", "))
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(xff, v);
    }
    let proto = HeaderName::from_static("x-forwarded-proto");
    if !headers.contains_key(&proto) {
        headers.insert(proto, HeaderValue::from_static("http"));
    }
    let fwd_host = HeaderName::from_static("x-forwarded-host");
    if !headers.contains_key(&fwd_host)
        && let Some(h) = original_host
    {
        headers.insert(fwd_host, h);
    }
}

/// Headers that describe one connection, not the message (RFC 9110 7.6.1),
/// and every header the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// `{"error":{"message","type","code"}}` with `status`.
fn error(status: StatusCode, kind: &str, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"error": {"message": message, "type": kind, "code": code}});
    let mut resp = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A TLS client config trusting the public roots and the certificates in
/// `file` (`http_forwarder_settings.target.ca_file`).
fn tls_with_ca(
    provider: Arc<rustls::crypto::CryptoProvider>,
    file: &std::path::Path,
) -> Result<rustls::ClientConfig, ForwardError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let failed = |e: &dyn std::fmt::Display| {
        ForwardError::Client(format!("target.ca_file {}: {e}", file.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let certs = CertificateDer::pem_file_iter(file)
        .map_err(|e| failed(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(&e))?;
    if certs.is_empty() {
        return Err(failed(&"no CERTIFICATE block in it"));
    }
    for cert in certs {
        roots.add(cert).map_err(|e| failed(&e))?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| failed(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer k"));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["content-type", "authorization"]);
    }
}
