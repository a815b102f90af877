//! GCRA (generic cell rate algorithm) on "theoretical arrival times", the
//! one rule both the in-process table and the Redis script follow.
//!
//! A limit is a key holding a time `tat` (microseconds). A request checks
//! `max(tat, now) - now <= tolerance`; if it conforms, `tat` moves on by
//! the request's cost. Requests per minute: cost `60 s / rpm`, tolerance
//! `60 s - cost`, so `rpm` requests may come at once and then one every
//! `60 s / rpm`. Tokens per minute: the check costs nothing, the tokens are
//! charged after the answer at `60 s / tpm` each, with a minute's tolerance:
//! a key is admitted while it is not in debt, and an answer may take it
//! into debt, which later requests wait out.

use std::collections::HashMap;

/// A minute, in microseconds.
pub const MINUTE_US: u64 = 60_000_000;

/// One limit to check (and charge) for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The key of this limit (prefixed in Redis).
    pub key: String,
    /// Largest conforming `tat - now`.
    pub tolerance: u64,
    /// What admitting the request adds to `tat` (0: check only).
    pub cost: u64,
}

impl Check {
    /// Requests per minute.
    pub fn rpm(key: String, rpm: u64) -> Check {
        let cost = (MINUTE_US / rpm.max(1)).max(1);
        Check {
            key,
            tolerance: MINUTE_US.saturating_sub(cost),
            cost,
        }
    }

    /// Tokens per minute: admission checks only.
    pub fn tpm(key: String) -> Check {
        Check {
            key,
            tolerance: MINUTE_US,
            cost: 0,
        }
    }
}

/// What `tokens` cost against a tokens-per-minute limit.
pub fn token_cost(tokens: u64, tpm: u64) -> u64 {
    let tpm = u128::from(tpm.max(1));
    let us = (u128::from(tokens) * u128::from(MINUTE_US)).div_ceil(tpm);
    u64::try_from(us).unwrap_or(u64::MAX)
}

/// A refusal: which check (index) and how long until it would conform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Over {
    pub index: usize,
    pub wait_us: u64,
}

/// The in-process form: keys to `tat`, microseconds on the limiter's clock.
#[derive(Debug, Default)]
pub struct Table {
    tats: HashMap<String, u64>,
    ops: u32,
}

impl Table {
    /// Checks every limit; admits (charging all) only if all conform, else
    /// reports the one that needs the longest wait.
    pub fn admit(&mut self, checks: &[Check], now: u64) -> Result<(), Over> {
        self.maybe_prune(now);
        let mut worst: Option<Over> = None;
        for (index, c) in checks.iter().enumerate() {
            let tat = self.tats.get(&c.key).copied().unwrap_or(0).max(now);
            let ahead = tat - now;
            if ahead > c.tolerance {
                let wait_us = ahead - c.tolerance;
                if worst.is_none_or(|w| wait_us > w.wait_us) {
                    worst = Some(Over { index, wait_us });
                }
            }
        }
        if let Some(w) = worst {
            return Err(w);
        }
        for c in checks.iter().filter(|c| c.cost > 0) {
            self.add(&c.key, c.cost, now);
        }
        Ok(())
    }

    /// Moves `key`'s `tat` on by `cost` (tokens after an answer).
    pub fn add(&mut self, key: &str, cost: u64, now: u64) {
        match self.tats.get_mut(key) {
            Some(tat) => *tat = (*tat).max(now).saturating_add(cost),
            None => {
                self.tats.insert(key.to_string(), now.saturating_add(cost));
            }
        }
    }

    /// Forgets keys whose `tat` has passed (they are as good as new), now
    /// and then.
    fn maybe_prune(&mut self, now: u64) {
        self.ops = self.ops.wrapping_add(1);
        if self.ops.is_multiple_of(1024) {
            self.tats.retain(|_, tat| *tat > now);
        }
    }

    #[cfg(test)]
    pub fn keys(&self) -> usize {
        self.tats.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    #[test]
    fn rpm_allows_a_burst_then_spaces_requests() {
        let mut t = Table::default();
        let c = [Check::rpm("k".into(), 2)];
        assert!(t.admit(&c, 0).is_ok());
        assert!(t.admit(&c, 0).is_ok());
        assert_eq!(
            t.admit(&c, 0),
            Err(Over {
                index: 0,
                wait_us: 30 * S
            })
        );
        assert_eq!(
            t.admit(&c, 10 * S),
            Err(Over {
                index: 0,
                wait_us: 20 * S
            })
        );
        assert!(t.admit(&c, 30 * S).is_ok());
        assert!(t.admit(&c, 30 * S).is_err());
    }

    #[test]
    fn tpm_admits_until_in_debt_and_reports_the_longest_wait() {
        let mut t = Table::default();
        let checks = [Check::rpm("r".into(), 1000), Check::tpm("t".into())];
        assert!(t.admit(&checks, 0).is_ok());
        // 150 tokens against 100 per minute: 90 s of debt, 30 beyond a minute.
        t.add("t", token_cost(150, 100), 0);
        assert_eq!(
            t.admit(&checks, 0),
            Err(Over {
                index: 1,
                wait_us: 30 * S
            })
        );
        assert!(t.admit(&checks, 30 * S).is_ok());
    }

    #[test]
    fn a_refused_request_charges_nothing() {
        let mut t = Table::default();
        let a = [Check::rpm("a".into(), 1)];
        let both = [Check::rpm("b".into(), 10), Check::rpm("a".into(), 1)];
        assert!(t.admit(&a, 0).is_ok());
        assert_eq!(t.admit(&both, 0).unwrap_err().index, 1);
        // `b` was not charged by the refusal: all ten are still there.
        for _ in 0..10 {
            assert!(t.admit(&[Check::rpm("b".into(), 10)], 0).is_ok());
        }
    }

    #[test]
    fn token_costs_round_up_and_old_keys_go() {
        assert_eq!(token_cost(1, 2_000_000), 30);
        assert_eq!(token_cost(1, 1_000_000_000), 1);
        assert_eq!(token_cost(0, 5), 0);
        let mut t = Table::default();
        t.add("old", 5, 0);
        for i in 0..1024 {
            let _ = t.admit(&[], 10 + i);
        }
        assert_eq!(t.keys(), 0);
    }
}
