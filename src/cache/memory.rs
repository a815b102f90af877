//! The in-process store: `moka`'s concurrent cache, bounded by entry count
//! (least recently and least frequently used go first) with a TTL per
//! entry, which a request's `cache: {ttl: N}` needs. moka is lock-free on
//! reads, async-aware (the `future` flavour never blocks a runtime thread),
//! and well maintained; `quick_cache`, the lighter choice, has no per-entry
//! expiry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;

use super::entry::Entry;
use super::key::Key;

/// A value and how long it lives: moka's per-entry expiry reads `ttl`.
/// Shared with interleaved thinking's memory store.
#[derive(Clone)]
pub(crate) struct Held<V> {
    pub(crate) entry: Arc<V>,
    pub(crate) ttl: Duration,
}

/// Expiry from each entry's own `ttl`, renewed when it is replaced.
pub(crate) struct PerEntry;

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

pub struct MemoryStore {
    cache: Cache<Key, Held<Entry>>,
}

impl MemoryStore {
    pub fn new(max_entries: u64) -> MemoryStore {
        MemoryStore {
            cache: Cache::builder()
                .max_capacity(max_entries)
                .expire_after(PerEntry)
                .build(),
        }
    }

    pub async fn get(&self, key: &Key) -> Option<Arc<Entry>> {
        self.cache.get(key).await.map(|h| h.entry)
    }

    pub async fn put(&self, key: Key, entry: Arc<Entry>, ttl: Duration) {
        self.cache.insert(key, Held { entry, ttl }).await;
    }

    /// Removes every entry, or those of one model; returns how many.
    pub async fn invalidate(&self, model: Option<&str>) -> u64 {
        let keys: Vec<Arc<Key>> = self
            .cache
            .iter()
            .filter(|(k, _)| model.is_none_or(|m| &*k.model == m))
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

    /// Drops everything (the local fallback, once Redis is back).
    pub fn clear(&self) {
        self.cache.invalidate_all();
    }

    /// Entries held (approximate: moka counts lazily).
    pub fn len(&self) -> u64 {
        self.cache.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::Stored;

    fn key(model: &str, n: u8) -> Key {
        Key {
            model: Arc::from(model),
            digest: [n; 32],
        }
    }

    fn entry() -> Arc<Entry> {
        Arc::new(Entry {
            status: 200,
            content_type: None,
            stored: Stored::Body(bytes::Bytes::from_static(b"{}")),
        })
    }

    #[tokio::test]
    async fn ttl_per_entry_and_invalidation_by_model() {
        let m = MemoryStore::new(100);
        m.put(key("a", 1), entry(), Duration::from_millis(50)).await;
        m.put(key("a", 2), entry(), Duration::from_secs(60)).await;
        m.put(key("b", 1), entry(), Duration::from_secs(60)).await;
        assert!(m.get(&key("a", 1)).await.is_some());
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(m.get(&key("a", 1)).await.is_none(), "expired");
        assert!(m.get(&key("a", 2)).await.is_some());
        assert_eq!(m.invalidate(Some("a")).await, 1);
        assert!(m.get(&key("b", 1)).await.is_some());
        assert_eq!(m.invalidate(None).await, 1);
        assert!(m.get(&key("b", 1)).await.is_none());
    }
}
