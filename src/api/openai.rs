//! OpenAI-compatible endpoints: chat completions, embeddings, responses and
//! the model list. Each front door names its endpoint and hands the request
//! to the proxy layer ([`crate::proxy`]).

use axum::extract::{Path, Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use serde_json::json;

use super::Shared;
use super::door::proxy;
use super::error::ApiError;
use crate::endpoint::Endpoint;
use crate::proxy::{json_body, model_not_found};

pub async fn chat_completions(
    State(state): State<Shared>,
    req: Request,
) -> Result<Response, ApiError> {
    proxy(&state, Endpoint::ChatCompletions, req).await
}

/// Legacy text completions: passed through to OpenAI-compatible backends.
pub async fn completions(State(state): State<Shared>, req: Request) -> Result<Response, ApiError> {
    proxy(&state, Endpoint::Completions, req).await
}

pub async fn embeddings(State(state): State<Shared>, req: Request) -> Result<Response, ApiError> {
    proxy(&state, Endpoint::Embeddings, req).await
}

pub async fn responses(State(state): State<Shared>, req: Request) -> Result<Response, ApiError> {
    if !state.live.load().config.enable_responses_endpoint {
        return Err(ApiError::EndpointDisabled(
            "The Responses endpoint is off. Set `proxy_settings.enable_responses_endpoint: true` \
             (or `general_settings.enable_responses_endpoint: true`) in the config to enable it."
                .into(),
        ));
    }
    proxy(&state, Endpoint::Responses, req).await
}

pub async fn list_models(State(state): State<Shared>) -> Response {
    let body = state.live.load().models_listing(&state.upstream());
    json_body(StatusCode::OK, body)
}

pub async fn get_model(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let live = state.live.load();
    if live.resolve(&id).is_none() {
        return Err(model_not_found(&id, &live.model_names));
    }
    let body = json!({"id": id, "object": "model", "created": live.created, "owned_by": "yallmp"});
    Ok(json_body(StatusCode::OK, Bytes::from(body.to_string())))
}
