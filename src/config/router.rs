//! `router_settings` other than `fallbacks` (see `models.rs`): retries,
//! backoff, the routing strategy and cooldowns.

use std::time::Duration;

use super::check::seconds;
use super::errors::Errors;
use super::raw::{DEFAULT_COOLDOWN_TIME, DEFAULT_MAX_RETRY_AFTER, RawRouterSettings};
use super::{RouterSettings, RoutingStrategy, nearest};

pub(super) fn resolve(rs: RawRouterSettings, errors: &mut Errors) -> RouterSettings {
    RouterSettings {
        num_retries: rs.num_retries(),
        retry_backoff: Duration::from_millis(rs.retry_backoff_ms()),
        max_retry_after: seconds(
            rs.max_retry_after,
            DEFAULT_MAX_RETRY_AFTER,
            &"router_settings.max_retry_after".into(),
            errors,
        ),
        strategy: strategy(rs.routing_strategy.as_deref(), errors),
        allowed_fails: rs.allowed_fails(),
        cooldown_time: seconds(
            rs.cooldown_time,
            DEFAULT_COOLDOWN_TIME,
            &"router_settings.cooldown_time".into(),
            errors,
        ),
        latency_buffer: {
            let b = rs.latency_buffer();
            if !(b.is_finite() && b >= 0.0) {
                errors.at(
                    "router_settings.latency_buffer",
                    format!("must be a fraction >= 0 (0.1 = 10%), got {b}"),
                );
            }
            b
        },
        cooldowns: !rs.disable_cooldowns.unwrap_or(false),
    }
}

fn strategy(name: Option<&str>, errors: &mut Errors) -> RoutingStrategy {
    let Some(name) = name else {
        return RoutingStrategy::default();
    };
    RoutingStrategy::parse(name.trim()).unwrap_or_else(|| {
        let hint = nearest(name, RoutingStrategy::NAMES)
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        errors.at(
            "router_settings.routing_strategy",
            format!(
                "unknown strategy `{name}` (one of: {}){hint}",
                RoutingStrategy::NAMES.join(", ")
            ),
        );
        RoutingStrategy::default()
    })
}
