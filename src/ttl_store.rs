//! A bounded in-process store with a TTL per entry, shared by the response
//! cache (`cache::memory`) and interleaved thinking (`thinking::memory`).
//!
//! It is `moka`'s concurrent cache, bounded by entry count (least recently
//! and least frequently used go first) with an expiry read from each entry,
//! which a request's `cache: {ttl: N}` and each backend's thinking TTL
//! need. moka is lock-free on reads, async-aware (the `future` flavour
//! never blocks a runtime thread), and well maintained; `quick_cache`, the
//! lighter choice, has no per-entry expiry. Values are held as `Arc`s: a
//! hit is a reference count, not a copy.

use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;

/// A value and how long it lives: moka's per-entry expiry reads `ttl`.
struct Held<V> {
    value: Arc<V>,
    ttl: Duration,
}

// By hand: a derive would ask `V: Clone`, and only the `Arc` is cloned.
impl<V> Clone for Held<V> {
    fn clone(&self) -> Self {
        Held {
            value: self.value.clone(),
            ttl: self.ttl,
        }
    }
}

/// Expiry from each entry's own `ttl`, renewed when it is replaced.
struct PerEntry;

impl<K, V> Expiry<K, Held<V>> for PerEntry {
    fn expire_after_create(&self, _: &K, held: &Held<V>, _: Instant) -> Option<Duration> {
        Some(held.ttl)
    }
    fn expire_after_update(
        &self,
        _: &K,
        held: &Held<V>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(held.ttl)
    }
}

/// At most `max_entries` values, each expiring after its own TTL.
pub struct TtlStore<K, V> {
    cache: Cache<K, Held<V>>,
}

impl<K, V> TtlStore<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    pub fn new(max_entries: u64) -> Self {
        TtlStore {
            cache: Cache::builder()
                .max_capacity(max_entries)
                .expire_after(PerEntry)
                .build(),
        }
    }

    pub async fn get(&self, key: &K) -> Option<Arc<V>> {
        self.cache.get(key).await.map(|h| h.value)
    }

    /// Stores `value` under `key` for `ttl` (replacing any value there,
    /// and its expiry).
    pub async fn put(&self, key: K, value: Arc<V>, ttl: Duration) {
        self.cache.insert(key, Held { value, ttl }).await;
    }

    /// Removes every entry whose key `matches`; returns how many.
    pub async fn remove_where(&self, matches: impl Fn(&K) -> bool) -> u64 {
        let keys: Vec<Arc<K>> = self
            .cache
            .iter()
            .filter(|(k, _)| matches(k))
            .map(|(k, _)| k)
            .collect();
        let mut removed = 0;
        for k in keys {
            if self.cache.remove(&*k).await.is_some() {
                removed += 1;
            }
        }
        removed
    }

    /// Drops everything.
    pub fn clear(&self) {
        self.cache.invalidate_all();
    }

    /// Entries held (approximate: moka counts lazily).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }
}
