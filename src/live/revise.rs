//! The next snapshot's config: the running one's inputs with a new
//! runtime-model overlay (the admin API, a reload, another instance's
//! change through PostgreSQL), and what changed between two configs. Here,
//! below the HTTP layer, because the model store follows other instances
//! with it too.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::config::overlay::Overlay;
use crate::config::{Config, ConfigError, ModelConfig};

/// Builds a config from the current one's inputs with a new overlay.
pub fn rebuild(current: &Config, overlay: &Overlay) -> Result<Config, ConfigError> {
    let o = &current.origin;
    let mut next = Config::from_yaml_with(&o.text, current.path.as_deref(), &o.env, Some(overlay))?;
    keep_startup_settings(current, &mut next);
    Ok(next)
}

/// What is read at start-up only: the listen address, TLS's file paths, the
/// log format and the request log's sinks stay as they are for the life of
/// the process.
pub fn keep_startup_settings(current: &Config, next: &mut Config) {
    next.server.host = current.server.host.clone();
    next.server.port = current.server.port;
    next.server.connections = current.server.connections;
    // The listener's TLS files (their contents are reloaded; the paths are
    // not) and the log's format.
    next.server.tls = current.server.tls.clone();
    next.log_format = current.log_format;
    next.logging = current.logging.clone();
    next.database = current.database.clone();
    next.cache = current.cache.clone();
}

/// A model's comparable form (keys included, never shown).
fn fingerprint(m: &ModelConfig) -> String {
    let backends: Vec<String> = m
        .backends
        .iter()
        .map(|b| format!("{b:?}|{}", b.api_key.as_ref().map_or("", |k| k.expose())))
        .collect();
    format!(
        "{:?}|{}|{:?}|{}",
        m.fallbacks,
        m.protected,
        m.source,
        backends.join(";")
    )
}

/// What changed between two configs: models added, removed, changed.
pub fn diff(old: &Config, new: &Config) -> Value {
    let old_names: HashSet<&str> = old.models.iter().map(|m| m.name.as_str()).collect();
    let new_names: HashSet<&str> = new.models.iter().map(|m| m.name.as_str()).collect();
    let added: Vec<&str> = new
        .models
        .iter()
        .map(|m| m.name.as_str())
        .filter(|n| !old_names.contains(n))
        .collect();
    let removed: Vec<&str> = old
        .models
        .iter()
        .map(|m| m.name.as_str())
        .filter(|n| !new_names.contains(n))
        .collect();
    let changed: Vec<&str> = new
        .models
        .iter()
        .filter_map(|m| {
            old.model(&m.name)
                .filter(|o| fingerprint(o) != fingerprint(m))
                .map(|_| m.name.as_str())
        })
        .collect();
    json!({"added": added, "removed": removed, "changed": changed})
}
