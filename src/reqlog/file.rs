//! The file sink's format: one JSON object per line, one line per event
//! (`request`, `attempt`, `response`, `chunk`, `parsed`, `outcome`), so a
//! person can read it with `less` and a program can parse it exactly. Bodies
//! that are one-line JSON are embedded as they were received; anything else
//! is a JSON string. See docs/logging.md.

use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::json;
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
        Self::read(bytes, limit, false).0
    }

    /// [`BodyText::new`], and when `want_usage`, the answer's `usage` read
    /// in the same parse: `Some(usage)` when the body is whole JSON, `None`
    /// when it cannot tell (then [`Usage::of`] decides).
    fn read(bytes: &[u8], limit: usize, want_usage: bool) -> (BodyText, Option<Option<Usage>>) {
        let redacted = redact::body(bytes);
        let (cut, truncated) = if redacted.len() > limit {
            (&redacted[..limit], true)
        } else {
            (&redacted[..], false)
        };
        let text = match std::str::from_utf8(cut) {
            Ok(t) => t.to_owned(),
            Err(_) => String::from_utf8_lossy(cut).into_owned(),
        };
        let mut usage = None;
        let json = !truncated
            && !text.is_empty()
            && if want_usage {
                // An object: validated and its `usage` read in one pass
                // (secret fields are masked, token counts untouched).
                #[derive(serde::Deserialize)]
                struct Top<'a> {
                    #[serde(borrow, default)]
                    usage: Option<&'a serde_json::value::RawValue>,
                }
                match serde_json::from_str::<Top>(&text) {
                    Ok(top) => {
                        usage = Some(
                            top.usage
                                .and_then(|u| serde_json::from_str::<Value>(u.get()).ok())
                                .and_then(|u| Usage::from_value(&u)),
                        );
                        true
                    }
                    Err(_) => serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok(),
                }
            } else {
                serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok()
            };
        (
            BodyText {
                text,
                json,
                truncated,
            },
            usage,
        )
    }
}

/// A record made ready for both sinks: every part serialized once (straight
/// to JSON text, no intermediate values), then shared by the file and moved
/// into the database row. Not yet scrubbed of known secret values: the file
/// is scrubbed whole, the row field by field.
pub struct Prepared {
    /// JSON object, secret headers masked.
    pub request_headers: String,
    pub request_body: BodyText,
    /// The attempts as one JSON array of objects.
    pub attempts: String,
    /// Where each attempt's object is in `attempts`.
    attempt_spans: Vec<Range<usize>>,
    /// JSON object, when there was an answer.
    pub response_headers: Option<String>,
    pub response_body: Option<BodyText>,
    /// The frames as one JSON array of `{"t_ms":..,"data":..}` objects, when
    /// there are any.
    pub chunks: Option<String>,
    /// Where each frame's object is in `chunks`.
    chunk_spans: Vec<Range<usize>>,
    /// The parsed output as JSON text.
    pub parsed: Option<String>,
    pub usage: Option<Usage>,
}

/// A JSON array written by `item` for each element, with each element's
/// span in the text (the file writes them one per line, the row as a whole).
fn json_array<T>(
    items: &[T],
    capacity: usize,
    mut item: impl FnMut(&mut String, &T),
) -> (String, Vec<std::ops::Range<usize>>) {
    let mut out = String::with_capacity(capacity + 2);
    let mut spans = Vec::with_capacity(items.len());
    out.push('[');
    for (n, x) in items.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let start = out.len();
        item(&mut out, x);
        spans.push(start..out.len());
    }
    out.push(']');
    (out, spans)
}

impl Prepared {
    pub fn new(r: &Record) -> Prepared {
        let limit = r.limit().max(1);
        let (attempts, attempt_spans) =
            json_array(&r.attempts, 256 * r.attempts.len().max(1), write_attempt);
        let (chunks, chunk_spans) = if r.frames.is_empty() {
            (None, Vec::new())
        } else {
            let cap = r
                .frames
                .iter()
                .map(|f| f.bytes.len() + f.bytes.len() / 8 + 32)
                .sum::<usize>();
            let (c, spans) = json_array(&r.frames, cap, |c, f| {
                c.push_str("{\"t_ms\":");
                json::f64(c, ms(f.offset));
                c.push_str(",\"data\":");
                json::bytes(c, &f.bytes);
                c.push('}');
            });
            (Some(c), spans)
        };
        let (response_body, body_usage) = match &r.response_body {
            Some(b) => {
                let (body, usage) = BodyText::read(b, limit, true);
                (Some(body), usage)
            }
            None => (None, None),
        };
        Prepared {
            request_headers: headers_json(&r.request_headers),
            request_body: BodyText::new(&r.request_body, limit),
            attempts,
            attempt_spans,
            response_headers: r.response_headers.as_ref().map(headers_json),
            response_body,
            chunks,
            chunk_spans,
            parsed: r
                .parsed
                .as_ref()
                .map(|v| serde_json::to_string(v).unwrap_or_else(|_| "null".into())),
            usage: body_usage.unwrap_or_else(|| Usage::of(r)),
        }
    }

    /// Each attempt's JSON object.
    pub fn attempt_objects(&self) -> impl Iterator<Item = &str> {
        self.attempt_spans.iter().map(|s| &self.attempts[s.clone()])
    }

    /// Each frame's JSON object.
    pub fn chunk_objects(&self) -> impl Iterator<Item = &str> {
        let chunks = self.chunks.as_deref().unwrap_or_default();
        self.chunk_spans.iter().map(move |s| &chunks[s.clone()])
    }
}

fn headers_json(map: &http::HeaderMap) -> String {
    let mut out = String::with_capacity(64 * map.keys_len() + 2);
    redact::write_headers(&mut out, map);
    out
}

/// One attempt as a JSON object.
fn write_attempt(out: &mut String, a: &crate::reqlog::Attempt) {
    out.push_str("{\"backend\":");
    json::str(out, &a.backend);
    out.push_str(",\"url\":");
    json::str(out, &a.url);
    out.push_str(",\"upstream_model\":");
    json::opt_str(out, a.upstream_model.as_deref());
    out.push_str(",\"attempt\":");
    json::int(out, a.attempt);
    out.push_str(",\"status\":");
    json::opt_int(out, a.status);
    out.push_str(",\"latency_ms\":");
    json::f64(out, ms(a.latency));
    out.push_str(",\"error\":");
    json::opt_str(out, a.error.as_deref());
    out.push_str(",\"headers\":");
    match &a.headers {
        Some(h) => redact::write_headers(out, h),
        None => out.push_str("null"),
    }
    // Only when a translation left something out: most attempts have none.
    if !a.dropped.is_empty() {
        out.push_str(",\"dropped\":[");
        for (i, d) in a.dropped.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json::str(out, d);
        }
        out.push(']');
    }
    out.push('}');
}

/// Milliseconds with microsecond precision.
pub fn ms(d: std::time::Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// `YYYYMMDD_HHMMSS-<id>_<model>.log`.
pub fn file_name(r: &Record) -> String {
    use chrono::{Datelike, Timelike};
    let t = r.started_at;
    let model = r.model.as_deref().unwrap_or("unknown");
    let mut name = String::with_capacity(24 + r.id.len() + model.len());
    let _ = write!(
        name,
        "{:04}{:02}{:02}_{:02}{:02}{:02}-",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    push_safe(&mut name, &r.id, 80);
    name.push('_');
    push_safe(&mut name, model, 64);
    name.push_str(".log");
    name
}

/// The parsed output's file for a main log file name:
/// `YYYYMMDD_HHMMSS-<id>_<model>.parsed.log`.
pub fn parsed_file_name(main: &str) -> String {
    format!("{}.parsed.log", main.strip_suffix(".log").unwrap_or(main))
}

/// A string made safe for a file name.
#[cfg(test)]
fn safe(s: &str, max: usize) -> String {
    let mut out = String::new();
    push_safe(&mut out, s, max);
    out
}

/// Appends `s` made safe for a file name: characters other than ASCII
/// letters, digits, `.`, `-` and `_` become `_`, at most `max` of them, and
/// never empty or starting with a dot.
fn push_safe(out: &mut String, s: &str, max: usize) {
    if s.is_empty() || s.starts_with('.') {
        out.push('_');
    }
    for c in s.chars().take(max) {
        out.push(
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            },
        );
    }
}

/// The whole file text for a record, every known secret scrubbed.
pub fn render(r: &Record, p: &Prepared, scrubber: &Scrubber) -> String {
    let mut out = String::with_capacity(
        1024 + p.request_headers.len()
            + p.request_body.text.len()
            + p.attempts.len()
            + p.response_headers.as_ref().map_or(0, String::len)
            + p.response_body.as_ref().map_or(0, |b| b.text.len())
            + p.chunks.as_ref().map_or(0, String::len)
            + 20 * p.chunk_spans.len()
            + p.parsed.as_ref().map_or(0, String::len),
    );
    open_event(&mut out, "request", r);
    out.push_str(",\"client_request_id\":");
    json::opt_str(&mut out, r.client_request_id.as_deref());
    out.push_str(",\"method\":");
    json::str(&mut out, &r.method);
    out.push_str(",\"path\":");
    json::str(&mut out, &r.path);
    out.push_str(",\"client\":");
    match r.client_addr {
        Some(a) => json::display(&mut out, a),
        None => out.push_str("null"),
    }
    out.push_str(",\"model\":");
    json::opt_str(&mut out, r.model.as_deref());
    out.push_str(",\"stream\":");
    json::bool(&mut out, r.stream);
    out.push_str(",\"headers\":");
    out.push_str(&p.request_headers);
    end_with_body(&mut out, &p.request_body);
    for a in p.attempt_objects() {
        out.push_str("{\"event\":\"attempt\",");
        out.push_str(&a[1..]);
        out.push('\n');
    }
    if r.status.is_some() {
        out.push_str("{\"event\":\"response\",\"status\":");
        json::opt_int(&mut out, r.status);
        out.push_str(",\"backend\":");
        json::opt_str(&mut out, r.backend.as_deref());
        out.push_str(",\"stream\":");
        json::bool(
            &mut out,
            !r.frames.is_empty() || (r.stream && r.response_body.is_none()),
        );
        out.push_str(",\"headers\":");
        out.push_str(p.response_headers.as_deref().unwrap_or("null"));
        match &p.response_body {
            Some(body) => end_with_body(&mut out, body),
            None => out.push_str("}\n"),
        }
    }
    for c in p.chunk_objects() {
        out.push_str("{\"event\":\"chunk\",");
        out.push_str(&c[1..]);
        out.push('\n');
    }
    if let Some(parsed) = &p.parsed {
        out.push_str("{\"event\":\"parsed\",\"data\":");
        out.push_str(parsed);
        out.push_str("}\n");
    }
    out.push_str("{\"event\":\"outcome\",\"outcome\":");
    json::str(&mut out, r.outcome.as_str());
    out.push_str(",\"status\":");
    json::opt_int(&mut out, r.status);
    out.push_str(",\"backend\":");
    json::opt_str(&mut out, r.backend.as_deref());
    out.push_str(",\"attempts\":");
    json::int(&mut out, r.attempts.len());
    out.push_str(",\"ttfb_ms\":");
    json::opt_f64(&mut out, r.ttfb.map(ms));
    out.push_str(",\"total_ms\":");
    json::f64(&mut out, ms(r.total));
    out.push_str(",\"usage\":");
    match p.usage {
        Some(u) => {
            out.push_str("{\"prompt_tokens\":");
            json::opt_int(&mut out, u.prompt_tokens);
            out.push_str(",\"completion_tokens\":");
            json::opt_int(&mut out, u.completion_tokens);
            out.push_str(",\"total_tokens\":");
            json::opt_int(&mut out, u.total_tokens);
            out.push('}');
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"error\":");
    json::opt_str(&mut out, r.error.as_deref());
    out.push_str(",\"frames_truncated\":");
    json::bool(&mut out, r.frames_truncated);
    if let Some(c) = r.cache {
        out.push_str(",\"cache\":");
        json::str(&mut out, c);
    }
    // Who made it and what it cost (docs/keys-and-spend.md): only when
    // there is a virtual key or a price, so other records read as before.
    if let Some((id, name)) = &r.key {
        out.push_str(",\"key_id\":");
        json::str(&mut out, id);
        out.push_str(",\"key_name\":");
        json::str(&mut out, name);
    }
    if let Some(team) = &r.team {
        out.push_str(",\"team\":");
        json::str(&mut out, team);
    }
    if let Some(price) = r.price {
        out.push_str(",\"cost_usd\":");
        json::opt_f64(&mut out, p.usage.map(|u| price.cost(&u)));
    }
    out.push_str("}\n");
    scrubber.scrub(out)
}

/// The text of a record's `.parsed.log` file, when it has parsed output:
/// one `parsed` event line that also says which request it belongs to
/// (`id`, `time`, `model`, `path`), every known secret scrubbed.
pub fn render_parsed(r: &Record, p: &Prepared, scrubber: &Scrubber) -> Option<String> {
    let parsed = p.parsed.as_deref()?;
    let mut out = String::with_capacity(160 + r.id.len() + r.path.len() + parsed.len());
    open_event(&mut out, "parsed", r);
    out.push_str(",\"model\":");
    json::opt_str(&mut out, r.model.as_deref());
    out.push_str(",\"path\":");
    json::str(&mut out, &r.path);
    out.push_str(",\"data\":");
    out.push_str(parsed);
    out.push_str("}\n");
    Some(scrubber.scrub(out))
}

/// `{"event":EVENT,"id":..,"time":..`: the start of a record's line.
fn open_event(out: &mut String, event: &str, r: &Record) {
    out.push_str("{\"event\":\"");
    out.push_str(event);
    out.push_str("\",\"id\":");
    json::str(out, &r.id);
    out.push_str(",\"time\":");
    json::str(
        out,
        &r.started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    );
}

/// Ends an open line with the body: embedded as raw JSON when it is one
/// line of JSON, else as `body_text`; then `body_truncated` when cut.
fn end_with_body(out: &mut String, body: &BodyText) {
    if body.json && !body.text.contains(['\n', '\r']) {
        out.push_str(",\"body\":");
        out.push_str(&body.text);
    } else {
        out.push_str(",\"body_text\":");
        json::str(out, &body.text);
    }
    if body.truncated {
        out.push_str(",\"body_truncated\":true");
    }
    out.push_str("}\n");
}

/// Writes a record's file into `dir`: one `write` of the whole text, no
/// sync (the page cache has it; a crash may lose the last records, never
/// corrupt earlier ones).
pub fn write(dir: &Path, r: &Record, text: &str) -> std::io::Result<PathBuf> {
    let path = dir.join(file_name(r));
    write_whole(&path, text)?;
    Ok(path)
}

/// Writes a record's main file and, when there is parsed output, its
/// `.parsed.log` beside it. Returns the main file's path.
pub fn write_all(
    dir: &Path,
    r: &Record,
    text: &str,
    parsed: Option<&str>,
) -> std::io::Result<PathBuf> {
    let name = file_name(r);
    let path = dir.join(&name);
    write_whole(&path, text)?;
    if let Some(parsed) = parsed {
        write_whole(&dir.join(parsed_file_name(&name)), parsed)?;
    }
    Ok(path)
}

/// Writes a new file, 0600 (never replacing one), or (a full disk)
/// removes what was created of it: a file is there whole or not at all.
fn write_whole(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = super::private::create_file(path)?;
    f.write_all(text.as_bytes()).inspect_err(|_| {
        let _ = std::fs::remove_file(path);
    })
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

/// Reads the `request` event of a log file: a per-request file, or a
/// segment (`.jsonl`) when it holds one record (else give the id:
/// [`read_request_in`]).
pub fn read_request(path: &Path) -> Result<LoggedRequest, ReadError> {
    read_request_in(path, None)
}

/// [`read_request`], and in a segment file the record `id` (a per-request
/// file's own record is read whatever `id` is).
pub fn read_request_in(path: &Path, id: Option<&str>) -> Result<LoggedRequest, ReadError> {
    let io = |source| ReadError::Io {
        path: path.display().to_string(),
        source,
    };
    let fail = |message: String| ReadError::Format {
        path: path.display().to_string(),
        line: 1,
        message,
    };
    if path.extension().is_some_and(|e| e == super::segments::EXT) {
        let text = match id {
            Some(id) => super::segments::find_in(path, id)
                .map_err(io)?
                .ok_or_else(|| fail(format!("no record with id `{id}` in this segment")))?,
            None => super::segments::only_record(path)
                .map_err(io)?
                .map_err(|n| {
                    fail(format!(
                        "a log segment holding {n} records: give the record's id (--id)"
                    ))
                })?,
        };
        return read_request_text(&path.display().to_string(), &text);
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    read_request_text(&path.display().to_string(), &text)
}

/// Reads the `request` event of a record's per-request text (`origin`
/// names where it came from, for errors).
pub fn read_request_text(origin: &str, text: &str) -> Result<LoggedRequest, ReadError> {
    let fail = |line: usize, message: String| ReadError::Format {
        path: origin.to_string(),
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

    /// The renderer this file had before it wrote JSON by hand (through
    /// `serde_json::Value`s), kept to check the output did not change.
    fn reference_render(r: &Record, scrubber: &Scrubber) -> (String, String, Option<String>) {
        use serde_json::json;
        let limit = r.limit().max(1);
        let push_json_str =
            |out: &mut String, s: &str| out.push_str(&serde_json::to_string(s).unwrap());
        let attempts: Vec<String> = r
            .attempts
            .iter()
            .map(|a| {
                let mut o = json!({
                    "backend": a.backend,
                    "url": a.url,
                    "upstream_model": a.upstream_model,
                    "attempt": a.attempt,
                    "status": a.status,
                    "latency_ms": ms(a.latency),
                    "error": a.error,
                    "headers": a.headers.as_ref().map(redact::headers),
                });
                if !a.dropped.is_empty() {
                    o["dropped"] = json!(a.dropped);
                }
                o.to_string()
            })
            .collect();
        let chunks: Vec<String> = r
            .frames
            .iter()
            .map(|f| {
                let mut c = format!("{{\"t_ms\":{},\"data\":", ms(f.offset));
                push_json_str(&mut c, &String::from_utf8_lossy(&f.bytes));
                c.push('}');
                c
            })
            .collect();
        let request_body = BodyText::new(&r.request_body, limit);
        let response_body = r.response_body.as_ref().map(|b| BodyText::new(b, limit));
        let end_with_body = |out: &mut String, body: &BodyText| {
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
        };
        let mut out = String::new();
        let head = json!({
            "event": "request",
            "id": r.id,
            "time": r.started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "client_request_id": r.client_request_id,
            "method": r.method,
            "path": r.path,
            "client": r.client_addr.map(|a| a.to_string()),
            "model": r.model,
            "stream": r.stream,
        })
        .to_string();
        out.push_str(&head[..head.len() - 1]);
        out.push_str(",\"headers\":");
        out.push_str(&redact::headers(&r.request_headers).to_string());
        end_with_body(&mut out, &request_body);
        for a in &attempts {
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
            out.push_str(
                &r.response_headers
                    .as_ref()
                    .map_or("null".to_string(), |h| redact::headers(h).to_string()),
            );
            match &response_body {
                Some(body) => end_with_body(&mut out, body),
                None => out.push_str("}\n"),
            }
        }
        for c in &chunks {
            out.push_str("{\"event\":\"chunk\",");
            out.push_str(&c[1..]);
            out.push('\n');
        }
        if let Some(parsed) = &r.parsed {
            out.push_str(&json!({"event": "parsed", "data": parsed}).to_string());
            out.push('\n');
        }
        let mut outcome = json!({
            "event": "outcome",
            "outcome": r.outcome.as_str(),
            "status": r.status,
            "backend": r.backend,
            "attempts": r.attempts.len(),
            "ttfb_ms": r.ttfb.map(ms),
            "total_ms": ms(r.total),
            "usage": Usage::of(r),
            "error": r.error,
            "frames_truncated": r.frames_truncated,
        });
        if let Some(c) = r.cache {
            outcome["cache"] = json!(c);
        }
        out.push_str(&outcome.to_string());
        out.push('\n');
        let array = |items: &[String]| format!("[{}]", items.join(","));
        (
            scrubber.scrub(out),
            array(&attempts),
            (!chunks.is_empty()).then(|| array(&chunks)),
        )
    }

    fn rich_record(stream: bool) -> Record {
        use crate::reqlog::Attempt;
        use std::time::Duration;
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer sk-client"),
        );
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.append("x-multi", HeaderValue::from_static("a"));
        h.append("x-multi", HeaderValue::from_static("b \"quoted\" \\"));
        h.insert("x-bin", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        let mut r = Record::new(
            "id-\"odd\"/1".into(),
            "POST".into(),
            "/v1/chat/completions?x=1&y=\"2\"".into(),
            Some("127.0.0.1:5555".parse().unwrap()),
            h,
            1 << 20,
        );
        r.request_body = bytes::Bytes::from_static(
            br#"{"model":"m","stream":true,"metadata":{"api_key":"bd-secret"},"messages":[{"role":"user","content":"hi \u00e9 \n"}]}"#,
        );
        r.model = Some("m/x:1".into());
        r.stream = stream;
        let mut ah = HeaderMap::new();
        ah.insert(
            "content-type",
            HeaderValue::from_static("text/event-stream"),
        );
        ah.insert("set-cookie", HeaderValue::from_static("s=SECRETKEY-123456"));
        r.attempts = vec![
            Attempt {
                backend: "flaky#1".into(),
                url: "http://127.0.0.1:1/v1/chat/completions".into(),
                upstream_model: Some("up-model".into()),
                attempt: 1,
                status: Some(500),
                latency: Duration::from_micros(2506),
                error: Some("kaput \"quoted\"\nline".into()),
                headers: Some(ah.clone()),
                pending: None,
                dropped: Vec::new(),
                span: None,
            },
            Attempt {
                backend: "good#1".into(),
                url: "http://127.0.0.1:2/v1/chat/completions?key=SECRETKEY-123456".into(),
                upstream_model: None,
                attempt: 1,
                status: None,
                latency: Duration::from_millis(1),
                error: None,
                headers: None,
                pending: None,
                dropped: vec![
                    "client_metadata".into(),
                    "messages[1].content[0] \"odd\"".into(),
                ],
                span: None,
            },
        ];
        r.backend = Some("good#1".into());
        r.status = Some(200);
        r.cache = (!stream).then_some("miss");
        if stream {
            r.response_headers = Some(ah);
            for f in [
                &b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi \\\"x\\\"\"}}],\"usage\":null}\n\n"[..],
                b": comment\r\n\r\n",
                b"data: \xff\x00\x1f\n\n",
                b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":1,\"total_tokens\":8}}\n\n",
                b"data: [DONE]\n\n",
            ] {
                r.push_frame(&bytes::Bytes::from_static(f));
            }
            r.parsed = Some(
                serde_json::json!({"text": "Hi \"x\"", "n": [1, 2.5, null], "k": "SECRETKEY-123456"}),
            );
        } else {
            r.response_headers = Some(HeaderMap::new());
            r.response_body = Some(bytes::Bytes::from_static(
                b"{\"id\":\"c\",\"usage\":{\"prompt_tokens\":3,\"total_tokens\":5},\"usage_like\":1}",
            ));
        }
        r.error = Some("something SECRETKEY-123456 went wrong".into());
        r.finish(super::super::Outcome::Ok);
        r
    }

    #[test]
    fn rendering_is_byte_for_byte_what_the_value_based_renderer_wrote() {
        let scrubber = Scrubber::new(vec!["SECRETKEY-123456".into()]);
        for stream in [false, true] {
            let r = rich_record(stream);
            let p = Prepared::new(&r);
            let text = render(&r, &p, &scrubber);
            let (want, attempts, chunks) = reference_render(&r, &scrubber);
            assert_eq!(text, want, "stream: {stream}");
            assert_eq!(p.attempts, attempts);
            assert_eq!(p.chunks, chunks);
            assert!(!text.contains("SECRETKEY") && !text.contains("sk-client"));
            assert!(!text.contains("bd-secret"));
            for line in text.lines() {
                serde_json::from_str::<Value>(line).unwrap();
            }
        }
        // A bare record: no attempts, no answer, no frames.
        let mut r = Record::new(
            "x".into(),
            "GET".into(),
            "/".into(),
            None,
            HeaderMap::new(),
            10,
        );
        r.request_body = bytes::Bytes::from_static(b"not json, and longer than ten bytes");
        r.finish(super::super::Outcome::ClientDisconnected);
        let p = Prepared::new(&r);
        assert_eq!(render(&r, &p, &scrubber), reference_render(&r, &scrubber).0);
        assert_eq!(p.attempts, "[]");
        assert_eq!(p.chunks, None);
    }

    #[test]
    fn usage_is_read_from_the_body_or_the_last_usage_frame() {
        // Read with the body's validation, it is what Usage::of says.
        for body in [
            &b"{\"usage\":{\"prompt_tokens\":3,\"total_tokens\":5},\"api_key\":\"x\"}"[..],
            b"{\"usage\":{\"total_tokens\":1},\"usage\":{\"total_tokens\":2}}",
            b"{\"usage\":null}",
            b"{\"usage\":{\"input_tokens\":4,\"output_tokens\":6}}",
            b"[1]",
            b"not json",
            b"{\"usage\":{\"total_tokens\":9},\"cut\":\"this body is longer than its limit\"}",
        ] {
            let mut r = rich_record(true);
            r.response_body = Some(bytes::Bytes::copy_from_slice(body));
            r.limit = 48;
            let p = Prepared::new(&r);
            assert_eq!(p.usage, Usage::of(&r), "{}", String::from_utf8_lossy(body));
        }
        let r = rich_record(false);
        assert_eq!(
            Usage::of(&r),
            Some(Usage {
                prompt_tokens: Some(3),
                completion_tokens: None,
                total_tokens: Some(5),
                ..Usage::default()
            })
        );
        let r = rich_record(true);
        assert_eq!(Usage::of(&r).and_then(|u| u.total_tokens), Some(8));
        // A repeated key: the last one counts, as when read into a Value.
        let mut r = rich_record(false);
        r.response_body = Some(bytes::Bytes::from_static(
            b"{\"usage\":{\"total_tokens\":1},\"usage\":{\"total_tokens\":2}}",
        ));
        assert_eq!(Usage::of(&r).and_then(|u| u.total_tokens), Some(2));
        r.response_body = Some(bytes::Bytes::from_static(b"{\"usage\":null}"));
        assert_eq!(Usage::of(&r), None);
        r.response_body = Some(bytes::Bytes::from_static(b"[1]"));
        assert_eq!(Usage::of(&r), None);
    }

    #[test]
    fn parsed_output_goes_to_a_sibling_file_too() {
        let scrubber = Scrubber::new(vec!["SECRETKEY-123456".into()]);
        let r = rich_record(true);
        let p = Prepared::new(&r);
        let text = render(&r, &p, &scrubber);
        let parsed = render_parsed(&r, &p, &scrubber).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let main = write_all(dir.path(), &r, &text, Some(&parsed)).unwrap();
        let name = main.file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.ends_with("_m_x_1.log"), "{name}");
        let sibling = dir.path().join(parsed_file_name(&name));
        assert_eq!(
            sibling.file_name().unwrap().to_str().unwrap(),
            name.replace(".log", ".parsed.log")
        );
        let back = std::fs::read_to_string(&sibling).unwrap();
        assert_eq!(back.lines().count(), 1);
        let v: Value = serde_json::from_str(back.trim_end()).unwrap();
        assert_eq!(v["event"], "parsed");
        assert_eq!(v["id"], r.id);
        assert_eq!(v["model"], "m/x:1");
        assert_eq!(v["path"], r.path);
        assert_eq!(v["data"]["text"], "Hi \"x\"");
        assert_eq!(v["data"]["k"], "***");
        // The main file still has its own `parsed` event, the same data.
        let main_text = std::fs::read_to_string(&main).unwrap();
        let in_main: Vec<Value> = main_text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e["event"] == "parsed")
            .collect();
        assert_eq!(in_main.len(), 1);
        assert_eq!(in_main[0]["data"], v["data"]);
        assert!(!back.contains("SECRETKEY"));

        // No parsed output, no sibling.
        let r = rich_record(false);
        let p = Prepared::new(&r);
        assert!(render_parsed(&r, &p, &scrubber).is_none());
        let dir = tempfile::tempdir().unwrap();
        write_all(dir.path(), &r, &render(&r, &p, &scrubber), None).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn file_names_keep_their_layout() {
        let r = rich_record(false);
        let name = file_name(&r);
        assert_eq!(
            name,
            format!(
                "{}-id-_odd__1_m_x_1.log",
                r.started_at.format("%Y%m%d_%H%M%S")
            )
        );
        assert_eq!(parsed_file_name(&name), name.replace(".log", ".parsed.log"));
        assert_eq!(safe("", 8), "_");
        assert_eq!(safe(".hidden", 8), "_.hidden");
        assert_eq!(safe("abcdefghij", 4), "abcd");
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
