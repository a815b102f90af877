//! What can go wrong in a request's life, with the status and the
//! OpenAI-shaped `{"error": {...}}` body each one answers (the request log
//! records the same body the client gets). Turning one into an HTTP
//! response is the HTTP layer's (`api::error`).

use http::StatusCode;
use serde_json::{Value, json};

use crate::pipeline::request::BodyError;
use crate::reqlog::Attempt;
use crate::router::{AllFailed, LastFailure, truncate};
use crate::upstream::UpstreamError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("could not read the request body: {0}")]
    ReadBody(String),
    /// The client stopped sending the body (`server.body_read_timeout`).
    #[error("{0}")]
    BodyTimeout(crate::conn::BodyTimeout),
    #[error("The model `{model}` does not exist. Available models: {available}")]
    ModelNotFound { model: String, available: String },
    #[error("{0}")]
    EndpointDisabled(String),
    /// The request log's queue stayed full for the request's whole timeout
    /// (`proxy_settings.logging.on_full: wait`).
    #[error(transparent)]
    LogSaturated(#[from] crate::reqlog::Saturated),
    /// Every Responses WebSocket slot (`server.max_connections`) is taken.
    #[error("too many open WebSocket connections; try again later")]
    TooManySockets,
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(String),
    #[error("every attempt failed")]
    Upstream {
        failure: AllFailed,
        attempts: Vec<Attempt>,
    },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("{0}")]
    RateLimited(crate::limits::Denied),
    #[error(transparent)]
    CacheControl(#[from] crate::cache::ControlError),
    #[error(
        "the reasoning of {0} earlier assistant turn(s) is not known to the proxy \
         (interleaved_thinking.on_miss: error); resend the turns with their reasoning"
    )]
    ReasoningNotFound(usize),
    /// The request came round a loop back to this proxy (its own `Via`
    /// marker for the model): see `upstream::hop`.
    #[error(
        "request loop detected: this request for model `{0}` already passed through this proxy for the same model (a backend of `{0}` leads back to it)"
    )]
    LoopDetected(String),
    /// `previous_response_id` names no response yallmp kept for this client.
    #[error("Previous response with id '{0}' not found.")]
    PreviousResponseNotFound(String),
    /// `GET /v1/responses/{id}` for an id yallmp did not keep.
    #[error("No response found with id '{0}'.")]
    ResponseNotFound(String),
    /// The request log's database could not be read for a previous response.
    #[error("could not read the stored responses: {0}")]
    ResponseStore(String),
    /// A virtual key (or its team) may not use this model.
    #[error("This API key may not use model `{model}`{team}.")]
    ModelNotAllowed { model: String, team: String },
    /// A virtual key's (or its team's) budget for the period is spent.
    #[error(
        "Budget exceeded for {who}: spent ${spent:.4} of ${max:.4}{period}. \
         Ask for a larger budget, or wait for the next period."
    )]
    BudgetExceeded {
        who: String,
        spent: f64,
        max: f64,
        period: String,
    },
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Body(_)
            | ApiError::ReadBody(_)
            | ApiError::CacheControl(_)
            | ApiError::ReasoningNotFound(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooManySockets | ApiError::LogSaturated(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::ModelNotFound { .. }
            | ApiError::EndpointDisabled(_)
            | ApiError::RouteNotFound(_)
            | ApiError::PreviousResponseNotFound(_)
            | ApiError::ResponseNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::ResponseStore(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::ModelNotAllowed { .. } => StatusCode::FORBIDDEN,
            ApiError::BudgetExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Upstream { failure, .. } => match &failure.last {
                LastFailure::Http { status, .. } => *status,
                LastFailure::Network(UpstreamError::Timeout(_) | UpstreamError::BodyTimeout(_)) => {
                    StatusCode::GATEWAY_TIMEOUT
                }
                LastFailure::Network(UpstreamError::Unsupported(_)) => StatusCode::NOT_IMPLEMENTED,
                LastFailure::Network(_) | LastFailure::ErrorEvent { .. } => StatusCode::BAD_GATEWAY,
                LastFailure::Limited { .. } => StatusCode::TOO_MANY_REQUESTS,
            },
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::LoopDetected(_) => StatusCode::LOOP_DETECTED,
        }
    }

    /// The `{"error": {...}}` object.
    pub fn body(&self) -> Value {
        let (kind, code): (&str, Value) = match self {
            ApiError::Body(BodyError::InvalidJson(_) | BodyError::NotAnObject) => {
                ("invalid_request_error", json!("invalid_json"))
            }
            ApiError::Body(BodyError::MissingModel | BodyError::ModelNotString) => {
                ("invalid_request_error", json!("invalid_model"))
            }
            ApiError::ReadBody(_) => ("invalid_request_error", json!("invalid_body")),
            ApiError::TooLarge { .. } => ("invalid_request_error", json!("request_too_large")),
            ApiError::BodyTimeout(_) => ("invalid_request_error", json!("request_timeout")),
            ApiError::TooManySockets => ("server_error", json!("too_many_connections")),
            ApiError::LogSaturated(_) => ("server_error", json!("log_saturated")),
            ApiError::ModelNotFound { .. } => ("invalid_request_error", json!("model_not_found")),
            ApiError::EndpointDisabled(_) => ("invalid_request_error", json!("endpoint_disabled")),
            ApiError::RouteNotFound(_) => ("invalid_request_error", json!("not_found")),
            ApiError::MethodNotAllowed(_) => ("invalid_request_error", json!("method_not_allowed")),
            ApiError::Upstream { failure, attempts } => return upstream_body(failure, attempts),
            ApiError::Internal(_) => ("server_error", json!("internal_error")),
            ApiError::RateLimited(_) => ("rate_limit_error", json!("rate_limit_exceeded")),
            ApiError::CacheControl(_) => ("invalid_request_error", json!("invalid_cache_control")),
            ApiError::ReasoningNotFound(_) => {
                ("invalid_request_error", json!("reasoning_not_found"))
            }
            ApiError::LoopDetected(_) => ("invalid_request_error", json!("loop_detected")),
            // OpenAI's own shape for an unknown previous response.
            ApiError::PreviousResponseNotFound(_) => {
                return json!({"error": {"message": self.to_string(), "type": "invalid_request_error",
                    "param": "previous_response_id", "code": "previous_response_not_found"}});
            }
            ApiError::ResponseNotFound(_) => ("invalid_request_error", json!("not_found")),
            ApiError::ResponseStore(_) => ("server_error", json!("response_store_unavailable")),
            ApiError::ModelNotAllowed { .. } => {
                ("invalid_request_error", json!("model_not_allowed"))
            }
            // What OpenAI sends for an exhausted quota: SDKs raise their
            // rate-limit error for it.
            ApiError::BudgetExceeded { .. } => ("insufficient_quota", json!("budget_exceeded")),
        };
        json!({"error": {"message": self.to_string(), "type": kind, "code": code}})
    }
}

/// The last upstream error, in OpenAI form, with every attempt listed.
fn upstream_body(failure: &AllFailed, attempts: &[Attempt]) -> Value {
    let (mut message, mut kind, mut code, param) = match &failure.last {
        LastFailure::Http { status, body } => {
            let parsed: Option<Value> = serde_json::from_slice(body).ok();
            let err = parsed.as_ref().and_then(|v| v.get("error"));
            let message = err
                .and_then(|e| {
                    e.get("message")
                        .and_then(Value::as_str)
                        .or_else(|| e.as_str())
                })
                .map(str::to_string)
                .unwrap_or_else(|| {
                    let text = String::from_utf8_lossy(body);
                    let text = text.trim();
                    if text.is_empty() {
                        format!("upstream answered {status}")
                    } else {
                        truncate(text, 2000)
                    }
                });
            (
                message,
                err.and_then(|e| e.get("type"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
                err.and_then(|e| e.get("code")).cloned(),
                err.and_then(|e| e.get("param")).cloned(),
            )
        }
        LastFailure::ErrorEvent { data } => {
            let parsed: Option<Value> = serde_json::from_str(data).ok();
            let err = parsed.as_ref().and_then(|v| v.get("error"));
            (
                err.and_then(|e| {
                    e.get("message")
                        .and_then(Value::as_str)
                        .or_else(|| e.as_str())
                })
                .map(str::to_string)
                .unwrap_or_else(|| truncate(data, 2000)),
                err.and_then(|e| e.get("type"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
                err.and_then(|e| e.get("code")).cloned(),
                None,
            )
        }
        LastFailure::Network(e) => (e.to_string(), None, None, None),
        LastFailure::Limited { message, .. } => (
            format!("every backend is at its limit: {message}"),
            Some("rate_limit_error".to_string()),
            Some(json!("backend_rate_limited")),
            None,
        ),
    };
    if !attempts.is_empty() {
        let list: Vec<String> = attempts
            .iter()
            .map(|a| {
                let status = a
                    .status
                    .map_or_else(|| "no response".to_string(), |s| s.to_string());
                match &a.error {
                    Some(e) => format!(
                        "{} try {}: {status} {}",
                        a.backend,
                        a.attempt,
                        truncate(e, 200)
                    ),
                    None => format!("{} try {}: {status}", a.backend, a.attempt),
                }
            })
            .collect();
        message = format!("{message} (attempts: {})", list.join("; "));
    }
    if kind.is_none() {
        kind = Some(match &failure.last {
            LastFailure::Network(UpstreamError::Timeout(_) | UpstreamError::BodyTimeout(_)) => {
                code = code.or(Some(json!("upstream_timeout")));
                "upstream_error".to_string()
            }
            LastFailure::Network(UpstreamError::TooLarge { .. }) => {
                code = code.or(Some(json!("upstream_response_too_large")));
                "upstream_error".to_string()
            }
            _ => "upstream_error".to_string(),
        });
    }
    let mut error = json!({"message": message, "type": kind, "code": code.unwrap_or(Value::Null)});
    if let Some(p) = param {
        error["param"] = p;
    }
    json!({ "error": error })
}

/// Which backend answered, on proxied responses.
pub const BACKEND_HEADER: &str = "x-yallmp-backend";
/// How many upstream attempts a proxied response took.
pub const ATTEMPTS_HEADER: &str = "x-yallmp-attempts";
