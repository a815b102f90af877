//! The Responses API's WebSocket mode: `GET /v1/responses` with
//! `Upgrade: websocket` (what Codex's built-in provider tries first).
//!
//! Each client text message `{"type": "response.create", ...}` carries the
//! fields of a `POST /v1/responses` body at its top level (or nested under
//! `response`); it runs through the very pipeline of a streamed
//! `POST /v1/responses` ([`crate::proxy::Proxy::handle`]): routing, translation,
//! `previous_response_id` chaining, limits, the request log (one record per
//! turn). Each event of the answer's stream goes back as one text message
//! (its `data` JSON as is); a turn refused before streaming (400, 404, ...)
//! becomes `{"type": "error", "status": N, "error": {...}}` and the socket
//! stays open. Turns run one after the other.
//!
//! A backend that serves WebSocket mode itself (`responses_websocket: true`)
//! is reached over one upstream WebSocket per client socket, reused turn
//! after turn (`crate::upstream::ws`); other backends that speak Responses
//! natively get one HTTP request per turn.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, OriginalUri, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, header};
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::{LogIds, Shared};
use crate::endpoint::Endpoint;
use crate::upstream::ws::Sockets;

/// Headers of the upgrade request that are the handshake's, not a turn's.
const HANDSHAKE: [&str; 8] = [
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
    "content-length",
    "transfer-encoding",
];

/// What every turn of a socket inherits from its upgrade request.
struct Handshake {
    headers: HeaderMap,
    peer: Option<ConnectInfo<SocketAddr>>,
    /// The path as the client asked for it (`/v1/responses`), for the log.
    path: http::Uri,
    /// The client's `x-request-id`, if it sent a usable one.
    client_id: Option<HeaderValue>,
    /// The socket's own upstream sockets (backends with
    /// `responses_websocket`), reused turn after turn.
    upstream: Arc<Sockets>,
    /// Whether the upgrade came with a virtual key: each turn looks it up
    /// again (a key revoked during the socket's life stops its turns).
    virtual_key: bool,
}

/// `GET /responses`: the WebSocket upgrade (the client-key layer has
/// already checked the key). Without an upgrade, 426 Upgrade Required.
pub async fn upgrade(
    State(state): State<Shared>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let Ok(ws) = ws else {
        // 426, with the protocol to upgrade to: POST creates a response.
        let mut r = super::error::json_error(
            http::StatusCode::UPGRADE_REQUIRED,
            &json!({"error": {"message": "GET /v1/responses is the Responses API's WebSocket mode: \
                send a WebSocket upgrade (or POST to create a response)",
                "type": "invalid_request_error", "code": "upgrade_required"}}),
        );
        r.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return Ok(r);
    };
    let config = &state.live.load().config;
    if !config.enable_responses_endpoint {
        return Err(ApiError::EndpointDisabled(
            "The Responses endpoint is off. Set `proxy_settings.enable_responses_endpoint: true` \
             (or `general_settings.enable_responses_endpoint: true`) in the config to enable it."
                .into(),
        ));
    }
    // Upgraded, the socket no longer counts as one of the server's
    // connections: it takes one of the sockets' own slots instead.
    let Ok(slot) = state.ws_slots.clone().try_acquire_owned() else {
        return Err(ApiError::TooManySockets);
    };
    let idle = config.server.connections.idle_timeout;
    let max = usize::try_from(config.server.max_body_bytes).unwrap_or(usize::MAX);
    let (parts, _) = req.into_parts();
    let mut headers = parts.headers;
    for h in HANDSHAKE {
        headers.remove(h);
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let handshake = Handshake {
        headers,
        peer: parts.extensions.get::<ConnectInfo<SocketAddr>>().cloned(),
        path: parts
            .extensions
            .get::<OriginalUri>()
            .map_or(parts.uri.clone(), |u| u.0.clone()),
        client_id: parts
            .extensions
            .get::<LogIds>()
            .and_then(|i| i.client.clone()),
        upstream: Arc::new(Sockets::default()),
        virtual_key: parts
            .extensions
            .get::<crate::keys::service::Identity>()
            .is_some(),
    };
    Ok(ws
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            let upstream = handshake.upstream.clone();
            serve(state, socket, handshake, idle).await;
            upstream.close().await;
            drop(slot);
        })
        .into_response())
}

/// The socket's life: one turn per `response.create`, in order.
/// A socket with no message from the client for `idle`
/// (`server.idle_timeout`) between turns is closed.
async fn serve(
    state: Shared,
    mut socket: WebSocket,
    handshake: Handshake,
    idle: Option<std::time::Duration>,
) {
    // The socket's last answer that yallmp made, kept for chaining when
    // the request log has no database (with one, the pipeline chains).
    let mut last: Option<Last> = None;
    loop {
        let next = match idle {
            Some(idle) => match tokio::time::timeout(idle, socket.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    let _ = socket
                        .send(Message::Close(Some(CloseFrame {
                            code: 1000,
                            reason: Utf8Bytes::from_static("idle for server.idle_timeout"),
                        })))
                        .await;
                    return;
                }
            },
            None => socket.recv().await,
        };
        let Some(message) = next else { return };
        let text = match message {
            Ok(Message::Text(t)) => t,
            Ok(Message::Close(_)) | Err(_) => return,
            // Pings are answered by the protocol layer; binary is not a
            // Responses event.
            Ok(Message::Binary(_)) => {
                if send_error(
                    &mut socket,
                    400,
                    "invalid_request_error",
                    "binary messages are not Responses events: send `response.create` as text",
                )
                .await
                .is_err()
                {
                    return;
                }
                continue;
            }
            Ok(_) => continue,
        };
        if state
            .shutting_down
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code: 1001,
                    reason: Utf8Bytes::from_static("the proxy is shutting down"),
                })))
                .await;
            return;
        }
        let mut body = match request_body(&text) {
            Ok(b) => b,
            Err(message) => {
                if send_error(&mut socket, 400, "invalid_request_error", &message)
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
        };
        let local = state.log_reader.is_none();
        let input = chain_locally(&mut body, last.as_ref());
        // A warm-up (`generate: false`, Codex's prewarm): answered here.
        if body.get("generate") == Some(&Value::Bool(false)) {
            match warm_up(&state, &mut socket, &body, input).await {
                Ok(Some(kept)) => last = Some(kept),
                Ok(None) => {}
                Err(_) => return,
            }
            continue;
        }
        body.remove("generate");
        let body = Bytes::from(Value::Object(body).to_string());
        match turn(&state, &mut socket, &handshake, body).await {
            // A turn that failed leaves the last answer as it was.
            Ok(Some((own, response))) if local => {
                last = made_here(&own, response, input);
            }
            Ok(_) => {}
            // The client went away: dropping the stream ends the turn's
            // record as cancelled, like a closed HTTP stream.
            Err(_) => return,
        }
    }
}

/// `generate: false`: no model runs and nothing goes upstream (a backend
/// over HTTP does not know the field). The answer is a completed response
/// with no output whose id a next turn can name as `previous_response_id`:
/// the socket keeps the request's input (after its own chaining) for it.
async fn warm_up(
    state: &Shared,
    socket: &mut WebSocket,
    body: &Map<String, Value>,
    input: Vec<Value>,
) -> Result<Option<Last>, axum::Error> {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let live = state.live.load();
    if live.resolve(model).is_none() {
        let e = crate::proxy::model_not_found(model, &live.model_names);
        let event =
            json!({"type": "error", "status": e.status().as_u16(), "error": e.body()["error"]});
        socket.send(Message::Text(event.to_string().into())).await?;
        return Ok(None);
    }
    let id = format!("resp_{}", uuid::Uuid::now_v7().simple());
    let created_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut response = json!({"id": id, "object": "response", "created_at": created_at,
        "status": "in_progress", "model": model, "output": [],
        "previous_response_id": body.get("previous_response_id").cloned().unwrap_or(Value::Null),
        "usage": null});
    let created =
        json!({"type": "response.created", "sequence_number": 0, "response": response.clone()});
    socket
        .send(Message::Text(created.to_string().into()))
        .await?;
    response["status"] = json!("completed");
    response["usage"] = json!({"input_tokens": 0, "output_tokens": 0, "total_tokens": 0});
    let done = json!({"type": "response.completed", "sequence_number": 1, "response": response});
    socket.send(Message::Text(done.to_string().into())).await?;
    Ok(Some(Last { id, items: input }))
}

/// A socket's last answer that yallmp made (a translated backend's): its
/// id and the whole conversation up to and including it.
struct Last {
    id: String,
    items: Vec<Value>,
}

/// A request naming the socket's last kept answer (a warm-up, or without a
/// database a translated answer) gets the conversation from memory (`previous_response_id` replaced by the whole
/// `input`, as the pipeline does from the log). Returns the request's whole
/// input, kept for the next turn.
fn chain_locally(body: &mut Map<String, Value>, last: Option<&Last>) -> Vec<Value> {
    let input = crate::proxy::previous::input_items(body);
    let Some(last) = last else { return input };
    if body.get("previous_response_id").and_then(Value::as_str) != Some(last.id.as_str()) {
        return input;
    }
    let mut items = last.items.clone();
    items.extend(input);
    body.remove("previous_response_id");
    body.insert("input".into(), Value::Array(items.clone()));
    items
}

/// The turn's [`Last`], when its answer is one yallmp made: its id is
/// `resp_` and the turn's own record id (see `previous`).
fn made_here(own: &str, response: Value, mut items: Vec<Value>) -> Option<Last> {
    let hex: String = own.chars().filter(|c| *c != '-').collect();
    let id = response.get("id").and_then(Value::as_str)?;
    if id != format!("resp_{hex}") {
        return None;
    }
    if let Some(out) = response.get("output").and_then(Value::as_array) {
        items.extend(out.iter().cloned());
    }
    Some(Last {
        id: id.to_string(),
        items,
    })
}

/// The `POST /v1/responses` body of a `response.create` event: its fields
/// at the top level (OpenAI's shape) or under `response`, streamed.
fn request_body(text: &str) -> Result<Map<String, Value>, String> {
    let Ok(Value::Object(mut event)) = serde_json::from_str::<Value>(text) else {
        return Err("a WebSocket message must be a JSON object (a `response.create` event)".into());
    };
    match event.get("type").and_then(Value::as_str) {
        Some("response.create") => {}
        Some(other) => {
            return Err(format!(
                "unsupported event type `{other}`: only `response.create` is served"
            ));
        }
        None => return Err("the event has no `type` (expected `response.create`)".into()),
    }
    event.remove("type");
    let mut body = match event.remove("response") {
        Some(Value::Object(nested)) => {
            let mut b = nested;
            // Top-level fields beside `response` win over nested ones.
            for (k, v) in event {
                b.insert(k, v);
            }
            b
        }
        Some(_) => return Err("`response` must be an object".into()),
        None => event,
    };
    // Transport fields: every answer streams on the socket; background
    // runs are not served over WebSocket (as at OpenAI).
    body.remove("background");
    body.insert("stream".into(), Value::Bool(true));
    Ok(body)
}

/// One turn: the request through the POST pipeline, its events out.
/// `Err` when the socket is gone; else the turn's own id and the response
/// of its `response.completed` event, if one came.
async fn turn(
    state: &Shared,
    socket: &mut WebSocket,
    handshake: &Handshake,
    body: Bytes,
) -> Result<Option<(String, Value)>, axum::Error> {
    let identity = if handshake.virtual_key {
        let found = crate::identity::presented(&handshake.headers)
            .and_then(|k| state.keys.identify(k))
            .filter(|who| who.key.usable(chrono::Utc::now()));
        if found.is_none() {
            send_error(
                socket,
                401,
                "invalid_request_error",
                "This API key has been revoked or has expired.",
            )
            .await?;
            return Ok(None);
        }
        found
    } else {
        None
    };
    let own = super::new_request_id();
    let own_str = own.to_str().unwrap_or_default().to_string();
    let req = crate::proxy::Request {
        endpoint: Endpoint::Responses,
        method: http::Method::POST,
        uri: handshake.path.clone(),
        peer: handshake.peer.map(|p| p.0),
        headers: handshake.headers.clone(),
        body: Body::from(body),
        request_id: handshake.client_id.clone().unwrap_or_else(|| own.clone()),
        own_id: own_str.clone(),
        client_request_id: handshake
            .client_id
            .as_ref()
            .and_then(|c| c.to_str().ok())
            .map(str::to_string),
        model_slot: None,
        sockets: Some(handshake.upstream.clone()),
        identity,
    };
    let response = match state.proxy.handle(req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    let status = response.status();
    let is_stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !status.is_success() || !is_stream {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        let parsed = serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null);
        let message = if status.is_success() {
            // A whole answer (not expected: every turn streams).
            json!({"type": "response.completed", "response": parsed})
        } else {
            let error = match parsed.get("error") {
                Some(e) => e.clone(),
                None => json!({"message": String::from_utf8_lossy(&bytes), "type": "server_error"}),
            };
            json!({"type": "error", "status": status.as_u16(), "error": error})
        };
        socket
            .send(Message::Text(message.to_string().into()))
            .await?;
        return Ok(None);
    }
    let max_event = state.live.load().config.streaming.max_event_bytes;
    let mut decoder = crate::sse::Decoder::with_limit(max_event);
    let mut stream = response.into_body().into_data_stream();
    let mut completed = None;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else { break };
        decoder.push(&chunk);
        while let Some(frame) = decoder.next_frame() {
            let event = crate::sse::parse(&frame);
            if event.is_done() {
                continue;
            }
            let Some(data) = event.data else { continue };
            if data.contains("\"response.completed\"")
                && let Ok(mut v) = serde_json::from_str::<Value>(&data)
                && v["type"] == "response.completed"
            {
                completed = Some((own_str.clone(), v["response"].take()));
            }
            socket.send(Message::Text(data.as_ref().into())).await?;
        }
        if decoder.too_large() {
            break;
        }
    }
    Ok(completed)
}

/// An `error` event that is the proxy's own (a message that is no turn).
async fn send_error(
    socket: &mut WebSocket,
    status: u16,
    kind: &str,
    message: &str,
) -> Result<(), axum::Error> {
    let event = json!({"type": "error", "status": status,
        "error": {"message": message, "type": kind, "code": Value::Null}});
    socket.send(Message::Text(event.to_string().into())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_at_the_top_or_nested_become_a_streamed_body() {
        let top = request_body(r#"{"type":"response.create","model":"m","input":"hi","stream":false,"background":true}"#).unwrap();
        assert_eq!(
            Value::Object(top),
            json!({"model": "m", "input": "hi", "stream": true})
        );
        let nested =
            request_body(r#"{"type":"response.create","response":{"model":"m","input":"hi"}}"#)
                .unwrap();
        assert_eq!(
            Value::Object(nested),
            json!({"model": "m", "input": "hi", "stream": true})
        );
        assert!(request_body(r#"{"type":"response.cancel"}"#).is_err());
        assert!(request_body("[1]").is_err());
        assert!(request_body(r#"{"model":"m"}"#).is_err());
    }
}
