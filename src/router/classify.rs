//! Reading an upstream's answer for the router: which statuses are worth
//! another try or another backend, the kind of a failure (context window,
//! content policy, rate limit, …), `Retry-After`, content-filter refusals,
//! success bodies that are not JSON, and error bodies in a few words.

use std::time::Duration;

use http::{HeaderMap, StatusCode, header};
use serde_json::Value;

use crate::config::KindCounts;
use crate::upstream::UpstreamError;

/// What kind of failure an attempt had. The kinds are LiteLLM's exception
/// classes, which its `retry_policy` and `allowed_fails_policy` are keyed
/// by (yallmp reads both), and the two that have fallbacks of their own
/// (`context_window_fallbacks`, `content_policy_fallbacks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A 4xx the request caused that is none of the kinds below (400, 409,
    /// 413, 422, …).
    BadRequest,
    /// The request does not fit the model's context window (any error
    /// status but 429, recognised by the providers' codes and messages;
    /// Anthropic's 413 `request_too_large`).
    ContextWindow,
    /// A provider's content policy refused the request or its answer (any
    /// error status, recognised by the providers' codes and messages).
    ContentPolicy,
    /// 401, 403; a Vertex AI access token that could not be had.
    Authentication,
    /// 404.
    NotFound,
    /// No answer in time: `request_timeout` passed before the headers, or
    /// the body stalled; 408; 504.
    Timeout,
    /// 429 (unless its body is a content-policy refusal).
    RateLimit,
    /// 500 and the other 5xx below 600 (not 502, 503, 504, 508); no usable
    /// answer (could not connect, the body broke off, a success answer that
    /// is not JSON); a stream whose first event is an error.
    InternalServer,
    /// 502.
    BadGateway,
    /// 503.
    ServiceUnavailable,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::BadRequest,
        ErrorKind::ContextWindow,
        ErrorKind::ContentPolicy,
        ErrorKind::Authentication,
        ErrorKind::NotFound,
        ErrorKind::Timeout,
        ErrorKind::RateLimit,
        ErrorKind::InternalServer,
        ErrorKind::BadGateway,
        ErrorKind::ServiceUnavailable,
    ];

    /// yallmp's name: the key of the policies, the Redis key suffix, logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::ContextWindow => "context_window",
            ErrorKind::ContentPolicy => "content_policy",
            ErrorKind::Authentication => "authentication",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Timeout => "timeout",
            ErrorKind::RateLimit => "rate_limit",
            ErrorKind::InternalServer => "internal_server",
            ErrorKind::BadGateway => "bad_gateway",
            ErrorKind::ServiceUnavailable => "service_unavailable",
        }
    }

    /// Its place in [`ErrorKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The kind it is a case of, as LiteLLM's exception classes nest: a
    /// context-window error and a content-policy refusal are bad requests;
    /// yallmp also reads 502 and 503 as internal server errors.
    fn broader(self) -> Option<ErrorKind> {
        match self {
            ErrorKind::ContextWindow | ErrorKind::ContentPolicy => Some(ErrorKind::BadRequest),
            ErrorKind::BadGateway | ErrorKind::ServiceUnavailable => {
                Some(ErrorKind::InternalServer)
            }
            _ => None,
        }
    }

    fn own(self, c: &KindCounts) -> Option<u32> {
        match self {
            ErrorKind::BadRequest => c.bad_request,
            ErrorKind::ContextWindow => c.context_window,
            ErrorKind::ContentPolicy => c.content_policy,
            ErrorKind::Authentication => c.authentication,
            ErrorKind::NotFound => c.not_found,
            ErrorKind::Timeout => c.timeout,
            ErrorKind::RateLimit => c.rate_limit,
            ErrorKind::InternalServer => c.internal_server,
            ErrorKind::BadGateway => c.bad_gateway,
            ErrorKind::ServiceUnavailable => c.service_unavailable,
        }
    }

    /// The number a policy gives a failure of this kind, with the kind it
    /// gives it for: its own, else its broader kind's.
    pub fn in_policy(self, c: &KindCounts) -> Option<(ErrorKind, u32)> {
        self.own(c).map(|n| (self, n)).or_else(|| {
            let b = self.broader()?;
            b.own(c).map(|n| (b, n))
        })
    }

    /// The retries `retry_policy` gives it: [`ErrorKind::in_policy`], else
    /// the policy's `default`.
    pub fn retries(self, c: &KindCounts) -> Option<u32> {
        self.in_policy(c).map(|(_, n)| n).or(c.default)
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of an HTTP error answer, from its status and (for the kinds a
/// status does not tell) its body; `None` for what is not an error (2xx,
/// 3xx, 1xx) and for 508 (a loop).
pub fn kind_of_http(status: StatusCode, body: &[u8]) -> Option<ErrorKind> {
    let s = status.as_u16();
    if !(400..600).contains(&s) || status == StatusCode::LOOP_DETECTED {
        return None;
    }
    if s == 413 && memchr::memmem::find(body, b"request_too_large").is_some() {
        // Anthropic's: the request is larger than the model takes.
        return Some(ErrorKind::ContextWindow);
    }
    // A refusal is one whatever the status (gateways in front of Azure turn
    // it into a 429 or a 5xx); a 429 is a rate limit whatever else it says.
    match kind_of_text(body) {
        Some(ErrorKind::ContextWindow) if s == 429 => {}
        Some(kind) => return Some(kind),
        None => {}
    }
    Some(match s {
        429 => ErrorKind::RateLimit,
        401 | 403 => ErrorKind::Authentication,
        404 => ErrorKind::NotFound,
        408 | 504 => ErrorKind::Timeout,
        502 => ErrorKind::BadGateway,
        503 => ErrorKind::ServiceUnavailable,
        500..=599 => ErrorKind::InternalServer,
        _ => ErrorKind::BadRequest,
    })
}

/// The kind of a stream whose first event was an error (`data`, its JSON):
/// what its text says, else a rate limit when its code says so, else an
/// internal server error.
pub fn kind_of_event(data: &str) -> ErrorKind {
    if let Some(kind) = kind_of_text(data.as_bytes()) {
        return kind;
    }
    if memchr::memmem::find(data.as_bytes(), b"rate_limit").is_some() {
        return ErrorKind::RateLimit;
    }
    ErrorKind::InternalServer
}

/// The kind of an attempt that got no usable answer; `None` where the
/// backend is not at fault (an endpoint it does not serve, an answer past
/// the proxy's own bound).
pub fn kind_of_network(e: &UpstreamError) -> Option<ErrorKind> {
    match e {
        UpstreamError::Timeout(_) | UpstreamError::BodyTimeout(_) => Some(ErrorKind::Timeout),
        UpstreamError::Credentials(_) => Some(ErrorKind::Authentication),
        UpstreamError::Connect(_) | UpstreamError::Body(_) | UpstreamError::Malformed { .. } => {
            Some(ErrorKind::InternalServer)
        }
        UpstreamError::Unsupported(_) | UpstreamError::TooLarge { .. } => None,
    }
}

/// Codes (`error.code`, `error.type`, `error.innererror.code`, …) of
/// context-window errors, lowercase.
const CONTEXT_WINDOW_CODES: &[&str] = &[
    // OpenAI, Azure OpenAI, Groq and other OpenAI-compatible APIs.
    "context_length_exceeded",
    // llama.cpp's server.
    "exceed_context_size_error",
];

/// Phrases of context-window error messages, lowercase.
const CONTEXT_WINDOW_PHRASES: &[&str] = &[
    // OpenAI, Azure, vLLM, DeepSeek, OpenRouter: "This model's maximum
    // context length is 8192 tokens"; Mistral: "too large for model with
    // 32768 maximum context length".
    "maximum context length",
    // OpenAI's Responses API: "Your input exceeds the context window of
    // this model".
    "exceeds the context window",
    // OpenAI: "Input tokens exceed the configured limit of 272000 tokens".
    "input tokens exceed the configured limit",
    "model's maximum context limit",
    // Anthropic (and Claude on Bedrock or Vertex AI): "prompt is too long:
    // 208310 tokens > 200000 maximum"; "input length and `max_tokens`
    // exceed context limit: 197000 + 8192 > 200000".
    "prompt is too long",
    "exceed context limit",
    // Bedrock: "Input is too long for requested model.", "Too many input
    // tokens. Max input tokens: 8192"; "prompt tokens (N) exceed model
    // maximum (M)".
    "input is too long",
    "too many input tokens",
    "exceed model maximum",
    // Gemini and Vertex AI: "The input token count (N) exceeds the maximum
    // number of tokens allowed (M)."; "Request payload size exceeds the
    // limit".
    "exceeds the maximum number of tokens",
    "request payload size exceeds",
    // vLLM: "… is longer than the model's context length".
    "longer than the model's context length",
    // llama.cpp: "the request exceeds the available context size, try
    // increasing it".
    "exceeds the available context size",
    // Ollama: "input length exceeds the context length".
    "exceeds the context length",
    // xAI: "This model's maximum prompt length is 131072".
    "maximum prompt length",
    // Hugging Face TGI, Together AI: "`inputs` tokens + `max_new_tokens`
    // must be <= 4097".
    "`inputs` tokens + `max_new_tokens` must be",
    // OpenAI, Groq: "Please reduce the length of the messages or
    // completion."
    "reduce the length of the messages",
];

/// Codes of content-policy refusals, lowercase.
const CONTENT_POLICY_CODES: &[&str] = &[
    // OpenAI, and Azure OpenAI's images.
    "content_policy_violation",
    // Azure OpenAI: `error.code` and `error.innererror.code`.
    "content_filter",
    "responsibleaipolicyviolation",
    // Gemini's block reason, relayed as an error.
    "prohibited_content",
    // Alibaba Cloud (Qwen): "data_inspection_failed".
    "data_inspection_failed",
];

/// Phrases of content-policy refusals, lowercase.
const CONTENT_POLICY_PHRASES: &[&str] = &[
    "content_policy_violation",
    // OpenAI: "Your request was rejected as a result of our safety
    // system."; "Invalid prompt: your prompt was flagged as potentially
    // violating our usage policy."
    "safety system",
    "violating our usage policy",
    // Azure OpenAI: "The response was filtered due to the prompt triggering
    // Azure OpenAI's content management policy."
    "content management policy",
    // Anthropic (and Claude on Bedrock or Vertex AI): "Output blocked by
    // content filtering policy".
    "content filtering policy",
    // Vertex AI: "The response was blocked."; Imagen: "… violate Google's
    // Responsible AI practices."
    "the response was blocked",
    "responsible ai practices",
    // Gemini's safety block, relayed as an error ("Candidate was blocked
    // due to SAFETY", "blocked for reason: SAFETY").
    "blocked due to safety",
    "blocked for reason: safety",
    // DeepSeek: "Content Exists Risk".
    "content exists risk",
    // Alibaba Cloud (Qwen): "Input data may contain inappropriate content."
    "inappropriate content",
    // Moonshot: "The request was rejected because it was considered high
    // risk".
    "considered high risk",
];

/// A context-window error or a content-policy refusal, told by the error's
/// codes and message (the whole text when it is not JSON). Cheap for every
/// other error: one lowercase copy and a substring search first; the JSON
/// is read only when a needle occurs, so text the error echoes from the
/// request (a prompt that quotes an error message) does not count.
fn kind_of_text(body: &[u8]) -> Option<ErrorKind> {
    let lower = body.to_ascii_lowercase();
    let any = |needles: &[&str]| {
        needles
            .iter()
            .any(|n| memchr::memmem::find(&lower, n.as_bytes()).is_some())
    };
    let window = any(CONTEXT_WINDOW_CODES) || any(CONTEXT_WINDOW_PHRASES);
    let policy = any(CONTENT_POLICY_CODES) || any(CONTENT_POLICY_PHRASES);
    if !window && !policy {
        return None;
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        // Not JSON: the text is the message.
        return if window {
            Some(ErrorKind::ContextWindow)
        } else {
            Some(ErrorKind::ContentPolicy)
        };
    };
    let (codes, messages) = error_fields(&v);
    let has = |fields: &[String], needles: &[&str]| {
        fields.iter().any(|f| needles.iter().any(|n| f.contains(n)))
    };
    if window && (has(&codes, CONTEXT_WINDOW_CODES) || has(&messages, CONTEXT_WINDOW_PHRASES)) {
        return Some(ErrorKind::ContextWindow);
    }
    if policy && (has(&codes, CONTENT_POLICY_CODES) || has(&messages, CONTENT_POLICY_PHRASES)) {
        return Some(ErrorKind::ContentPolicy);
    }
    None
}

/// An error body's codes and messages, lowercase, in the shapes providers
/// use: `{"error": {"message", "code", "type", "status", "innererror":
/// {"code"}}}` (OpenAI, Azure, Gemini, llama.cpp), Anthropic's `{"type":
/// "error", "error": {"type", "message"}}`, a flat `{"message", "type",
/// "code"}` (vLLM, Bedrock), `{"error": "text"}` (Ollama, TGI), `{"detail":
/// "text"}`, and Gemini's list of them.
fn error_fields(v: &Value) -> (Vec<String>, Vec<String>) {
    let mut codes = Vec::new();
    let mut messages = Vec::new();
    let push = |into: &mut Vec<String>, v: Option<&Value>| {
        if let Some(s) = v.and_then(Value::as_str) {
            into.push(s.to_ascii_lowercase());
        }
    };
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    for item in items {
        for o in [Some(item), item.get("error").filter(|e| e.is_object())]
            .into_iter()
            .flatten()
        {
            for k in ["message", "Message", "detail"] {
                push(&mut messages, o.get(k));
            }
            for k in ["code", "type", "status", "error_type"] {
                push(&mut codes, o.get(k));
            }
            for inner in ["innererror", "inner_error"] {
                push(&mut codes, o.get(inner).and_then(|i| i.get("code")));
            }
        }
        push(&mut messages, item.get("error"));
    }
    (codes, messages)
}

/// Connect errors, timeouts, 408, 409, 429 and 5xx: worth another try.
/// Not 508 (a loop, see [`crate::upstream::hop`]): another try goes round
/// the same loop.
pub fn is_retryable(status: StatusCode) -> bool {
    (matches!(status.as_u16(), 408 | 409 | 429) || status.is_server_error())
        && status != StatusCode::LOOP_DETECTED
}

/// Azure OpenAI's content-filter refusal: `error.code` `content_filter`,
/// or `error.innererror.code` `ResponsibleAIPolicyViolation`. Final: never
/// retried, never sent to another backend or a fallback.
pub fn is_content_filter(body: &[u8]) -> bool {
    // Cheap test first: most error bodies are not refusals.
    if memchr::memmem::find(body, b"content_filter").is_none()
        && memchr::memmem::find(body, b"ResponsibleAIPolicyViolation").is_none()
    {
        return false;
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    let error = &v["error"];
    error["code"] == "content_filter"
        || error["innererror"]["code"] == "ResponsibleAIPolicyViolation"
}

/// Why a success answer is not JSON, when it is not: what the attempt
/// failed with (the content type and the start of the body).
pub fn not_json(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Option<String> {
    if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        return None;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("no content type");
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let status = status.as_u16();
    Some(if text.is_empty() {
        format!("the upstream answered {status} with an empty body ({content_type})")
    } else {
        format!(
            "the upstream answered {status} with a body that is not JSON ({content_type}): {}",
            truncate(text, 200)
        )
    })
}

/// 401, 403, 404, 508 (and redirects): this backend will not do; try the
/// next.
pub fn is_skippable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 401 | 403 | 404 | 508)
        || status.is_redirection()
        || status.is_informational()
}

/// The longest `Retry-After` taken from an upstream (about 11.6 days);
/// the router caps it further (`max_retry_after`, the cooldown's hour).
pub(super) const RETRY_AFTER_CAP_SECS: f64 = 1e6;

/// `Retry-After` (seconds or an HTTP date) or `retry-after-ms`. Any value
/// an upstream sends is safe here: huge ones are capped at
/// [`RETRY_AFTER_CAP_SECS`], and negative, NaN, infinite or unparsable ones
/// are ignored.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs = |s: f64| {
        (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s.min(RETRY_AFTER_CAP_SECS)))
    };
    if let Some(d) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|ms| secs(ms / 1000.0))
    {
        return Some(d);
    }
    let v = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(s) = v.parse::<f64>() {
        return secs(s);
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    (when.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
        .map(|d| d.min(Duration::from_secs_f64(RETRY_AFTER_CAP_SECS)))
}

/// An upstream error body in a few words: its `error.message` if it has one.
pub fn short_error(body: &[u8]) -> String {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            e.get("message")
                .and_then(|m| m.as_str())
                .or_else(|| e.as_str())
                .map(str::to_string)
        });
    let text = message.unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    truncate(&text, 300)
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorKind::*;

    fn http(status: u16, body: &str) -> Option<ErrorKind> {
        kind_of_http(StatusCode::from_u16(status).unwrap(), body.as_bytes())
    }

    #[test]
    fn context_window_errors_of_each_provider() {
        let cases: &[(&str, u16, &str)] = &[
            (
                "OpenAI",
                400,
                r#"{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130044 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
            ),
            (
                "OpenAI, code only",
                400,
                r#"{"error":{"message":"Input too long.","type":"invalid_request_error","param":null,"code":"context_length_exceeded"}}"#,
            ),
            (
                "OpenAI Responses",
                400,
                r#"{"error":{"message":"Your input exceeds the context window of this model. Please adjust your input and try again.","type":"invalid_request_error","param":"input","code":"context_length_exceeded"}}"#,
            ),
            (
                "Azure OpenAI",
                400,
                r#"{"error":{"message":"This model's maximum context length is 8192 tokens. However, you requested 9000 tokens (8000 in the messages, 1000 in the completion).","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
            ),
            (
                "Anthropic",
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208310 tokens > 200000 maximum"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}"#,
            ),
            (
                "Anthropic, with max_tokens",
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"input length and `max_tokens` exceed context limit: 197681 + 8192 > 200000, decrease input length or `max_tokens` and try again"}}"#,
            ),
            (
                "Anthropic, too large",
                413,
                r#"{"type":"error","error":{"type":"request_too_large","message":"Request exceeds the maximum allowed number of bytes."}}"#,
            ),
            (
                "Bedrock (as yallmp relays it)",
                400,
                r#"{"error":{"message":"Input is too long for requested model.","type":"invalid_request_error","code":"ValidationException"}}"#,
            ),
            (
                "Bedrock, Nova",
                400,
                r#"{"message":"Too many input tokens. Max input tokens: 300000, request input token count: 312000"}"#,
            ),
            (
                "Gemini",
                400,
                r#"{"error":{"code":400,"message":"The input token count (1231231) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}"#,
            ),
            (
                "Vertex AI, a list",
                400,
                r#"[{"error":{"code":400,"message":"The input token count (2000000) exceeds the maximum number of tokens allowed (1048575).","status":"INVALID_ARGUMENT"}}]"#,
            ),
            (
                "vLLM",
                400,
                r#"{"object":"error","message":"This model's maximum context length is 32768 tokens. However, you requested 33000 tokens (32000 in the messages, 1000 in the completion). Please reduce the length of the messages or completion.","type":"BadRequestError","param":null,"code":400}"#,
            ),
            (
                "vLLM, decoder prompt",
                400,
                r#"{"error":{"message":"The decoder prompt (length 40000) is longer than the model's context length (32768).","type":"BadRequestError","param":null,"code":400}}"#,
            ),
            (
                "llama.cpp",
                400,
                r#"{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error","n_prompt_tokens":9000,"n_ctx":8192}}"#,
            ),
            (
                "llama.cpp as a 500",
                500,
                r#"{"error":{"code":500,"message":"the request exceeds the available context size, try increasing it","type":"server_error"}}"#,
            ),
            (
                "Ollama",
                400,
                r#"{"error":"input length exceeds the context length"}"#,
            ),
            (
                "Mistral",
                400,
                r#"{"object":"error","message":"Prompt contains 40000 tokens and 0 draft tokens, too large for model with 32768 maximum context length","type":"invalid_request_invalid_args","param":null,"code":"3051"}"#,
            ),
            (
                "DeepSeek",
                400,
                r#"{"error":{"message":"This model's maximum context length is 131072 tokens. However, you requested 140000 tokens (140000 in the messages, 0 in the completion). Please reduce the length of the messages or completion.","type":"invalid_request_error","param":null,"code":"invalid_request_error"}}"#,
            ),
            (
                "Hugging Face TGI",
                422,
                r#"{"error":"Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000 `inputs` tokens and 1000 `max_new_tokens`","error_type":"validation"}"#,
            ),
            (
                "plain text",
                400,
                "This model's maximum context length is 4096 tokens",
            ),
        ];
        for (who, status, body) in cases {
            assert_eq!(http(*status, body), Some(ContextWindow), "{who}: {body}");
            if *status != 413 {
                // The same text as a stream's first event (the 413 is told
                // by its status).
                assert_eq!(
                    kind_of_event(body),
                    ContextWindow,
                    "{who} as an error event"
                );
            }
        }
    }

    #[test]
    fn content_policy_refusals_of_each_provider() {
        let cases: &[(&str, u16, &str)] = &[
            (
                "Azure OpenAI",
                400,
                r#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry.","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":true,"severity":"high"}}}}}"#,
            ),
            (
                "Azure OpenAI, inner code only",
                400,
                r#"{"error":{"code":null,"message":"x","innererror":{"code":"ResponsibleAIPolicyViolation"}}}"#,
            ),
            (
                "OpenAI images",
                400,
                r#"{"error":{"code":"content_policy_violation","message":"Your request was rejected as a result of our safety system. Your prompt may contain text that is not allowed by our safety system.","param":null,"type":"invalid_request_error"}}"#,
            ),
            (
                "OpenAI, flagged prompt",
                400,
                r#"{"error":{"message":"Invalid prompt: your prompt was flagged as potentially violating our usage policy. Please try again with a different prompt.","type":"invalid_request_error","param":null,"code":"invalid_prompt"}}"#,
            ),
            (
                "Anthropic",
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"Output blocked by content filtering policy"}}"#,
            ),
            (
                "Vertex AI",
                400,
                r#"{"error":{"code":400,"message":"The response was blocked.","status":"INVALID_ARGUMENT"}}"#,
            ),
            (
                "Vertex AI Imagen",
                400,
                r#"{"error":{"code":400,"message":"Image generation failed with the following error: The prompt could not be submitted. This prompt contains sensitive words that violate Google's Responsible AI practices.","status":"INVALID_ARGUMENT"}}"#,
            ),
            (
                "DeepSeek",
                400,
                r#"{"error":{"message":"Content Exists Risk","type":"invalid_request_error","param":null,"code":"invalid_request_error"}}"#,
            ),
            (
                "Qwen (DashScope)",
                400,
                r#"{"error":{"code":"data_inspection_failed","param":null,"message":"Input data may contain inappropriate content.","type":"data_inspection_failed"}}"#,
            ),
        ];
        for (who, status, body) in cases {
            assert_eq!(http(*status, body), Some(ContentPolicy), "{who}: {body}");
        }
    }

    #[test]
    fn kinds_by_status() {
        let plain = r#"{"error":{"message":"something went wrong","type":"x"}}"#;
        for (status, kind) in [
            (400, Some(BadRequest)),
            (409, Some(BadRequest)),
            (413, Some(BadRequest)),
            (422, Some(BadRequest)),
            (401, Some(Authentication)),
            (403, Some(Authentication)),
            (404, Some(NotFound)),
            (408, Some(Timeout)),
            (504, Some(Timeout)),
            (429, Some(RateLimit)),
            (500, Some(InternalServer)),
            (529, Some(InternalServer)),
            (502, Some(BadGateway)),
            (503, Some(ServiceUnavailable)),
            (508, None),
            (200, None),
            (302, None),
        ] {
            assert_eq!(http(status, plain), kind, "{status}");
        }
        // A 429 is a rate limit whatever it says (OpenAI's TPM error
        // mentions a request too large).
        assert_eq!(
            http(
                429,
                r#"{"error":{"message":"Request too large for gpt-4o on tokens per min (TPM): Limit 30000, Requested 50000. The input or output tokens must be reduced in order to run successfully.","type":"tokens","code":"rate_limit_exceeded"}}"#
            ),
            Some(RateLimit)
        );
        // A refusal behind a gateway that made it a 429 or a 5xx is one.
        let refusal = r#"{"error":{"code":null,"message":"x","innererror":{"code":"ResponsibleAIPolicyViolation"}}}"#;
        assert_eq!(http(429, refusal), Some(ContentPolicy));
        assert_eq!(http(503, refusal), Some(ContentPolicy));
        // A 413 without Anthropic's code is a bad request.
        assert_eq!(http(413, "payload too large"), Some(BadRequest));
    }

    #[test]
    fn words_the_request_echoes_do_not_count() {
        // A validation error quoting the prompt: the needle is in the body,
        // not in the error's message or codes.
        let body = r#"{"error":{"message":"Invalid value for 'temperature'","type":"invalid_request_error","param":"temperature","code":"invalid_value"},"echo":{"messages":[{"role":"user","content":"what does maximum context length mean? is it the safety system?"}]}}"#;
        assert_eq!(http(400, body), Some(BadRequest));
        // Azure's code in a message is not Azure's code.
        assert_eq!(
            http(
                400,
                r#"{"error":{"message":"content_filter mentioned","code":"rate_limit"}}"#
            ),
            Some(BadRequest)
        );
        // A Gemini 400 about the safety settings themselves.
        assert_eq!(
            http(
                400,
                r#"{"error":{"code":400,"message":"* GenerateContentRequest.safety_settings[4]: element predicate failed: $.category in (HarmCategory.HARM_CATEGORY_HATE_SPEECH)","status":"INVALID_ARGUMENT"}}"#
            ),
            Some(BadRequest)
        );
    }

    #[test]
    fn error_events_and_network_errors() {
        assert_eq!(
            kind_of_event(
                r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#
            ),
            RateLimit
        );
        assert_eq!(
            kind_of_event(
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
            ),
            InternalServer
        );
        let d = Duration::from_secs(1);
        assert_eq!(kind_of_network(&UpstreamError::Timeout(d)), Some(Timeout));
        assert_eq!(
            kind_of_network(&UpstreamError::BodyTimeout(d)),
            Some(Timeout)
        );
        assert_eq!(
            kind_of_network(&UpstreamError::Connect("refused".into())),
            Some(InternalServer)
        );
        assert_eq!(
            kind_of_network(&UpstreamError::Credentials("denied".into())),
            Some(Authentication)
        );
        assert_eq!(
            kind_of_network(&UpstreamError::Unsupported("no".into())),
            None
        );
    }

    #[test]
    fn policies_fall_back_to_the_broader_kind_then_the_default() {
        let c = KindCounts {
            bad_request: Some(2),
            internal_server: Some(1),
            service_unavailable: Some(5),
            ..KindCounts::default()
        };
        assert_eq!(ContextWindow.in_policy(&c), Some((BadRequest, 2)));
        assert_eq!(ContentPolicy.in_policy(&c), Some((BadRequest, 2)));
        assert_eq!(BadGateway.in_policy(&c), Some((InternalServer, 1)));
        assert_eq!(
            ServiceUnavailable.in_policy(&c),
            Some((ServiceUnavailable, 5))
        );
        assert_eq!(RateLimit.in_policy(&c), None);
        assert_eq!(RateLimit.retries(&c), None);
        let d = KindCounts {
            default: Some(4),
            rate_limit: Some(0),
            ..KindCounts::default()
        };
        assert_eq!(RateLimit.retries(&d), Some(0));
        assert_eq!(Authentication.retries(&d), Some(4));
        assert_eq!(Authentication.in_policy(&d), None, "default is for retries");
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }
}
