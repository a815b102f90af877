//! The admin API over the request log (`/admin/api/...`): the list with
//! filters and cursor paging, one record in full, the stats series, replay
//! of a logged request through this proxy, and the models with their
//! backends' health for the UI. Reads go to the read-only pool; secrets
//! stay as the log stored them (masked).

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::StatusCode;
use serde_json::{Value, json};

use super::Shared;
use super::error::json_error;
use crate::reqlog::db::Db;
use crate::reqlog::query::{self, PageRequest, QueryError};

/// What the log endpoints can answer besides data.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error(
        "the request log has no database (proxy_settings.logging.database is off): nothing to browse"
    )]
    NoDatabase,
    #[error("no logged request with id `{0}`")]
    NotFound(String),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("{0}")]
    Replay(String),
    #[error("the replayed request failed: {0}")]
    ReplaySend(String),
}

impl IntoResponse for LogsError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            LogsError::NoDatabase => (StatusCode::SERVICE_UNAVAILABLE, "no_log_database"),
            LogsError::NotFound(_) => (StatusCode::NOT_FOUND, "log_not_found"),
            LogsError::Query(QueryError::Db(e)) => {
                tracing::warn!(error = %e, "admin API: reading the request log failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "log_read_failed")
            }
            LogsError::Query(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            LogsError::Replay(_) => (StatusCode::BAD_REQUEST, "replay_not_possible"),
            LogsError::ReplaySend(_) => (StatusCode::BAD_GATEWAY, "replay_failed"),
        };
        let kind = if status.is_server_error() {
            "server_error"
        } else {
            "invalid_request_error"
        };
        json_error(
            status,
            &json!({"error": {"message": self.to_string(), "type": kind, "code": code}}),
        )
    }
}

/// The query string as pairs (percent-decoded).
pub(super) fn pairs(raw: Option<&str>) -> Vec<(String, String)> {
    let Some(raw) = raw else { return Vec::new() };
    raw.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reader(state: &Shared) -> Result<&Db, LogsError> {
    state.log_reader.as_ref().ok_or(LogsError::NoDatabase)
}

/// `GET /admin/api/logs`: one page, newest first.
pub async fn list(
    State(state): State<Shared>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, LogsError> {
    let req = PageRequest::parse(&pairs(raw.as_deref()))?;
    let db = reader(&state)?;
    let page = query::list(db, &req).await?;
    Ok(Json(json!({
        "object": "list",
        "data": page.rows,
        "next_cursor": page.next_cursor,
        "limit": req.limit,
    })))
}

/// `GET /admin/api/logs/{id}`: the record in full, with the assembled
/// stream and a curl command that replays it against this proxy.
pub async fn get(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, LogsError> {
    let db = reader(&state)?;
    let mut v = query::fetch(db, &id)
        .await?
        .ok_or_else(|| LogsError::NotFound(id.clone()))?;
    if let Ok(Some(logged)) = db.fetch_request(&id).await {
        let opts = crate::replay::Options {
            base_url: Some(state.self_url.clone()),
            ..Default::default()
        };
        if let Ok(p) = crate::replay::prepare(&logged, &opts) {
            v["curl"] = json!(crate::replay::curl(&p));
        }
    }
    Ok(Json(v))
}

/// `GET /admin/api/stats`: requests per bucket, error rate, p50/p95
/// latency, overall and per model.
pub async fn stats(
    State(state): State<Shared>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, LogsError> {
    let filter = crate::reqlog::stats::parse(&pairs(raw.as_deref()))?;
    let db = reader(&state)?;
    Ok(Json(crate::reqlog::stats::series(db, filter).await?))
}

/// How long a replay may take.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(300);
/// The most of a replayed answer returned.
const REPLAY_MAX_BYTES: usize = 10 * 1024 * 1024;

/// Replay options: `{"model": "...", "stream": true|false}` (both optional).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayOptions {
    pub model: Option<String>,
    pub stream: Option<bool>,
}

/// `POST /admin/api/logs/{id}/replay`: sends the logged request through
/// this proxy again (as a new, logged request) and returns what came back.
pub async fn replay(
    State(state): State<Shared>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, LogsError> {
    let opts: ReplayOptions = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayOptions::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| LogsError::Replay(format!("body: {e}")))?
    };
    let db = reader(&state)?;
    let logged = db
        .fetch_request(&id)
        .await
        .map_err(QueryError::Db)?
        .ok_or_else(|| LogsError::NotFound(id.clone()))?;
    // The proxy's own client key when it needs one: the logged one is masked.
    let api_key = state
        .live
        .load()
        .config
        .auth
        .api_keys
        .first()
        .map(|k| k.expose().to_string());
    let mut p = crate::replay::prepare(
        &logged,
        &crate::replay::Options {
            base_url: Some(state.self_url.clone()),
            model: opts.model,
            stream: opts.stream,
            timeout: None,
            api_key,
        },
    )
    .map_err(|e| LogsError::Replay(e.to_string()))?;
    // A new request gets a new id (the same id would replace the record).
    p.headers
        .retain(|(k, _)| !k.eq_ignore_ascii_case(crate::upstream::REQUEST_ID.as_str()));
    let method = reqwest::Method::from_bytes(p.method.as_bytes())
        .map_err(|_| LogsError::Replay(format!("method `{}`", p.method)))?;
    let client = state
        .self_client
        .clone()
        .unwrap_or_else(|| state.upstream());
    let mut req = client.request(method, &p.url).body(p.body.clone());
    for (k, v) in &p.headers {
        req = req.header(k, v);
    }
    let started = std::time::Instant::now();
    let run = async {
        let resp = req
            .send()
            .await
            .map_err(|e| LogsError::ReplaySend(crate::upstream::error_chain(&e)))?;
        let status = resp.status().as_u16();
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let new_id = header(crate::upstream::REQUEST_ID.as_str());
        let content_type = header("content-type");
        let mut body = Vec::new();
        let mut truncated = false;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| LogsError::ReplaySend(crate::upstream::error_chain(&e)))?;
            if body.len() + chunk.len() > REPLAY_MAX_BYTES {
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Ok::<_, LogsError>((status, new_id, content_type, body, truncated))
    };
    let (status, new_id, content_type, body, truncated) = tokio::time::timeout(REPLAY_TIMEOUT, run)
        .await
        .map_err(|_| LogsError::ReplaySend(format!("no answer within {REPLAY_TIMEOUT:?}")))??;
    let text = String::from_utf8_lossy(&body).into_owned();
    let is_stream = content_type
        .as_deref()
        .is_some_and(|c| c.starts_with("text/event-stream"));
    let assembled = is_stream.then(|| {
        let frames: Vec<Value> = text
            .split_inclusive("\n\n")
            .map(|f| json!({"t_ms": 0.0, "data": f}))
            .collect();
        crate::reqlog::assemble::assemble(&frames)
    });
    Ok(Json(json!({
        "replayed": id,
        "id": new_id,
        "status": status,
        "content_type": content_type,
        "stream": is_stream,
        "latency_ms": started.elapsed().as_secs_f64() * 1000.0,
        "body": serde_json::from_str::<Value>(&text).ok(),
        "body_text": text,
        "body_truncated": truncated,
        "assembled": assembled,
    })))
}

/// `GET /admin/api/models`: every model as the admin API shows it (source,
/// protected, keys masked) with each backend's health from the router.
pub async fn models(State(state): State<Shared>) -> Json<Value> {
    let live = state.live.load();
    let data: Vec<Value> = live
        .config
        .models
        .iter()
        .map(|m| {
            let mut v = super::admin::model_json(m);
            if let Some(list) = v["backends"].as_array_mut() {
                for (shown, b) in list.iter_mut().zip(&m.backends) {
                    shown["health"] = serde_json::to_value(state.backends.get(b).snapshot())
                        .unwrap_or(Value::Null);
                }
            }
            v
        })
        .collect();
    Json(json!({
        "object": "list",
        "data": data,
        "admin_password_set": live.config.auth.admin_password.is_some(),
        "log_database": state.log_reader.is_some(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_query_strings() {
        assert_eq!(
            pairs(Some("q=a+b%20c&model=m%231&x")),
            vec![
                ("q".into(), "a b c".into()),
                ("model".into(), "m#1".into()),
                ("x".into(), String::new())
            ]
        );
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(decode("%E2%9C%93"), "✓");
    }
}
