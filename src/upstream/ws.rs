//! The Responses WebSocket mode toward a backend that serves it
//! (`responses_websocket: true`). A client's WebSocket (`GET /v1/responses`
//! upgraded, `api::responses_ws`) gets one upstream WebSocket per backend,
//! opened on its first turn there and reused by the next ones, so that a
//! chain of turns (an agent's tool loop) pays for one TCP and TLS handshake,
//! and the backend's per-socket state (its cache of the last response, for
//! `previous_response_id`) lives as long as the client's socket.
//!
//! Each turn's `response.create` goes up as a text message; the backend's
//! event messages come back as an SSE body (`event:` + `data:` per message),
//! so the router, the relay and the request log treat the turn like any
//! streamed `POST /v1/responses`. An `error` message before any other event
//! becomes an HTTP-like error answer with its `status`, so retries and
//! fallbacks decide as they do over HTTP. A backend that refuses the upgrade
//! (404, 405, 426...) is reached over HTTP for the rest of the client's
//! socket.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Map, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::{UpstreamError, UpstreamResponse, error_chain};
use crate::config::Backend;
use crate::endpoint::Endpoint;

type Conn = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Request headers that are the HTTP request's, not the handshake's.
const NOT_FOR_THE_HANDSHAKE: [header::HeaderName; 3] =
    [header::CONTENT_TYPE, header::CONTENT_LENGTH, header::ACCEPT];

/// The events that end a turn: after one, the socket is free for the next.
const TERMINAL: [&str; 4] = [
    "response.completed",
    "response.failed",
    "response.incomplete",
    "error",
];

/// One client socket's upstream sockets, by backend.
#[derive(Default)]
pub struct Sockets {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Idle sockets (between turns), by backend name.
    open: HashMap<String, Conn>,
    /// Backends that refused the upgrade: reached over HTTP from then on.
    refused: HashSet<String>,
}

impl Sockets {
    fn take(&self, key: &str) -> Option<Conn> {
        self.inner.lock().ok()?.open.remove(key)
    }

    fn put(&self, key: String, conn: Conn) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.open.insert(key, conn);
        }
    }

    fn refused(&self, key: &str) -> bool {
        self.inner
            .lock()
            .map(|i| i.refused.contains(key))
            .unwrap_or(false)
    }

    fn refuse(&self, key: String) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.refused.insert(key);
        }
    }

    /// How many upstream sockets are open between turns.
    pub fn idle(&self) -> usize {
        self.inner.lock().map(|i| i.open.len()).unwrap_or(0)
    }

    /// Closes every idle upstream socket (the client's socket has ended).
    pub async fn close(&self) {
        let open: Vec<Conn> = match self.inner.lock() {
            Ok(mut inner) => inner.open.drain().map(|(_, c)| c).collect(),
            Err(_) => return,
        };
        for mut conn in open {
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.close(None)).await;
        }
    }
}

/// Why no socket was opened.
enum Refusal {
    /// The backend does not serve WebSocket mode at this URL.
    NotServed,
    Failed(UpstreamError),
}

/// Sends one streamed Responses turn over the backend's socket. `None`:
/// the backend refused the upgrade, so the caller sends it over HTTP.
pub async fn send(
    sockets: &Arc<Sockets>,
    backend: &Backend,
    headers: &HeaderMap,
    body: &Bytes,
) -> Option<Result<UpstreamResponse, UpstreamError>> {
    let key = backend.name.clone();
    if sockets.refused(&key) {
        return None;
    }
    let event = match create_event(body) {
        Ok(e) => e,
        Err(e) => return Some(Err(e)),
    };
    let deadline = backend.request_timeout;
    // A socket kept from an earlier turn may have been closed by the
    // backend since: one more try on a new one.
    let mut kept = sockets.take(&key);
    let (conn, first) = loop {
        let reused = kept.is_some();
        let mut conn = match kept.take() {
            Some(c) => c,
            None => match connect(backend, headers, deadline).await {
                Ok(c) => c,
                Err(Refusal::NotServed) => {
                    sockets.refuse(key);
                    return None;
                }
                Err(Refusal::Failed(e)) => return Some(Err(e)),
            },
        };
        match first_message(&mut conn, &event, deadline).await {
            Ok(text) => break (conn, text),
            Err(_) if reused => continue,
            Err(e) => return Some(Err(e)),
        }
    };
    let kind = event_type(&first);
    if kind.as_deref() == Some("error") {
        sockets.put(key, conn);
        return Some(Ok(error_answer(&first)));
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    let done = kind.as_deref().is_some_and(|k| TERMINAL.contains(&k));
    let first_frame = frame(kind.as_deref(), &first);
    if done {
        sockets.put(key, conn);
        return Some(Ok(UpstreamResponse {
            status: StatusCode::OK,
            headers,
            body: futures::stream::once(async move { Ok(first_frame) }).boxed(),
        }));
    }
    let rest = Rest {
        conn: Some(conn),
        sockets: sockets.clone(),
        key,
    };
    let body = futures::stream::once(async move { Ok(first_frame) })
        .chain(futures::stream::unfold(rest, next_frame))
        .boxed();
    Some(Ok(UpstreamResponse {
        status: StatusCode::OK,
        headers,
        body,
    }))
}

/// The rest of a turn: its socket, given back when the turn ends.
struct Rest {
    conn: Option<Conn>,
    sockets: Arc<Sockets>,
    key: String,
}

async fn next_frame(mut rest: Rest) -> Option<(Result<Bytes, UpstreamError>, Rest)> {
    let mut conn = rest.conn.take()?;
    loop {
        match conn.next().await {
            Some(Ok(Message::Text(text))) => {
                let kind = event_type(&text);
                let out = frame(kind.as_deref(), &text);
                if kind.as_deref().is_some_and(|k| TERMINAL.contains(&k)) {
                    // The turn is over: the socket waits for the next one.
                    rest.sockets.put(rest.key.clone(), conn);
                } else {
                    rest.conn = Some(conn);
                }
                return Some((Ok(out), rest));
            }
            Some(Ok(Message::Close(_))) | None => {
                return Some((
                    Err(UpstreamError::Body(
                        "the backend closed its WebSocket before the response ended".into(),
                    )),
                    rest,
                ));
            }
            Some(Err(e)) => {
                return Some((Err(UpstreamError::Body(error_chain(&e))), rest));
            }
            // Pings are answered by the protocol layer; binary messages
            // are not Responses events.
            Some(Ok(_)) => continue,
        }
    }
}

/// The turn's message: the body's fields with `"type": "response.create"`,
/// without the HTTP transport's `stream` and `background`.
fn create_event(body: &Bytes) -> Result<String, UpstreamError> {
    let mut fields: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| UpstreamError::Unsupported(format!("not a JSON object: {e}")))?;
    fields.remove("stream");
    fields.remove("background");
    let mut event = Map::with_capacity(fields.len() + 1);
    event.insert("type".into(), Value::from("response.create"));
    event.extend(fields);
    Ok(Value::Object(event).to_string())
}

/// The backend's socket URL: its Responses URL with `ws`/`wss`.
fn socket_url(backend: &Backend) -> String {
    let url = backend.endpoint_url(Endpoint::Responses);
    if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        url
    }
}

async fn connect(
    backend: &Backend,
    headers: &HeaderMap,
    deadline: Duration,
) -> Result<Conn, Refusal> {
    let url = socket_url(backend);
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| Refusal::Failed(UpstreamError::Connect(format!("bad URL: {e}"))))?;
    for (name, value) in headers {
        if !NOT_FOR_THE_HANDSHAKE.contains(name) {
            request.headers_mut().append(name.clone(), value.clone());
        }
    }
    let connector = if url.starts_with("wss://") {
        Connector::Rustls(tls().map_err(Refusal::Failed)?)
    } else {
        Connector::Plain
    };
    let config = WebSocketConfig::default();
    let connecting = tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(config),
        true,
        Some(connector),
    );
    match tokio::time::timeout(deadline, connecting).await {
        Err(_) => Err(Refusal::Failed(UpstreamError::Timeout(deadline))),
        Ok(Ok((conn, _))) => Ok(conn),
        // An HTTP answer instead of the upgrade: WebSocket mode is not
        // served there (a server error is a failure like any other).
        Ok(Err(tungstenite::Error::Http(response)))
            if !response.status().is_server_error()
                && response.status() != StatusCode::UNAUTHORIZED
                && response.status() != StatusCode::FORBIDDEN
                && response.status() != StatusCode::TOO_MANY_REQUESTS =>
        {
            Err(Refusal::NotServed)
        }
        Ok(Err(tungstenite::Error::Http(response))) => {
            Err(Refusal::Failed(UpstreamError::Connect(format!(
                "the WebSocket upgrade was refused with {}",
                response.status()
            ))))
        }
        Ok(Err(e)) => Err(Refusal::Failed(UpstreamError::Connect(error_chain(&e)))),
    }
}

/// The TLS client setup for `wss://` backends (ring, the webpki roots, as
/// the HTTP client has), made once.
fn tls() -> Result<Arc<rustls::ClientConfig>, UpstreamError> {
    static TLS: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    TLS.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
            .map_err(|e| e.to_string())
    })
    .clone()
    .map_err(|e| UpstreamError::Connect(format!("TLS setup: {e}")))
}

/// Sends the turn and waits (within `deadline`) for the backend's first
/// message.
async fn first_message(
    conn: &mut Conn,
    event: &str,
    deadline: Duration,
) -> Result<String, UpstreamError> {
    let exchange = async {
        conn.send(Message::Text(event.into()))
            .await
            .map_err(|e| UpstreamError::Connect(error_chain(&e)))?;
        loop {
            match conn.next().await {
                Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_string()),
                Some(Ok(Message::Close(_))) | None => {
                    return Err(UpstreamError::Connect(
                        "the backend closed its WebSocket".into(),
                    ));
                }
                Some(Err(e)) => return Err(UpstreamError::Connect(error_chain(&e))),
                Some(Ok(_)) => continue,
            }
        }
    };
    tokio::time::timeout(deadline, exchange)
        .await
        .unwrap_or(Err(UpstreamError::Timeout(deadline)))
}

/// An event's `type`.
fn event_type(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Kind {
        #[serde(rename = "type")]
        kind: String,
    }
    serde_json::from_str::<Kind>(text).ok().map(|k| k.kind)
}

/// One message as an SSE frame (`event:` and `data:` lines).
fn frame(kind: Option<&str>, text: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(text.len() + 32);
    if let Some(kind) = kind {
        out.put_slice(b"event: ");
        out.put_slice(kind.as_bytes());
        out.put_u8(b'\n');
    }
    for line in text.lines() {
        out.put_slice(b"data: ");
        out.put_slice(line.as_bytes());
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
    out.freeze()
}

/// An `error` message before any event: the answer an HTTP request would
/// have had (its `status`, else 500; `{"error": ...}`).
fn error_answer(text: &str) -> UpstreamResponse {
    let event: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let status = event
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .filter(|s| s.is_client_error() || s.is_server_error())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let error = event
        .get("error")
        .cloned()
        .unwrap_or_else(|| serde_json::json!({"message": text, "type": "server_error"}));
    super::json_answer(
        status,
        Bytes::from(serde_json::json!({ "error": error }).to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_turn_drops_the_http_transport_fields() {
        let e = create_event(&Bytes::from_static(
            br#"{"model":"m","stream":true,"background":false,"input":"hi"}"#,
        ))
        .unwrap();
        assert_eq!(e, r#"{"type":"response.create","model":"m","input":"hi"}"#);
    }

    #[test]
    fn a_message_becomes_one_sse_frame() {
        let f = frame(Some("response.created"), "{\"a\":\n1}");
        assert_eq!(
            &f[..],
            b"event: response.created\ndata: {\"a\":\ndata: 1}\n\n"
        );
    }

    #[test]
    fn an_error_message_keeps_its_status() {
        let r = error_answer(r#"{"type":"error","status":404,"error":{"message":"no"}}"#);
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let r = error_answer(r#"{"type":"error","error":{"message":"no"}}"#);
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
