//! One request as a row of the `requests` table, and the batched insert:
//! many rows per SQLite statement, one per PostgreSQL statement (NUL
//! replaced, JSON columns cast), one transaction per batch.

use chrono::{DateTime, Utc};

use super::{Db, pg_json, pg_text};
use crate::reqlog::Record;
use crate::reqlog::file::Prepared;
use crate::reqlog::redact::Scrubber;

/// A record as one row.
pub struct Row {
    pub id: String,
    /// The client's `x-request-id`, when it sent one.
    pub client_request_id: Option<String>,
    pub started_at: DateTime<Utc>,
    pub method: String,
    pub path: String,
    pub client_addr: Option<String>,
    pub model: Option<String>,
    pub backend: Option<String>,
    pub status: Option<i32>,
    pub outcome: &'static str,
    pub stream: bool,
    pub attempts_count: i32,
    pub ttfb_ms: Option<f64>,
    pub latency_ms: f64,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
    pub request_headers: String,
    pub request_body: String,
    pub request_body_json: bool,
    pub request_body_truncated: bool,
    pub attempts: String,
    pub response_headers: Option<String>,
    pub response_body: Option<String>,
    pub response_body_json: bool,
    pub response_body_truncated: bool,
    pub chunks: Option<String>,
    pub chunks_truncated: bool,
    pub parsed: Option<String>,
    pub error: Option<String>,
    /// What the response cache did.
    pub cache: Option<&'static str>,
    /// A translated Responses answer's id and turn (`proxy::previous`).
    pub response_id: Option<String>,
    pub response_turn: Option<String>,
    /// The answer's cost in USD (`None`: no price or no usage).
    pub cost_usd: Option<f64>,
    pub key_id: Option<String>,
    pub key_name: Option<String>,
    pub team: Option<String>,
}

impl Row {
    /// The row for a record, taking its parts (no copies); every text that
    /// can hold a secret is scrubbed.
    pub fn new(r: Record, p: Prepared, s: &Scrubber) -> Row {
        let usage = p.usage;
        let (response_body, response_body_json, response_body_truncated) = match p.response_body {
            Some(b) => (Some(s.scrub(b.text)), b.json, b.truncated),
            None => (None, false, false),
        };
        Row {
            started_at: r.started_at,
            client_addr: r.client_addr.map(|a| a.to_string()),
            status: r.status.map(i32::from),
            outcome: r.outcome.as_str(),
            stream: r.stream,
            attempts_count: i32::try_from(r.attempts.len()).unwrap_or(i32::MAX),
            ttfb_ms: r.ttfb.map(crate::reqlog::file::ms),
            latency_ms: crate::reqlog::file::ms(r.total),
            prompt_tokens: usage.and_then(|u| u.prompt_tokens),
            completion_tokens: usage.and_then(|u| u.completion_tokens),
            total_tokens: usage.and_then(|u| u.total_tokens),
            request_headers: s.scrub(p.request_headers),
            request_body: s.scrub(p.request_body.text),
            request_body_json: p.request_body.json,
            request_body_truncated: p.request_body.truncated,
            attempts: s.scrub(p.attempts),
            response_headers: p.response_headers.map(|h| s.scrub(h)),
            response_body,
            response_body_json,
            response_body_truncated,
            chunks: p.chunks.map(|c| s.scrub(c)),
            chunks_truncated: r.frames_truncated,
            parsed: p.parsed.map(|v| s.scrub(v)),
            error: r.error.map(|e| s.scrub(e)),
            cache: r.cache,
            client_request_id: r.client_request_id.map(|c| s.scrub(c)),
            response_turn: r
                .response_turn
                .as_ref()
                .and_then(|t| t.get())
                .map(|t| s.scrub(t.clone())),
            response_id: r.response_id,
            cost_usd: r.price.zip(usage).map(|(p, u)| p.cost(&u)),
            key_id: r.key.as_ref().map(|k| k.0.clone()),
            key_name: r.key.map(|k| k.1),
            team: r.team,
            id: r.id,
            method: r.method,
            path: r.path,
            model: r.model,
            backend: r.backend,
        }
    }
}

/// Rows per SQLite `INSERT` statement: one statement (one trip to the
/// connection's thread) for many rows; 31 values a row stays far below
/// SQLite's limit on bound values.
const SQLITE_ROWS_PER_INSERT: usize = 32;

/// The SQLite insert for `n` rows (1..=SQLITE_ROWS_PER_INSERT), built once
/// per size, so the connection's statement cache holds at most that many.
fn sqlite_insert_sql(n: usize) -> &'static str {
    static SQL: [std::sync::OnceLock<String>; SQLITE_ROWS_PER_INSERT] =
        [const { std::sync::OnceLock::new() }; SQLITE_ROWS_PER_INSERT];
    let n = n.clamp(1, SQLITE_ROWS_PER_INSERT);
    SQL[n - 1].get_or_init(|| {
        let mut sql = String::from(
            // A plain INSERT: ids are the proxy's own, never replaced (an
            // existing row is never overwritten by a later record).
            "INSERT INTO requests (id, started_at, method, path, client_addr, model, backend, status, outcome, stream, \
             attempts_count, ttfb_ms, latency_ms, prompt_tokens, completion_tokens, total_tokens, request_headers, request_body, \
             request_body_truncated, attempts, response_headers, response_body, response_body_truncated, chunks, chunks_truncated, parsed, error, cache, \
             client_request_id, response_id, response_turn, cost_usd, key_id, key_name, team) \
             VALUES ",
        );
        for i in 0..n {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str("(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
        }
        sql
    })
}

impl Db {
    /// Inserts rows in one transaction; returns how many rows were written
    /// (on PostgreSQL, a row whose id is already there, from a batch sent
    /// again after a commit whose answer was lost, is not written twice).
    pub async fn insert(&self, rows: &[Row]) -> Result<u64, sqlx::Error> {
        let mut written = 0;
        match self {
            Db::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                for chunk in rows.chunks(SQLITE_ROWS_PER_INSERT) {
                    let mut q = sqlx::query(sqlite_insert_sql(chunk.len()));
                    for r in chunk {
                        q = q
                            .bind(&r.id)
                            .bind(
                                r.started_at
                                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                            )
                            .bind(&r.method)
                            .bind(&r.path)
                            .bind(&r.client_addr)
                            .bind(&r.model)
                            .bind(&r.backend)
                            .bind(r.status)
                            .bind(r.outcome)
                            .bind(r.stream)
                            .bind(r.attempts_count)
                            .bind(r.ttfb_ms)
                            .bind(r.latency_ms)
                            .bind(r.prompt_tokens)
                            .bind(r.completion_tokens)
                            .bind(r.total_tokens)
                            .bind(&r.request_headers)
                            .bind(&r.request_body)
                            .bind(r.request_body_truncated)
                            .bind(&r.attempts)
                            .bind(&r.response_headers)
                            .bind(&r.response_body)
                            .bind(r.response_body_truncated)
                            .bind(&r.chunks)
                            .bind(r.chunks_truncated)
                            .bind(&r.parsed)
                            .bind(&r.error)
                            .bind(r.cache)
                            .bind(&r.client_request_id)
                            .bind(&r.response_id)
                            .bind(&r.response_turn)
                            .bind(r.cost_usd)
                            .bind(&r.key_id)
                            .bind(&r.key_name)
                            .bind(&r.team);
                    }
                    written += q.execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                for r in rows {
                    let n = sqlx::query(
                        "INSERT INTO requests (id, started_at, method, path, client_addr, model, backend, status, outcome, stream, \
                         attempts_count, ttfb_ms, latency_ms, prompt_tokens, completion_tokens, total_tokens, request_headers, request_body, \
                         request_body_text, request_body_truncated, attempts, response_headers, response_body, response_body_text, \
                         response_body_truncated, chunks, chunks_truncated, parsed, error, cache, client_request_id, response_id, response_turn, \
                         cost_usd, key_id, key_name, team) \
                         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17::jsonb,$18::jsonb,$19,$20,$21::jsonb,$22::jsonb,\
                         $23::jsonb,$24,$25,$26::jsonb,$27,$28::jsonb,$29,$30,$31,$32,$33,$34,$35,$36,$37) \
                         ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(pg_text(&r.id))
                    .bind(r.started_at)
                    .bind(pg_text(&r.method))
                    .bind(pg_text(&r.path))
                    .bind(&r.client_addr)
                    .bind(r.model.as_deref().map(pg_text))
                    .bind(&r.backend)
                    .bind(r.status)
                    .bind(r.outcome)
                    .bind(r.stream)
                    .bind(r.attempts_count)
                    .bind(r.ttfb_ms)
                    .bind(r.latency_ms)
                    .bind(r.prompt_tokens)
                    .bind(r.completion_tokens)
                    .bind(r.total_tokens)
                    .bind(pg_json(&r.request_headers))
                    .bind(r.request_body_json.then(|| pg_json(&r.request_body)))
                    .bind(pg_text(&r.request_body))
                    .bind(r.request_body_truncated)
                    .bind(pg_json(&r.attempts))
                    .bind(r.response_headers.as_deref().map(pg_json))
                    .bind(r.response_body.as_deref().filter(|_| r.response_body_json).map(pg_json))
                    .bind(r.response_body.as_deref().map(pg_text))
                    .bind(r.response_body_truncated)
                    .bind(r.chunks.as_deref().map(pg_json))
                    .bind(r.chunks_truncated)
                    .bind(r.parsed.as_deref().map(pg_json))
                    .bind(r.error.as_deref().map(pg_text))
                    .bind(r.cache)
                    .bind(r.client_request_id.as_deref().map(pg_text))
                    .bind(r.response_id.as_deref().map(pg_text))
                    .bind(r.response_turn.as_deref().map(pg_text))
                    .bind(r.cost_usd)
                    .bind(r.key_id.as_deref().map(pg_text))
                    .bind(r.key_name.as_deref().map(pg_text))
                    .bind(r.team.as_deref().map(pg_text))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    written += n;
                }
                tx.commit().await?;
            }
        }
        Ok(written)
    }
}
