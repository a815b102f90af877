//! Keys and teams in the request log's database (SQLite or PostgreSQL):
//! the `yallmp_keys` and `yallmp_teams` tables, and the spend of a key or
//! team since a time, summed from the request log's `cost_usd`.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use super::model::{Limits, Source, Team, VirtualKey};
use crate::grant::Period;
use crate::reqlog::db::Db;

/// Runs `$body` with `$pool` the database's pool and `$sql` the query
/// text in its placeholder style (`?` for SQLite, `$1…` for PostgreSQL):
/// the body is compiled once per database.
macro_rules! on_db {
    ($db:expr, $sql:expr, |$pool:ident, $s:ident| $body:expr) => {
        match $db {
            Db::Sqlite($pool) => {
                let $s: &str = $sql;
                $body
            }
            Db::Postgres($pool) => {
                let numbered = numbered($sql);
                let $s: &str = &numbered;
                $body
            }
        }
    };
}

/// `?` placeholders as `$1`, `$2`, … (none appear inside literals here).
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

fn json_list(models: &[String]) -> String {
    serde_json::to_string(models).unwrap_or_else(|_| "[]".into())
}

fn limits(
    models: &str,
    max_budget: Option<f64>,
    duration: Option<String>,
    rpm: Option<i64>,
    tpm: Option<i64>,
) -> Limits {
    Limits {
        models: serde_json::from_str(models).unwrap_or_default(),
        max_budget,
        budget_duration: duration.and_then(|d| Period::parse(&d).ok()),
        rpm_limit: rpm.and_then(|n| u64::try_from(n).ok()),
        tpm_limit: tpm.and_then(|n| u64::try_from(n).ok()),
    }
}

fn count(n: Option<u64>) -> Option<i64> {
    n.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

type KeyRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    Option<f64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    String,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
);

const KEY_COLUMNS: &str = "id, name, key_hash, hint, team_id, models, max_budget, budget_duration, \
    rpm_limit, tpm_limit, expires_at, metadata, created_at, updated_at, rotated_at, revoked_at";

fn key_of(r: KeyRow) -> VirtualKey {
    VirtualKey {
        id: r.0,
        name: r.1,
        hash: r.2,
        hint: r.3,
        team_id: r.4,
        limits: limits(&r.5, r.6, r.7, r.8, r.9),
        expires_at: r.10.map(time),
        metadata: serde_json::from_str(&r.11).unwrap_or(Value::Null),
        created_at: time(r.12),
        updated_at: time(r.13),
        rotated_at: r.14.map(time),
        revoked_at: r.15.map(time),
        source: Source::Api,
    }
}

type TeamRow = (
    String,
    String,
    String,
    Option<f64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    String,
    i64,
    i64,
    Option<i64>,
);

const TEAM_COLUMNS: &str = "id, name, models, max_budget, budget_duration, rpm_limit, tpm_limit, \
    metadata, created_at, updated_at, deleted_at";

fn team_of(r: TeamRow) -> Team {
    Team {
        id: r.0,
        name: r.1,
        limits: limits(&r.2, r.3, r.4, r.5, r.6),
        metadata: serde_json::from_str(&r.7).unwrap_or(Value::Null),
        created_at: time(r.8),
        updated_at: time(r.9),
        deleted_at: r.10.map(time),
        source: Source::Api,
    }
}

/// Inserts a key, or replaces the row with its id.
pub async fn put_key(db: &Db, k: &VirtualKey) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO yallmp_keys ({KEY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, key_hash = excluded.key_hash, \
         hint = excluded.hint, team_id = excluded.team_id, models = excluded.models, \
         max_budget = excluded.max_budget, budget_duration = excluded.budget_duration, \
         rpm_limit = excluded.rpm_limit, tpm_limit = excluded.tpm_limit, \
         expires_at = excluded.expires_at, metadata = excluded.metadata, \
         updated_at = excluded.updated_at, rotated_at = excluded.rotated_at, \
         revoked_at = excluded.revoked_at"
    );
    on_db!(db, &sql, |pool, s| {
        sqlx::query(s)
            .bind(&k.id)
            .bind(&k.name)
            .bind(&k.hash)
            .bind(&k.hint)
            .bind(&k.team_id)
            .bind(json_list(&k.limits.models))
            .bind(k.limits.max_budget)
            .bind(k.limits.budget_duration.map(String::from))
            .bind(count(k.limits.rpm_limit))
            .bind(count(k.limits.tpm_limit))
            .bind(k.expires_at.map(ms))
            .bind(k.metadata.to_string())
            .bind(ms(k.created_at))
            .bind(ms(k.updated_at))
            .bind(k.rotated_at.map(ms))
            .bind(k.revoked_at.map(ms))
            .execute(pool)
            .await
            .map(|_| ())
    })
}

/// Inserts a team, or replaces the row with its id.
pub async fn put_team(db: &Db, t: &Team) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO yallmp_teams ({TEAM_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, models = excluded.models, \
         max_budget = excluded.max_budget, budget_duration = excluded.budget_duration, \
         rpm_limit = excluded.rpm_limit, tpm_limit = excluded.tpm_limit, \
         metadata = excluded.metadata, updated_at = excluded.updated_at, \
         deleted_at = excluded.deleted_at"
    );
    on_db!(db, &sql, |pool, s| {
        sqlx::query(s)
            .bind(&t.id)
            .bind(&t.name)
            .bind(json_list(&t.limits.models))
            .bind(t.limits.max_budget)
            .bind(t.limits.budget_duration.map(String::from))
            .bind(count(t.limits.rpm_limit))
            .bind(count(t.limits.tpm_limit))
            .bind(t.metadata.to_string())
            .bind(ms(t.created_at))
            .bind(ms(t.updated_at))
            .bind(t.deleted_at.map(ms))
            .execute(pool)
            .await
            .map(|_| ())
    })
}

/// Every key (revoked ones too: their spend and records stay).
pub async fn keys(db: &Db) -> Result<Vec<VirtualKey>, sqlx::Error> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM yallmp_keys ORDER BY created_at LIMIT 100000");
    let rows: Vec<KeyRow> = on_db!(db, &sql, |pool, s| sqlx::query_as(s)
        .fetch_all(pool)
        .await?);
    Ok(rows.into_iter().map(key_of).collect())
}

/// Every team that is not deleted.
pub async fn teams(db: &Db) -> Result<Vec<Team>, sqlx::Error> {
    let sql = format!(
        "SELECT {TEAM_COLUMNS} FROM yallmp_teams WHERE deleted_at IS NULL ORDER BY created_at LIMIT 100000"
    );
    let rows: Vec<TeamRow> = on_db!(db, &sql, |pool, s| sqlx::query_as(s)
        .fetch_all(pool)
        .await?);
    Ok(rows.into_iter().map(team_of).collect())
}

/// A cheap fingerprint of both tables: when it changes, reload them.
pub async fn version(db: &Db) -> Result<(i64, i64), sqlx::Error> {
    let sql = "SELECT (SELECT COALESCE(MAX(updated_at), 0) FROM yallmp_keys) + \
               (SELECT COALESCE(MAX(updated_at), 0) FROM yallmp_teams), \
               (SELECT COUNT(*) FROM yallmp_keys) + (SELECT COUNT(*) FROM yallmp_teams)";
    on_db!(db, sql, |pool, s| sqlx::query_as::<_, (i64, i64)>(s)
        .fetch_one(pool)
        .await)
}

/// Which column a spend total is summed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner {
    Key,
    Team,
}

/// The logged cost of a key's (by id) or team's (by name) requests since
/// `since`.
pub async fn spent_since(
    db: &Db,
    owner: Owner,
    who: &str,
    since: DateTime<Utc>,
) -> Result<f64, sqlx::Error> {
    let column = match owner {
        Owner::Key => "key_id",
        Owner::Team => "team",
    };
    let sql = format!(
        "SELECT CAST(COALESCE(SUM(cost_usd), 0) AS DOUBLE PRECISION) FROM requests \
         WHERE {column} = ? AND started_at >= ?"
    );
    match db {
        Db::Sqlite(pool) => {
            let sql = sql.replace("DOUBLE PRECISION", "REAL");
            sqlx::query_as::<_, (f64,)>(&sql)
                .bind(who)
                .bind(since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .fetch_one(pool)
                .await
                .map(|r| r.0)
        }
        Db::Postgres(pool) => sqlx::query_as::<_, (f64,)>(&numbered(&sql))
            .bind(who)
            .bind(since)
            .fetch_one(pool)
            .await
            .map(|r| r.0),
    }
}

/// What a spend report is grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Key,
    Team,
    Model,
    Day,
}

/// One row of a spend report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SpendRow {
    /// The key's name, the team, the model or the day (`YYYY-MM-DD`, UTC);
    /// `null` for requests without one (no virtual key, no team).
    pub group: Option<String>,
    /// The key's id, when grouped by key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    /// `null` when no request of the group had a known price.
    pub cost_usd: Option<f64>,
}

/// At most this many groups in a report (the costliest first).
pub const REPORT_ROWS: i64 = 1000;

/// Requests, tokens and cost between `since` and `until`, by `group`.
pub async fn spend_report(
    db: &Db,
    group: GroupBy,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<SpendRow>, sqlx::Error> {
    let sqlite = matches!(db, Db::Sqlite(_));
    let (key, label) = match group {
        GroupBy::Key => ("key_id", "MAX(key_name)"),
        GroupBy::Team => ("team", "team"),
        GroupBy::Model => ("model", "model"),
        GroupBy::Day if sqlite => ("substr(started_at, 1, 10)", "substr(started_at, 1, 10)"),
        GroupBy::Day => (
            "to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
            "to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        ),
    };
    let order = if group == GroupBy::Day {
        "1 ASC".to_string()
    } else {
        "COALESCE(SUM(cost_usd), 0) DESC, COUNT(*) DESC".to_string()
    };
    let int = if sqlite { "INTEGER" } else { "BIGINT" };
    let float = if sqlite { "REAL" } else { "DOUBLE PRECISION" };
    let sql = format!(
        "SELECT {key}, {label}, CAST(COUNT(*) AS {int}), CAST(COALESCE(SUM(prompt_tokens), 0) AS {int}), \
         CAST(COALESCE(SUM(completion_tokens), 0) AS {int}), CAST(COALESCE(SUM(total_tokens), 0) AS {int}), \
         CAST(SUM(cost_usd) AS {float}) \
         FROM requests WHERE started_at >= ? AND started_at < ? GROUP BY {key} ORDER BY {order} LIMIT {REPORT_ROWS}"
    );
    type Raw = (
        Option<String>,
        Option<String>,
        i64,
        i64,
        i64,
        i64,
        Option<f64>,
    );
    let rows: Vec<Raw> = match db {
        Db::Sqlite(pool) => {
            let t = |d: DateTime<Utc>| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            sqlx::query_as(&sql)
                .bind(t(since))
                .bind(t(until))
                .fetch_all(pool)
                .await?
        }
        Db::Postgres(pool) => {
            sqlx::query_as(&numbered(&sql))
                .bind(since)
                .bind(until)
                .fetch_all(pool)
                .await?
        }
    };
    Ok(rows
        .into_iter()
        .map(|r| SpendRow {
            key_id: (group == GroupBy::Key).then(|| r.0.clone()).flatten(),
            group: r.1,
            requests: r.2,
            prompt_tokens: r.3,
            completion_tokens: r.4,
            total_tokens: r.5,
            cost_usd: r.6,
        })
        .collect())
}

/// One logged request, as a spend log lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendLog {
    pub id: String,
    pub started_at: DateTime<Utc>,
    pub latency_ms: f64,
    pub path: String,
    pub model: Option<String>,
    pub status: Option<i64>,
    pub cost_usd: Option<f64>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
    pub key_id: Option<String>,
    pub key_name: Option<String>,
    pub team: Option<String>,
}

/// A spend log's row as read: the id, the start (text in SQLite), the rest.
type SqlRow<T> = (
    String,
    T,
    f64,
    String,
    Option<String>,
    Option<i64>,
    Option<f64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// A spend log's row, its start already read.
fn spend_log<T>(r: SqlRow<T>, started_at: DateTime<Utc>) -> SpendLog {
    SpendLog {
        id: r.0,
        started_at,
        latency_ms: r.2,
        path: r.3,
        model: r.4,
        status: r.5,
        cost_usd: r.6,
        prompt_tokens: r.7,
        completion_tokens: r.8,
        total_tokens: r.9,
        key_id: r.10,
        key_name: r.11,
        team: r.12,
    }
}

/// At most this many requests in a spend log (the newest first).
pub const SPEND_LOG_ROWS: i64 = 1000;

/// The requests between `since` and `until` (of the key `key_id` when
/// given), newest first, at most [`SPEND_LOG_ROWS`].
pub async fn spend_logs(
    db: &Db,
    key_id: Option<&str>,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<SpendLog>, sqlx::Error> {
    let sqlite = matches!(db, Db::Sqlite(_));
    let int = if sqlite { "INTEGER" } else { "BIGINT" };
    let by_key = if key_id.is_some() {
        " AND key_id = ?"
    } else {
        ""
    };
    let sql = format!(
        "SELECT id, started_at, latency_ms, path, model, CAST(status AS {int}), cost_usd, \
         CAST(prompt_tokens AS {int}), CAST(completion_tokens AS {int}), CAST(total_tokens AS {int}), \
         key_id, key_name, team FROM requests WHERE started_at >= ? AND started_at < ?{by_key} \
         ORDER BY started_at DESC LIMIT {SPEND_LOG_ROWS}"
    );
    match db {
        Db::Sqlite(pool) => {
            let t = |d: DateTime<Utc>| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let mut q = sqlx::query_as::<_, SqlRow<String>>(&sql)
                .bind(t(since))
                .bind(t(until));
            if let Some(k) = key_id {
                q = q.bind(k);
            }
            Ok(q.fetch_all(pool)
                .await?
                .into_iter()
                .filter_map(|r| {
                    let at = DateTime::parse_from_rfc3339(&r.1).ok()?.with_timezone(&Utc);
                    Some(spend_log(r, at))
                })
                .collect())
        }
        Db::Postgres(pool) => {
            let sql = numbered(&sql);
            let mut q = sqlx::query_as::<_, SqlRow<DateTime<Utc>>>(&sql)
                .bind(since)
                .bind(until);
            if let Some(k) = key_id {
                q = q.bind(k);
            }
            Ok(q.fetch_all(pool)
                .await?
                .into_iter()
                .map(|r| {
                    let at = r.1;
                    spend_log(r, at)
                })
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(numbered("a = ? AND b = ?"), "a = $1 AND b = $2");
    }
}
