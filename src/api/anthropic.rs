//! Anthropic's front door: `POST /v1/messages` and
//! `/v1/messages/count_tokens`. Both take the proxy layer's path (routing,
//! fallbacks, logging); to an Anthropic backend the body passes through, to
//! an OpenAI-compatible one it is translated both ways ([`crate::protocol`]).
//! Every error on these routes, the proxy's own included (auth, unknown
//! model, rate limits), reaches the client in Anthropic's shape
//! `{"type":"error","error":{"type","message"}}`.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderValue, header};

use super::Shared;
use super::door::proxy;
use super::error::ApiError;
use crate::endpoint::Endpoint;
use crate::protocol::anthropic::response::error_to_anthropic;

/// Error bodies larger than this are left alone.
const MAX_ERROR_BODY: usize = 1024 * 1024;

pub async fn messages(State(state): State<Shared>, req: Request) -> Result<Response, ApiError> {
    proxy(&state, Endpoint::Messages, req).await
}

/// Counted by an Anthropic backend when the model has one that answers,
/// else estimated ([`crate::protocol::tokens`]).
pub async fn count_tokens(State(state): State<Shared>, req: Request) -> Result<Response, ApiError> {
    proxy(&state, Endpoint::CountTokens, req).await
}

/// Rewrites a JSON error answer into Anthropic's shape (one already in it is
/// kept).
pub async fn error_shape(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"));
    if status.is_success() || !json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ERROR_BODY).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let shaped = error_to_anthropic(status.as_u16(), &bytes).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(shaped))
}
