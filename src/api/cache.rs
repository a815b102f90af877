//! `DELETE /admin/cache[?model=NAME]`: empties the response cache (every
//! entry, or one model's) and says how many entries went.

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use super::Shared;
use super::error::json_error;

/// The query as pairs: never a rejection (the last `model` counts).
pub async fn invalidate(
    State(state): State<Shared>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let Some(cache) = &state.cache else {
        return json_error(
            StatusCode::NOT_FOUND,
            &json!({"error": {
                "message": "The response cache is off: set `proxy_settings.cache.enabled: true` to use it.",
                "type": "invalid_request_error",
                "code": "cache_disabled",
            }}),
        );
    };
    let model = query
        .iter()
        .rev()
        .find(|(k, _)| k == "model")
        .map(|(_, v)| v.as_str())
        .filter(|m| !m.is_empty());
    let done = cache.invalidate(model).await;
    tracing::info!(
        model = model.unwrap_or("*"),
        removed = done.removed,
        "response cache invalidated"
    );
    let mut body = json!({
        "removed": done.removed,
        "model": model,
        "backend": cache.backend(),
    });
    if done.redis_reached == Some(false) {
        body["warning"] = json!(
            "Redis is not answering: only this instance's local entries were removed; \
             the shared entries expire with their TTL"
        );
    }
    Json(body).into_response()
}
