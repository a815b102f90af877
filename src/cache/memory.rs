//! The response cache's in-process store: a [`TtlStore`] keyed by the
//! cache key, bounded by `max_entries`, each answer with its own TTL (a
//! request's `cache: {ttl: N}`); invalidation by model.

use std::sync::Arc;
use std::time::Duration;

use super::entry::Entry;
use super::key::Key;
use crate::ttl_store::TtlStore;

pub struct MemoryStore {
    store: TtlStore<Key, Entry>,
}

impl MemoryStore {
    pub fn new(max_entries: u64) -> MemoryStore {
        MemoryStore {
            store: TtlStore::new(max_entries),
        }
    }

    pub async fn get(&self, key: &Key) -> Option<Arc<Entry>> {
        self.store.get(key).await
    }

    pub async fn put(&self, key: Key, entry: Arc<Entry>, ttl: Duration) {
        self.store.put(key, entry, ttl).await;
    }

    /// Removes every entry, or those of one model; returns how many.
    pub async fn invalidate(&self, model: Option<&str>) -> u64 {
        self.store
            .remove_where(|k| model.is_none_or(|m| &*k.model == m))
            .await
    }

    /// Drops everything (the local fallback, once Redis is back).
    pub fn clear(&self) {
        self.store.clear();
    }

    /// Entries held (approximate: moka counts lazily).
    pub fn len(&self) -> u64 {
        self.store.entry_count()
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
