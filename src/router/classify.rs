//! Reading an upstream's answer for the router: which statuses are worth
//! another try or another backend, `Retry-After`, content-filter refusals,
//! success bodies that are not JSON, and error bodies in a few words.

use std::time::Duration;

use http::{HeaderMap, StatusCode, header};

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
