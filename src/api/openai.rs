//! OpenAI-compatible endpoints: chat completions, embeddings, responses and
//! the model list. Each proxied call reads the body once, loads the live
//! snapshot once, lets the router find an answer, and relays it.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::json;

use super::error::ApiError;
use super::{RequestId, Shared};
use crate::pipeline::request::RequestBody;
use crate::router::stream::SseSource;
use crate::router::{Answer, Dispatch};
use crate::sse;
use crate::upstream::{self, Endpoint, UpstreamError};

pub async fn chat_completions(
    State(state): State<Shared>,
    req: Request,
) -> Result<Response, ApiError> {
    proxy(state, Endpoint::ChatCompletions, req).await
}

pub async fn embeddings(State(state): State<Shared>, req: Request) -> Result<Response, ApiError> {
    proxy(state, Endpoint::Embeddings, req).await
}

pub async fn responses(State(state): State<Shared>, req: Request) -> Result<Response, ApiError> {
    if !state.live.load().config.enable_responses_endpoint {
        return Err(ApiError::EndpointDisabled(
            "The Responses endpoint is off. Set `proxy_settings.enable_responses_endpoint: true` \
             (or `general_settings.enable_responses_endpoint: true`) in the config to enable it."
                .into(),
        ));
    }
    proxy(state, Endpoint::Responses, req).await
}

pub async fn list_models(State(state): State<Shared>) -> Response {
    json_body(StatusCode::OK, state.live.load().models_json.clone())
}

pub async fn get_model(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let live = state.live.load();
    if live.plan(&id).is_none() {
        return Err(model_not_found(&id, &live.model_names));
    }
    let created = state.started.elapsed().as_secs();
    let body = json!({"id": id, "object": "model", "created": created, "owned_by": "yallmp"});
    Ok(json_body(StatusCode::OK, Bytes::from(body.to_string())))
}

fn model_not_found(model: &str, names: &[String]) -> ApiError {
    ApiError::ModelNotFound {
        model: model.to_string(),
        available: if names.is_empty() {
            "(none configured)".into()
        } else {
            names.join(", ")
        },
    }
}

fn json_body(status: StatusCode, body: Bytes) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The shared path of every proxied endpoint.
async fn proxy(state: Shared, endpoint: Endpoint, req: Request) -> Result<Response, ApiError> {
    let live = state.live.load_full();
    let (parts, body) = req.into_parts();
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or(HeaderValue::from_static("unknown"));
    let raw = read_body(body, &parts.headers, live.config.server.max_body_bytes).await?;
    let parsed = RequestBody::parse(&raw)?;
    let model = parsed.model()?;
    let plan = live
        .plan(&model)
        .ok_or_else(|| model_not_found(&model, &live.model_names))?;
    let stream = endpoint.can_stream() && parsed.stream();
    let dispatch = Dispatch {
        client: &state.client,
        settings: &live.config.router,
        plan: &plan,
        endpoint,
        body: &parsed,
        raw: &raw,
        headers: &parts.headers,
        request_id: &request_id,
        stream,
    };
    let mut attempts = Vec::new();
    match dispatch.run(&mut attempts).await {
        Ok(Answer::Complete {
            status,
            headers,
            body,
            backend,
        }) => {
            tracing::debug!(%model, backend = %backend.name, status = status.as_u16(), attempts = attempts.len(), "answered");
            Ok(respond(status, &headers, Body::from(body)))
        }
        Ok(Answer::Stream {
            status,
            headers,
            first,
            rest,
            backend,
        }) => {
            tracing::debug!(%model, backend = %backend.name, attempts = attempts.len(), "streaming");
            Ok(respond(status, &headers, relay(first, rest, endpoint)))
        }
        Err(failure) => Err(ApiError::Upstream { failure, attempts }),
    }
}

fn respond(status: StatusCode, upstream: &HeaderMap, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = upstream::relayed_headers(upstream);
    response
}

/// Reads the request body up to `limit` bytes.
async fn read_body(body: Body, headers: &HeaderMap, limit: u64) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::TooLarge { limit });
    }
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, limit_usize).await.map_err(|e| {
        let inner = e.into_inner();
        if inner
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            ApiError::TooLarge { limit }
        } else {
            ApiError::ReadBody(upstream::error_chain(inner.as_ref()))
        }
    })
}

/// The client's event stream: the peeked frames, then the rest as they
/// arrive. An upstream failure after the first byte ends the stream with an
/// error event (never a fake `[DONE]`). Dropping the body (client gone)
/// drops the upstream response, which cancels the upstream request.
fn relay(first: Vec<Bytes>, rest: SseSource, endpoint: Endpoint) -> Body {
    let state = (VecDeque::from(first), Some(rest));
    let frames = futures::stream::unfold(state, move |(mut queue, mut source)| async move {
        if let Some(frame) = queue.pop_front() {
            return Some((Ok::<_, Infallible>(frame), (queue, source)));
        }
        let src = source.as_mut()?;
        match src.next_frame().await {
            Ok(Some(frame)) => Some((Ok(frame), (queue, source))),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "upstream stream failed after the first byte");
                Some((Ok(stream_error_frame(&e, endpoint)), (queue, None)))
            }
        }
    });
    Body::from_stream(frames)
}

/// The event that ends a stream the upstream broke.
pub fn stream_error_frame(e: &UpstreamError, endpoint: Endpoint) -> Bytes {
    let code = match e {
        UpstreamError::BodyTimeout(_) | UpstreamError::Timeout(_) => "upstream_timeout",
        _ => "stream_interrupted",
    };
    let error = json!({
        "message": format!("upstream stream failed: {e}"),
        "type": "upstream_error",
        "code": code,
    });
    match endpoint {
        Endpoint::Responses => sse::named_frame(
            "error",
            json!({"type": "error", "code": code, "message": error["message"], "error": error})
                .to_string()
                .as_bytes(),
        ),
        _ => sse::data_frame(json!({ "error": error }).to_string().as_bytes()),
    }
}
