//! `router_settings` other than the fallbacks (see `models.rs`): retries,
//! backoff, the routing strategy, cooldowns, and the policies per kind of
//! failure (`retry_policy`, `model_group_retry_policy`,
//! `allowed_fails_policy`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::check::seconds;
use super::errors::{Errors, KeyPath};
use super::raw::{DEFAULT_COOLDOWN_TIME, DEFAULT_MAX_RETRY_AFTER, RawRouterSettings};
use super::{KindCounts, ModelConfig, RouterSettings, RoutingStrategy, nearest};

pub(super) fn resolve(
    mut rs: RawRouterSettings,
    errors: &mut Errors,
    warnings: &mut Vec<String>,
) -> RouterSettings {
    let retry_policy = rs
        .retry_policy
        .take()
        .map(|p| {
            policy(
                p,
                Policy::Retries,
                &"router_settings.retry_policy".into(),
                errors,
                warnings,
            )
        })
        .unwrap_or_default();
    let at = KeyPath::new("router_settings.model_group_retry_policy");
    let model_group_retry_policy = rs
        .model_group_retry_policy
        .take()
        .unwrap_or_default()
        .into_iter()
        .map(|(model, p)| {
            let counts = policy(p, Policy::Retries, &at.key(&model), errors, warnings);
            (model, counts)
        })
        .collect::<HashMap<_, _>>();
    let allowed_fails_policy = rs
        .allowed_fails_policy
        .take()
        .map(|p| {
            policy(
                p,
                Policy::AllowedFails,
                &"router_settings.allowed_fails_policy".into(),
                errors,
                warnings,
            )
        })
        .unwrap_or_default();
    RouterSettings {
        retry_policy,
        model_group_retry_policy: Arc::new(model_group_retry_policy),
        allowed_fails_policy,
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
        pre_call_checks: rs.enable_pre_call_checks.unwrap_or(false),
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

/// Which policy a map is: its LiteLLM key names differ.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Policy {
    Retries,
    AllowedFails,
}

/// A policy map read: each key a kind, by yallmp's name (`rate_limit`) or
/// LiteLLM's (`RateLimitErrorRetries` / `RateLimitErrorAllowedFails`);
/// `retry_policy` also takes `default` (LiteLLM's `DefaultRetries`). A kind
/// given twice, or a key that is neither, is an error, except a
/// LiteLLM-shaped name yallmp does not know (`…ErrorRetries`,
/// `…AllowedFails`): LiteLLM adds kinds over time, and its own keys load
/// with a warning.
fn policy(
    raw: BTreeMap<String, u32>,
    which: Policy,
    at: &KeyPath,
    errors: &mut Errors,
    warnings: &mut Vec<String>,
) -> KindCounts {
    let mut counts = KindCounts::default();
    let mut given: Vec<(&'static str, String)> = Vec::new();
    let litellm_name =
        |k: &(&'static str, Option<&'static str>, Option<&'static str>, _)| match which {
            Policy::Retries => k.1,
            Policy::AllowedFails => k.2,
        };
    for (key, n) in raw {
        let found = KindCounts::KEYS
            .iter()
            .find(|k| k.0 == key || litellm_name(k) == Some(key.as_str()))
            .map(|k| (k.0, k.3));
        let slot: Option<(&'static str, &mut Option<u32>)> = match found {
            Some((name, field)) => Some((name, field(&mut counts))),
            None if which == Policy::Retries && (key == "default" || key == "DefaultRetries") => {
                Some(("default", &mut counts.default))
            }
            None => None,
        };
        match slot {
            Some((name, field)) => {
                if let Some((_, first)) = given.iter().find(|(n, _)| *n == name) {
                    errors.at(
                        at.key(&key),
                        format!("the same kind as `{first}` (`{name}`); give it once"),
                    );
                } else {
                    *field = Some(n);
                    given.push((name, key));
                }
            }
            None => unknown_kind(&key, which, at, errors, warnings),
        }
    }
    counts
}

/// The names a policy's keys may have.
fn kind_names(which: Policy) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = KindCounts::KEYS.iter().map(|k| k.0).collect();
    names.extend(KindCounts::KEYS.iter().filter_map(|k| match which {
        Policy::Retries => k.1,
        Policy::AllowedFails => k.2,
    }));
    if which == Policy::Retries {
        names.extend(["default", "DefaultRetries"]);
    }
    names
}

fn unknown_kind(
    key: &str,
    which: Policy,
    at: &KeyPath,
    errors: &mut Errors,
    warnings: &mut Vec<String>,
) {
    let names = kind_names(which);
    let hint = nearest(key, &names)
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default();
    let litellm_shaped = key.starts_with(|c: char| c.is_ascii_uppercase())
        && match which {
            Policy::Retries => key.ends_with("Retries"),
            Policy::AllowedFails => key.ends_with("AllowedFails"),
        };
    if litellm_shaped {
        warnings.push(format!(
            "{}: LiteLLM kind of failure not told apart by yallmp; ignored{hint}",
            at.key(key)
        ));
    } else {
        let yallmp: Vec<&str> = KindCounts::KEYS.iter().map(|k| k.0).collect();
        errors.at(
            at.key(key),
            format!(
                "unknown kind of failure `{key}` (one of: {}{}, or LiteLLM's names){hint}",
                yallmp.join(", "),
                if which == Policy::Retries {
                    ", default"
                } else {
                    ""
                },
            ),
        );
    }
}

/// `model_group_retry_policy` names models of `model_list`.
pub(super) fn check_model_groups(
    router: &RouterSettings,
    models: &[ModelConfig],
    errors: &mut Errors,
) {
    let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
    let mut unknown: Vec<&String> = router
        .model_group_retry_policy
        .keys()
        .filter(|m| !names.contains(&m.as_str()))
        .collect();
    unknown.sort();
    for model in unknown {
        let hint = nearest(model, &names)
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        errors.at(
            KeyPath::new("router_settings.model_group_retry_policy").key(model),
            format!(
                "unknown model `{model}` (models: {}){hint}",
                names.join(", ")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(which: Policy, pairs: &[(&str, u32)]) -> (KindCounts, Vec<String>, Vec<String>) {
        let raw = pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let mut errors = Errors::default();
        let mut warnings = Vec::new();
        let c = policy(raw, which, &"p".into(), &mut errors, &mut warnings);
        (c, errors.into_lines(), warnings)
    }

    #[test]
    fn litellm_and_yallmp_names_mean_the_same_kind() {
        let (c, e, w) = read(
            Policy::Retries,
            &[
                ("BadRequestErrorRetries", 2),
                ("AuthenticationErrorRetries", 1),
                ("TimeoutErrorRetries", 4),
                ("rate_limit", 0),
                ("ContentPolicyViolationErrorRetries", 3),
                ("internal_server", 5),
                ("context_window", 6),
                ("NotFoundErrorRetries", 7),
                ("DefaultRetries", 8),
            ],
        );
        assert!(e.is_empty() && w.is_empty(), "{e:?} {w:?}");
        assert_eq!(
            c,
            KindCounts {
                bad_request: Some(2),
                authentication: Some(1),
                timeout: Some(4),
                rate_limit: Some(0),
                content_policy: Some(3),
                internal_server: Some(5),
                context_window: Some(6),
                not_found: Some(7),
                default: Some(8),
                ..KindCounts::default()
            }
        );
        let (c, e, _) = read(
            Policy::AllowedFails,
            &[
                ("AuthenticationErrorAllowedFails", 1),
                ("ServiceUnavailableErrorAllowedFails", 2),
                ("bad_gateway", 3),
            ],
        );
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(
            (c.authentication, c.service_unavailable, c.bad_gateway),
            (Some(1), Some(2), Some(3))
        );
    }

    #[test]
    fn unknown_names_are_errors_unless_litellm_shaped() {
        let (_, e, w) = read(Policy::Retries, &[("rate_limt", 1)]);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("p.rate_limt: unknown kind of failure"),
            "{e:?}"
        );
        assert!(e[0].ends_with("did you mean `rate_limit`?"), "{e:?}");
        assert!(w.is_empty());
        // LiteLLM's own key namespace: a warning, with the near name.
        let (c, e, w) = read(Policy::Retries, &[("UnprocessableEntityErrorRetries", 1)]);
        assert!(e.is_empty() && c.is_empty());
        assert_eq!(w.len(), 1);
        assert!(
            w[0].starts_with("p.UnprocessableEntityErrorRetries: LiteLLM kind"),
            "{w:?}"
        );
        // An allowed-fails name in a retry policy is not a retry name.
        let (_, e, w) = read(Policy::Retries, &[("RateLimitErrorAllowedFails", 1)]);
        assert!(e.len() == 1 && w.is_empty(), "{e:?} {w:?}");
        // `default` is the retry policy's alone.
        let (_, e, _) = read(Policy::AllowedFails, &[("default", 1)]);
        assert_eq!(e.len(), 1, "{e:?}");
    }

    #[test]
    fn a_kind_given_twice_is_an_error() {
        let (c, e, _) = read(
            Policy::AllowedFails,
            &[("RateLimitErrorAllowedFails", 1), ("rate_limit", 2)],
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("give it once"), "{e:?}");
        // The first in key order stands.
        assert_eq!(c.rate_limit, Some(1));
    }
}
