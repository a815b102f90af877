//! Cooldowns shared between instances through Redis
//! (`proxy_settings.redis_url`).
//!
//! - A backend that cools down here sets `PREFIX cooldown:KEY` with the
//!   cooldown as its expiry (`SET ... PX`), from a spawned task: the request
//!   that caused it never waits on Redis.
//! - Each counted failure increments `PREFIX fails:KEY` (a one-minute fixed
//!   window, created with its expiry); the instance that takes it past
//!   `allowed_fails` sets the cooldown key, so failures spread over several
//!   instances add up.
//! - A background task reads the remaining time of every known backend's
//!   cooldown key (`PTTL`, pipelined) every [`SYNC_EVERY`] and keeps it in
//!   the backend's state. The request path only reads that local copy: a
//!   cooldown announced elsewhere takes effect here within ~250 ms, and a
//!   request never waits on Redis. Remaining times, not timestamps, cross
//!   the wire, so clocks need not agree.
//!
//! When Redis is away, `SharedRedis::call` answers `None` at once: each
//! instance keeps its own cooldowns (and the ones it last heard of, until
//! they expire), and sharing resumes when the Redis probe sees it again.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::redis::SharedRedis;

use super::state::Registry;

/// How often other instances' cooldowns are read.
pub const SYNC_EVERY: Duration = Duration::from_millis(250);

fn cooldown_key(redis: &SharedRedis, key: &str) -> String {
    redis.key(&format!("cooldown:{key}"))
}

fn fails_key(redis: &SharedRedis, key: &str) -> String {
    redis.key(&format!("fails:{key}"))
}

/// Sets the shared cooldown of `key` for `wait`.
pub fn announce_cooldown(redis: Arc<SharedRedis>, key: String, wait: Duration) {
    tokio::spawn(async move {
        let k = cooldown_key(&redis, &key);
        let ms = wait.as_millis().max(1) as u64;
        redis
            .call("cooldown", |mut c| async move {
                redis::cmd("SET")
                    .arg(&k)
                    .arg(1)
                    .arg("PX")
                    .arg(ms)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
    });
}

/// Counts a failure of `key` across instances; past `allowed_fails` within
/// the window, announces the cooldown.
pub fn count_failure(redis: Arc<SharedRedis>, key: String, allowed_fails: u32, cooldown: Duration) {
    tokio::spawn(async move {
        let k = fails_key(&redis, &key);
        let count: Option<(Option<String>, u64)> = redis
            .call("failure count", |mut c| async move {
                redis::pipe()
                    .cmd("SET")
                    .arg(&k)
                    .arg(0)
                    .arg("PX")
                    .arg(super::state::FAILURE_WINDOW.as_millis() as u64)
                    .arg("NX")
                    .cmd("INCR")
                    .arg(&k)
                    .query_async(&mut c)
                    .await
            })
            .await;
        if let Some((_, n)) = count
            && n > u64::from(allowed_fails)
        {
            let k = fails_key(&redis, &key);
            redis
                .call("failure count", |mut c| async move {
                    redis::cmd("DEL").arg(&k).query_async::<()>(&mut c).await
                })
                .await;
            announce_cooldown(redis, key, cooldown);
        }
    });
}

/// Keeps every known backend's view of the shared cooldowns current, until
/// the registry goes away.
pub fn spawn_sync(registry: &Arc<Registry>) -> Option<tokio::task::JoinHandle<()>> {
    registry.redis()?;
    let weak: Weak<Registry> = Arc::downgrade(registry);
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(SYNC_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(registry) = weak.upgrade() else {
                return;
            };
            let Some(redis) = registry.redis().cloned() else {
                return;
            };
            let states = registry.all();
            drop(registry);
            if states.is_empty() {
                continue;
            }
            let keys: Vec<String> = states
                .iter()
                .map(|s| cooldown_key(&redis, &s.shared_key))
                .collect();
            let ttls: Option<Vec<i64>> = redis
                .call("cooldown sync", |mut c| async move {
                    let mut pipe = redis::pipe();
                    for k in &keys {
                        pipe.cmd("PTTL").arg(k);
                    }
                    pipe.query_async(&mut c).await
                })
                .await;
            // Redis away: keep what was last heard; it expires on its own.
            let Some(ttls) = ttls else { continue };
            for (state, ms) in states.iter().zip(ttls) {
                state.set_remote_cooldown(
                    (ms > 0).then(|| Duration::from_millis(ms.unsigned_abs())),
                );
            }
        }
    }))
}
