//! How request errors reach the client: always the OpenAI shape
//! `{"error":{"message","type","code"}}` with a fitting status, and the
//! headers that go with it (`Retry-After`, `Connection: close`). The
//! errors themselves are the proxy layer's ([`crate::proxy::error`]).

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::Value;

pub use crate::proxy::error::{ATTEMPTS_HEADER, ApiError, BACKEND_HEADER};
use crate::router::LastFailure;

/// OpenAI's `Retry-After` in milliseconds.
const RETRY_AFTER_MS: &str = "retry-after-ms";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log(None, None);
        self.response()
    }
}

impl ApiError {
    /// Logs a server error or an upstream failure (a client's mistake is
    /// not the operator's concern), with the request's id and configured
    /// model when the caller knows them and the backend that answered last,
    /// as fields a JSON log indexes. The message is the client's, already
    /// scrubbed of the config's secrets.
    pub fn log(&self, request_id: Option<&str>, model: Option<&str>) {
        let status = self.status();
        if status.is_server_error() || matches!(self, ApiError::Upstream { .. }) {
            let (backend, attempts) = match self {
                ApiError::Upstream { attempts, .. } => (
                    attempts.last().map(|a| a.backend.as_str()),
                    Some(attempts.len()),
                ),
                _ => (None, None),
            };
            tracing::warn!(
                request_id,
                model,
                backend,
                attempts,
                status = status.as_u16(),
                error = self.body()["error"]["message"].as_str().unwrap_or_default(),
                "request failed"
            );
        }
    }

    /// The response, without logging (see [`ApiError::log`]).
    pub fn response(self) -> Response {
        let status = self.status();
        let mut r = json_error(status, &self.body());
        if matches!(self, ApiError::TooLarge { .. } | ApiError::ReadBody(_)) {
            // The rest of the body was never read, so this connection cannot
            // carry another request: say so, or a keep-alive client sends
            // its next request on a connection being closed under it.
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let ApiError::Upstream { attempts, failure } = &self {
            r.headers_mut()
                .insert(ATTEMPTS_HEADER, HeaderValue::from(attempts.len()));
            // A 429 or 503 from the last attempt: the client backs off as
            // long as that upstream asked.
            if let LastFailure::Http { status, .. } = &failure.last
                && matches!(status.as_u16(), 429 | 503)
                && let Some(upstream) = attempts.last().and_then(|a| a.headers.as_ref())
            {
                for name in ["retry-after", RETRY_AFTER_MS] {
                    if let Some(v) = upstream.get(name).and_then(|v| relayable(name, v)) {
                        r.headers_mut().insert(name, v);
                    }
                }
            }
        }
        if let ApiError::Upstream { failure, .. } = &self
            && let LastFailure::Limited { retry_after, .. } = &failure.last
        {
            let secs = retry_after.as_millis().div_ceil(1000).max(1) as u64;
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let ApiError::RateLimited(d) = &self {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(d.retry_after_secs()));
        }
        r
    }
}

/// An upstream's `Retry-After` (`name`) as the client gets it: a number
/// as whole seconds (milliseconds for `retry-after-ms`) capped as the
/// router caps it, a date as it is; `None` for a value the router ignores
/// (negative, NaN, infinite, unparsable), so a client never gets one that
/// could trip it.
fn relayable(name: &'static str, v: &HeaderValue) -> Option<HeaderValue> {
    let mut one = http::HeaderMap::new();
    one.insert(http::HeaderName::from_static(name), v.clone());
    let wait = crate::router::retry_after(&one)?;
    if name == RETRY_AFTER_MS {
        return Some(HeaderValue::from(
            u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        ));
    }
    let number = v.to_str().ok()?.trim().parse::<f64>().is_ok();
    Some(if number {
        HeaderValue::from(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
    } else {
        v.clone()
    })
}

/// A JSON response with the given status.
pub fn json_error(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reqlog::Attempt;
    use crate::router::AllFailed;

    fn failed(status: u16, headers: &[(&'static str, &'static str)]) -> Response {
        let mut h = http::HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, HeaderValue::from_static(v));
        }
        let attempt = Attempt {
            backend: "m#1".into(),
            url: "http://b/v1/chat/completions".into(),
            upstream_model: None,
            attempt: 1,
            status: Some(status),
            latency: std::time::Duration::ZERO,
            error: Some("busy".into()),
            headers: Some(h),
            pending: None,
            dropped: Vec::new(),
            span: None,
        };
        let status = StatusCode::from_u16(status).unwrap();
        ApiError::Upstream {
            failure: AllFailed {
                last: LastFailure::Http {
                    status,
                    body: bytes::Bytes::from_static(b"{}"),
                },
            },
            attempts: vec![attempt],
        }
        .into_response()
    }

    #[test]
    fn retry_after_of_the_last_attempt_reaches_the_client() {
        let r = failed(429, &[("retry-after", "120"), ("retry-after-ms", "120000")]);
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "120");
        assert_eq!(r.headers()["retry-after-ms"], "120000");
        assert_eq!(
            failed(503, &[("retry-after", "5")]).headers()["retry-after"],
            "5"
        );
        // Values the router ignores are not relayed; huge ones are capped.
        let r = failed(429, &[("retry-after", "NaN"), ("retry-after-ms", "1e300")]);
        assert!(!r.headers().contains_key("retry-after"));
        assert_eq!(r.headers()["retry-after-ms"], "1000000000");
        let r = failed(429, &[("retry-after", "1.5"), ("retry-after-ms", "-1")]);
        assert_eq!(r.headers()["retry-after"], "2");
        assert!(!r.headers().contains_key("retry-after-ms"));
        // Not on other failures.
        assert!(
            !failed(500, &[("retry-after", "5")])
                .headers()
                .contains_key("retry-after")
        );
    }
}
