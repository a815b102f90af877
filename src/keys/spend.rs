//! Spend counters: what each key and team spent in its current budget
//! period. With Redis (`redis_url`) the counters are Redis keys every
//! instance adds to, so a budget holds across instances; without it (or
//! while Redis is down) each instance counts on its own. Either way a
//! counter starts from the request log's database (the costs logged since
//! the period began), so a restart does not forget what was spent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::store::{self, Owner};
use crate::grant::Period;
use crate::redis::SharedRedis;
use crate::reqlog::db::Db;

/// How long seeding a counter from the database may take on the request
/// path (once per key and period); past it the counter starts at 0.
const SEED_TIMEOUT: Duration = Duration::from_secs(2);

/// One counter: whose, and the start of its period (epoch ms; 0 for a
/// lifetime budget).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Counter {
    pub owner: Owner,
    /// A key's id, a team's name (as the request log records it).
    pub who: String,
    pub since_ms: i64,
}

impl Counter {
    pub fn new(owner: Owner, who: &str, period: Option<Period>, now: DateTime<Utc>) -> Counter {
        Counter {
            owner,
            who: who.to_string(),
            since_ms: period.map_or(0, |p| p.start(now).timestamp_millis()),
        }
    }

    fn redis_name(&self) -> String {
        let owner = match self.owner {
            Owner::Key => "key",
            Owner::Team => "team",
        };
        format!("spend:{owner}:{}:{}", self.who, self.since_ms)
    }

    fn since(&self) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_millis(self.since_ms).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }
}

#[derive(Default)]
struct Slot {
    spent: f64,
    seeded: bool,
}

/// The counters.
pub struct Spend {
    local: Mutex<HashMap<Counter, Slot>>,
    db: Option<Db>,
    redis: Option<Arc<SharedRedis>>,
    /// Charges Redis did not take (it was down): counted locally only.
    pub redis_misses: AtomicU64,
}

/// Redis keeps a counter this long past its period's start (periods up
/// to a year; a lifetime counter is seeded again from the database when
/// it has expired).
const REDIS_TTL_SECS: i64 = 400 * 24 * 3600;

impl Spend {
    pub fn new(db: Option<Db>, redis: Option<Arc<SharedRedis>>) -> Spend {
        Spend {
            local: Mutex::new(HashMap::new()),
            db,
            redis,
            redis_misses: AtomicU64::new(0),
        }
    }

    /// What the database says was spent in the counter's period.
    async fn logged(&self, c: &Counter) -> f64 {
        let Some(db) = &self.db else { return 0.0 };
        match tokio::time::timeout(
            SEED_TIMEOUT,
            store::spent_since(db, c.owner, &c.who, c.since()),
        )
        .await
        {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "spend: could not read the logged spend");
                0.0
            }
            Err(_) => {
                tracing::warn!("spend: reading the logged spend timed out");
                0.0
            }
        }
    }

    /// What the counter holds now.
    pub async fn spent(&self, c: &Counter) -> f64 {
        if let Some(redis) = &self.redis
            && let Some(v) = self.in_redis(redis, c).await
        {
            return v;
        }
        let seeded = self
            .local
            .lock()
            .ok()
            .and_then(|m| m.get(c).map(|s| (s.seeded, s.spent)));
        match seeded {
            Some((true, spent)) => spent,
            _ => {
                let base = self.logged(c).await;
                let Ok(mut m) = self.local.lock() else {
                    return base;
                };
                let slot = m.entry(c.clone()).or_default();
                if !slot.seeded {
                    // Charges made while the seed was read are kept on top.
                    slot.spent += base;
                    slot.seeded = true;
                }
                slot.spent
            }
        }
    }

    async fn in_redis(&self, redis: &SharedRedis, c: &Counter) -> Option<f64> {
        let key = redis.key(&c.redis_name());
        let got: Option<String> = redis
            .call("spend get", |mut conn| {
                let key = key.clone();
                async move { redis::cmd("GET").arg(&key).query_async(&mut conn).await }
            })
            .await?;
        if let Some(v) = got {
            return v.parse().ok();
        }
        // First use of this period anywhere (or expired): seed it from
        // the log; SET NX so that two instances seeding at once agree.
        let base = self.logged(c).await;
        let set: Option<String> = redis
            .call("spend seed", |mut conn| {
                let key = key.clone();
                async move {
                    redis::cmd("SET")
                        .arg(&key)
                        .arg(base.to_string())
                        .arg("NX")
                        .arg("EX")
                        .arg(REDIS_TTL_SECS)
                        .query_async(&mut conn)
                        .await
                }
            })
            .await?;
        if set.is_some() {
            return Some(base);
        }
        let now: Option<String> = redis
            .call("spend get", |mut conn| async move {
                redis::cmd("GET").arg(&key).query_async(&mut conn).await
            })
            .await?;
        now.and_then(|v| v.parse().ok())
    }

    /// Adds `usd` to each counter: locally at once, in Redis in the
    /// background.
    pub fn charge(self: &Arc<Self>, counters: Vec<Counter>, usd: f64) {
        if !(usd.is_finite() && usd > 0.0) {
            return;
        }
        if let Ok(mut m) = self.local.lock() {
            for c in &counters {
                m.entry(c.clone()).or_default().spent += usd;
            }
        }
        let Some(redis) = self.redis.clone() else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            for c in counters {
                let key = redis.key(&c.redis_name());
                let done: Option<()> = redis
                    .call("spend charge", |mut conn| async move {
                        redis::pipe()
                            .cmd("INCRBYFLOAT")
                            .arg(&key)
                            .arg(usd.to_string())
                            .ignore()
                            .cmd("EXPIRE")
                            .arg(&key)
                            .arg(REDIS_TTL_SECS)
                            .arg("NX")
                            .ignore()
                            .query_async(&mut conn)
                            .await
                    })
                    .await;
                if done.is_none() {
                    this.redis_misses.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_counters_add_up_per_period() {
        let spend = Arc::new(Spend::new(None, None));
        let now = Utc::now();
        let day = Counter::new(Owner::Key, "k1", Some(Period::Days(1)), now);
        let life = Counter::new(Owner::Key, "k1", None, now);
        assert_eq!(spend.spent(&day).await, 0.0);
        spend.charge(vec![day.clone(), life.clone()], 0.25);
        spend.charge(vec![day.clone()], 0.5);
        spend.charge(vec![day.clone()], f64::NAN);
        assert!((spend.spent(&day).await - 0.75).abs() < 1e-12);
        assert!((spend.spent(&life).await - 0.25).abs() < 1e-12);
        assert_eq!(life.since_ms, 0);
    }
}
