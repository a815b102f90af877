//! `router_settings` other than `fallbacks` (see `models.rs`): retries,
//! backoff, the routing strategy and cooldowns.

use std::time::Duration;

use super::check::seconds;
use super::errors::Errors;
use super::raw::RawRouterSettings;
use super::{RouterSettings, RoutingStrategy, nearest};

pub(super) fn resolve(rs: RawRouterSettings, errors: &mut Errors) -> RouterSettings {
    RouterSettings {
        num_retries: rs.num_retries.unwrap_or(0),
        retry_backoff: Duration::from_millis(rs.retry_backoff_ms.unwrap_or(100)),
        max_retry_after: seconds(
            rs.max_retry_after,
            Duration::from_secs(10),
            &"router_settings.max_retry_after".into(),
            errors,
        ),
        strategy: strategy(rs.routing_strategy.as_deref(), errors),
        allowed_fails: rs.allowed_fails.unwrap_or(3),
        cooldown_time: seconds(
            rs.cooldown_time,
            Duration::from_secs(5),
            &"router_settings.cooldown_time".into(),
            errors,
        ),
        latency_buffer: match rs.latency_buffer {
            None => 0.1,
            Some(b) if b.is_finite() && b >= 0.0 => b,
            Some(b) => {
                errors.at(
                    "router_settings.latency_buffer",
                    format!("must be a fraction >= 0 (0.1 = 10%), got {b}"),
                );
                0.1
            }
        },
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
