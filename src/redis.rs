//! Redis as the state several instances share (cooldowns, rate-limit
//! counters, the response cache). Every feature keeps an in-process form
//! and asks Redis through [`SharedRedis::call`], which gives `None` when
//! Redis is not answering: the feature then falls back to its local state.
//! A request never waits long on a dead Redis: after a failure the proxy
//! stops asking until a background probe (every second) sees it answer
//! again, and `/health` says which mode each instance is in.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::RedisResult;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::RedisSettings;

/// How long one command may take before Redis counts as down.
const OP_TIMEOUT: Duration = Duration::from_millis(500);
/// How often the probe pings a Redis that is down.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The shared connection and what is known about its health.
pub struct SharedRedis {
    conn: ConnectionManager,
    prefix: String,
    up: AtomicBool,
    last_error: Mutex<Option<String>>,
}

/// For `/health`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RedisStatus {
    pub reachable: bool,
    /// `shared` when Redis answers, else `local` (each instance on its own).
    pub mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl SharedRedis {
    /// Opens the connection lazily: a Redis that is down at start-up is
    /// not fatal, the proxy runs on local state until it answers.
    pub fn new(settings: &RedisSettings) -> RedisResult<Arc<SharedRedis>> {
        let client = redis::Client::open(settings.url.expose())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(OP_TIMEOUT))
            .set_response_timeout(Some(OP_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Arc::new(SharedRedis {
            conn,
            prefix: settings.key_prefix.clone(),
            // Optimistic until the first command or probe says otherwise.
            up: AtomicBool::new(true),
            last_error: Mutex::new(None),
        }))
    }

    /// `prefix` + `name`: every key this proxy writes.
    pub fn key(&self, name: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + name.len());
        k.push_str(&self.prefix);
        k.push_str(name);
        k
    }

    /// Whether Redis answered the last time it was asked.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Runs one command (or pipeline). `None` when Redis is down, times
    /// out or fails: the caller uses its local state instead.
    pub async fn call<T, F, Fut>(&self, what: &'static str, f: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if !self.is_up() {
            return None;
        }
        match tokio::time::timeout(OP_TIMEOUT, f(self.conn.clone())).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) if is_outage(&e) => {
                self.mark_down(what, &e.to_string());
                None
            }
            Ok(Err(e)) => {
                // The server answered, but not as expected: a bug or a
                // foreign key in our namespace, not an outage.
                tracing::warn!(what, error = %e, "redis command failed");
                None
            }
            Err(_) => {
                self.mark_down(what, "timed out");
                None
            }
        }
    }

    /// Pings now (for `/health` and the probe); updates the state.
    pub async fn ping(&self) -> bool {
        let mut conn = self.conn.clone();
        let answer = tokio::time::timeout(
            OP_TIMEOUT,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await;
        match answer {
            Ok(Ok(_)) => {
                if !self.up.swap(true, Ordering::Relaxed) {
                    tracing::info!("redis is reachable again: shared state resumes");
                }
                true
            }
            Ok(Err(e)) => {
                self.mark_down("ping", &e.to_string());
                false
            }
            Err(_) => {
                self.mark_down("ping", "timed out");
                false
            }
        }
    }

    pub fn status(&self) -> RedisStatus {
        let up = self.is_up();
        RedisStatus {
            reachable: up,
            mode: if up { "shared" } else { "local" },
            last_error: self.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }

    /// Pings while Redis is down, so the proxy notices when it returns.
    pub fn spawn_probe(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let redis = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROBE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(r) = redis.upgrade() else { return };
                if !r.is_up() {
                    r.ping().await;
                }
            }
        })
    }

    fn mark_down(&self, what: &str, error: &str) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(error.to_string());
        }
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                what,
                error,
                "redis is not answering: each instance uses its local state until it returns"
            );
        }
    }
}

/// Connection trouble (as opposed to a command the server rejected).
fn is_outage(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_refusal() || e.is_timeout() || e.is_connection_dropped()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[tokio::test]
    async fn unreachable_redis_is_down_not_fatal() {
        let settings = RedisSettings {
            // Nothing listens on port 1.
            url: Secret::new("redis://127.0.0.1:1/"),
            key_prefix: "t:".into(),
        };
        let r = SharedRedis::new(&settings).unwrap();
        assert_eq!(r.key("a"), "t:a");
        let got: Option<String> = r
            .call("get", |mut c| async move {
                redis::cmd("GET").arg("x").query_async(&mut c).await
            })
            .await;
        assert!(got.is_none());
        assert!(!r.is_up());
        assert_eq!(r.status().mode, "local");
        // Once down, calls return at once without touching the network.
        let got: Option<String> = r
            .call("get", |_| async { panic!("not called while down") })
            .await;
        assert!(got.is_none());
    }
}
