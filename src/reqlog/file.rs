//! The file sink's format: one JSON object per line, one line per event
//! (`request`, `attempt`, `response`, `chunk`, `parsed`, `outcome`), so a
//! person can read it with `less` and a program can parse it exactly. Bodies
//! that are one-line JSON are embedded as they were received; anything else
//! is a JSON string. See docs/logging.md.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::redact::{self, Scrubber};
use super::{Record, Usage};

/// A body prepared for the log.
#[derive(Debug, Clone)]
pub struct BodyText {
    pub text: String,
    /// `text` is one JSON document (and so can be embedded as is).
    pub json: bool,
    pub truncated: bool,
}

impl BodyText {
    /// Redacts secret fields, cuts at `limit` bytes, and notes whether the
    /// result is JSON.
    pub fn new(bytes: &[u8], limit: usize) -> BodyText {
        let redacted = redact::body(bytes);
        let (cut, truncated) = if redacted.len() > limit {
            (&redacted[..limit], true)
        } else {
            (&redacted[..], false)
        };
        let text = String::from_utf8_lossy(cut).into_owned();
        let json = !truncated
            && !text.is_empty()
            && serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok();
        BodyText {
            text,
            json,
            truncated,
        }
    }
}

/// A record made ready for both sinks, secrets masked: every part
/// serialized once, then shared by the file and the database row.
pub struct Prepared {
    /// JSON object.
    pub request_headers: String,
    pub request_body: BodyText,
    /// One JSON object per attempt.
    pub attempts: Vec<String>,
    /// JSON object, when there was an answer.
    pub response_headers: Option<String>,
    pub response_body: Option<BodyText>,
    /// One `{"t_ms":..,"data":..}` object per frame.
    pub chunks: Vec<String>,
    pub usage: Option<Usage>,
}

impl Prepared {
    pub fn new(r: &Record) -> Prepared {
        let limit = r.limit().max(1);
        let attempts = r
            .attempts
            .iter()
            .map(|a| {
                json!({
                    "backend": a.backend,
                    "url": a.url,
                    "upstream_model": a.upstream_model,
                    "attempt": a.attempt,
                    "status": a.status,
                    "latency_ms": ms(a.latency),
                    "error": a.error,
                    "headers": a.headers.as_ref().map(redact::headers),
                })
                .to_string()
            })
            .collect();
        let chunks = r
            .frames
            .iter()
            .map(|f| {
                let mut c = format!("{{\"t_ms\":{},\"data\":", ms(f.offset));
                push_json_str(&mut c, &String::from_utf8_lossy(&f.bytes));
                c.push('}');
                c
            })
            .collect();
        Prepared {
            request_headers: redact::headers(&r.request_headers).to_string(),
            request_body: BodyText::new(&r.request_body, limit),
            attempts,
            response_headers: r
                .response_headers
                .as_ref()
                .map(|h| redact::headers(h).to_string()),
            response_body: r.response_body.as_ref().map(|b| BodyText::new(b, limit)),
            chunks,
            usage: Usage::of(r),
        }
    }

    /// The attempts as one JSON array.
    pub fn attempts_array(&self) -> String {
        json_array(&self.attempts)
    }

    /// The frames as one JSON array, when there are any.
    pub fn chunks_array(&self) -> Option<String> {
        (!self.chunks.is_empty()).then(|| json_array(&self.chunks))
    }
}

fn json_array(items: &[String]) -> String {
    let mut out = String::with_capacity(2 + items.iter().map(|i| i.len() + 1).sum::<usize>());
    out.push('[');
    for (n, i) in items.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str(i);
    }
    out.push(']');
    out
}

/// Appends `s` as a JSON string.
fn push_json_str(out: &mut String, s: &str) {
    // Serializing a str into a String cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

/// Milliseconds with microsecond precision.
pub fn ms(d: std::time::Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// `YYYYMMDD_HHMMSS-<id>_<model>.log`.
pub fn file_name(r: &Record) -> String {
    let model = r.model.as_deref().unwrap_or("unknown");
    format!(
        "{}-{}_{}.log",
        r.started_at.format("%Y%m%d_%H%M%S"),
        safe(&r.id, 80),
        safe(model, 64)
    )
}

/// A string made safe for a file name.
fn safe(s: &str, max: usize) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(max)
        .collect();
    if out.is_empty() || out.starts_with('.') {
        format!("_{out}")
    } else {
        out
    }
}

/// The whole file text for a record.
pub fn render(r: &Record, p: &Prepared, scrubber: &Scrubber) -> String {
    let mut out = String::with_capacity(
        1024 + p.request_body.text.len()
            + p.response_body.as_ref().map_or(0, |b| b.text.len())
            + p.chunks.iter().map(|c| c.len() + 20).sum::<usize>(),
    );
    let head = json!({
        "event": "request",
        "id": r.id,
        "time": r.started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "method": r.method,
        "path": r.path,
        "client": r.client_addr.map(|a| a.to_string()),
        "model": r.model,
        "stream": r.stream,
    })
    .to_string();
    out.push_str(&head[..head.len() - 1]);
    out.push_str(",\"headers\":");
    out.push_str(&p.request_headers);
    end_with_body(&mut out, &p.request_body);
    for a in &p.attempts {
        out.push_str("{\"event\":\"attempt\",");
        out.push_str(&a[1..]);
        out.push('\n');
    }
    if r.status.is_some() {
        let head = json!({
            "event": "response",
            "status": r.status,
            "backend": r.backend,
            "stream": !r.frames.is_empty() || (r.stream && r.response_body.is_none()),
        })
        .to_string();
        out.push_str(&head[..head.len() - 1]);
        out.push_str(",\"headers\":");
        out.push_str(p.response_headers.as_deref().unwrap_or("null"));
        match &p.response_body {
            Some(body) => end_with_body(&mut out, body),
            None => out.push_str("}\n"),
        }
    }
    for c in &p.chunks {
        out.push_str("{\"event\":\"chunk\",");
        out.push_str(&c[1..]);
        out.push('\n');
    }
    if let Some(parsed) = &r.parsed {
        push_line(&mut out, &json!({"event": "parsed", "data": parsed}));
    }
    push_line(
        &mut out,
        &json!({
            "event": "outcome",
            "outcome": r.outcome.as_str(),
            "status": r.status,
            "backend": r.backend,
            "attempts": r.attempts.len(),
            "ttfb_ms": r.ttfb.map(ms),
            "total_ms": ms(r.total),
            "usage": p.usage,
            "error": r.error,
            "frames_truncated": r.frames_truncated,
        }),
    );
    scrubber.scrub(out)
}

fn push_line(out: &mut String, v: &Value) {
    out.push_str(&v.to_string());
    out.push('\n');
}

/// Ends an open line with the body: embedded as raw JSON when it is one
/// line of JSON, else as `body_text`; then `body_truncated` when cut.
fn end_with_body(out: &mut String, body: &BodyText) {
    if body.json && !body.text.contains(['\n', '\r']) {
        out.push_str(",\"body\":");
        out.push_str(&body.text);
    } else {
        out.push_str(",\"body_text\":");
        push_json_str(out, &body.text);
    }
    if body.truncated {
        out.push_str(",\"body_truncated\":true");
    }
    out.push_str("}\n");
}

/// Writes a record's file into `dir`.
pub fn write(dir: &Path, r: &Record, text: &str) -> std::io::Result<PathBuf> {
    let path = dir.join(file_name(r));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// A request read back from a log, for replay.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub id: String,
    pub method: String,
    pub path: String,
    pub model: Option<String>,
    pub stream: bool,
    /// Header names and values; masked ones are left out.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub body_truncated: bool,
}

/// Why a file cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Format {
        path: String,
        line: usize,
        message: String,
    },
}

/// Reads the `request` event of a log file.
pub fn read_request(path: &Path) -> Result<LoggedRequest, ReadError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReadError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let fail = |line: usize, message: String| ReadError::Format {
        path: path.display().to_string(),
        line,
        message,
    };
    let first = text
        .lines()
        .next()
        .ok_or_else(|| fail(1, "empty file: not a yallmp request log".into()))?;
    let v: Value = serde_json::from_str(first).map_err(|e| {
        fail(
            1,
            format!("not a yallmp request log (expected a JSON `request` event): {e}"),
        )
    })?;
    if v.get("event").and_then(Value::as_str) != Some("request") {
        return Err(fail(
            1,
            "not a yallmp request log: the first line is not a `request` event".into(),
        ));
    }
    let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let body = match (v.get("body"), v.get("body_text")) {
        (Some(b), _) => {
            // The raw text of the embedded body, byte for byte.
            raw_field(first, "body")
                .unwrap_or_else(|| b.to_string())
                .into_bytes()
        }
        (None, Some(Value::String(t))) => t.clone().into_bytes(),
        _ => Vec::new(),
    };
    let headers = v.get("headers").map(unmasked_headers).unwrap_or_default();
    Ok(LoggedRequest {
        id: field("id").ok_or_else(|| fail(1, "the request event has no `id`".into()))?,
        method: field("method").unwrap_or_else(|| "POST".into()),
        path: field("path").ok_or_else(|| fail(1, "the request event has no `path`".into()))?,
        model: field("model"),
        stream: v.get("stream").and_then(Value::as_bool).unwrap_or(false),
        headers,
        body,
        body_truncated: v
            .get("body_truncated")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// Header pairs from a logged header object, leaving out masked values.
pub fn unmasked_headers(v: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Value::Object(h) = v {
        for (k, val) in h {
            let values: Vec<&Value> = match val {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            for val in values {
                if let Some(s) = val.as_str()
                    && s != redact::MASK
                {
                    out.push((k.clone(), s.to_string()));
                }
            }
        }
    }
    out
}

/// The raw text of a top-level field of a one-line JSON object.
fn raw_field(line: &str, key: &str) -> Option<String> {
    let map: std::collections::HashMap<String, &serde_json::value::RawValue> =
        serde_json::from_str(line).ok()?;
    map.get(key).map(|r| r.get().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    #[test]
    fn names_are_safe() {
        assert_eq!(safe("openai/gpt-4o:latest", 64), "openai_gpt-4o_latest");
        assert_eq!(safe("../x", 64), "_.._x");
    }

    #[test]
    fn render_and_read_back_the_request_exactly() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer sk-client"),
        );
        h.insert("x-custom", HeaderValue::from_static("1"));
        let mut r = Record::new(
            "id-1".into(),
            "POST".into(),
            "/v1/chat/completions".into(),
            None,
            h,
            1 << 20,
        );
        r.request_body = bytes::Bytes::from_static(b"{\"model\":\"m\",  \"x\":1.50}");
        r.model = Some("m".into());
        r.finish(super::super::Outcome::ClientError);
        let p = Prepared::new(&r);
        let text = render(&r, &p, &Scrubber::default());
        assert!(!text.contains("sk-client"));
        for line in text.lines() {
            serde_json::from_str::<Value>(line).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &r, &text).unwrap();
        let back = read_request(&path).unwrap();
        assert_eq!(back.body, b"{\"model\":\"m\",  \"x\":1.50}");
        assert_eq!(
            back.headers,
            vec![("x-custom".to_string(), "1".to_string())]
        );
        assert_eq!(back.path, "/v1/chat/completions");
    }

    #[test]
    fn foreign_files_are_refused_with_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        std::fs::write(&p, "hello\n").unwrap();
        let e = read_request(&p).unwrap_err().to_string();
        assert!(e.contains("x.log:1: not a yallmp request log"), "{e}");
    }
}
