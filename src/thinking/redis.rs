//! `store: redis`: entries under `<redis_key_prefix>think:<key>` as JSON,
//! expiring with the backend's TTL (`SET … PX`), shared by every instance.
//! While Redis is away, turns are kept in (and found from) each instance's
//! memory store only.

use std::sync::Arc;
use std::time::Duration;

use super::Entry;
use super::keys::Key;
use crate::redis::SharedRedis;

pub struct RedisStore {
    redis: Arc<SharedRedis>,
}

impl RedisStore {
    pub fn new(redis: Arc<SharedRedis>) -> RedisStore {
        RedisStore { redis }
    }

    fn name(&self, k: &Key) -> String {
        self.redis.key(&format!("think:{}", k.hex()))
    }

    pub async fn get(&self, keys: &[Key]) -> Vec<(Key, Entry)> {
        if keys.is_empty() {
            return Vec::new();
        }
        let names: Vec<String> = keys.iter().map(|k| self.name(k)).collect();
        let values: Option<Vec<Option<String>>> = self
            .redis
            .call("thinking get", |mut c| async move {
                ::redis::cmd("MGET").arg(&names).query_async(&mut c).await
            })
            .await;
        values
            .unwrap_or_default()
            .into_iter()
            .zip(keys)
            .filter_map(|(v, k)| Some((*k, serde_json::from_str(&v?).ok()?)))
            .collect()
    }

    pub async fn put(&self, keys: &[Key], entry: &Entry, ttl: Duration) -> Result<(), String> {
        let value = serde_json::to_string(entry).map_err(|e| e.to_string())?;
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut pipe = ::redis::pipe();
        for k in keys {
            pipe.cmd("SET")
                .arg(self.name(k))
                .arg(&value)
                .arg("PX")
                .arg(ms)
                .ignore();
        }
        self.redis
            .call("thinking put", |mut c| async move {
                pipe.query_async::<()>(&mut c).await
            })
            .await
            .ok_or_else(|| "redis is not answering".to_string())
    }
}
