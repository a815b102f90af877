//! `POST /admin/config/reload` (and SIGHUP): the config file read again and
//! swapped in when valid; `GET /admin/config`: the effective config, keys
//! masked.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::{AdminError, model_json};
use crate::api::Shared;
use crate::config::{Config, ConfigError};
use crate::live::Live;
use crate::live::revise::{diff, keep_startup_settings, rebuild};

pub async fn reload(State(state): State<Shared>) -> Result<Json<Value>, AdminError> {
    reload_config(&state).await.map(Json)
}

/// Reads the config file again (with the runtime models) and swaps it in
/// when it is valid; else the running config stays. What
/// `POST /admin/config/reload` and SIGHUP do. The answer's body:
/// `{reloaded, changes, warnings}`.
pub async fn reload_config(state: &Shared) -> Result<Value, AdminError> {
    let _guard = state.admin_lock.lock().await;
    let current = state.live.load_full();
    let shared = match &state.model_store {
        Some(store) => store
            .load()
            .await
            .map_err(AdminError::Store)?
            .map(|(_, overlay)| overlay),
        None => None,
    };
    let config = match &current.config.path {
        // Reading files: off the serving thread.
        Some(path) => {
            let path = path.clone();
            let file = path.display().to_string();
            tokio::task::spawn_blocking(move || Config::load_with_overlay(&path, shared.as_ref()))
                .await
                .unwrap_or_else(|e| {
                    Err(ConfigError {
                        file,
                        errors: vec![format!("loading the config failed: {e}")],
                    })
                })
                .map(|mut c| {
                    keep_startup_settings(&current.config, &mut c);
                    c
                })
        }
        None => rebuild(
            &current.config,
            shared.as_ref().unwrap_or(&current.config.origin.overlay),
        ),
    }
    .map_err(AdminError::Reload)?;
    let changes = diff(&current.config, &config);
    let warnings = config.warnings.clone();
    let password = |c: &Config| {
        c.auth
            .admin_password
            .as_ref()
            .map(|p| p.expose().to_string())
    };
    if password(&current.config) != password(&config) {
        // Sessions stood for the old password.
        state.sessions.clear();
    }
    state.log.update_secrets(&config);
    let thinking_dropped = state.thinking.retain_configured(&config);
    let (declared_keys, declared_teams) = crate::keys::service::declared(&config.auth);
    state.live.store(Arc::new(Live::new(config)));
    state.keys.set_declared(declared_keys, declared_teams).await;
    tracing::info!(%changes, "config reloaded");
    if thinking_dropped > 0 {
        tracing::info!(
            stores = thinking_dropped,
            "interleaved thinking: memory stores of models no longer configured dropped"
        );
    }
    Ok(json!({"reloaded": true, "changes": changes, "warnings": warnings}))
}

pub async fn effective_config(State(state): State<Shared>) -> Json<Value> {
    let live = state.live.load();
    let c = &live.config;
    let models: Vec<Value> = c.models.iter().map(model_json).collect();
    Json(json!({
        "path": c.path.as_ref().map(|p| p.display().to_string()),
        "server": {
            "host": c.server.host, "port": c.server.port,
            "max_body_bytes": c.server.max_body_bytes,
            "max_response_bytes": c.server.max_response_bytes,
            "header_read_timeout": c.server.connections.header_read_timeout.map(|d| d.as_secs_f64()),
            "body_read_timeout": c.server.connections.body_read_timeout.map(|d| d.as_secs_f64()),
            "idle_timeout": c.server.connections.idle_timeout.map(|d| d.as_secs_f64()),
            "max_connections": c.server.connections.max_connections,
            "allowed_hosts": c.server.allowed_hosts,
            "tls": c.server.tls.as_ref().map(|t| json!({
                "cert": t.cert.display().to_string(),
                "key": t.key.display().to_string(),
            })),
            "shutdown_grace_period": c.server.shutdown_grace.as_secs_f64(),
            "workers": match c.server.workers {
                crate::config::Workers::PerThread(n) => json!(n),
                crate::config::Workers::Shared => json!("shared"),
            },
        },
        "enable_responses_endpoint": c.enable_responses_endpoint,
        "log_format": match c.log_format {
            crate::config::LogFormat::Plain => "plain",
            crate::config::LogFormat::Json => "json",
        },
        "router_settings": {
            "num_retries": c.router.num_retries,
            "retry_backoff_ms": c.router.retry_backoff.as_millis() as u64,
            "max_retry_after": c.router.max_retry_after.as_secs_f64(),
            "retry_policy": c.router.retry_policy,
            "model_group_retry_policy": &*c.router.model_group_retry_policy,
            "allowed_fails_policy": c.router.allowed_fails_policy,
        },
        "model_list": models,
        "logging": {
            "files": c.logging.files_dir.as_ref().map(|d| d.display().to_string()),
            "database": c.logging.database,
            "max_body_bytes": c.logging.max_body_bytes,
        },
        "database": c.database.target.describe(),
        "cache": {
            "enabled": c.cache.enabled, "backend": c.cache.backend,
            "ttl": c.cache.ttl.as_secs_f64(), "max_entries": c.cache.max_entries,
            "max_entry_bytes": c.cache.max_entry_bytes,
            "key_by_client_key": c.cache.key_by_client_key, "endpoints": c.cache.endpoints,
        },
        "streaming": {
            "max_event_bytes": c.streaming.max_event_bytes,
            "first_event_timeout": c.streaming.first_event_timeout.as_secs_f64(),
        },
        // As read at start-up (a reload does not change it); header values
        // (collector keys) are left out.
        "telemetry": {
            "enabled": c.telemetry.enabled,
            "endpoint": crate::config::mask_url_secret(&c.telemetry.endpoint),
            "headers": c.telemetry.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            "service_name": c.telemetry.service_name,
            "capture_content": c.telemetry.capture_content,
            "max_queue_size": c.telemetry.max_queue_size,
            "max_export_batch_size": c.telemetry.max_export_batch_size,
            "schedule_delay": c.telemetry.schedule_delay.as_secs_f64(),
            "export_timeout": c.telemetry.export_timeout.as_secs_f64(),
        },
        "auth": {
            "api_keys": c.auth.api_keys.len(),
            "admin_password_set": c.auth.admin_password.is_some(),
        },
        "rate_limits": {
            "global": {"rpm": c.rate_limits.global.rpm, "tpm": c.rate_limits.global.tpm},
            "per_key": {"rpm": c.rate_limits.per_key.rpm, "tpm": c.rate_limits.per_key.tpm},
        },
        "cors": c.cors.as_ref().map(|cors| json!({
            "allow_origins": if cors.allow_origins.is_empty() { vec!["*".to_string()] } else { cors.allow_origins.clone() },
            "allow_headers": cors.allow_headers,
            "allow_methods": cors.allow_methods,
            "max_age": cors.max_age.map(|d| d.as_secs_f64()),
        })),
        "warnings": c.warnings,
    }))
}
