//! Per-backend usage by clock minute: the requests and tokens a backend
//! took this minute, for its own limits (`rpm`, `tpm`) and for
//! `usage-based` routing. A fixed window on the wall clock's minute, so
//! that instances sharing a Redis count into the same key
//! (`PREFIX usage:BACKEND_KEY:MINUTE`, a hash with fields `r` and `t`,
//! expiring after two minutes):
//!
//! - A backend with a per-minute limit is admitted by a Lua script that
//!   checks both counts and adds the request in one step, so instances
//!   never admit more than the limit between them. When Redis is away the
//!   instance admits against its own counts (each instance then allows the
//!   whole limit).
//! - Tokens are added after the answer, from a spawned task.
//! - The background sync (`state::spawn_sync`) reads every shared
//!   backend's counts for `usage-based` routing's order; the request path
//!   never waits on Redis for that.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use crate::config::BackendLimits;
use crate::redis::SharedRedis;

/// How long a minute's counts live in Redis.
const KEEP_MS: u64 = 120_000;

/// The current clock minute (minutes since the Unix epoch).
pub fn minute_now() -> u64 {
    super::state::unix_ms() / 60_000
}

/// Until the next clock minute begins (at least 1 ms).
pub fn until_next_minute() -> Duration {
    let ms = super::state::unix_ms();
    Duration::from_millis((60_000 - ms % 60_000).max(1))
}

/// One minute's counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub minute: u64,
    pub requests: u64,
    pub tokens: u64,
}

impl Counts {
    /// The counts for `minute`: zero when they are of another minute.
    pub fn at(self, minute: u64) -> Counts {
        if self.minute == minute {
            self
        } else {
            Counts {
                minute,
                ..Counts::default()
            }
        }
    }
}

/// A backend's counts: its own this minute, and the totals Redis last
/// gave (every instance's).
#[derive(Debug, Default)]
pub struct Usage {
    local: Counts,
    shared: Counts,
}

/// Which per-minute limit a backend is at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    Requests(u64),
    Tokens(u64),
}

impl std::fmt::Display for Full {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Full::Requests(n) => write!(f, "at its rpm limit ({n} requests a minute)"),
            Full::Tokens(n) => write!(f, "at its tpm limit ({n} tokens a minute)"),
        }
    }
}

impl Usage {
    /// This minute's counts as known here: the larger of this instance's
    /// and the last shared totals.
    pub fn now(&self, minute: u64) -> Counts {
        let (l, s) = (self.local.at(minute), self.shared.at(minute));
        Counts {
            minute,
            requests: l.requests.max(s.requests),
            tokens: l.tokens.max(s.tokens),
        }
    }

    /// Whether `rpm`/`tpm` would refuse one more request now.
    pub fn full(&self, minute: u64, rpm: Option<u64>, tpm: Option<u64>) -> Option<Full> {
        let c = self.now(minute);
        match (rpm, tpm) {
            (Some(r), _) if c.requests >= r => Some(Full::Requests(r)),
            (_, Some(t)) if c.tokens >= t => Some(Full::Tokens(t)),
            _ => None,
        }
    }

    /// Counts one request (admitted here or by Redis).
    pub fn add_request(&mut self, minute: u64) {
        self.local = self.local.at(minute);
        self.local.requests += 1;
    }

    pub fn add_tokens(&mut self, minute: u64, n: u64) {
        self.local = self.local.at(minute);
        self.local.tokens = self.local.tokens.saturating_add(n);
    }

    /// What Redis says every instance took this minute.
    pub fn set_shared(&mut self, counts: Counts) {
        self.shared = counts;
    }
}

/// One upstream deployment's limit counters: its usage this minute and
/// its attempts in flight under `max_parallel_requests`. A backend has its
/// own, unless it is a derived model's copy of another (`limits_from`):
/// then the two count together, as they are one deployment.
pub struct Deployment {
    /// The Redis key part (`NAME:HASH`, as the shared cooldowns').
    pub key: String,
    redis: Option<Arc<SharedRedis>>,
    /// Its usage is counted (and shared through Redis): it has a
    /// per-minute limit, or the routing is `usage-based`. Set from the
    /// live config by each request's ordering, so a reload that adds or
    /// removes a limit takes effect.
    tracked: AtomicBool,
    in_flight: AtomicU64,
    /// Woken when a place under `max_parallel_requests` is given back.
    freed: tokio::sync::Notify,
    usage: Mutex<Usage>,
}

/// A place under a deployment's `max_parallel_requests`, given back when
/// dropped.
pub struct Slot(Arc<Deployment>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify_waiters();
    }
}

impl Deployment {
    pub fn new(key: String, redis: Option<Arc<SharedRedis>>) -> Deployment {
        Deployment {
            key,
            redis,
            tracked: AtomicBool::new(false),
            in_flight: AtomicU64::new(0),
            freed: tokio::sync::Notify::new(),
            usage: Mutex::default(),
        }
    }

    fn usage(&self) -> std::sync::MutexGuard<'_, Usage> {
        self.usage.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether its usage is counted.
    pub fn tracked(&self) -> bool {
        self.tracked.load(Ordering::Relaxed)
    }

    /// Counts its usage from now on, or stops (a plain load when nothing
    /// changes).
    pub fn track(&self, on: bool) {
        if self.tracked() != on {
            self.tracked.store(on, Ordering::Relaxed);
        }
    }

    /// Requests and tokens this minute, as known here.
    pub fn counts(&self) -> Counts {
        self.usage().now(minute_now())
    }

    /// Whether a per-minute limit would pass it over now (as known here;
    /// the admission itself asks Redis).
    pub fn full(&self, limits: &BackendLimits) -> bool {
        limits.per_minute()
            && self
                .usage()
                .full(minute_now(), limits.rpm, limits.tpm)
                .is_some()
    }

    /// A place under `max` attempts in flight, in one atomic step (two
    /// requests racing for the last place cannot both be refused).
    pub fn enter(self: &Arc<Self>, max: u64) -> Option<Slot> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(Slot(self.clone()))
    }

    /// A place under `max`, once one is free (every waiter is woken when
    /// one is given back, and tries again: none is lost between the try
    /// and the wait).
    pub async fn enter_waiting(self: &Arc<Self>, max: u64) -> Slot {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(slot) = self.enter(max) {
                return slot;
            }
            freed.await;
        }
    }

    /// Admits one request under the per-minute limits (with Redis, across
    /// instances) and counts it; or says which limit it is at. Without a
    /// limit it is only counted.
    pub async fn reserve(&self, limits: &BackendLimits) -> Result<(), Full> {
        let minute = minute_now();
        if limits.per_minute()
            && let Some(redis) = self.redis.as_ref().filter(|r| r.is_up())
            && let Some(verdict) = reserve(redis, &self.key, minute, limits.rpm, limits.tpm).await
        {
            if verdict.is_ok() {
                self.usage().add_request(minute);
            }
            return verdict;
        }
        {
            let mut usage = self.usage();
            if let Some(full) = usage.full(minute, limits.rpm, limits.tpm) {
                return Err(full);
            }
            usage.add_request(minute);
        }
        if !limits.per_minute()
            && let Some(redis) = &self.redis
        {
            add_shared(redis.clone(), &self.key, "r", 1);
        }
        Ok(())
    }

    /// An answer's tokens (input + output).
    pub fn add_tokens(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.usage().add_tokens(minute_now(), n);
        if let Some(redis) = &self.redis {
            add_shared(redis.clone(), &self.key, "t", n);
        }
    }

    /// Every instance's counts this minute, from the Redis sync.
    pub fn set_shared(&self, counts: Counts) {
        self.usage().set_shared(counts);
    }
}

fn key(redis: &SharedRedis, backend_key: &str, minute: u64) -> String {
    redis.key(&format!("usage:{backend_key}:{minute}"))
}

/// KEYS[1]: the minute's hash; ARGV: rpm, tpm (0: none), expiry (ms).
/// Returns 0 when admitted (and counted), 1 at the rpm limit, 2 at the
/// tpm limit.
static RESERVE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local r = tonumber(redis.call('HGET', KEYS[1], 'r') or '0') or 0
local t = tonumber(redis.call('HGET', KEYS[1], 't') or '0') or 0
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
if rpm > 0 and r >= rpm then return 1 end
if tpm > 0 and t >= tpm then return 2 end
redis.call('HINCRBY', KEYS[1], 'r', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 0
",
    )
});

/// Admits one request at a limited backend across instances. `None` when
/// Redis does not answer (the caller counts locally).
pub async fn reserve(
    redis: &SharedRedis,
    backend_key: &str,
    minute: u64,
    rpm: Option<u64>,
    tpm: Option<u64>,
) -> Option<Result<(), Full>> {
    let k = key(redis, backend_key, minute);
    let (r, t) = (rpm.unwrap_or(0), tpm.unwrap_or(0));
    let verdict: i64 = redis
        .call("backend limit", |mut c| async move {
            RESERVE
                .key(&k)
                .arg(r)
                .arg(t)
                .arg(KEEP_MS)
                .invoke_async(&mut c)
                .await
        })
        .await?;
    Some(match verdict {
        1 => Err(Full::Requests(r)),
        2 => Err(Full::Tokens(t)),
        _ => Ok(()),
    })
}

/// Adds `n` to a count (`r` or `t`) in Redis, from a task of its own.
pub fn add_shared(
    redis: std::sync::Arc<SharedRedis>,
    backend_key: &str,
    field: &'static str,
    n: u64,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let k = key(&redis, backend_key, minute_now());
    runtime.spawn(async move {
        redis
            .call("backend usage", |mut c| async move {
                redis::pipe()
                    .atomic()
                    .cmd("HINCRBY")
                    .arg(&k)
                    .arg(field)
                    .arg(n)
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&k)
                    .arg(KEEP_MS)
                    .ignore()
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
    });
}

/// Every instance's counts this minute for each backend key, in `keys`'
/// order; `None` when Redis is away.
pub async fn read_shared(redis: &SharedRedis, keys: &[&str]) -> Option<Vec<Counts>> {
    let minute = minute_now();
    let keys: Vec<String> = keys.iter().map(|k| key(redis, k, minute)).collect();
    let rows: Vec<(Option<u64>, Option<u64>)> = redis
        .call("usage sync", |mut c| async move {
            let mut pipe = redis::pipe();
            for k in &keys {
                pipe.cmd("HMGET").arg(k).arg("r").arg("t");
            }
            pipe.query_async(&mut c).await
        })
        .await?;
    Some(
        rows.into_iter()
            .map(|(r, t)| Counts {
                minute,
                requests: r.unwrap_or(0),
                tokens: t.unwrap_or(0),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_places_are_taken_and_given_back_atomically() {
        let d = Arc::new(Deployment::new("k".into(), None));
        let one = d.enter(1).expect("a free place");
        assert!(d.enter(1).is_none(), "the only place is taken");
        drop(one);
        let two = d.enter(2).unwrap();
        let three = d.enter(2).unwrap();
        assert!(d.enter(2).is_none());
        drop((two, three));
        assert_eq!(d.in_flight.load(Ordering::Relaxed), 0);
        // Racing threads never take more places than there are, and never
        // all miss a free one.
        let d = Arc::new(Deployment::new("k".into(), None));
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (d, b) = (d.clone(), barrier.clone());
                std::thread::spawn(move || {
                    b.wait();
                    d.enter(3).map(std::mem::forget).is_some()
                })
            })
            .collect();
        let got = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|took| *took)
            .count();
        assert_eq!(got, 3);
    }

    #[test]
    fn counts_roll_over_with_the_minute() {
        let mut u = Usage::default();
        u.add_request(10);
        u.add_request(10);
        u.add_tokens(10, 50);
        assert_eq!(u.now(10).requests, 2);
        assert_eq!(u.full(10, Some(2), None), Some(Full::Requests(2)));
        assert_eq!(u.full(10, Some(3), Some(50)), Some(Full::Tokens(50)));
        assert_eq!(u.full(10, Some(3), Some(51)), None);
        // A new minute starts from nothing.
        assert_eq!(
            u.now(11),
            Counts {
                minute: 11,
                requests: 0,
                tokens: 0
            }
        );
        assert_eq!(u.full(11, Some(2), Some(50)), None);
        // Shared totals count when they are this minute's and larger.
        u.set_shared(Counts {
            minute: 11,
            requests: 5,
            tokens: 1,
        });
        assert_eq!(u.full(11, Some(5), None), Some(Full::Requests(5)));
        u.add_tokens(11, 7);
        assert_eq!(u.now(11).tokens, 7);
        assert_eq!(u.now(12).requests, 0);
    }
}
