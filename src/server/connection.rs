//! One client connection, served with hyper-util under the client limits
//! (header read, idle and body read timeouts) and closed gracefully on stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::ConnectInfo;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;

use crate::config::connections::ConnectionLimits;
use crate::conn::{Activity, Guarded, Slot, TimedBody, Tracked};

/// Serves one client connection (HTTP/1.1, or HTTP/2 with prior
/// knowledge or, over TLS, by ALPN) with the client limits: the header
/// read and idle timeouts close it (when no request is in flight), every
/// request body is read with the body read timeout. On `stop`, the request
/// in flight finishes and the connection closes. With TLS, the handshake
/// comes first, bounded by [`super::tls::HANDSHAKE_TIMEOUT`].
pub(super) async fn connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    slot: Slot,
    app: axum::Router,
    limits: ConnectionLimits,
    stop: watch::Receiver<bool>,
    tls: Option<super::tls::Tls>,
) {
    let _ = tcp.set_nodelay(true);
    match tls {
        None => serve(tcp, peer, slot, app, limits, stop).await,
        // Boxed: a TLS connection's future (the handshake, the TLS
        // stream's buffers) is several kB larger, and a plain connection
        // (1,000 open streams: 1,000 of them) would reserve that room too.
        Some(tls) => Box::pin(serve_tls(tcp, peer, slot, app, limits, stop, tls)).await,
    }
}

/// [`connection`] over TLS: the handshake, then [`serve`].
async fn serve_tls(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    slot: Slot,
    app: axum::Router,
    limits: ConnectionLimits,
    stop: watch::Receiver<bool>,
    tls: super::tls::Tls,
) {
    // The handshake has its own bound (a client that connects and says
    // nothing holds a slot no longer than this), and is given up on stop.
    let mut stopping = stop.clone();
    let handshake = tokio::time::timeout(super::tls::HANDSHAKE_TIMEOUT, tls.acceptor.accept(tcp));
    let stream = tokio::select! {
        r = handshake => match r {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                metrics::counter!(crate::conn::TLS_HANDSHAKE_FAILURES, "kind" => "error").increment(1);
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                metrics::counter!(crate::conn::TLS_HANDSHAKE_FAILURES, "kind" => "timeout").increment(1);
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        _ = stopping.wait_for(|s| *s) => return,
    };
    serve(stream, peer, slot, app, limits, stop).await
}

/// Serves HTTP on a connection (plain TCP, or TLS once its handshake is
/// done): HTTP/1.1, or HTTP/2 by prior knowledge or ALPN (`auto` tells them
/// apart by the client's first bytes).
async fn serve<S>(
    io: S,
    peer: SocketAddr,
    slot: Slot,
    app: axum::Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let _slot = slot;
    let activity = Activity::new();
    let io = TokioIo::new(Tracked::new(io, activity.clone()));
    let tower = TowerToHyperService::new(app);
    let body_timeout = limits.body_read_timeout;
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let in_flight = requests.begin();
        let fired = Arc::new(AtomicBool::new(false));
        let mut req = req
            .map(|body| axum::body::Body::new(TimedBody::new(body, body_timeout, fired.clone())));
        req.extensions_mut().insert(ConnectInfo(peer));
        let call = hyper::service::Service::call(&tower, req);
        async move {
            let Ok(response) = call.await;
            let response = if fired.load(Ordering::Relaxed) {
                body_timed_out(response, body_timeout.unwrap_or_default())
            } else {
                response
            };
            Ok::<_, std::convert::Infallible>(response.map(|b| Guarded::new(b, in_flight)))
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The header read timeout is this server's own (counted from a
    // request's first byte, apart from the idle time before it).
    builder.http1().header_read_timeout(None);
    builder.http2().enable_connect_protocol();
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let expired = activity.expired(limits.header_read_timeout, limits.idle_timeout);
    tokio::pin!(expired);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "client connection ended with an error");
                }
                break;
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            why = &mut expired => {
                metrics::counter!(crate::conn::TIMEOUTS, "kind" => why.as_str()).increment(1);
                tracing::debug!(%peer, timeout = why.as_str(), "closing a client connection");
                break;
            }
        }
    }
}

/// The answer to a request whose body stopped arriving before anything
/// was answered: 408 (the handler's own 408 is kept, in its dialect's
/// shape; any other answer it made of the failed read is replaced). The
/// connection closes after it.
fn body_timed_out(
    mut response: Response<axum::body::Body>,
    after: Duration,
) -> Response<axum::body::Body> {
    if response.status() != StatusCode::REQUEST_TIMEOUT {
        let id = response.headers().get(crate::upstream::REQUEST_ID).cloned();
        response = crate::api::error::json_error(
            StatusCode::REQUEST_TIMEOUT,
            &serde_json::json!({"error": {
                "message": crate::conn::BodyTimeout(after).to_string(),
                "type": "invalid_request_error",
                "code": "request_timeout",
            }}),
        );
        if let Some(id) = id {
            response
                .headers_mut()
                .insert(crate::upstream::REQUEST_ID, id);
        }
    }
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
