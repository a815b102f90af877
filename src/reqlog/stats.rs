//! Time series over the request log for the admin overview: per bucket
//! (a minute, or wider for longer ranges), the request count, the error
//! rate and p50/p95 latency, overall and per model, and totals of each. The rows of the range
//! are read once through the time index and aggregated here, the same way
//! on SQLite and PostgreSQL.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::db::Db;
use super::query::{Filter, QueryError, Sql};

/// Rows one series reads at most (newest first); past it the series says
/// it is partial.
pub const MAX_ROWS: usize = 200_000;

/// Points a series has at most: past the widest step below, the bucket
/// widens (whole days) to keep a series this short.
pub const MAX_POINTS: i64 = 120;
/// Models with a series of their own, the busiest first; the rest are
/// summed into one `(other)` entry.
pub const MAX_MODELS: usize = 50;

/// Bucket widths in seconds, the narrowest giving at most ~120 points.
const BUCKETS: &[i64] = &[
    60,
    300,
    900,
    1800,
    3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86_400,
    7 * 86_400,
];

/// The parameters of a series: the filter (its `since`/`until` are the
/// range; default the last hour).
pub fn parse(pairs: &[(String, String)]) -> Result<Filter, QueryError> {
    let mut f = Filter::default();
    for (k, v) in pairs {
        if !f.take(k, v)? {
            return Err(QueryError::Unknown(k.clone()));
        }
    }
    if let (Some(since), Some(until)) = (f.since, f.until)
        && since > until
    {
        return Err(QueryError::BadParam {
            param: "since",
            message: "must not be after `until`".into(),
        });
    }
    Ok(f)
}

/// The bucket width for a range.
pub fn bucket_for(span: Duration) -> i64 {
    let secs = span.num_seconds().max(1);
    BUCKETS
        .iter()
        .copied()
        .find(|b| secs / b <= MAX_POINTS)
        .unwrap_or_else(|| {
            // Longer than 120 weeks: whole days, as many as keep the
            // series at MAX_POINTS.
            let days = ((secs / MAX_POINTS + 86_399) / 86_400).max(7);
            days * 86_400
        })
}

/// The entry the models past [`MAX_MODELS`] are summed into.
pub const OTHER: &str = "(other)";

#[derive(Default)]
struct Acc {
    count: u64,
    errors: u64,
    latencies: Vec<f64>,
}

impl Acc {
    fn add(&mut self, latency: f64, error: bool) {
        self.count += 1;
        self.errors += u64::from(error);
        self.latencies.push(latency);
    }

    fn merge(&mut self, other: Acc) {
        self.count += other.count;
        self.errors += other.errors;
        self.latencies.extend(other.latencies);
    }

    fn point(&mut self, t: i64) -> Value {
        self.latencies.sort_by(f64::total_cmp);
        json!({
            "t": DateTime::from_timestamp(t, 0).map(|d| super::query::sqlite_time(&d)),
            "count": self.count,
            "errors": self.errors,
            "error_rate": if self.count == 0 { 0.0 } else { self.errors as f64 / self.count as f64 },
            "p50_ms": percentile(&self.latencies, 0.50),
            "p95_ms": percentile(&self.latencies, 0.95),
        })
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The series for a filter.
pub async fn series(db: &Db, mut filter: Filter) -> Result<Value, QueryError> {
    let until = filter.until.unwrap_or_else(Utc::now);
    let since = filter.since.unwrap_or(until - Duration::hours(1));
    filter.since = Some(since);
    filter.until = Some(until);
    let bucket = bucket_for(until - since);
    let mut sql = Sql::new(
        db,
        // A model name is whatever a client asked for: 200 characters
        // of it are enough to tell series apart and bound each row.
        "SELECT started_at, substr(model, 1, 200), latency_ms, outcome FROM requests",
    );
    sql.filter(&filter, None)?;
    sql.push(&format!(
        " ORDER BY started_at DESC, id DESC LIMIT {}",
        MAX_ROWS + 1
    ));
    let rows = sql.fetch_all(db).await?;
    let partial = rows.len() > MAX_ROWS;
    let first = since.timestamp().div_euclid(bucket) * bucket;
    let mut total: BTreeMap<i64, Acc> = BTreeMap::new();
    let mut per_model: BTreeMap<String, BTreeMap<i64, Acc>> = BTreeMap::new();
    let mut all = Acc::default();
    let mut model_totals: BTreeMap<String, Acc> = BTreeMap::new();
    for r in rows.iter().take(MAX_ROWS) {
        let Ok(t) = DateTime::parse_from_rfc3339(&r.time(0)) else {
            continue;
        };
        let b = t.timestamp().div_euclid(bucket) * bucket;
        let latency = r.float(2).unwrap_or(0.0);
        let error = r.str(3).as_deref() != Some("ok");
        total.entry(b).or_default().add(latency, error);
        all.add(latency, error);
        let model = r.str(1).unwrap_or_else(|| "(none)".into());
        model_totals
            .entry(model.clone())
            .or_default()
            .add(latency, error);
        per_model
            .entry(model)
            .or_default()
            .entry(b)
            .or_default()
            .add(latency, error);
    }
    // The busiest models keep their own series; the rest are summed.
    if per_model.len() > MAX_MODELS {
        let mut by_count: Vec<(u64, String)> = model_totals
            .iter()
            .map(|(k, a)| (a.count, k.clone()))
            .collect();
        by_count.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let mut other = BTreeMap::<i64, Acc>::new();
        let mut other_total = Acc::default();
        for (_, name) in by_count.into_iter().skip(MAX_MODELS) {
            if let Some(series) = per_model.remove(&name) {
                for (b, acc) in series {
                    other.entry(b).or_default().merge(acc);
                }
            }
            if let Some(acc) = model_totals.remove(&name) {
                other_total.merge(acc);
            }
        }
        per_model.insert(OTHER.to_string(), other);
        model_totals.insert(OTHER.to_string(), other_total);
    }
    // Every bucket of the range, empty ones included, so charts have a
    // time axis without gaps.
    let points = |m: &mut BTreeMap<i64, Acc>| -> Vec<Value> {
        let mut out = Vec::new();
        let mut b = first;
        while b <= until.timestamp() {
            out.push(m.entry(b).or_default().point(b));
            b += bucket;
        }
        out
    };
    let series = points(&mut total);
    let models: serde_json::Map<String, Value> = per_model
        .iter_mut()
        .map(|(k, m)| (k.clone(), json!(points(m))))
        .collect();
    Ok(json!({
        "since": super::query::sqlite_time(&since),
        "until": super::query::sqlite_time(&until),
        "bucket_seconds": bucket,
        "partial": partial,
        "totals": all.point(first),
        "series": series,
        "models": models,
        "model_totals": model_totals
            .iter_mut()
            .map(|(k, a)| (k.clone(), a.point(first)))
            .collect::<serde_json::Map<String, Value>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_percentiles() {
        assert_eq!(bucket_for(Duration::hours(1)), 60);
        assert_eq!(bucket_for(Duration::hours(2)), 60);
        assert_eq!(bucket_for(Duration::hours(6)), 300);
        assert_eq!(bucket_for(Duration::days(1)), 900);
        assert_eq!(bucket_for(Duration::days(365)), 7 * 86_400);
        // Any range, however long, has at most MAX_POINTS (+1) buckets.
        for span in [
            Duration::days(7 * 121),
            Duration::days(365 * 10),
            Duration::milliseconds(253_402_300_799_999 + 62_135_596_800_000),
        ] {
            let b = bucket_for(span);
            assert!(
                b % 86_400 == 0 && span.num_seconds() / b <= MAX_POINTS,
                "{span} {b}"
            );
        }
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.95), Some(95.0));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[7.0], 0.95), Some(7.0));
    }
}
