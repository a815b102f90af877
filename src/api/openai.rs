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
use crate::keys::service::Identity;
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

pub async fn list_models(
    State(state): State<Shared>,
    who: Option<axum::Extension<Identity>>,
) -> Response {
    let body = state.live.load().models_listing(&state.upstream());
    match who {
        // A virtual key sees only the models it may use.
        Some(axum::Extension(who)) => json_body(StatusCode::OK, only_allowed(&body, &who)),
        None => json_body(StatusCode::OK, body),
    }
}

/// A model listing with only the entries `who` (and its team) may use.
fn only_allowed(listing: &Bytes, who: &Identity) -> Bytes {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(listing) else {
        return listing.clone();
    };
    if let Some(data) = v.get_mut("data").and_then(|d| d.as_array_mut()) {
        data.retain(|m| {
            let id = m.get("id").and_then(|i| i.as_str()).unwrap_or_default();
            allowed(who, id)
        });
    }
    Bytes::from(v.to_string())
}

fn allowed(who: &Identity, model: &str) -> bool {
    who.key.limits.allows(model) && who.team.as_ref().is_none_or(|t| t.limits.allows(model))
}

pub async fn get_model(
    State(state): State<Shared>,
    who: Option<axum::Extension<Identity>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let live = state.live.load();
    if live.resolve(&id).is_none() || who.is_some_and(|w| !allowed(&w.0, &id)) {
        return Err(model_not_found(&id, &live.model_names));
    }
    let body = json!({"id": id, "object": "model", "created": live.created, "owned_by": "yallmp"});
    Ok(json_body(StatusCode::OK, Bytes::from(body.to_string())))
}
