//! Reading the request log back for the admin API: typed filters parsed
//! from a query string, cursor paging newest first on `(started_at, id)`
//! (served by the time index), and one record in full. The same SQL text
//! runs on SQLite and PostgreSQL; only placeholders, the text search
//! operator and how times are bound differ.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::db::Db;
use super::sql::{Arg, DbRow, like_escape};
pub use super::sql::{Sql, sqlite_time};

/// Rows a page holds when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 50;
/// The most rows one page may hold.
pub const MAX_LIMIT: usize = 500;
/// The longest text filter (`q`, `model`, `backend`) or cursor accepted,
/// in characters: SQLite refuses LIKE patterns past 50,000 bytes, and a
/// longer search is no use anyway.
pub const MAX_FILTER_CHARS: usize = 1000;

/// `v` when it is at most [`MAX_FILTER_CHARS`] long.
fn text(param: &'static str, v: &str) -> Result<String, QueryError> {
    if v.chars().count() > MAX_FILTER_CHARS {
        return Err(bad(param, format!("at most {MAX_FILTER_CHARS} characters")));
    }
    Ok(v.to_string())
}

/// A bad parameter or a failed read.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{param}: {message}")]
    BadParam {
        param: &'static str,
        message: String,
    },
    #[error("unknown query parameter `{0}`")]
    Unknown(String),
    #[error("reading the request log: {0}")]
    Db(#[from] sqlx::Error),
}

fn bad(param: &'static str, message: impl Into<String>) -> QueryError {
    QueryError::BadParam {
        param,
        message: message.into(),
    }
}

/// `status=`: one code or a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Exact(u16),
    /// `2xx` .. `5xx`: the hundreds digit.
    Class(u16),
}

/// `outcome=`: a logged outcome, or `failed_over` (ok after more than one
/// attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeFilter {
    Is(&'static str),
    FailedOver,
}

const OUTCOMES: &[&str] = &[
    "ok",
    "client_error",
    "upstream_error",
    "all_failed",
    "client_disconnected",
    "cancelled",
];

/// What to select; every part is optional and they combine with AND.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub model: Option<String>,
    pub backend: Option<String>,
    pub status: Option<StatusFilter>,
    pub outcome: Option<OutcomeFilter>,
    pub stream: Option<bool>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub min_latency_ms: Option<f64>,
    /// Text searched for in request and response bodies (and frames).
    pub q: Option<String>,
    /// The client's `x-request-id` (exact).
    pub client_request_id: Option<String>,
    /// A virtual key's name (exact).
    pub key: Option<String>,
    /// A team's name (exact).
    pub team: Option<String>,
}

/// Where a page starts: just after this row (newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The row's `started_at` as the database gave it (full precision).
    pub started_at: String,
    pub id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}\n{}", self.started_at, self.id))
    }

    pub fn decode(s: &str) -> Result<Cursor, QueryError> {
        let raw = URL_SAFE_NO_PAD
            .decode(s.trim())
            .map_err(|_| bad("cursor", "not a cursor this API returned"))?;
        let text = String::from_utf8(raw).map_err(|_| bad("cursor", "not a cursor"))?;
        let (t, id) = text
            .split_once('\n')
            .ok_or_else(|| bad("cursor", "not a cursor"))?;
        DateTime::parse_from_rfc3339(t).map_err(|_| bad("cursor", "not a cursor"))?;
        Ok(Cursor {
            started_at: t.to_string(),
            id: id.to_string(),
        })
    }
}

/// One page's request: filters, where to start, how many.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRequest {
    pub filter: Filter,
    pub cursor: Option<Cursor>,
    pub limit: usize,
}

/// A time: RFC 3339, or milliseconds since the epoch.
pub fn parse_time(param: &'static str, v: &str) -> Result<DateTime<Utc>, QueryError> {
    let v = v.trim();
    if let Ok(ms) = v.parse::<i64>() {
        return DateTime::from_timestamp_millis(ms).ok_or_else(|| bad(param, "out of range"));
    }
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            bad(
                param,
                format!("`{v}` is neither RFC 3339 (2026-01-02T03:04:05Z) nor epoch milliseconds"),
            )
        })
}

impl Filter {
    /// Takes the filter's parameter `k` if it is one; `Ok(false)` when `k`
    /// is not a filter parameter. Empty values mean "any".
    pub fn take(&mut self, k: &str, v: &str) -> Result<bool, QueryError> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(matches!(
                k,
                "model"
                    | "backend"
                    | "status"
                    | "outcome"
                    | "stream"
                    | "since"
                    | "until"
                    | "min_latency_ms"
                    | "q"
                    | "client_request_id"
                    | "key"
                    | "team"
            ));
        }
        match k {
            "model" => self.model = Some(text("model", v)?),
            "backend" => self.backend = Some(text("backend", v)?),
            "key" => self.key = Some(text("key", v)?),
            "team" => self.team = Some(text("team", v)?),
            "status" => {
                let lower = v.to_ascii_lowercase();
                self.status = Some(match lower.as_bytes() {
                    [d @ b'1'..=b'5', b'x', b'x'] => StatusFilter::Class(u16::from(*d - b'0')),
                    _ => StatusFilter::Exact(
                        lower
                            .parse::<u16>()
                            .ok()
                            .filter(|s| (100..=599).contains(s))
                            .ok_or_else(|| bad("status", "a status code (404) or a class (4xx)"))?,
                    ),
                });
            }
            "outcome" => {
                self.outcome = Some(if v == "failed_over" {
                    OutcomeFilter::FailedOver
                } else {
                    OUTCOMES
                        .iter()
                        .find(|o| **o == v)
                        .map(|o| OutcomeFilter::Is(o))
                        .ok_or_else(|| {
                            bad(
                                "outcome",
                                format!("one of {}, failed_over", OUTCOMES.join(", ")),
                            )
                        })?
                });
            }
            "stream" => {
                self.stream = Some(match v {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => return Err(bad("stream", "true or false")),
                })
            }
            "since" => self.since = Some(parse_time("since", v)?),
            "until" => self.until = Some(parse_time("until", v)?),
            "min_latency_ms" => {
                self.min_latency_ms = Some(
                    v.parse::<f64>()
                        .ok()
                        .filter(|x| x.is_finite() && *x >= 0.0)
                        .ok_or_else(|| bad("min_latency_ms", "a number of milliseconds"))?,
                )
            }
            "q" => self.q = Some(text("q", v)?),
            "client_request_id" => self.client_request_id = Some(text("client_request_id", v)?),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl PageRequest {
    /// From the query string's pairs; unknown parameters are errors (a
    /// typo must not silently widen a filter).
    pub fn parse(pairs: &[(String, String)]) -> Result<PageRequest, QueryError> {
        let mut filter = Filter::default();
        let mut cursor = None;
        let mut limit = DEFAULT_LIMIT;
        for (k, v) in pairs {
            if filter.take(k, v)? {
                continue;
            }
            match k.as_str() {
                "cursor" if !v.trim().is_empty() => {
                    cursor = Some(Cursor::decode(&text("cursor", v)?)?)
                }
                "cursor" => {}
                "limit" => {
                    limit = v
                        .trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad("limit", format!("a number from 1 to {MAX_LIMIT}")))?
                        .min(MAX_LIMIT)
                }
                other => return Err(QueryError::Unknown(other.to_string())),
            }
        }
        Ok(PageRequest {
            filter,
            cursor,
            limit,
        })
    }
}
impl Sql {
    /// ` WHERE ...` for the filter and the cursor (nothing when empty).
    pub(crate) fn filter(&mut self, f: &Filter, cursor: Option<&Cursor>) -> Result<(), QueryError> {
        let mut first = true;
        let mut and = |s: &mut Sql| {
            s.push(if first { " WHERE " } else { " AND " });
            first = false;
        };
        if let Some(m) = &f.model {
            and(self);
            self.push("model = ").arg(Arg::Text(m.clone()));
        }
        if let Some(b) = &f.backend {
            and(self);
            self.push("backend = ").arg(Arg::Text(b.clone()));
        }
        if let Some(c) = &f.client_request_id {
            and(self);
            self.push("client_request_id = ").arg(Arg::Text(c.clone()));
        }
        if let Some(k) = &f.key {
            and(self);
            self.push("key_name = ").arg(Arg::Text(k.clone()));
        }
        if let Some(t) = &f.team {
            and(self);
            self.push("team = ").arg(Arg::Text(t.clone()));
        }
        match f.status {
            Some(StatusFilter::Exact(s)) => {
                and(self);
                self.push("status = ").arg(Arg::Int(i64::from(s)));
            }
            Some(StatusFilter::Class(c)) => {
                and(self);
                self.push("status >= ")
                    .arg(Arg::Int(i64::from(c) * 100))
                    .push(" AND status < ")
                    .arg(Arg::Int(i64::from(c) * 100 + 100));
            }
            None => {}
        }
        match f.outcome {
            Some(OutcomeFilter::Is(o)) => {
                and(self);
                self.push("outcome = ").arg(Arg::Text(o.to_string()));
            }
            Some(OutcomeFilter::FailedOver) => {
                and(self);
                self.push("outcome = 'ok' AND attempts_count > 1");
            }
            None => {}
        }
        if let Some(s) = f.stream {
            and(self);
            self.push("stream = ").arg(Arg::Bool(s));
        }
        if let Some(t) = f.since {
            and(self);
            self.push("started_at >= ").arg(Arg::Time(t));
        }
        if let Some(t) = f.until {
            and(self);
            self.push("started_at < ").arg(Arg::Time(t));
        }
        if let Some(ms) = f.min_latency_ms {
            and(self);
            self.push("latency_ms >= ").arg(Arg::Float(ms));
        }
        if let Some(q) = &f.q {
            and(self);
            let pattern = format!("%{}%", like_escape(q));
            if self.is_pg() {
                self.push("(request_body_text ILIKE ")
                    .arg(Arg::Text(pattern.clone()))
                    .push(" ESCAPE '\\' OR response_body_text ILIKE ")
                    .arg(Arg::Text(pattern.clone()))
                    .push(" ESCAPE '\\' OR chunks::text ILIKE ")
                    .arg(Arg::Text(pattern))
                    .push(" ESCAPE '\\')");
            } else {
                self.push("(request_body LIKE ")
                    .arg(Arg::Text(pattern.clone()))
                    .push(" ESCAPE '\\' OR response_body LIKE ")
                    .arg(Arg::Text(pattern.clone()))
                    .push(" ESCAPE '\\' OR chunks LIKE ")
                    .arg(Arg::Text(pattern))
                    .push(" ESCAPE '\\')");
            }
        }
        if let Some(c) = cursor {
            and(self);
            if self.is_pg() {
                let t = DateTime::parse_from_rfc3339(&c.started_at)
                    .map_err(|_| bad("cursor", "not a cursor"))?
                    .with_timezone(&Utc);
                self.push("(started_at, id) < (")
                    .arg(Arg::Time(t))
                    .push(", ")
                    .arg(Arg::Text(c.id.clone()))
                    .push(")");
            } else {
                self.push("(started_at, id) < (")
                    .arg(Arg::CursorTime(c.started_at.clone()))
                    .push(", ")
                    .arg(Arg::Text(c.id.clone()))
                    .push(")");
            }
        }
        Ok(())
    }
}

/// The columns of a list row (the time index serves `started_at`, `id`,
/// `latency_ms`, `total_tokens`; the rest come from the row).
const LIST_COLUMNS: &str = "SELECT id, started_at, method, path, model, backend, status, outcome, stream, \
     attempts_count, ttfb_ms, latency_ms, prompt_tokens, completion_tokens, total_tokens, cache, error, client_request_id, key_name, team, cost_usd FROM requests";

/// One page, newest first.
#[derive(Debug, Clone)]
pub struct Page {
    pub rows: Vec<Value>,
    /// Where the next (older) page starts, when there is one.
    pub next_cursor: Option<String>,
}

/// The list query for a page (also for `explain`).
pub fn list_sql(db: &Db, req: &PageRequest) -> Result<Sql, QueryError> {
    let mut sql = Sql::new(db, LIST_COLUMNS);
    sql.filter(&req.filter, req.cursor.as_ref())?;
    sql.push(&format!(
        " ORDER BY started_at DESC, id DESC LIMIT {}",
        req.limit + 1
    ));
    Ok(sql)
}

/// Reads one page.
pub async fn list(db: &Db, req: &PageRequest) -> Result<Page, QueryError> {
    let sql = list_sql(db, req)?;
    let mut rows = sql.fetch_all(db).await?;
    let more = rows.len() > req.limit;
    rows.truncate(req.limit);
    let next_cursor = rows.last().filter(|_| more).map(|r| {
        Cursor {
            started_at: r.time(1),
            id: r.str(0).unwrap_or_default(),
        }
        .encode()
    });
    Ok(Page {
        rows: rows
            .iter()
            .map(|r| with_spend(with_client_request_id(summary(r), r), r, 18))
            .collect(),
        next_cursor,
    })
}

fn summary(r: &DbRow) -> Value {
    let outcome = r.str(7).unwrap_or_default();
    let attempts = r.int(9).unwrap_or(0);
    json!({
        "id": r.str(0),
        "started_at": normalize_time(&r.time(1)),
        "method": r.str(2),
        "path": r.str(3),
        "model": r.str(4),
        "backend": r.str(5),
        "status": r.int(6),
        "failed_over": outcome == "ok" && attempts > 1,
        "outcome": outcome,
        "stream": r.bool(8),
        "attempts": attempts,
        "ttfb_ms": r.float(10),
        "latency_ms": r.float(11),
        "prompt_tokens": r.int(12),
        "completion_tokens": r.int(13),
        "total_tokens": r.int(14),
        "cache": r.str(15),
        "error": r.str(16),
    })
}

/// Columns `at`.. of a query: the virtual key's name, the team and the
/// cost (docs/keys-and-spend.md).
fn with_spend(mut v: Value, r: &DbRow, at: usize) -> Value {
    v["key_name"] = json!(r.str(at));
    v["team"] = json!(r.str(at + 1));
    v["cost_usd"] = json!(r.float(at + 2));
    v
}

/// Column 17 of the list's and the detail's query: the client's
/// `x-request-id`.
fn with_client_request_id(mut v: Value, r: &DbRow) -> Value {
    v["client_request_id"] = json!(r.str(17));
    v
}

/// A stored time as RFC 3339 UTC with milliseconds, whatever the database.
fn normalize_time(t: &str) -> String {
    DateTime::parse_from_rfc3339(t)
        .map(|d| sqlite_time(&d.with_timezone(&Utc)))
        .unwrap_or_else(|_| t.to_string())
}

/// JSON text as a value; text that is not JSON as a string.
fn json_or_text(s: Option<String>) -> Value {
    match s {
        None => Value::Null,
        Some(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
    }
}

/// One record in full (headers as stored, redacted), or `None`.
pub async fn fetch(db: &Db, id: &str) -> Result<Option<Value>, QueryError> {
    let cols = match db {
        Db::Sqlite(_) => {
            "SELECT id, started_at, method, path, model, backend, status, outcome, stream, \
             attempts_count, ttfb_ms, latency_ms, prompt_tokens, completion_tokens, total_tokens, cache, error, client_request_id, \
             client_addr, request_headers, request_body, request_body_truncated, attempts, response_headers, response_body, \
             response_body_truncated, chunks, chunks_truncated, parsed, key_name, team, cost_usd FROM requests WHERE id = "
        }
        Db::Postgres(_) => {
            "SELECT id, started_at, method, path, model, backend, status, outcome, stream, \
             attempts_count, ttfb_ms, latency_ms, prompt_tokens, completion_tokens, total_tokens, cache, error, client_request_id, \
             client_addr, request_headers::text, request_body_text, request_body_truncated, attempts::text, response_headers::text, \
             response_body_text, response_body_truncated, chunks::text, chunks_truncated, parsed::text, key_name, team, cost_usd FROM requests WHERE id = "
        }
    };
    let mut sql = Sql::new(db, cols);
    sql.arg(Arg::Text(id.to_string()));
    let rows = sql.fetch_all(db).await?;
    let Some(r) = rows.first() else {
        return Ok(None);
    };
    // The first columns are the list's, in its order.
    let mut v = with_spend(with_client_request_id(summary(r), r), r, 29);
    v["client_addr"] = json!(r.str(18));
    let request_body_text = r.str(20).unwrap_or_default();
    let chunks = json_or_text(r.str(26));
    let assembled = match &chunks {
        Value::Array(frames) if !frames.is_empty() => Some(super::assemble::assemble(frames)),
        _ => None,
    };
    let response_body = r.str(24);
    let detail = json!({
        "request": {
            "headers": json_or_text(r.str(19)),
            "body": serde_json::from_str::<Value>(&request_body_text).ok(),
            "body_text": request_body_text,
            "body_truncated": r.bool(21),
        },
        "attempt_list": json_or_text(r.str(22)),
        "response": {
            "headers": json_or_text(r.str(23)),
            "body": response_body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()),
            "body_text": response_body,
            "body_truncated": r.bool(25),
        },
        "frames": chunks,
        "frames_truncated": r.bool(27),
        "assembled": assembled,
        "parsed": json_or_text(r.str(28)),
    });
    if let (Value::Object(a), Value::Object(b)) = (&mut v, detail) {
        a.extend(b);
    }
    Ok(Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_filter() {
        let r = PageRequest::parse(&pairs(&[
            ("model", "m"),
            ("backend", "m#1"),
            ("status", "5xx"),
            ("outcome", "failed_over"),
            ("stream", "true"),
            ("since", "2026-01-02T03:04:05Z"),
            ("until", "1767323045000"),
            ("min_latency_ms", "12.5"),
            ("q", "50%_off"),
            ("client_request_id", "dup-id-1"),
            ("limit", "9999"),
        ]))
        .unwrap();
        let f = &r.filter;
        assert_eq!(f.model.as_deref(), Some("m"));
        assert_eq!(f.status, Some(StatusFilter::Class(5)));
        assert_eq!(f.outcome, Some(OutcomeFilter::FailedOver));
        assert_eq!(f.stream, Some(true));
        assert_eq!(f.since, f.until);
        assert_eq!(f.min_latency_ms, Some(12.5));
        assert_eq!(f.client_request_id.as_deref(), Some("dup-id-1"));
        assert_eq!(r.limit, MAX_LIMIT);
        assert_eq!(like_escape("50%_off\\"), "50\\%\\_off\\\\");
    }

    #[test]
    fn rejects_bad_values_and_unknown_names() {
        for (k, v) in [
            ("status", "6xx"),
            ("status", "abc"),
            ("outcome", "fine"),
            ("stream", "maybe"),
            ("since", "yesterday"),
            ("min_latency_ms", "-1"),
            ("limit", "0"),
            ("cursor", "!!"),
            ("modle", "m"),
        ] {
            assert!(PageRequest::parse(&pairs(&[(k, v)])).is_err(), "{k}={v}");
        }
        let long = "x".repeat(MAX_FILTER_CHARS + 1);
        for k in ["q", "model", "backend", "cursor"] {
            assert!(PageRequest::parse(&pairs(&[(k, &long)])).is_err(), "{k}");
        }
        let most = "é".repeat(MAX_FILTER_CHARS);
        assert!(PageRequest::parse(&pairs(&[("q", &most)])).is_ok());
        // Empty values mean "any".
        let r = PageRequest::parse(&pairs(&[("model", ""), ("cursor", "")])).unwrap();
        assert_eq!(r.filter, Filter::default());
    }

    #[test]
    fn cursor_round_trips() {
        let c = Cursor {
            started_at: "2026-01-02T03:04:05.123456Z".into(),
            id: "0192-abc".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
    }
}
