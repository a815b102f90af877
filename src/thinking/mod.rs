//! Stateful interleaved thinking (`model_params.interleaved_thinking`).
//! Models such as DeepSeek, Kimi-K2-Thinking, MiniMax-M2 and GLM-4.6 want
//! the reasoning of their earlier assistant turns back, above all between
//! tool calls; most agent clients drop it. The proxy remembers the
//! reasoning of every assistant turn it relays ([`capture`], on the way
//! out, JSON or stream) and puts it back into later requests that resend
//! that turn without it ([`restore`], on the way in).
//!
//! Entries are found by [`keys`], scoped by model and a hash of the
//! client's key. They live in memory ([`memory`], the default and the
//! write-through front of the others), in the request log's database
//! ([`db`]) or in Redis ([`redis`]). Durable writes go over a bounded
//! queue to one background task: nothing waits on them.

pub mod capture;
pub mod db;
pub mod keys;
mod memory;
pub mod redis;
mod request;
pub mod restore;
pub mod tags;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::thinking::{StoreKind, ThinkingSettings};
use crate::config::{Backend, Config};
use keys::Key;
use memory::MemoryStore;
pub use request::{ForRequest, Recorder, StreamRecorder, wrap_of};

/// The response header that says what was restored.
pub const HEADER: http::HeaderName = http::HeaderName::from_static("x-yallmp-thinking");

/// Assistant turns looked at, by configured model and result (restored,
/// missing, foreign), for the first backend of the plan.
pub const TURNS: &str = "yallmp_thinking_turns_total";
/// Turns the database or Redis did not get (queue full, write failed);
/// they stay in the memory store.
pub const DROPPED: &str = "yallmp_thinking_dropped_total";

/// Durable writes waiting for the background task.
const QUEUE: usize = 4096;
/// How long a request waits on a durable store before it counts as a miss.
const LOOKUP_TIMEOUT: Duration = Duration::from_millis(500);

/// One remembered turn's reasoning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Exactly as the client received it.
    pub reasoning: String,
    /// The signature of an Anthropic-shaped thinking block, when there was
    /// one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Who produced it ([`source_of`]): reasoning is only given back to
    /// the same kind of backend.
    pub source: String,
}

/// The producer of a reasoning: the backend's protocol and configured
/// model (every backend of one model is one provider).
pub fn source_of(b: &Backend) -> String {
    format!("{}:{}", b.api_type.as_str(), b.model_name)
}

/// Work for the background task.
enum Job {
    /// A durable write.
    Write {
        store: StoreKind,
        model: String,
        keys: Vec<Key>,
        entry: Arc<Entry>,
        ttl: Duration,
    },
    /// Answer once every write queued before is done.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The stores of one running proxy.
pub struct Thinking {
    /// Per configured model (a wildcard's pattern, never a name a client
    /// chose: those would grow it without bound) and `max_entries`
    /// (backends of one plan with different bounds keep their own).
    memory: Mutex<HashMap<(String, u64), Arc<MemoryStore>>>,
    durable: Arc<Durable>,
    queue: mpsc::Sender<Job>,
}

/// The database and Redis stores (what the background task writes to).
struct Durable {
    db: db::DbStore,
    redis: Option<redis::RedisStore>,
}

/// Why the stores could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("interleaved_thinking store `database` ({target}): {source}")]
pub struct StartError {
    target: String,
    source: sqlx::Error,
}

impl Thinking {
    /// Opens what the config asks for: the database at once when a model
    /// uses `store: database` (an unusable one fails here), otherwise when
    /// a model registered later first needs it.
    pub async fn start(
        config: &Config,
        shared_redis: Option<Arc<crate::redis::SharedRedis>>,
    ) -> Result<Arc<Thinking>, StartError> {
        let db = db::DbStore::new(config.database.target.clone());
        let uses_db = config
            .models
            .iter()
            .flat_map(|m| &m.backends)
            .filter_map(|b| b.thinking.as_deref())
            .any(|t| t.store == StoreKind::Database);
        if uses_db {
            db.open().await.map_err(|source| StartError {
                target: config.database.target.describe(),
                source,
            })?;
        }
        let durable = Arc::new(Durable {
            db,
            redis: shared_redis.map(redis::RedisStore::new),
        });
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_jobs(rx, durable.clone()));
        Ok(Arc::new(Thinking {
            memory: Mutex::new(HashMap::new()),
            durable,
            queue,
        }))
    }

    /// Waits until every durable write queued so far is done (shutdown).
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.queue.send(Job::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// How many memory stores there are (one per configured model and
    /// bound).
    pub fn memory_stores(&self) -> usize {
        match self.memory.lock() {
            Ok(m) => m.len(),
            Err(poisoned) => poisoned.into_inner().len(),
        }
    }

    /// Drops the memory stores no backend of `config` uses any more (a
    /// model removed or renamed, its `interleaved_thinking` turned off, or
    /// its `max_entries` changed), after a reload or a runtime model
    /// change; returns how many. Their turns go with them (a durable store
    /// keeps its copy).
    pub fn retain_configured(&self, config: &Config) -> usize {
        let used: std::collections::HashSet<(&str, u64)> = config
            .models
            .iter()
            .flat_map(|m| m.backends.iter())
            .filter_map(|b| {
                b.thinking
                    .as_ref()
                    .map(|t| (b.model_name.as_str(), t.max_entries))
            })
            .collect();
        let mut map = match self.memory.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let before = map.len();
        map.retain(|(model, max), _| used.contains(&(model.as_str(), *max)));
        before - map.len()
    }

    /// The memory store of `model` with this bound.
    fn memory(&self, model: &str, max_entries: u64) -> Arc<MemoryStore> {
        let mut map = match self.memory.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry((model.to_string(), max_entries))
            .or_insert_with(|| Arc::new(MemoryStore::new(max_entries)))
            .clone()
    }

    /// For each key found, its entry: memory first, then the durable
    /// store (bounded in time; a slow or absent store is a miss).
    pub async fn lookup(
        &self,
        settings: &ThinkingSettings,
        model: &str,
        keys: &[Key],
    ) -> HashMap<Key, Arc<Entry>> {
        let mem = self.memory(model, settings.max_entries);
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        for k in keys {
            match mem.get(k).await {
                Some(e) => {
                    found.insert(*k, e);
                }
                None => missing.push(*k),
            }
        }
        if missing.is_empty() || settings.store == StoreKind::Memory {
            return found;
        }
        let durable = async {
            match settings.store {
                StoreKind::Database => self.durable.db.get(&missing).await,
                StoreKind::Redis => match &self.durable.redis {
                    Some(r) => r.get(&missing).await,
                    None => Vec::new(),
                },
                StoreKind::Memory => Vec::new(),
            }
        };
        match tokio::time::timeout(LOOKUP_TIMEOUT, durable).await {
            Ok(hits) => {
                for (k, e) in hits {
                    let e = Arc::new(e);
                    mem.put(&[k], e.clone(), settings.ttl).await;
                    found.insert(k, e);
                }
            }
            Err(_) => tracing::warn!(
                model,
                store = settings.store.as_str(),
                "interleaved thinking: the store did not answer in time; treated as a miss"
            ),
        }
        found
    }

    /// Remembers a turn: in memory now (the next request must find it),
    /// in the durable store from the background task.
    pub async fn remember(
        &self,
        settings: &ThinkingSettings,
        model: &str,
        keys: Vec<Key>,
        entry: Entry,
    ) {
        let entry = Arc::new(entry);
        self.memory(model, settings.max_entries)
            .put(&keys, entry.clone(), settings.ttl)
            .await;
        if settings.store == StoreKind::Memory {
            return;
        }
        let job = Job::Write {
            store: settings.store,
            model: model.to_string(),
            keys,
            entry,
            ttl: settings.ttl,
        };
        if self.queue.try_send(job).is_err() {
            metrics::counter!(DROPPED).increment(1);
            tracing::warn!(
                model,
                store = settings.store.as_str(),
                "interleaved thinking: the write queue is full; this turn is kept in memory only"
            );
        }
    }
}

/// The background task: one durable write at a time.
async fn write_jobs(mut rx: mpsc::Receiver<Job>, durable: Arc<Durable>) {
    while let Some(job) = rx.recv().await {
        let (store, model, keys, entry, ttl) = match job {
            Job::Write {
                store,
                model,
                keys,
                entry,
                ttl,
            } => (store, model, keys, entry, ttl),
            Job::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        let ok = match store {
            StoreKind::Database => durable
                .db
                .put(&model, &keys, &entry, ttl)
                .await
                .map_err(|e| e.to_string()),
            StoreKind::Redis => match &durable.redis {
                Some(r) => r.put(&keys, &entry, ttl).await,
                None => Err("no redis_url".into()),
            },
            StoreKind::Memory => Ok(()),
        };
        if let Err(e) = ok {
            metrics::counter!(DROPPED).increment(1);
            tracing::warn!(
                model,
                store = store.as_str(),
                error = %e,
                "interleaved thinking: could not store a turn (kept in memory)"
            );
        }
    }
}
