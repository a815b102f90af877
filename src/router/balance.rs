//! Load balancing: the order in which one request tries the backends of one
//! model (a group), by `router_settings.routing_strategy`. Backends that are
//! cooling down or fail their health check are left out; when every backend
//! of the group is out, the one that failed least recently is tried anyway,
//! so a group never refuses outright.

use std::sync::Arc;
use std::time::Instant;

use crate::config::{Backend, RouterSettings, RoutingStrategy};

use super::state::{BackendState, Health, Registry};

/// What a strategy knows of one candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub weight: f64,
    pub order: Option<i64>,
    pub in_flight: u64,
    /// Recent latency in seconds; `None` when unknown (tried first, to
    /// learn it).
    pub latency: Option<f64>,
    /// Tokens and requests this minute (`usage-based`).
    pub tokens: u64,
    pub requests: u64,
    /// At one of its per-minute limits (as known here): tried last.
    pub full: bool,
}

/// The group's backends to try, in order, with their states.
pub fn order(
    group: &[Arc<Backend>],
    registry: &Registry,
    settings: &RouterSettings,
) -> Vec<(Arc<Backend>, Arc<BackendState>)> {
    let now = Instant::now();
    let usage_based = settings.strategy == RoutingStrategy::UsageBased;
    let states: Vec<_> = group
        .iter()
        .map(|b| {
            let s = registry.get(b);
            // Usage is counted where a limit or the strategy reads it, as
            // the live config says (a reload may add or drop either).
            // A copy (`limits_from`) may turn counting on, never off: its
            // base decides that, so siblings do not flip it.
            let on = usage_based || b.limits.per_minute();
            if on || b.limits.from.is_none() {
                s.deployment.track(on);
            }
            (b.clone(), s)
        })
        .collect();
    if states.len() == 1 {
        return states;
    }
    let (up, out): (Vec<_>, Vec<_>) = states
        .into_iter()
        .partition(|(_, s)| s.health(now) == Health::Healthy);
    if up.is_empty() {
        // Everything is out: the least recently failed one still gets a try.
        return out
            .into_iter()
            .min_by_key(|(_, s)| s.last_failure())
            .into_iter()
            .collect();
    }
    if up.len() == 1 {
        return up;
    }
    let candidates: Vec<Candidate> = up
        .iter()
        .map(|(b, s)| {
            let usage = if usage_based {
                s.deployment.counts()
            } else {
                Default::default()
            };
            Candidate {
                weight: b.routing.weight,
                order: b.routing.order,
                in_flight: s.in_flight(),
                latency: match settings.strategy {
                    RoutingStrategy::LatencyBased => s.latency(now),
                    _ => None,
                },
                tokens: usage.tokens,
                requests: usage.requests,
                full: s.deployment.full(&b.limits),
            }
        })
        .collect();
    let idx = arrange(
        settings.strategy,
        &candidates,
        settings.latency_buffer,
        &mut fastrand::Rng::new(),
    );
    let mut slots: Vec<Option<_>> = up.into_iter().map(Some).collect();
    idx.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// Indices of `c` in the order to try them.
pub fn arrange(
    strategy: RoutingStrategy,
    c: &[Candidate],
    latency_buffer: f64,
    rng: &mut fastrand::Rng,
) -> Vec<usize> {
    // A weighted random order (Efraimidis–Spirakis): the first pick follows
    // the weights, and so does each next one among those left.
    let keys: Vec<f64> = c.iter().map(|c| rng.f64().ln() / c.weight).collect();
    let mut idx: Vec<usize> = (0..c.len()).collect();
    let by_key = |a: &usize, b: &usize| keys[*b].total_cmp(&keys[*a]);
    // Backends at a per-minute limit go last, whatever the strategy.
    let arranged = |idx: &mut Vec<usize>| idx.sort_by_key(|i| c[*i].full);
    match strategy {
        RoutingStrategy::SimpleShuffle => idx.sort_by(by_key),
        // Ties keep file order: failover should be predictable.
        RoutingStrategy::Ordered => idx.sort_by_key(|i| (c[*i].order.is_none(), c[*i].order)),
        RoutingStrategy::LeastBusy => idx.sort_by(|a, b| {
            c[*a]
                .in_flight
                .cmp(&c[*b].in_flight)
                .then_with(|| by_key(a, b))
        }),
        RoutingStrategy::LatencyBased => {
            let lat = |i: usize| c[i].latency.unwrap_or(0.0);
            let fastest = (0..c.len()).map(lat).fold(f64::INFINITY, f64::min);
            let limit = fastest * (1.0 + latency_buffer);
            // Within the buffer of the fastest: weighted random; the rest
            // after them, fastest first.
            idx.sort_by(|a, b| {
                let (near_a, near_b) = (lat(*a) <= limit, lat(*b) <= limit);
                near_b
                    .cmp(&near_a)
                    .then_with(|| {
                        if near_a && near_b {
                            std::cmp::Ordering::Equal
                        } else {
                            lat(*a).total_cmp(&lat(*b))
                        }
                    })
                    .then_with(|| by_key(a, b))
            });
        }
        // LiteLLM's usage-based routing: the fewest tokens this minute,
        // then the fewest requests, then by weight.
        RoutingStrategy::UsageBased => idx.sort_by(|a, b| {
            (c[*a].tokens, c[*a].requests)
                .cmp(&(c[*b].tokens, c[*b].requests))
                .then_with(|| by_key(a, b))
        }),
    }
    arranged(&mut idx);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(weight: f64) -> Candidate {
        Candidate {
            weight,
            order: None,
            in_flight: 0,
            latency: None,
            tokens: 0,
            requests: 0,
            full: false,
        }
    }

    #[test]
    fn shuffle_follows_weights() {
        let c = [cand(3.0), cand(1.0)];
        let mut rng = fastrand::Rng::with_seed(7);
        let n = 20_000;
        let first = (0..n)
            .filter(|_| arrange(RoutingStrategy::SimpleShuffle, &c, 0.1, &mut rng)[0] == 0)
            .count();
        let share = first as f64 / n as f64;
        assert!((share - 0.75).abs() < 0.02, "{share}");
    }

    #[test]
    fn ordered_by_order_then_unordered() {
        let mut c = [cand(1.0), cand(1.0), cand(1.0), cand(9.0)];
        c[0].order = None;
        c[1].order = Some(2);
        c[2].order = Some(1);
        let mut rng = fastrand::Rng::with_seed(1);
        for _ in 0..50 {
            // Ties (no order at all) keep file order, whatever the weights.
            assert_eq!(
                arrange(RoutingStrategy::Ordered, &c, 0.1, &mut rng),
                [2, 1, 0, 3]
            );
        }
    }

    #[test]
    fn usage_based_most_headroom_first_and_full_last() {
        let mut c = [cand(1.0), cand(1.0), cand(1.0), cand(1.0)];
        c[0].tokens = 500;
        c[1].tokens = 20;
        c[2].tokens = 20;
        c[2].requests = 3;
        c[1].requests = 1;
        c[3].full = true;
        let mut rng = fastrand::Rng::with_seed(5);
        assert_eq!(
            arrange(RoutingStrategy::UsageBased, &c, 0.1, &mut rng),
            [1, 2, 0, 3]
        );
        // A full backend goes last under every strategy.
        c[0].full = true;
        for s in [RoutingStrategy::SimpleShuffle, RoutingStrategy::Ordered] {
            let o = arrange(s, &c, 0.1, &mut rng);
            assert!(o[2] == 0 || o[2] == 3, "{o:?}");
            assert!(o[3] == 0 || o[3] == 3, "{o:?}");
        }
    }

    #[test]
    fn least_busy_first() {
        let mut c = [cand(1.0), cand(1.0), cand(1.0)];
        c[0].in_flight = 4;
        c[1].in_flight = 0;
        c[2].in_flight = 2;
        let mut rng = fastrand::Rng::with_seed(1);
        assert_eq!(
            arrange(RoutingStrategy::LeastBusy, &c, 0.1, &mut rng),
            [1, 2, 0]
        );
    }

    #[test]
    fn latency_based_prefers_fast_and_explores_unknown() {
        let mut c = [cand(1.0), cand(1.0), cand(1.0)];
        c[0].latency = Some(0.5);
        c[1].latency = Some(0.1);
        c[2].latency = Some(0.105);
        let mut rng = fastrand::Rng::with_seed(3);
        let mut firsts = [0; 3];
        for _ in 0..200 {
            let o = arrange(RoutingStrategy::LatencyBased, &c, 0.1, &mut rng);
            assert_eq!(o[2], 0, "the slow one comes last");
            firsts[o[0]] += 1;
        }
        // 1 and 2 are within 10% of each other: both get traffic.
        assert!(firsts[1] > 50 && firsts[2] > 50, "{firsts:?}");
        // A backend never measured is tried first.
        c[0].latency = None;
        assert_eq!(
            arrange(RoutingStrategy::LatencyBased, &c, 0.1, &mut rng)[0],
            0
        );
    }
}
