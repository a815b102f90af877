//! Liveness.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::Shared;

/// `GET /healthz`: the process is up and serving.
pub async fn healthz(State(state): State<Shared>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
    }))
}
