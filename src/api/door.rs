//! The front doors' shared half: an HTTP request decoded into the proxy
//! layer's plain [`crate::proxy::Request`] (the ids the request-id layer
//! set, the original URI, the peer, the metrics' model slot), handed to
//! [`crate::proxy::Proxy::handle`].

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, OriginalUri, Request};
use axum::response::Response;
use http::HeaderValue;

use super::error::ApiError;
use super::{LogIds, RequestId, Shared};
use crate::endpoint::Endpoint;
use crate::metrics_names::ModelSlot;

/// One proxied request on `endpoint`.
pub async fn proxy(state: &Shared, endpoint: Endpoint, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let mut ext = parts.extensions;
    let request_id = ext
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or(HeaderValue::from_static("unknown"));
    // The record's key is the proxy's own id; the client's `x-request-id`
    // is kept beside it (see `LogIds`).
    let ids = ext.get::<LogIds>();
    let own_id = ids
        .and_then(|i| i.own.to_str().ok())
        .unwrap_or("unknown")
        .to_string();
    let client_request_id = ids
        .and_then(|i| i.client.as_ref())
        .and_then(|c| c.to_str().ok())
        .map(str::to_string);
    let req = crate::proxy::Request {
        endpoint,
        method: parts.method,
        // Nested routes see the path without `/v1`; the proxy wants the
        // original.
        uri: ext.remove::<OriginalUri>().map_or(parts.uri, |u| u.0),
        peer: ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0),
        headers: parts.headers,
        body,
        request_id,
        own_id,
        client_request_id,
        model_slot: ext.get::<ModelSlot>().cloned(),
        sockets: ext.remove::<std::sync::Arc<crate::upstream::ws::Sockets>>(),
        identity: ext.remove::<crate::keys::service::Identity>(),
    };
    // Boxed once here: the layers above then move a pointer, not the
    // request's whole future (several kB), each time they wrap it.
    match Box::pin(state.proxy.handle(req)).await {
        Ok(response) => Ok(response),
        Err(e) => {
            // Logged with the request's fields (its id and the model the
            // proxy resolved), which the extensions still hold.
            let id = ext.get::<RequestId>().and_then(|r| r.0.to_str().ok());
            let model = ext.get::<ModelSlot>().and_then(ModelSlot::get);
            e.log(id, model.as_deref());
            Ok(e.response())
        }
    }
}
