//! Rate limits (`proxy_settings.rate_limits`): requests and tokens per
//! minute, over all clients (`global`) and per client (`per_key`), by GCRA
//! (see [`gcra`]). With Redis the limits are kept there and hold across
//! instances; when Redis does not answer, each instance falls back to its
//! own table (more lenient: every instance then allows the whole limit).
//!
//! A client is its presented key (`Authorization: Bearer` or `x-api-key`),
//! hashed, when client keys are configured (the key is then one of them):
//! the key itself is never stored, logged or sent to Redis. Without
//! configured keys a request counts against its client address (hashed
//! too), whatever token it presents: rotating tokens escapes nothing.
//!
//! Tokens are known only after the answer, so a request is admitted while
//! its buckets are not in debt, and the answer's usage (input + output) is
//! charged when it is known: at the end of a JSON answer, or of a stream.

pub mod gcra;
mod redis;

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::config::RateLimits;
use crate::redis::SharedRedis;
use gcra::{Check, Table};

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global,
    Key,
    /// A virtual key's team (docs/keys-and-spend.md).
    Team,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Global => "global",
            Scope::Key => "key",
            Scope::Team => "team",
        }
    }
}

/// Requests or tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Requests,
    Tokens,
    /// Requests in flight at once (`max_parallel_requests`).
    Parallel,
}

/// A request refused by a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    pub scope: Scope,
    pub unit: Unit,
    /// The limit, per minute.
    pub limit: u64,
    /// Until the request would be admitted.
    pub retry_after: Duration,
}

impl Denied {
    /// Whole seconds for `Retry-After` (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_micros().div_ceil(1_000_000).max(1) as u64
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, short) = match self.unit {
            Unit::Requests => ("requests", "rpm"),
            Unit::Tokens => ("tokens", "tpm"),
            Unit::Parallel => {
                return write!(
                    f,
                    "Too many requests in flight on this proxy: at most {} at once \
                     (max_parallel_requests). Retry in {} s.",
                    self.limit,
                    self.retry_after_secs()
                );
            }
        };
        let scope = match self.scope {
            Scope::Global => "for all clients of this proxy",
            Scope::Key => "for this API key",
            Scope::Team => "for this API key's team",
        };
        write!(
            f,
            "Rate limit reached {scope}: {} {unit} per minute ({short}). Retry in {} s.",
            self.limit,
            self.retry_after_secs()
        )
    }
}

/// The limiter: one per proxy, kept across reloads (the limits themselves
/// come from the config each request reads).
pub struct Limiter {
    local: Mutex<Table>,
    epoch: Instant,
    redis: Option<Arc<SharedRedis>>,
    /// Requests admitted and not yet finished (`max_parallel_requests`).
    in_flight: Arc<AtomicU64>,
}

/// What an admitted request owes once its tokens are known.
pub struct Ticket {
    limiter: Arc<Limiter>,
    /// Token-per-minute keys and their limits.
    tpm: Vec<(String, u64)>,
    /// Held while the request is in flight (`max_parallel_requests`).
    _parallel: Option<InFlight>,
}

/// One request in flight; counted down when dropped.
struct InFlight(Arc<AtomicU64>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Limiter {
    pub fn new(redis: Option<Arc<SharedRedis>>) -> Arc<Limiter> {
        Arc::new(Limiter {
            local: Mutex::new(Table::default()),
            epoch: Instant::now(),
            redis,
            in_flight: Arc::new(AtomicU64::new(0)),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Admits a request of `client` (see [`client_id`]) or says which limit
    /// it is over. `Ok(None)` when no limit is configured.
    pub async fn admit(
        self: &Arc<Self>,
        limits: &RateLimits,
        client: &str,
        team: Option<(&str, crate::config::Limit)>,
    ) -> Result<Option<Ticket>, Denied> {
        let team = team.filter(|(_, l)| *l != crate::config::Limit::default());
        if !limits.any() && team.is_none() {
            return Ok(None);
        }
        let parallel = match limits.max_parallel {
            Some(max) => {
                let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
                let guard = InFlight(self.in_flight.clone());
                if before >= max {
                    metrics::counter!(crate::metrics_names::RATE_LIMITED, "scope" => Scope::Global.as_str())
                        .increment(1);
                    return Err(Denied {
                        scope: Scope::Global,
                        unit: Unit::Parallel,
                        limit: max,
                        retry_after: Duration::from_secs(1),
                    });
                }
                Some(guard)
            }
            None => None,
        };
        let mut checks: Vec<Check> = Vec::with_capacity(6);
        let mut about: Vec<(Scope, Unit, u64)> = Vec::with_capacity(6);
        let mut tpm = Vec::new();
        let mut scopes = vec![
            (Scope::Key, limits.per_key, format!("rl:{client}:")),
            (Scope::Global, limits.global, "rl:global:".to_string()),
        ];
        if let Some((id, limit)) = team {
            scopes.push((Scope::Team, limit, format!("rl:team:{id}:")));
        }
        for (scope, limit, prefix) in scopes {
            if let Some(rpm) = limit.rpm {
                checks.push(Check::rpm(format!("{prefix}rpm"), rpm));
                about.push((scope, Unit::Requests, rpm));
            }
            if let Some(t) = limit.tpm {
                let key = format!("{prefix}tpm");
                checks.push(Check::tpm(key.clone()));
                about.push((scope, Unit::Tokens, t));
                tpm.push((key, t));
            }
        }
        if checks.is_empty() {
            return Ok(Some(Ticket {
                limiter: self.clone(),
                tpm,
                _parallel: parallel,
            }));
        }
        let shared = match &self.redis {
            Some(r) => redis::admit(r, &checks).await,
            None => None,
        };
        let verdict = match shared {
            Some(v) => v,
            None => {
                let now = self.now();
                match self.local.lock() {
                    Ok(mut t) => t.admit(&checks, now),
                    // A poisoned table: better to serve than to refuse all.
                    Err(_) => Ok(()),
                }
            }
        };
        match verdict {
            Ok(()) => Ok(Some(Ticket {
                limiter: self.clone(),
                tpm,
                _parallel: parallel,
            })),
            Err(over) => {
                let (scope, unit, limit) =
                    about
                        .get(over.index)
                        .copied()
                        .unwrap_or((Scope::Global, Unit::Requests, 0));
                metrics::counter!(crate::metrics_names::RATE_LIMITED, "scope" => scope.as_str())
                    .increment(1);
                Err(Denied {
                    scope,
                    unit,
                    limit,
                    retry_after: Duration::from_micros(over.wait_us),
                })
            }
        }
    }

    fn charge_local(&self, charges: &[(String, u64)]) {
        let now = self.now();
        if let Ok(mut t) = self.local.lock() {
            for (key, cost) in charges {
                t.add(key, *cost, now);
            }
        }
    }
}

impl Ticket {
    /// Charges the answer's tokens against the token limits, without
    /// waiting (in Redis from a task of its own).
    pub fn charge(self, tokens: u64) {
        if self.tpm.is_empty() || tokens == 0 {
            return;
        }
        let charges: Vec<(String, u64)> = self
            .tpm
            .into_iter()
            .map(|(key, tpm)| (key, gcra::token_cost(tokens, tpm)))
            .collect();
        let limiter = self.limiter;
        // Outside a runtime (a stream dropped while the runtime stops) the
        // charge stays local.
        let runtime = tokio::runtime::Handle::try_current().ok();
        match limiter.redis.clone().filter(|r| r.is_up()).zip(runtime) {
            Some((r, runtime)) => {
                runtime.spawn(async move {
                    if !redis::charge(&r, &charges).await {
                        limiter.charge_local(&charges);
                    }
                });
            }
            None => limiter.charge_local(&charges),
        }
    }
}

/// The bucket a request counts against: `key:` and a hash of its key, or
/// `ip:` and a hash of its address, or `anonymous`.
pub fn client_id(key: Option<&str>, addr: Option<IpAddr>) -> String {
    fn short_hash(bytes: &[u8]) -> String {
        let digest = Sha256::digest(bytes);
        let mut out = String::with_capacity(24);
        for b in &digest[..12] {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
        out
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match (key.filter(|k| !k.is_empty()), addr) {
        (Some(k), _) => format!("key:{}", short_hash(k.as_bytes())),
        (None, Some(ip)) => format!("ip:{}", short_hash(ip.to_string().as_bytes())),
        (None, None) => "anonymous".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limit;

    #[test]
    fn client_ids_hide_the_key() {
        let a = client_id(Some("sk-secret"), None);
        assert!(
            a.starts_with("key:") && !a.contains("secret") && a.len() == 28,
            "{a}"
        );
        assert_eq!(a, client_id(Some("sk-secret"), "127.0.0.1".parse().ok()));
        assert_ne!(a, client_id(Some("sk-other"), None));
        assert!(client_id(None, "10.0.0.1".parse().ok()).starts_with("ip:"));
        assert_eq!(client_id(Some(""), None), "anonymous");
    }

    #[tokio::test]
    async fn local_limits_refuse_with_the_scope_and_wait() {
        let l = Limiter::new(None);
        let limits = RateLimits {
            global: Limit {
                rpm: Some(3),
                tpm: None,
            },
            per_key: Limit {
                rpm: Some(1),
                tpm: Some(100),
            },
            max_parallel: None,
        };
        assert!(l.admit(&limits, "key:a", None).await.is_ok());
        let d = l.admit(&limits, "key:a", None).await.err().unwrap();
        assert_eq!((d.scope, d.unit, d.limit), (Scope::Key, Unit::Requests, 1));
        assert_eq!(d.retry_after_secs(), 60);
        assert!(d.to_string().contains("1 requests per minute (rpm)"));
        let t = l.admit(&limits, "key:b", None).await.unwrap().unwrap();
        t.charge(250);
        // key:b is in debt for tokens: 150 tokens beyond a minute's worth.
        let d = l.admit(&limits, "key:b", None).await.err().unwrap();
        assert_eq!(d.unit, Unit::Tokens);
        assert!(l.admit(&limits, "key:c", None).await.is_ok());
        let d = l.admit(&limits, "key:d", None).await.err().unwrap();
        assert_eq!(d.scope, Scope::Global);
        assert!(
            Limiter::new(None)
                .admit(&RateLimits::default(), "x", None)
                .await
                .unwrap()
                .is_none()
        );
    }
}
