//! Liveness (`/healthz`), readiness (`/health`: each model's backends and
//! their state, the database and Redis) and per-backend statistics
//! (`/stats`).

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Value, json};

use super::Shared;
use crate::router::state::Health;

/// `GET /healthz` (and `GET /`; `HEAD` of either answers the same with no
/// body): the process is up and serving.
pub async fn healthz(State(state): State<Shared>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
    }))
}

/// `GET /health`: whether this instance should get traffic. 503 while it
/// shuts down, or when no backend at all is in rotation (every one cooling
/// down or failing its health check) or no model is configured. The request
/// log's database and Redis are reported, but neither makes it unready:
/// the log waits for its database, and Redis has a local fallback.
pub async fn readiness(State(state): State<Shared>) -> Response {
    let live = state.live.load();
    let now = Instant::now();
    let mut usable_total = 0usize;
    let models: Vec<Value> = live
        .config
        .models
        .iter()
        .map(|m| {
            let backends: Vec<Value> = m
                .backends
                .iter()
                .map(|b| {
                    let s = state.backends.get(b);
                    let snap = s.snapshot();
                    let mut v = serde_json::to_value(&snap).unwrap_or(Value::Null);
                    v["name"] = json!(b.name);
                    v
                })
                .collect();
            let usable = m
                .backends
                .iter()
                .filter(|b| state.backends.get(b).health(now) == Health::Healthy)
                .count();
            usable_total += usable;
            json!({
                "model": m.name,
                "strategy": live.config.router.strategy.as_str(),
                "usable_backends": usable,
                "backends": backends,
            })
        })
        .collect();
    let mut reasons = Vec::new();
    if state.shutting_down.load(Ordering::Relaxed) {
        reasons.push("shutting down".to_string());
    }
    if live.config.models.is_empty() {
        reasons.push("no model is configured".to_string());
    } else if usable_total == 0 {
        reasons.push("no backend is in rotation".to_string());
    }
    let ready = reasons.is_empty();
    // The request log's sinks: `degraded` (with the error) while writes to
    // one fail; it recovers by itself once they succeed again.
    let log_stats = state.log.stats();
    let database = match state.log.database_reachable() {
        None => json!({"enabled": false}),
        Some(ok) => json!({
            "enabled": true,
            "reachable": ok,
            "status": if ok { "ok" } else { "degraded" },
            "error": log_stats.db_error(),
        }),
    };
    let log_files = if log_stats.files_on.load(Ordering::Relaxed) {
        log_stats.file_error().map_or_else(
            || json!({"enabled": true, "status": "ok"}),
            |e| json!({"enabled": true, "status": "degraded", "error": e}),
        )
    } else {
        json!({"enabled": false})
    };
    let redis = state
        .redis
        .as_ref()
        .map(|r| serde_json::to_value(r.status()).unwrap_or(Value::Null));
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "reasons": reasons,
        "models": models,
        "database": database,
        "log_files": log_files,
        "redis": redis,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /stats`: per backend, since start (or since the backend's name or
/// URL last changed): attempts, successes, failures by class, in flight,
/// latency and time-to-first-token percentiles over the last 1024 samples,
/// and tokens.
pub async fn stats(State(state): State<Shared>) -> Json<Value> {
    let live = state.live.load();
    let now = Instant::now();
    let backends: Vec<Value> = live
        .config
        .models
        .iter()
        .flat_map(|m| m.backends.iter())
        .map(|b| {
            let s = state.backends.get(b);
            let mut v = s.stats_json();
            v["name"] = json!(b.name);
            v["model"] = json!(b.model_name);
            v["state"] = json!(s.health(now));
            v
        })
        .collect();
    Json(json!({
        "uptime_seconds": state.started.elapsed().as_secs(),
        "backends": backends,
    }))
}
