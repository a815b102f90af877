//! The Redis store: one key per entry, `PREFIX cache:MODEL:HEX`, set with
//! `SET .. PX ttl` so Redis expires it. Invalidation walks the model's (or
//! every) `cache:` key with `SCAN` and removes them with `UNLINK`, a page
//! at a time: an admin action, not a request path. Every call goes through
//! [`SharedRedis::call`], so a Redis that is away answers `None` at once.

use std::sync::Arc;
use std::time::Duration;

use super::entry::Entry;
use super::key::Key;
use crate::redis::SharedRedis;

/// Keys asked for per `SCAN` page.
const SCAN_PAGE: usize = 500;

pub struct RedisStore {
    redis: Arc<SharedRedis>,
}

impl RedisStore {
    pub fn new(redis: Arc<SharedRedis>) -> RedisStore {
        RedisStore { redis }
    }

    fn name(&self, key: &Key) -> String {
        self.redis
            .key(&format!("cache:{}:{}", key.model, key.hex()))
    }

    /// `Some(entry or miss)` when Redis answered, `None` when it did not.
    pub async fn get(&self, key: &Key) -> Option<Option<Entry>> {
        let name = self.name(key);
        let raw: Option<Vec<u8>> = self
            .redis
            .call("cache get", |mut c| async move {
                redis::cmd("GET").arg(name).query_async(&mut c).await
            })
            .await?;
        Some(raw.and_then(|b| {
            let e = Entry::decode(&b);
            if e.is_none() {
                tracing::debug!("cache entry in redis is not readable; treated as a miss");
            }
            e
        }))
    }

    /// Whether Redis took it.
    pub async fn put(&self, key: &Key, entry: &Entry, ttl: Duration) -> bool {
        let name = self.name(key);
        let value = entry.encode();
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.redis
            .call("cache set", |mut c| async move {
                redis::cmd("SET")
                    .arg(name)
                    .arg(value)
                    .arg("PX")
                    .arg(ms)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await
            .is_some()
    }

    /// Removes every entry, or one model's. `None` when Redis stopped
    /// answering before the walk finished.
    pub async fn invalidate(&self, model: Option<&str>) -> Option<u64> {
        // The prefix is configured text: escaped like the model name.
        let mut pattern = glob_escape(&self.redis.key("cache:"));
        match model {
            Some(m) => {
                pattern.push_str(&glob_escape(m));
                pattern.push(':');
                // Exactly one digest after the name, so model `a` does not
                // match the keys of model `a:b`.
                pattern.push_str(&"?".repeat(64));
            }
            None => pattern.push('*'),
        }
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let p = pattern.clone();
            let (next, keys): (u64, Vec<String>) = self
                .redis
                .call("cache scan", |mut c| async move {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(p)
                        .arg("COUNT")
                        .arg(SCAN_PAGE)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            if !keys.is_empty() {
                let n: u64 = self
                    .redis
                    .call("cache unlink", |mut c| async move {
                        redis::cmd("UNLINK").arg(keys).query_async(&mut c).await
                    })
                    .await?;
                removed += n;
            }
            if next == 0 {
                return Some(removed);
            }
            cursor = next;
        }
    }
}

/// Escapes Redis glob characters so a name matches only itself.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\d:e"), "a\\*b\\?\\[c\\]\\\\d:e");
        assert_eq!(glob_escape("plain"), "plain");
    }
}
