//! `proxy_settings.auth.keys` and `teams`: virtual keys and teams declared
//! in the config file (docs/keys-and-spend.md), checked and resolved.

use std::collections::HashSet;

use super::errors::{Errors, KeyPath};
use super::raw::{RawDeclaredKey, RawDeclaredTeam};
use super::{DeclaredKey, DeclaredTeam, Secret};
use crate::grant::{Limits, Period};

/// The limits of a declared key or team, checked.
fn limits(
    models: Vec<String>,
    max_budget: Option<f64>,
    budget_duration: Option<String>,
    rpm_limit: Option<u64>,
    tpm_limit: Option<u64>,
    at: &KeyPath,
    errors: &mut Errors,
) -> Limits {
    let budget_duration = budget_duration.and_then(|d| match Period::parse(&d) {
        Ok(p) => Some(p),
        Err(e) => {
            errors.at(at.key("budget_duration"), e);
            None
        }
    });
    let limits = Limits {
        models,
        max_budget,
        budget_duration,
        rpm_limit,
        tpm_limit,
    };
    if let Err(e) = limits.check() {
        errors.at(at, e);
    }
    limits
}

fn name(name: Option<String>, at: &KeyPath, errors: &mut Errors) -> String {
    match name.map(|n| n.trim().to_string()) {
        Some(n) if !n.is_empty() && n.len() <= 200 && !n.chars().any(char::is_control) => n,
        Some(_) => {
            errors.at(at.key("name"), "must be 1 to 200 printable characters");
            String::new()
        }
        None => {
            errors.at(at.key("name"), "required");
            String::new()
        }
    }
}

fn metadata(m: Option<serde_json::Value>, at: &KeyPath, errors: &mut Errors) -> serde_json::Value {
    match m {
        None | Some(serde_json::Value::Null) => serde_json::Value::Object(Default::default()),
        Some(v @ serde_json::Value::Object(_)) => v,
        Some(_) => {
            errors.at(at.key("metadata"), "must be a map");
            serde_json::Value::Null
        }
    }
}

pub(super) fn resolve(
    teams: Vec<RawDeclaredTeam>,
    keys: Vec<RawDeclaredKey>,
    errors: &mut Errors,
) -> (Vec<DeclaredTeam>, Vec<DeclaredKey>) {
    let mut team_names = HashSet::new();
    let teams: Vec<DeclaredTeam> = teams
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let at = KeyPath::new("proxy_settings.auth.teams").index(i);
            let name = name(t.name, &at, errors);
            if !name.is_empty() && !team_names.insert(name.clone()) {
                errors.at(at.key("name"), format!("`{name}` is declared twice"));
            }
            DeclaredTeam {
                limits: limits(
                    t.models,
                    t.max_budget,
                    t.budget_duration,
                    t.rpm_limit,
                    t.tpm_limit,
                    &at,
                    errors,
                ),
                metadata: metadata(t.metadata, &at, errors),
                name,
            }
        })
        .collect();
    let mut secrets = HashSet::new();
    let mut key_names = HashSet::new();
    let keys = keys
        .into_iter()
        .enumerate()
        .map(|(i, k)| {
            let at = KeyPath::new("proxy_settings.auth.keys").index(i);
            let name = name(k.name, &at, errors);
            if !name.is_empty() && !key_names.insert(name.clone()) {
                errors.at(at.key("name"), format!("`{name}` is declared twice"));
            }
            let secret = k.key.map(|s| s.trim().to_string()).unwrap_or_default();
            if secret.len() < 16 {
                errors.at(
                    at.key("key"),
                    "required, at least 16 characters (the secret clients send; use ${VAR})",
                );
            } else if !secrets.insert(secret.clone()) {
                errors.at(at.key("key"), "the same secret as another key");
            }
            if let Some(t) = &k.team
                && !team_names.contains(t.as_str())
            {
                errors.at(
                    at.key("team"),
                    format!("no team `{t}` in proxy_settings.auth.teams"),
                );
            }
            let expires_at = k
                .expires_at
                .and_then(|e| match chrono::DateTime::parse_from_rfc3339(e.trim()) {
                    Ok(t) => Some(t.with_timezone(&chrono::Utc)),
                    Err(_) => {
                        errors.at(
                            at.key("expires_at"),
                            format!("`{e}` is not an RFC 3339 time (2027-01-31T00:00:00Z)"),
                        );
                        None
                    }
                });
            DeclaredKey {
                limits: limits(
                    k.models,
                    k.max_budget,
                    k.budget_duration,
                    k.rpm_limit,
                    k.tpm_limit,
                    &at,
                    errors,
                ),
                metadata: metadata(k.metadata, &at, errors),
                secret: Secret::new(secret),
                team: k.team,
                expires_at,
                name,
            }
        })
        .collect();
    (teams, keys)
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Env};

    fn load(yaml: &str) -> Result<Config, String> {
        Config::from_yaml(
            yaml,
            None,
            &Env::isolated([("CI_KEY", "yk-ci-0123456789abcdef")]),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn declared_keys_and_teams_resolve() {
        let c = load(
            "proxy_settings:\n  auth:\n    teams: [{name: ml, models: ['gpt-*'], max_budget: 5, budget_duration: 1mo}]\n    \
             keys: [{name: ci, key: '${CI_KEY}', team: ml, rpm_limit: 5, expires_at: '2030-01-01T00:00:00Z', metadata: {owner: ana}}]\n",
        )
        .unwrap();
        assert_eq!(c.auth.teams[0].name, "ml");
        assert_eq!(c.auth.teams[0].limits.max_budget, Some(5.0));
        let k = &c.auth.keys[0];
        assert_eq!(k.secret.expose(), "yk-ci-0123456789abcdef");
        assert_eq!(k.team.as_deref(), Some("ml"));
        assert_eq!(k.limits.rpm_limit, Some(5));
        assert!(k.expires_at.is_some());
    }

    #[test]
    fn declared_keys_are_checked() {
        let e = load(
            "proxy_settings:\n  auth:\n    teams: [{name: ml, budget_duration: 1w}]\n    \
             keys: [{name: a, key: short, team: nope}, {key: 'yk-0123456789abcdefgh', max_budget: -1}]\n",
        )
        .unwrap_err();
        for want in [
            "proxy_settings.auth.teams[0].budget_duration",
            "proxy_settings.auth.keys[0].key",
            "proxy_settings.auth.keys[0].team: no team `nope`",
            "proxy_settings.auth.keys[1].name: required",
            "proxy_settings.auth.keys[1]: `max_budget`",
        ] {
            assert!(e.contains(want), "{want} in\n{e}");
        }
        let e = load(
            "proxy_settings:\n  auth:\n    keys: [{name: a, key: 'yk-0123456789abcdefgh', max_budgt: 1}]\n\
             model_list:\n  - {model_name: a, model_params: {api_base: 'http://x/v1', pricing: {input: 1, output: 2, cached: 1}}}\n",
        )
        .unwrap_err();
        for want in [
            "proxy_settings.auth.keys[0].max_budgt: unknown key `max_budgt`; did you mean `max_budget`?",
            "model_list[0].model_params.pricing.cached: unknown key `cached`",
        ] {
            assert!(e.contains(want), "{want} in\n{e}");
        }
    }

    #[test]
    fn backend_prices_in_both_notations() {
        let c = load(
            "model_list:\n  - {model_name: a, model_params: {api_base: 'http://x/v1', pricing: {input: 1, output: 2}}}\n  \
             - model_name: b\n    litellm_params: {model: openai/gpt-4o, api_base: 'http://x/v1', input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}\n  \
             - {model_name: c, model_params: {api_base: 'http://x/v1', target_model: gpt-4o-mini}}\n",
        )
        .unwrap();
        let price = |m: &str| c.models.iter().find(|x| x.name == m).unwrap().backends[0].clone();
        let a = price("a");
        assert_eq!(a.pricing.map(|p| (p.input, p.output)), Some((1.0, 2.0)));
        let b = price("b").pricing.unwrap();
        assert!((b.input - 1.0).abs() < 1e-9 && (b.output - 2.0).abs() < 1e-9);
        let c3 = price("c");
        assert_eq!(c3.pricing, None);
        assert!(c3.price_for("gpt-4o-mini").is_some(), "the shipped catalog");
        let e = load(
            "model_list:\n  - {model_name: a, model_params: {api_base: 'http://x/v1', input_cost_per_token: 0.1}}\n",
        )
        .unwrap_err();
        assert!(e.contains("model_list[0].model_params.pricing"), "{e}");
    }
}
