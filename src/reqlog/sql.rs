//! SQL text for SQLite and PostgreSQL at once: [`Sql`] collects the text and
//! its arguments, writing `?` or `$n` placeholders for the database at hand,
//! binds each argument the way that database stores it (times as RFC 3339
//! text in SQLite, `timestamptz` in PostgreSQL), runs it, and shows its plan.
//! [`DbRow`] reads a column the same way from either.

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::Row as _;

use super::db::Db;

/// A value to bind.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    Float(f64),
    Int(i64),
    Bool(bool),
    Time(DateTime<Utc>),
    /// A cursor's time, as the database gave it.
    CursorTime(String),
}

/// SQL text with its arguments, for one database.
pub struct Sql {
    text: String,
    args: Vec<Arg>,
    pg: bool,
}

impl Sql {
    pub(crate) fn new(db: &Db, text: &str) -> Sql {
        Sql {
            text: text.to_string(),
            args: Vec::new(),
            pg: matches!(db, Db::Postgres(_)),
        }
    }

    pub(crate) fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    pub(crate) fn arg(&mut self, a: Arg) -> &mut Self {
        self.args.push(a);
        if self.pg {
            self.text.push_str(&format!("${}", self.args.len()));
        } else {
            self.text.push('?');
        }
        self
    }

    /// Whether this is PostgreSQL's dialect.
    pub(crate) fn is_pg(&self) -> bool {
        self.pg
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Runs the query and returns every row.
    pub(crate) async fn fetch_all(&self, db: &Db) -> Result<Vec<DbRow>, sqlx::Error> {
        match db {
            Db::Sqlite(p) => {
                let mut q = sqlx::query(&self.text);
                for a in &self.args {
                    q = match a {
                        Arg::Text(s) | Arg::CursorTime(s) => q.bind(s.clone()),
                        Arg::Float(f) => q.bind(*f),
                        Arg::Int(i) => q.bind(*i),
                        Arg::Bool(b) => q.bind(*b),
                        Arg::Time(t) => q.bind(sqlite_time(t)),
                    };
                }
                Ok(q.fetch_all(p)
                    .await?
                    .into_iter()
                    .map(DbRow::Sqlite)
                    .collect())
            }
            Db::Postgres(p) => {
                let mut q = sqlx::query(&self.text);
                for a in &self.args {
                    q = match a {
                        Arg::Text(s) | Arg::CursorTime(s) => q.bind(s.clone()),
                        Arg::Float(f) => q.bind(*f),
                        Arg::Int(i) => q.bind(*i as i32),
                        Arg::Bool(b) => q.bind(*b),
                        Arg::Time(t) => q.bind(*t),
                    };
                }
                Ok(q.fetch_all(p)
                    .await?
                    .into_iter()
                    .map(DbRow::Postgres)
                    .collect())
            }
        }
    }

    /// The database's plan for this query, one line per step (for tests
    /// and for checking that paging uses the time index).
    pub async fn explain(&self, db: &Db) -> Result<String, sqlx::Error> {
        let mut e = Sql {
            text: String::new(),
            args: self.args.clone(),
            pg: self.pg,
        };
        e.text = if self.pg {
            format!("EXPLAIN {}", self.text)
        } else {
            format!("EXPLAIN QUERY PLAN {}", self.text)
        };
        let rows = e.fetch_all(db).await?;
        Ok(rows
            .iter()
            .map(|r| match r {
                DbRow::Sqlite(r) => r.try_get::<String, _>(3).unwrap_or_default(),
                DbRow::Postgres(r) => r.try_get::<String, _>(0).unwrap_or_default(),
            })
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

/// How SQLite stores times: RFC 3339, UTC, milliseconds (sorts as text).
pub fn sqlite_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `%`, `_` and `\` taken literally in a LIKE pattern with `ESCAPE '\'`.
pub(crate) fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A row from either database.
pub(crate) enum DbRow {
    Sqlite(sqlx::sqlite::SqliteRow),
    Postgres(sqlx::postgres::PgRow),
}

impl DbRow {
    pub(crate) fn str(&self, i: usize) -> Option<String> {
        match self {
            DbRow::Sqlite(r) => r.try_get::<Option<String>, _>(i).ok().flatten(),
            DbRow::Postgres(r) => r.try_get::<Option<String>, _>(i).ok().flatten(),
        }
    }
    pub(crate) fn int(&self, i: usize) -> Option<i64> {
        match self {
            DbRow::Sqlite(r) => r.try_get::<Option<i64>, _>(i).ok().flatten(),
            DbRow::Postgres(r) => r
                .try_get::<Option<i64>, _>(i)
                .ok()
                .flatten()
                .or_else(|| r.try_get::<Option<i32>, _>(i).ok().flatten().map(i64::from)),
        }
    }
    pub(crate) fn float(&self, i: usize) -> Option<f64> {
        match self {
            DbRow::Sqlite(r) => r.try_get::<Option<f64>, _>(i).ok().flatten(),
            DbRow::Postgres(r) => r.try_get::<Option<f64>, _>(i).ok().flatten(),
        }
    }
    pub(crate) fn bool(&self, i: usize) -> bool {
        match self {
            DbRow::Sqlite(r) => r.try_get::<bool, _>(i).unwrap_or(false),
            DbRow::Postgres(r) => r.try_get::<bool, _>(i).unwrap_or(false),
        }
    }
    /// A time column as text at full precision.
    pub(crate) fn time(&self, i: usize) -> String {
        match self {
            DbRow::Sqlite(r) => r.try_get::<String, _>(i).unwrap_or_default(),
            DbRow::Postgres(r) => r
                .try_get::<DateTime<Utc>, _>(i)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
                .unwrap_or_default(),
        }
    }
}
