//! Who a client is, as far as the proxy can tell from its request: the
//! key it presented. A leaf, because the HTTP layer (key checks), the rate
//! limiter, the response cache (`key_by_client_key`), interleaved thinking
//! and `previous_response_id` scopes all ask the same question.

use http::{HeaderMap, header};

/// The credential a request carries: `Authorization: Bearer K` or
/// `x-api-key: K`.
pub fn presented(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .or_else(|| {
            headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        })
}
