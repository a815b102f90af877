//! The in-process store: one bounded [`TtlStore`] per configured model
//! (a wildcard's pattern, not each name clients ask for under it;
//! `max_entries` each), with the backend's TTL per entry. It is
//! also the write-through front of the database and Redis stores, so the
//! next turn of a conversation finds its reasoning without a round trip.

use std::sync::Arc;
use std::time::Duration;

use super::Entry;
use super::keys::Key;
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

    /// The same turn under each of its keys (one `Arc`, no copies).
    pub async fn put(&self, keys: &[Key], entry: Arc<Entry>, ttl: Duration) {
        for k in keys {
            self.store.put(*k, entry.clone(), ttl).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_expire_after_their_ttl() {
        let m = MemoryStore::new(10);
        let e = Arc::new(Entry {
            reasoning: "r".into(),
            signature: None,
            source: "openai:m".into(),
        });
        m.put(
            &[Key([1; 32]), Key([2; 32])],
            e.clone(),
            Duration::from_millis(50),
        )
        .await;
        m.put(&[Key([3; 32])], e, Duration::from_secs(60)).await;
        assert_eq!(m.get(&Key([2; 32])).await.unwrap().reasoning, "r");
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(m.get(&Key([1; 32])).await.is_none());
        assert!(m.get(&Key([3; 32])).await.is_some());
    }
}
