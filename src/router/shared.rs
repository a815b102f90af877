//! Cooldowns shared between instances through Redis
//! (`proxy_settings.redis_url`).
//!
//! - A backend that cools down here sets `PREFIX cooldown:KEY` with the
//!   cooldown as its expiry (`SET ... PX`), from a spawned task: the request
//!   that caused it never waits on Redis.
//! - Each counted failure increments `PREFIX fails:KEY` (a one-minute fixed
//!   window, created with its expiry); the instance that takes it past
//!   `allowed_fails` sets the cooldown key, so failures spread over several
//!   instances add up. A failure of a kind `allowed_fails_policy` names
//!   increments `PREFIX fails:KEY:KIND` instead, against the policy's
//!   number.
//! - A background task (`state::spawn_sync`) reads the remaining time of every known backend's
//!   cooldown key (`PTTL`, pipelined) every [`SYNC_EVERY`] and keeps it in
//!   the backend's state. The request path only reads that local copy: a
//!   cooldown announced elsewhere takes effect here within ~250 ms, and a
//!   request never waits on Redis. Remaining times, not timestamps, cross
//!   the wire, so clocks need not agree.
//!
//! When Redis is away, `SharedRedis::call` answers `None` at once: each
//! instance keeps its own cooldowns (and the ones it last heard of, until
//! they expire), and sharing resumes when the Redis probe sees it again.

use std::sync::Arc;
use std::time::Duration;

use crate::redis::SharedRedis;

/// How often other instances' cooldowns are read.
pub const SYNC_EVERY: Duration = Duration::from_millis(250);

fn cooldown_key(redis: &SharedRedis, key: &str) -> String {
    redis.key(&format!("cooldown:{key}"))
}

/// `fails:KEY`, or `fails:KEY:KIND` for a kind `allowed_fails_policy`
/// counts apart.
fn fails_key(redis: &SharedRedis, key: &str, kind: Option<&str>) -> String {
    match kind {
        Some(kind) => redis.key(&format!("fails:{key}:{kind}")),
        None => redis.key(&format!("fails:{key}")),
    }
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

/// Counts a failure of `key` (of `kind`, when `allowed_fails_policy`
/// counts that kind apart) across instances; past `allowed_fails` within
/// `window`, announces the cooldown.
pub fn count_failure(
    redis: Arc<SharedRedis>,
    key: String,
    kind: Option<&'static str>,
    allowed_fails: u32,
    cooldown: Duration,
    window: Duration,
) {
    tokio::spawn(async move {
        let k = fails_key(&redis, &key, kind);
        let count: Option<(Option<String>, u64)> = redis
            .call("failure count", |mut c| async move {
                redis::pipe()
                    .cmd("SET")
                    .arg(&k)
                    .arg(0)
                    .arg("PX")
                    .arg(window.as_millis() as u64)
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
            let k = fails_key(&redis, &key, kind);
            redis
                .call("failure count", |mut c| async move {
                    redis::cmd("DEL").arg(&k).query_async::<()>(&mut c).await
                })
                .await;
            announce_cooldown(redis, key, cooldown);
        }
    });
}

/// The remaining time of each backend key's shared cooldown (`PTTL`,
/// pipelined), in `keys`' order: `None` where there is none; `None` in
/// all when Redis is away.
pub async fn remaining_cooldowns(
    redis: &SharedRedis,
    keys: &[&str],
) -> Option<Vec<Option<Duration>>> {
    let keys: Vec<String> = keys.iter().map(|k| cooldown_key(redis, k)).collect();
    let ttls: Vec<i64> = redis
        .call("cooldown sync", |mut c| async move {
            let mut pipe = redis::pipe();
            for k in &keys {
                pipe.cmd("PTTL").arg(k);
            }
            pipe.query_async(&mut c).await
        })
        .await?;
    Some(
        ttls.into_iter()
            .map(|ms| (ms > 0).then(|| Duration::from_millis(ms.unsigned_abs())))
            .collect(),
    )
}

/// The key a backend's shared state is kept under: its name and a hash of
/// its `api_base`, so instances agree on it and a backend whose URL changed
/// starts afresh.
pub fn backend_key(name: &str, api_base: &str) -> String {
    format!("{name}:{:016x}", fnv1a(api_base.as_bytes()))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
