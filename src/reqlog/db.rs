//! The database sink: SQLite (default) or PostgreSQL through sqlx, with
//! embedded, reversible migrations. One transaction per batch of records.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::migrate::{Migrate, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::Record;
use super::file::{LoggedRequest, Prepared, unmasked_headers};
use super::redact::Scrubber;
use crate::config::{DatabaseTarget, PostgresTarget};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
pub static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// A connected database.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// One migration and whether it is applied.
#[derive(Debug, Clone)]
pub struct MigrationState {
    pub version: i64,
    pub description: String,
    pub applied: bool,
}

/// id, method, path, model, stream, headers, body, truncated.
type RequestRow = (
    String,
    String,
    String,
    Option<String>,
    bool,
    String,
    String,
    bool,
);

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
            ttfb_ms: r.ttfb.map(super::file::ms),
            latency_ms: super::file::ms(r.total),
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
             client_request_id, response_id, response_turn) \
             VALUES ",
        );
        for i in 0..n {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str("(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
        }
        sql
    })
}

/// PostgreSQL text cannot hold NUL, in a TEXT column or a JSONB string.
fn pg_text(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}
fn pg_json(s: &str) -> String {
    s.replace("\\u0000", "\\ufffd").replace('\0', "\u{FFFD}")
}

/// Connection options for a PostgreSQL target (its URL, or its parts).
pub fn pg_options(p: &PostgresTarget) -> Result<PgConnectOptions, sqlx::Error> {
    let o = match &p.url {
        Some(url) => PgConnectOptions::from_str(url.expose())?,
        None => {
            let mut o = PgConnectOptions::new_without_pgpass()
                .host(&p.host)
                .port(p.port)
                .database(&p.database);
            if let Some(u) = &p.user {
                o = o.username(u);
            }
            if let Some(pw) = &p.password {
                o = o.password(pw.expose());
            }
            o
        }
    };
    Ok(o.application_name("yallmp"))
}

impl Db {
    /// Connects (creating the SQLite file and its directory if needed).
    pub async fn connect(target: &DatabaseTarget) -> Result<Db, sqlx::Error> {
        match target {
            DatabaseTarget::Sqlite { path } => {
                // 0600 (and so its -wal and -shm), in a 0700 directory when
                // the directory is new: the log holds prompts.
                super::private::sqlite_file(path)?;
                let opts = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    // For a new file (an existing one keeps its size): rows
                    // of 1-3 KB pack better in 8 KiB pages; measured on the
                    // log's own rows, 17% less disk and a third less system
                    // time per insert than 4 KiB.
                    .page_size(8192)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(5));
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    // A local file: no ping before each batch.
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(opts)
                    .await?;
                Ok(Db::Sqlite(pool))
            }
            DatabaseTarget::Postgres(p) => {
                let opts = pg_options(p)?;
                let pool = PgPoolOptions::new()
                    .max_connections(5)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(opts)
                    .await?;
                Ok(Db::Postgres(pool))
            }
        }
    }

    /// A second, read-only pool on the same database for the admin API's
    /// reads, so browsing the log never waits behind the writer's batches
    /// (and cannot write). Call after [`Db::connect`] and `migrate`.
    pub async fn connect_reader(target: &DatabaseTarget) -> Result<Db, sqlx::Error> {
        match target {
            DatabaseTarget::Sqlite { path } => {
                let opts = SqliteConnectOptions::new()
                    .filename(path)
                    .read_only(true)
                    .busy_timeout(Duration::from_secs(5));
                let pool = SqlitePoolOptions::new()
                    .max_connections(2)
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(opts)
                    .await?;
                Ok(Db::Sqlite(pool))
            }
            DatabaseTarget::Postgres(p) => {
                let opts = pg_options(p)?.options([("default_transaction_read_only", "on")]);
                let pool = PgPoolOptions::new()
                    .max_connections(3)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(opts)
                    .await?;
                Ok(Db::Postgres(pool))
            }
        }
    }

    fn migrator(&self) -> &'static Migrator {
        match self {
            Db::Sqlite(_) => &SQLITE_MIGRATIONS,
            Db::Postgres(_) => &POSTGRES_MIGRATIONS,
        }
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        match self {
            Db::Sqlite(p) => self.migrator().run(p).await,
            Db::Postgres(p) => self.migrator().run(p).await,
        }
    }

    /// Reverts the latest applied migration; returns its version.
    pub async fn rollback(&self) -> Result<Option<i64>, sqlx::migrate::MigrateError> {
        let applied: Vec<i64> = self
            .migrations()
            .await?
            .into_iter()
            .filter(|m| m.applied)
            .map(|m| m.version)
            .collect();
        let Some(&last) = applied.last() else {
            return Ok(None);
        };
        let target = applied.iter().rev().nth(1).copied().unwrap_or(0);
        match self {
            Db::Sqlite(p) => self.migrator().undo(p, target).await?,
            Db::Postgres(p) => self.migrator().undo(p, target).await?,
        }
        Ok(Some(last))
    }

    /// Every known migration with its state.
    pub async fn migrations(&self) -> Result<Vec<MigrationState>, sqlx::migrate::MigrateError> {
        let applied: Vec<i64> = match self {
            Db::Sqlite(p) => {
                let mut c = p.acquire().await?;
                c.ensure_migrations_table().await?;
                c.list_applied_migrations()
                    .await?
                    .iter()
                    .map(|m| m.version)
                    .collect()
            }
            Db::Postgres(p) => {
                let mut c = p.acquire().await?;
                c.ensure_migrations_table().await?;
                c.list_applied_migrations()
                    .await?
                    .iter()
                    .map(|m| m.version)
                    .collect()
            }
        };
        let mut out: Vec<MigrationState> = self
            .migrator()
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| MigrationState {
                version: m.version,
                description: m.description.to_string(),
                applied: applied.contains(&m.version),
            })
            .collect();
        out.sort_by_key(|m| m.version);
        Ok(out)
    }

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
                            .bind(&r.response_turn);
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
                         response_body_truncated, chunks, chunks_truncated, parsed, error, cache, client_request_id, response_id, response_turn) \
                         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17::jsonb,$18::jsonb,$19,$20,$21::jsonb,$22::jsonb,\
                         $23::jsonb,$24,$25,$26::jsonb,$27,$28::jsonb,$29,$30,$31,$32,$33) \
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

    /// The turn of the translated Responses answer `response_id` (the
    /// newest, should an id repeat), or `None`: one indexed lookup.
    pub async fn fetch_response_turn(
        &self,
        response_id: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        use sqlx::Row as _;
        let row = match self {
            Db::Sqlite(p) => sqlx::query(
                "SELECT response_turn FROM requests WHERE response_id = ? \
                     AND response_turn IS NOT NULL ORDER BY started_at DESC LIMIT 1",
            )
            .bind(response_id)
            .fetch_optional(p)
            .await?
            .map(|r| r.try_get::<String, _>(0))
            .transpose()?,
            Db::Postgres(p) => sqlx::query(
                "SELECT response_turn FROM requests WHERE response_id = $1 \
                     AND response_turn IS NOT NULL ORDER BY started_at DESC LIMIT 1",
            )
            .bind(pg_text(response_id))
            .fetch_optional(p)
            .await?
            .map(|r| r.try_get::<String, _>(0))
            .transpose()?,
        };
        Ok(row)
    }

    /// The logged request with this id, for replay.
    pub async fn fetch_request(&self, id: &str) -> Result<Option<LoggedRequest>, sqlx::Error> {
        use sqlx::Row as _;
        let row: Option<RequestRow> = match self {
            Db::Sqlite(p) => sqlx::query(
                "SELECT id, method, path, model, stream, request_headers, request_body, request_body_truncated FROM requests WHERE id = ?",
            )
            .bind(id)
            .fetch_optional(p)
            .await?
            .map(|r| {
                (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6), r.get(7))
            }),
            Db::Postgres(p) => sqlx::query(
                "SELECT id, method, path, model, stream, request_headers::text, request_body_text, request_body_truncated FROM requests WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(p)
            .await?
            .map(|r| {
                (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6), r.get(7))
            }),
        };
        Ok(row.map(
            |(id, method, path, model, stream, headers, body, truncated)| {
                let headers: serde_json::Value = serde_json::from_str(&headers).unwrap_or_default();
                LoggedRequest {
                    id,
                    method,
                    path,
                    model,
                    stream,
                    headers: unmasked_headers(&headers),
                    body: body.into_bytes(),
                    body_truncated: truncated,
                }
            },
        ))
    }

    /// Number of rows (for tests and health).
    pub async fn count(&self) -> Result<i64, sqlx::Error> {
        match self {
            Db::Sqlite(p) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM requests")
                    .fetch_one(p)
                    .await
            }
            Db::Postgres(p) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM requests")
                    .fetch_one(p)
                    .await
            }
        }
    }

    /// Deletes rows older than `max_age` and beyond the newest `max_rows`.
    pub async fn prune(
        &self,
        max_age: Option<Duration>,
        max_rows: Option<u64>,
    ) -> Result<u64, sqlx::Error> {
        let mut deleted = 0;
        // A cutoff before the calendar's start (an age the config refuses,
        // but never a panic here): nothing is that old.
        if let Some(cutoff) = max_age
            .and_then(|age| Utc::now().checked_sub_signed(chrono::Duration::from_std(age).ok()?))
        {
            deleted += match self {
                Db::Sqlite(p) => sqlx::query("DELETE FROM requests WHERE started_at < ?")
                    .bind(cutoff.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                    .execute(p)
                    .await?
                    .rows_affected(),
                Db::Postgres(p) => sqlx::query("DELETE FROM requests WHERE started_at < $1")
                    .bind(cutoff)
                    .execute(p)
                    .await?
                    .rows_affected(),
            };
        }
        if let Some(max) = max_rows {
            let max = i64::try_from(max).unwrap_or(i64::MAX);
            deleted += match self {
                Db::Sqlite(p) => sqlx::query(
                    "DELETE FROM requests WHERE id IN (SELECT id FROM requests ORDER BY started_at DESC LIMIT -1 OFFSET ?)",
                )
                .bind(max)
                .execute(p)
                .await?
                .rows_affected(),
                Db::Postgres(p) => sqlx::query(
                    "DELETE FROM requests WHERE id IN (SELECT id FROM requests ORDER BY started_at DESC OFFSET $1)",
                )
                .bind(max)
                .execute(p)
                .await?
                .rows_affected(),
            };
        }
        Ok(deleted)
    }

    /// Whether [`Db::close`] was called on it.
    pub fn is_closed(&self) -> bool {
        match self {
            Db::Sqlite(p) => p.is_closed(),
            Db::Postgres(p) => p.is_closed(),
        }
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite(p) => p.close().await,
            Db::Postgres(p) => p.close().await,
        }
    }
}

/// Whether an error means the database is unreachable (worth retrying) as
/// opposed to a row it refused.
pub fn is_transient(e: &sqlx::Error) -> bool {
    !matches!(
        e,
        sqlx::Error::Database(_) | sqlx::Error::Encode(_) | sqlx::Error::TypeNotFound { .. }
    )
}

/// Whether a write failed because the database cannot take writes now (it
/// is unreachable, or out of room: a full disk, a locked or read-only file,
/// an I/O error) rather than because it refused a row: the rows wait and
/// are tried again.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    if is_transient(e) {
        return true;
    }
    let sqlx::Error::Database(d) = e else {
        return false;
    };
    let Some(code) = d.code() else { return false };
    if let Ok(n) = code.parse::<i32>() {
        // SQLite (extended codes carry the primary one in the low byte):
        // BUSY, LOCKED, NOMEM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN,
        // PROTOCOL.
        return matches!(n & 0xff, 5 | 6 | 7 | 8 | 10 | 11 | 13 | 14 | 15);
    }
    // PostgreSQL: connection exceptions, insufficient resources (disk
    // full), operator intervention (shutting down), system errors.
    ["08", "53", "57", "58"]
        .iter()
        .any(|class| code.starts_with(class))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An age past the calendar's start used to panic the pruning task
    /// (`Utc::now() - Duration::MAX`), stopping retention for good.
    #[tokio::test]
    async fn an_age_beyond_the_calendar_prunes_nothing_and_does_not_panic() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&DatabaseTarget::Sqlite {
            path: dir.path().join("log.db"),
        })
        .await
        .unwrap();
        db.migrate().await.unwrap();
        for age in [
            Duration::from_secs(100_000_000 * 86_400),
            Duration::from_secs(u64::MAX),
        ] {
            assert_eq!(db.prune(Some(age), Some(10)).await.unwrap(), 0);
        }
        db.close().await;
    }
}
