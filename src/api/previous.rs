//! `GET /v1/responses/{id}`: a response yallmp made for a translated
//! backend, read back (the chaining itself is the proxy layer's:
//! [`crate::proxy::previous`]).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;

use super::Shared;
use super::error::ApiError;
use crate::proxy::previous::{LOOKUP_TIMEOUT, scope, turn};

/// `GET /v1/responses/{id}`: a Responses object yallmp made (translated),
/// from memory or the log's database; 404 for any other id (responses of
/// backends that serve Responses natively are not fetched from them).
pub async fn get(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let live = state.live.load_full();
    if !live.config.enable_responses_endpoint {
        return Err(ApiError::EndpointDisabled(
            "The Responses endpoint is off. Set `proxy_settings.enable_responses_endpoint: true` \
             in the config to enable it."
                .into(),
        ));
    }
    let scope = scope(&live, &headers);
    let found =
        match tokio::time::timeout(LOOKUP_TIMEOUT, turn(&state, &id, scope.as_deref())).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => return Err(ApiError::ResponseStore(e)),
            Err(_) => {
                return Err(ApiError::ResponseStore(format!(
                    "the request log's database did not answer within {}s",
                    LOOKUP_TIMEOUT.as_secs()
                )));
            }
        };
    match found {
        Some(t) => Ok(axum::Json(t.response.clone()).into_response()),
        None => Err(ApiError::ResponseNotFound(id)),
    }
}
