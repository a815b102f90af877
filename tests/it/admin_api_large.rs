//! The request log API on a 100,000-row log, on SQLite and (when
//! `DATABASE_URL_POSTGRES` is set) PostgreSQL: the query plan of a page is a
//! walk of the time index, pages join without gaps or duplicates, filters
//! and search work at that size, and a day's stats add up.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use yallmp::config::DatabaseTarget;
use yallmp::reqlog::db::Db;

use crate::support::*;

/// Rows inserted straight into the table: 100,000 over the last ~28 hours,
/// 3 models, every 10th an error, every 4th a stream.
const BIG: i64 = 100_000;

async fn fill_sqlite(db: &Db) {
    let Db::Sqlite(p) = db else { unreachable!() };
    sqlx::query(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {BIG}) \
         INSERT INTO requests (id, started_at, method, path, model, backend, status, outcome, stream, attempts_count, \
           ttfb_ms, latency_ms, prompt_tokens, completion_tokens, total_tokens, request_headers, request_body, attempts) \
         SELECT printf('big-%06d', i), strftime('%Y-%m-%dT%H:%M:%fZ', 'now', printf('-%d seconds', i)), 'POST', '/v1/chat/completions', \
           'model-' || (i % 3), 'model-' || (i % 3) || '#1', CASE WHEN i % 10 = 0 THEN 502 ELSE 200 END, \
           CASE WHEN i % 10 = 0 THEN 'all_failed' ELSE 'ok' END, (i % 4 = 0), 1, 5.0, 10.0 + (i % 100), 3, 2, 5, \
           '{{}}', '{{\"model\":\"m\",\"n\":' || i || '}}', '[]' FROM n"
    ))
    .execute(p)
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(p).await.unwrap();
}

async fn fill_postgres(db: &Db) {
    let Db::Postgres(p) = db else { unreachable!() };
    sqlx::query(&format!(
        "INSERT INTO requests (id, started_at, method, path, model, backend, status, outcome, stream, attempts_count, \
           ttfb_ms, latency_ms, prompt_tokens, completion_tokens, total_tokens, request_headers, request_body, request_body_text, attempts) \
         SELECT 'big-' || lpad(i::text, 6, '0'), now() - make_interval(secs => i), 'POST', '/v1/chat/completions', \
           'model-' || (i % 3), 'model-' || (i % 3) || '#1', CASE WHEN i % 10 = 0 THEN 502 ELSE 200 END, \
           CASE WHEN i % 10 = 0 THEN 'all_failed' ELSE 'ok' END, (i % 4 = 0), 1, 5.0, 10.0 + (i % 100), 3, 2, 5, \
           '{{}}'::jsonb, jsonb_build_object('model', 'm', 'n', i), '{{\"model\":\"m\",\"n\":' || i || '}}', '[]'::jsonb \
         FROM generate_series(1, {BIG}) AS i"
    ))
    .execute(p)
    .await
    .unwrap();
    sqlx::query("ANALYZE requests").execute(p).await.unwrap();
}

/// Pages through a 100,000-row log: every page is served by the time
/// index (the plan says so), pages join without gaps or duplicates, and a
/// page answers well within a generous bound.
async fn large_log(target: DatabaseTarget) {
    let db = Db::connect(&target).await.unwrap();
    db.migrate().await.unwrap();
    match &db {
        Db::Sqlite(_) => fill_sqlite(&db).await,
        Db::Postgres(_) => fill_postgres(&db).await,
    }
    assert_eq!(db.count().await.unwrap(), BIG);

    // The plan for the first page and a later one: the time index, no sort.
    use yallmp::reqlog::query::{Cursor, PageRequest, list_sql};
    let cursor = Cursor {
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        id: "big-000001".into(),
    }
    .encode();
    let pairs = |q: &[(&str, &str)]| -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    for q in [
        vec![],
        vec![("min_latency_ms", "100")],
        vec![("cursor", cursor.as_str())],
    ] {
        let req = PageRequest::parse(&pairs(&q)).unwrap();
        let plan = list_sql(&db, &req).unwrap().explain(&db).await.unwrap();
        assert!(plan.contains("requests_started_at"), "{q:?}: {plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{q:?}: {plan}");
        assert!(!plan.contains("Sort"), "{q:?}: {plan}");
    }

    let ok = Mock::start(Reply::Echo).await;
    let server = proxy_logging_to(
        &format!(
            "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\n",
            ok.url
        ),
        Some(target),
    )
    .await;
    let mut seen = HashSet::new();
    let mut last: Option<String> = None;
    let mut cursor: Option<String> = None;
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let q = match &cursor {
            Some(c) => format!("/admin/api/logs?limit=500&cursor={c}"),
            None => "/admin/api/logs?limit=500".to_string(),
        };
        let t = Instant::now();
        let page = get_json(&server, &q).await;
        slowest = slowest.max(t.elapsed());
        let rows = page["data"].as_array().unwrap();
        assert_eq!(rows.len(), 500);
        for r in rows {
            let id = r["id"].as_str().unwrap().to_string();
            if let Some(prev) = &last {
                // Newest first: ids were made in age order.
                assert!(id > *prev, "{id} after {prev}");
            }
            assert!(seen.insert(id.clone()), "{id} twice");
            last = Some(id);
        }
        cursor = Some(page["next_cursor"].as_str().unwrap().to_string());
    }
    assert_eq!(seen.len(), 10_000);
    // The 10,000 newest: big-000001 .. big-010000, none skipped.
    assert!(seen.contains("big-000001") && seen.contains("big-010000"));
    // Generous: a page of 500 from an index is milliseconds; a scan or a
    // sort of 100,000 rows in a debug build would be far slower.
    assert!(slowest < Duration::from_secs(3), "slowest page {slowest:?}");
    // Filters on the big log.
    let v = get_json(&server, "/admin/api/logs?model=model-1&status=5xx&limit=10").await;
    for r in v["data"].as_array().unwrap() {
        assert_eq!(
            (r["model"].as_str(), r["status"].as_i64()),
            (Some("model-1"), Some(502))
        );
    }
    assert_eq!(v["data"].as_array().unwrap().len(), 10);
    let v = get_json(&server, "/admin/api/logs?q=%22n%22%3A77777%7D").await;
    assert_eq!(v["data"][0]["id"], "big-077777");
    // A day's stats over the big log.
    let since = (chrono::Utc::now() - chrono::Duration::hours(24)).timestamp_millis();
    let st = get_json(&server, &format!("/admin/api/stats?since={since}")).await;
    assert_eq!(st["bucket_seconds"], 900);
    let count = st["totals"]["count"].as_u64().unwrap();
    assert!((86_000..=86_500).contains(&count), "{count}");
    let rate = st["totals"]["error_rate"].as_f64().unwrap();
    assert!((0.09..0.11).contains(&rate), "{rate}");
    assert_eq!(st["models"].as_object().unwrap().len(), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn large_log_on_sqlite() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("test-logs")
        .join(uuid::Uuid::new_v4().simple().to_string());
    large_log(DatabaseTarget::Sqlite {
        path: dir.join("big.db"),
    })
    .await;
}

#[tokio::test]
async fn large_log_on_postgres() {
    pg::with_fresh_database(|url| async move { large_log(pg::target(&url)).await }).await;
}
