//! `proxy_settings.cache`: the response cache, as written (serde, with its
//! defaults) and resolved. Off unless asked for: the shipped config never
//! caches.

use std::time::Duration;

use super::errors::Errors;
use serde::{Deserialize, Serialize};

/// Where cached answers live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheBackend {
    /// In this process: bounded, per-entry TTL.
    #[default]
    Memory,
    /// In Redis (`proxy_settings.redis_url`), shared by every instance;
    /// in memory while Redis is away.
    Redis,
}

/// An endpoint whose answers may be cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheEndpoint {
    ChatCompletions,
    Embeddings,
    Responses,
}

/// `proxy_settings.cache` as written.
#[derive(Debug, Clone, Deserialize)]
pub struct RawCache {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub backend: CacheBackend,
    /// Seconds an answer is kept unless the request says otherwise.
    #[serde(default = "default_ttl")]
    pub ttl: f64,
    /// Entries kept in memory (the memory backend, and the Redis
    /// backend's local fallback); the least used go first.
    #[serde(default = "default_max_entries")]
    pub max_entries: u64,
    /// Answers larger than this (body, or a stream's frames together) are
    /// not cached.
    #[serde(default = "default_max_entry_bytes")]
    pub max_entry_bytes: u64,
    /// Key entries by the client's API key too, so clients never share
    /// answers. Off: one client's answer can serve another's identical
    /// request.
    #[serde(default)]
    pub key_by_client_key: bool,
    /// The endpoints whose answers are cached.
    #[serde(default = "default_endpoints")]
    pub endpoints: Vec<CacheEndpoint>,
}

impl Default for RawCache {
    fn default() -> Self {
        RawCache {
            enabled: false,
            backend: CacheBackend::default(),
            ttl: default_ttl(),
            max_entries: default_max_entries(),
            max_entry_bytes: default_max_entry_bytes(),
            key_by_client_key: false,
            endpoints: default_endpoints(),
        }
    }
}

fn default_ttl() -> f64 {
    600.0
}
fn default_max_entries() -> u64 {
    10_000
}
fn default_max_entry_bytes() -> u64 {
    1024 * 1024
}
fn default_endpoints() -> Vec<CacheEndpoint> {
    vec![
        CacheEndpoint::ChatCompletions,
        CacheEndpoint::Embeddings,
        CacheEndpoint::Responses,
    ]
}

/// The resolved cache settings. Read at start-up: a reload keeps them.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    pub enabled: bool,
    pub backend: CacheBackend,
    pub ttl: Duration,
    pub max_entries: u64,
    pub max_entry_bytes: usize,
    pub key_by_client_key: bool,
    pub endpoints: Vec<CacheEndpoint>,
}

impl Default for CacheSettings {
    fn default() -> Self {
        resolve(RawCache::default(), false, &mut Errors::default())
    }
}

/// Checks and resolves the block; `has_redis` says whether
/// `proxy_settings.redis_url` is set.
pub fn resolve(raw: RawCache, has_redis: bool, errors: &mut Errors) -> CacheSettings {
    const AT: &str = "proxy_settings.cache";
    if raw.enabled && raw.backend == CacheBackend::Redis && !has_redis {
        errors.at(
            format!("{AT}.backend"),
            "`redis` needs proxy_settings.redis_url (or use `backend: memory`)",
        );
    }
    let ttl = if raw.ttl.is_finite() && raw.ttl > 0.0 && raw.ttl < 1e9 {
        Duration::from_secs_f64(raw.ttl)
    } else {
        errors.at(
            format!("{AT}.ttl"),
            format!("must be a positive number of seconds, got {}", raw.ttl),
        );
        Duration::from_secs_f64(default_ttl())
    };
    if raw.max_entries == 0 {
        errors.at(format!("{AT}.max_entries"), "must be at least 1");
    }
    if raw.max_entry_bytes == 0 {
        errors.at(format!("{AT}.max_entry_bytes"), "must be at least 1");
    }
    let mut endpoints = raw.endpoints;
    endpoints.dedup();
    CacheSettings {
        enabled: raw.enabled,
        backend: raw.backend,
        ttl,
        max_entries: raw.max_entries.max(1),
        max_entry_bytes: usize::try_from(raw.max_entry_bytes).unwrap_or(usize::MAX),
        key_by_client_key: raw.key_by_client_key,
        endpoints,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_with_documented_defaults() {
        let c = CacheSettings::default();
        assert!(!c.enabled);
        assert_eq!(c.backend, CacheBackend::Memory);
        assert_eq!(c.ttl, Duration::from_secs(600));
        assert_eq!(c.max_entries, 10_000);
        assert!(!c.key_by_client_key);
        assert_eq!(c.endpoints.len(), 3);
    }

    #[test]
    fn redis_backend_needs_redis_url() {
        let raw: RawCache = serde_yaml::from_str("{enabled: true, backend: redis}").unwrap();
        let mut errors = Errors::default();
        resolve(raw.clone(), false, &mut errors);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("proxy_settings.cache.backend:"),
            "{errors:?}"
        );
        let mut errors = Errors::default();
        resolve(raw, true, &mut errors);
        assert!(errors.is_empty());
    }

    #[test]
    fn bad_numbers_name_their_key() {
        let raw: RawCache = serde_yaml::from_str("{ttl: 0, max_entries: 0}").unwrap();
        let mut errors = Errors::default();
        resolve(raw, false, &mut errors);
        assert!(
            errors[0].starts_with("proxy_settings.cache.ttl:"),
            "{errors:?}"
        );
        assert!(errors[1].starts_with("proxy_settings.cache.max_entries:"));
    }
}
