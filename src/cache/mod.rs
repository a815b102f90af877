//! The response cache: an exact-match cache of answers, keyed on the
//! normalized request ([`key`]), held in memory ([`memory`]) or in Redis
//! ([`shared`]) and shared by every instance. Streams are kept as the
//! chunks the client got and replayed as a stream.
//!
//! Only successful, complete answers are stored: a 2xx body, or a stream
//! that ended normally (`[DONE]`, or `response.completed` for the
//! Responses API) with no error event. Storing happens off the request
//! path, and a failed store never fails a request. With the Redis backend,
//! a Redis that is away makes the instance use its memory store until
//! Redis answers again (then that stand-in is dropped, so it never serves
//! entries an invalidation on another instance missed).
//!
//! Answers are cached whatever the sampling settings (a `temperature > 0`
//! request is cached too, as exact-match caches do); a client that wants a
//! fresh answer says `cache: {no-cache: true}`.

pub mod controls;
pub mod entry;
pub mod key;
pub(crate) mod memory;
mod shared;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName};

use crate::config::cache::{CacheBackend, CacheEndpoint, CacheSettings};
use crate::endpoint::Endpoint;
use crate::pipeline::request::RequestBody;
use crate::redis::SharedRedis;

pub use controls::{ControlError, Controls};
pub use entry::{Entry, Stored};
pub use key::Key;
use memory::MemoryStore;
use shared::RedisStore;

/// The response header that says what the cache did.
pub const HEADER: HeaderName = HeaderName::from_static("x-yallmp-cache");

/// What the cache did for one request (the record's `cache` field and the
/// `x-yallmp-cache` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Answered from the cache.
    Hit,
    /// Looked up, not found: answered by a backend.
    Miss,
    /// Not looked up (`no-cache`): answered by a backend.
    Skip,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Hit => "hit",
            Status::Miss => "miss",
            Status::Skip => "skip",
        }
    }
}

/// The cache of one running proxy.
pub struct ResponseCache {
    settings: CacheSettings,
    memory: MemoryStore,
    redis: Option<RedisStore>,
    /// The memory store stood in for Redis since Redis last answered.
    stood_in: AtomicBool,
}

/// What an invalidation did.
#[derive(Debug, Clone, Copy)]
pub struct Invalidated {
    pub removed: u64,
    /// With the Redis backend: whether Redis took part (`false`: it was
    /// away, its entries stay until they expire).
    pub redis_reached: Option<bool>,
}

impl ResponseCache {
    /// The cache for these settings; `None` when it is off.
    pub fn new(
        settings: &CacheSettings,
        redis: Option<Arc<SharedRedis>>,
    ) -> Option<Arc<ResponseCache>> {
        if !settings.enabled {
            return None;
        }
        let redis = match settings.backend {
            CacheBackend::Redis => redis.map(RedisStore::new),
            CacheBackend::Memory => None,
        };
        Some(Arc::new(ResponseCache {
            settings: settings.clone(),
            memory: MemoryStore::new(settings.max_entries),
            redis,
            stood_in: AtomicBool::new(false),
        }))
    }

    pub fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    /// `memory` or `redis`.
    pub fn backend(&self) -> &'static str {
        if self.redis.is_some() {
            "redis"
        } else {
            "memory"
        }
    }

    /// Whether answers of this endpoint are cached.
    pub fn covers(&self, endpoint: Endpoint) -> bool {
        let e = match endpoint {
            Endpoint::ChatCompletions => CacheEndpoint::ChatCompletions,
            Endpoint::Embeddings => CacheEndpoint::Embeddings,
            Endpoint::Responses => CacheEndpoint::Responses,
            _ => return false,
        };
        self.settings.endpoints.contains(&e)
    }

    /// The key of a request (`body` without its `cache` field).
    pub fn key(
        &self,
        endpoint: Endpoint,
        model: &str,
        body: &RequestBody<'_>,
        headers: &HeaderMap,
    ) -> Key {
        let client = self
            .settings
            .key_by_client_key
            .then(|| crate::identity::presented(headers))
            .flatten();
        Key::new(endpoint, model, body, client)
    }

    /// Looks the request up unless it said `no-cache`; counts hits and
    /// misses per configured model (`model`: a wildcard's pattern, never
    /// the name a client chose, which would grow the series without bound).
    pub async fn lookup(
        &self,
        key: &Key,
        controls: &Controls,
        model: &str,
    ) -> (Status, Option<Arc<Entry>>) {
        if controls.no_cache {
            return (Status::Skip, None);
        }
        let found = self.get(key).await;
        let model = model.to_string();
        if found.is_some() {
            metrics::counter!("yallmp_cache_hits_total", "model" => model).increment(1);
            (Status::Hit, found)
        } else {
            metrics::counter!("yallmp_cache_misses_total", "model" => model).increment(1);
            (Status::Miss, None)
        }
    }

    /// Whether an entry is there (without counting a hit or a miss): for
    /// tests and tools.
    pub async fn contains(&self, key: &Key) -> bool {
        self.get(key).await.is_some()
    }

    async fn get(&self, key: &Key) -> Option<Arc<Entry>> {
        if let Some(r) = &self.redis
            && let Some(answer) = r.get(key).await
        {
            self.redis_answered();
            return answer.map(Arc::new);
        }
        self.memory.get(key).await
    }

    /// Stores an answer in the background (unless it is over
    /// `max_entry_bytes`); `ttl` overrides the configured one.
    pub fn store(self: &Arc<Self>, key: Key, entry: Entry, ttl: Option<Duration>) {
        if entry.size() > self.settings.max_entry_bytes {
            tracing::debug!(
                size = entry.size(),
                limit = self.settings.max_entry_bytes,
                "answer too large to cache"
            );
            return;
        }
        let ttl = ttl.unwrap_or(self.settings.ttl);
        if ttl.is_zero() {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move { this.put(key, Arc::new(entry), ttl).await });
    }

    async fn put(&self, key: Key, entry: Arc<Entry>, ttl: Duration) {
        if let Some(r) = &self.redis {
            if r.put(&key, &entry, ttl).await {
                self.redis_answered();
                return;
            }
            self.stood_in.store(true, Ordering::Relaxed);
        }
        self.memory.put(key, entry, ttl).await;
        self.count_entries();
    }

    /// Removes every entry, or one model's: from Redis (shared) and from
    /// this instance's memory.
    pub async fn invalidate(&self, model: Option<&str>) -> Invalidated {
        let mut removed = self.memory.invalidate(model).await;
        let mut redis_reached = None;
        if let Some(r) = &self.redis {
            let n = r.invalidate(model).await;
            redis_reached = Some(n.is_some());
            removed += n.unwrap_or(0);
        }
        self.count_entries();
        Invalidated {
            removed,
            redis_reached,
        }
    }

    /// Redis answered: the memory stand-in, if it was used, goes.
    fn redis_answered(&self) {
        if self.stood_in.swap(false, Ordering::Relaxed) {
            self.memory.clear();
            self.count_entries();
            tracing::info!("redis is back: the response cache is shared again");
        }
    }

    fn count_entries(&self) {
        metrics::gauge!("yallmp_cache_entries").set(self.memory.len() as f64);
    }
}

/// A miss on its way to the client, to store once it is complete.
pub struct Pending {
    pub cache: Arc<ResponseCache>,
    pub key: Key,
    pub ttl: Option<Duration>,
}

impl Pending {
    /// A whole answer.
    pub fn store_body(self, status: u16, headers: &HeaderMap, body: Bytes) {
        let entry = Entry {
            status,
            content_type: content_type(headers),
            stored: Stored::Body(body),
        };
        self.cache.store(self.key, entry, self.ttl);
    }

    /// Starts teeing a stream.
    pub fn tee(self, status: u16, headers: &HeaderMap) -> Tee {
        Tee {
            limit: self.cache.settings.max_entry_bytes,
            pending: self,
            status,
            content_type: content_type(headers),
            chunks: Vec::new(),
            bytes: 0,
            over: false,
            failed: false,
            done: false,
        }
    }
}

fn content_type(headers: &HeaderMap) -> Option<Bytes> {
    headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| Bytes::copy_from_slice(v.as_bytes()))
}

/// A copy of the stream the client gets, stored when it ended well.
pub struct Tee {
    pending: Pending,
    status: u16,
    content_type: Option<Bytes>,
    chunks: Vec<Bytes>,
    bytes: usize,
    limit: usize,
    /// Past `max_entry_bytes`: not kept.
    over: bool,
    /// An error event went by.
    failed: bool,
    /// The end marker went by.
    done: bool,
}

impl Tee {
    /// An upstream frame: looks for the end marker and error events.
    pub fn upstream_frame(&mut self, frame: &[u8]) {
        let ev = crate::sse::parse(frame);
        if ev.event == Some("error") {
            self.failed = true;
        }
        // OpenAI's `[DONE]`, the Responses API's and Anthropic's last events.
        if matches!(ev.event, Some("response.completed" | "message_stop")) || ev.is_done() {
            self.done = true;
        }
        if let Some(data) = ev.data.as_deref() {
            if crate::sse::is_error_object(data) {
                self.failed = true;
            } else if ev.event.is_none() && data.contains("\"response.completed\"") {
                self.done = true;
            }
        }
    }

    /// A chunk the client got.
    pub fn sent(&mut self, chunk: &Bytes) {
        if self.over {
            return;
        }
        self.bytes += chunk.len();
        if self.bytes > self.limit {
            self.over = true;
            self.chunks = Vec::new();
            return;
        }
        self.chunks.push(chunk.clone());
    }

    /// The stream ended without a transport error: store it if it is whole.
    pub fn finish(self) {
        if self.over || self.failed || !self.done {
            return;
        }
        let entry = Entry {
            status: self.status,
            content_type: self.content_type,
            stored: Stored::Stream(self.chunks),
        };
        self.pending
            .cache
            .store(self.pending.key, entry, self.pending.ttl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> CacheSettings {
        CacheSettings {
            enabled: true,
            ..CacheSettings::default()
        }
    }

    fn key(n: u8) -> Key {
        Key {
            model: Arc::from("m"),
            digest: [n; 32],
        }
    }

    async fn settle() {
        // Stores run on a spawned task.
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[test]
    fn off_means_none() {
        assert!(ResponseCache::new(&CacheSettings::default(), None).is_none());
    }

    #[tokio::test]
    async fn stores_whole_streams_only() {
        let cache = ResponseCache::new(&settings(), None).unwrap();
        let no = Controls::default();
        let frames: [&[u8]; 2] = [b"data: {\"x\":1}\n\n", b"data: [DONE]\n\n"];
        // Whole.
        let mut t = Pending {
            cache: cache.clone(),
            key: key(1),
            ttl: None,
        }
        .tee(200, &HeaderMap::new());
        for f in frames {
            t.upstream_frame(f);
            t.sent(&Bytes::copy_from_slice(f));
        }
        t.finish();
        // No end marker.
        let mut t = Pending {
            cache: cache.clone(),
            key: key(2),
            ttl: None,
        }
        .tee(200, &HeaderMap::new());
        t.upstream_frame(frames[0]);
        t.finish();
        // An error event.
        let mut t = Pending {
            cache: cache.clone(),
            key: key(3),
            ttl: None,
        }
        .tee(200, &HeaderMap::new());
        t.upstream_frame(b"data: {\"error\":{\"message\":\"x\"}}\n\n");
        t.upstream_frame(frames[1]);
        t.finish();
        settle().await;
        let (s, e) = cache.lookup(&key(1), &no, "m").await;
        assert_eq!(s, Status::Hit);
        assert_eq!(
            e.unwrap().stored,
            Stored::Stream(frames.iter().map(|f| Bytes::copy_from_slice(f)).collect())
        );
        assert_eq!(cache.lookup(&key(2), &no, "m").await.0, Status::Miss);
        assert_eq!(cache.lookup(&key(3), &no, "m").await.0, Status::Miss);
        let skip = Controls {
            no_cache: true,
            ..Controls::default()
        };
        assert_eq!(cache.lookup(&key(1), &skip, "m").await.0, Status::Skip);
    }

    #[tokio::test]
    async fn large_answers_are_not_kept() {
        let mut s = settings();
        s.max_entry_bytes = 4;
        let cache = ResponseCache::new(&s, None).unwrap();
        Pending {
            cache: cache.clone(),
            key: key(1),
            ttl: None,
        }
        .store_body(200, &HeaderMap::new(), Bytes::from_static(b"12345"));
        settle().await;
        assert!(cache.get(&key(1)).await.is_none());
    }
}
