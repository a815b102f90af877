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

/// The response header that says what was restored.
pub const HEADER: http::HeaderName = http::HeaderName::from_static("x-yallmp-thinking");

/// Assistant turns looked at, by model and result (restored, missing,
/// foreign), for the first backend of the plan.
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
    /// Per model the clients ask for and `max_entries` (backends of one
    /// plan with different bounds keep their own).
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
                store = store.as_str(),
                error = %e,
                "interleaved thinking: could not store a turn (kept in memory)"
            );
        }
    }
}

/// A think block form from the response parsers' `folded_form`.
pub fn wrap_of(form: Option<(&str, &str, bool)>) -> Option<tags::Wrap> {
    form.map(|(open, close, newline)| tags::Wrap {
        open: open.to_string(),
        close: close.to_string(),
        newline,
    })
}

/// One request's part: the turns restored on the way in, and who
/// remembers the answer on the way out.
pub struct ForRequest {
    thinking: Arc<Thinking>,
    scope: keys::Scope,
    /// The snapshot and path the request runs with (the answering
    /// model's parsers say how reasoning is folded into content).
    live: Arc<crate::live::Live>,
    path: String,
    /// The assistant turns that came without reasoning, looked up.
    pub restore: Option<restore::Restore>,
}

impl Thinking {
    /// A chat completion's part, when a backend of its plan has
    /// interleaved thinking on: its turns without reasoning read and looked
    /// up. `Err` (the number of such turns) when the first backend's
    /// `on_miss` is `error` and some are missing.
    #[allow(clippy::too_many_arguments)]
    pub async fn for_request(
        self: &Arc<Self>,
        live: &Arc<crate::live::Live>,
        plan: &[Arc<Backend>],
        model: &str,
        body: &crate::pipeline::request::RequestBody<'_>,
        headers: &http::HeaderMap,
        endpoint: crate::upstream::Endpoint,
        path: &str,
    ) -> Result<Option<ForRequest>, usize> {
        if endpoint != crate::upstream::Endpoint::ChatCompletions
            || plan.iter().all(|b| b.thinking.is_none())
        {
            return Ok(None);
        }
        let fold = wrap_of(live.pipeline(model, path).and_then(|p| p.folded_form()));
        let t = self
            .prepare(
                plan,
                model,
                body.get("messages"),
                crate::api::auth::presented(headers),
                fold.as_ref(),
                (live.clone(), path.to_string()),
            )
            .await;
        if let (Some(t), Some(first)) = (&t, plan.first()) {
            t.check(first)?;
        }
        Ok(t)
    }

    /// Reads and looks up the request's turns, when a backend of the plan
    /// has interleaved thinking on. `fold` is the think block form of the
    /// requested model's parsers.
    async fn prepare(
        self: &Arc<Self>,
        plan: &[Arc<Backend>],
        model: &str,
        messages: Option<&serde_json::value::RawValue>,
        client_key: Option<&str>,
        fold: Option<&tags::Wrap>,
        (live, path): (Arc<crate::live::Live>, String),
    ) -> Option<ForRequest> {
        let settings: Vec<&ThinkingSettings> =
            plan.iter().filter_map(|b| b.thinking.as_deref()).collect();
        if settings.is_empty() {
            return None;
        }
        let scope = keys::Scope::new(model, client_key);
        let mut restore = messages.and_then(|m| restore::Restore::read(m, &scope, fold));
        if let Some(r) = &mut restore {
            let keys = r.keys();
            let mut found = HashMap::new();
            let mut seen: Vec<(StoreKind, u64)> = Vec::new();
            for s in settings {
                if seen.contains(&(s.store, s.max_entries)) {
                    continue;
                }
                seen.push((s.store, s.max_entries));
                for (k, e) in self.lookup(s, model, &keys).await {
                    found.entry(k).or_insert(e);
                }
            }
            r.resolve(&found);
        }
        Some(ForRequest {
            thinking: self.clone(),
            scope,
            live,
            path,
            restore,
        })
    }
}

impl ForRequest {
    /// What the first backend gets, logged; `Err` with the number of turns
    /// without reasoning when its `on_miss` is `error`.
    pub fn check(&self, first: &Backend) -> Result<restore::Tally, usize> {
        let Some(r) = &self.restore else {
            return Ok(restore::Tally::default());
        };
        let tally = r.tally(first);
        for (result, n) in [
            ("restored", tally.restored),
            ("missing", tally.missing),
            ("foreign", tally.foreign),
        ] {
            if n > 0 {
                metrics::counter!(TURNS, "model" => self.scope.model.clone(), "result" => result)
                    .increment(n as u64);
            }
        }
        if tally.restored + tally.missing + tally.foreign > 0 {
            tracing::info!(
                model = %self.scope.model,
                backend = %first.name,
                restored = tally.restored,
                missing = tally.missing,
                foreign = tally.foreign,
                "interleaved thinking: reasoning restored"
            );
        }
        let on_miss = first.thinking.as_deref().map(|s| s.on_miss);
        if on_miss == Some(crate::config::thinking::OnMiss::Error)
            && tally.missing + tally.foreign > 0
        {
            return Err(tally.missing + tally.foreign);
        }
        Ok(tally)
    }

    /// `x-yallmp-thinking: restored=N missing=N foreign=N`: what `backend`
    /// (the one that answered) was given; `None` when no turn was looked at.
    pub fn header(&self, backend: &Backend) -> Option<(http::HeaderName, http::HeaderValue)> {
        let t = self.restore.as_ref()?.tally(backend);
        if t.restored + t.missing + t.foreign == 0 {
            return None;
        }
        let v = format!(
            "restored={} missing={} foreign={}",
            t.restored, t.missing, t.foreign
        );
        Some((HEADER, http::HeaderValue::from_str(&v).ok()?))
    }

    /// Who remembers the answer of `backend` (when its setting is on).
    pub fn recorder(&self, backend: &Backend) -> Option<Recorder> {
        let settings = backend.thinking.clone()?;
        let fold = wrap_of(
            self.live
                .pipeline(&backend.model_name, &self.path)
                .and_then(|p| p.folded_form()),
        );
        Some(Recorder {
            thinking: self.thinking.clone(),
            scope: self.scope.clone(),
            settings,
            source: source_of(backend),
            fold,
        })
    }
}

/// Remembers the turns of one answer.
pub struct Recorder {
    thinking: Arc<Thinking>,
    scope: keys::Scope,
    settings: Arc<ThinkingSettings>,
    source: String,
    fold: Option<tags::Wrap>,
}

impl Recorder {
    /// A whole JSON answer (as the client gets it).
    pub async fn json(&self, body: &[u8]) {
        let turns = capture::from_body(body, self.fold.as_ref());
        self.store(turns).await;
    }

    /// A stream: feed it the frames the client gets, then `commit`.
    pub fn stream(self) -> StreamRecorder {
        StreamRecorder {
            recorder: self,
            turns: capture::StreamTurns::default(),
        }
    }

    async fn store(&self, turns: Vec<capture::Turn>) {
        use crate::config::thinking::Scope as TurnScope;
        for t in turns {
            if self.settings.scope == TurnScope::ToolTurns && t.calls.is_empty() {
                continue;
            }
            let keys = keys::turn_keys(&self.scope, &t.content, &t.calls);
            tracing::debug!(
                model = %self.scope.model,
                source = %self.source,
                bytes = t.reasoning.len(),
                keys = keys.len(),
                "interleaved thinking: turn remembered"
            );
            let entry = Entry {
                reasoning: t.reasoning,
                signature: t.signature,
                source: self.source.clone(),
            };
            self.thinking
                .remember(&self.settings, &self.scope.model, keys, entry)
                .await;
        }
    }
}

/// A stream's recorder: gathers the frames, remembers at the end.
pub struct StreamRecorder {
    recorder: Recorder,
    turns: capture::StreamTurns,
}

impl StreamRecorder {
    pub fn on_frame(&mut self, frame: &[u8]) {
        self.turns.on_frame(frame);
    }

    /// `[DONE]` went by: the turn is complete.
    pub fn done(&self) -> bool {
        self.turns.done
    }

    /// Remembers the stream's turns (call only for a stream that ended
    /// normally).
    pub async fn commit(self) {
        let turns = self.turns.turns(self.recorder.fold.as_ref());
        self.recorder.store(turns).await;
    }
}
