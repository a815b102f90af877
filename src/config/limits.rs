//! Resolving `proxy_settings.rate_limits` and `proxy_settings.cors`:
//! numbers must be positive, origins, headers and methods must be valid
//! HTTP values, and `"*"` stands alone.

use std::time::Duration;

use super::errors::{Errors, KeyPath};
use super::raw::{RawCors, RawLimit, RawRateLimits};
use super::{CorsSettings, Limit, RateLimits};

pub(super) fn rate_limits(raw: RawRateLimits, errors: &mut Errors) -> RateLimits {
    RateLimits {
        global: limit(
            raw.global,
            &"proxy_settings.rate_limits.global".into(),
            errors,
        ),
        per_key: limit(
            raw.per_key,
            &"proxy_settings.rate_limits.per_key".into(),
            errors,
        ),
        max_parallel: match raw.max_parallel_requests {
            Some(0) => {
                errors.at(
                    "proxy_settings.rate_limits.max_parallel_requests",
                    "must be at least 1 (leave it out for no limit)",
                );
                None
            }
            n => n,
        },
    }
}

fn limit(raw: Option<RawLimit>, at: &KeyPath, errors: &mut Errors) -> Limit {
    let Some(raw) = raw else {
        return Limit::default();
    };
    let mut positive = |v: Option<u64>, key: &str| match v {
        Some(0) => {
            errors.at(
                at.key(key),
                "must be at least 1 (leave it out for no limit)",
            );
            None
        }
        // Past this, one request's share of a minute rounds to nothing.
        Some(n) if n > 1_000_000_000 => {
            errors.at(at.key(key), format!("at most 1000000000, got {n}"));
            None
        }
        v => v,
    };
    Limit {
        rpm: positive(raw.rpm, "rpm"),
        tpm: positive(raw.tpm, "tpm"),
    }
}

pub(super) fn cors(raw: RawCors, errors: &mut Errors) -> Option<CorsSettings> {
    let at = KeyPath::new("proxy_settings.cors");
    let start = errors.mark();
    let origins: Vec<String> = raw
        .allow_origins
        .into_iter()
        .map(|o| o.trim().trim_end_matches('/').to_string())
        .collect();
    if origins.is_empty() {
        errors.at(
            at.key("allow_origins"),
            "list the origins allowed, or [\"*\"] for any (remove `cors` to turn it off)",
        );
    }
    let any = origins.iter().any(|o| o == "*");
    if any && origins.len() > 1 {
        errors.at(
            at.key("allow_origins"),
            "`*` allows every origin; list it alone",
        );
    }
    for (i, o) in origins.iter().enumerate().filter(|_| !any) {
        let valid = (o.starts_with("http://") || o.starts_with("https://"))
            && http::HeaderValue::from_str(o).is_ok();
        if !valid {
            errors.at(
                at.key("allow_origins").index(i),
                format!("`{o}` is not an origin like https://app.example.com"),
            );
        }
    }
    if let Some(headers) = &raw.allow_headers {
        for (i, h) in headers.iter().enumerate() {
            if h != "*" && http::HeaderName::from_bytes(h.trim().as_bytes()).is_err() {
                errors.at(
                    at.key("allow_headers").index(i),
                    format!("`{h}` is not a header name"),
                );
            }
        }
    }
    if let Some(methods) = &raw.allow_methods {
        for (i, m) in methods.iter().enumerate() {
            if m != "*" && http::Method::from_bytes(m.trim().as_bytes()).is_err() {
                errors.at(
                    at.key("allow_methods").index(i),
                    format!("`{m}` is not a method"),
                );
            }
        }
    }
    let max_age = match raw.max_age {
        None => None,
        Some(s) if s.is_finite() && (0.0..1e9).contains(&s) => Some(Duration::from_secs_f64(s)),
        Some(s) => {
            errors.at(
                at.key("max_age"),
                format!("must be a number of seconds, got {s}"),
            );
            None
        }
    };
    if errors.since(start) {
        return None;
    }
    Some(CorsSettings {
        allow_origins: if any { Vec::new() } else { origins },
        allow_headers: raw.allow_headers,
        allow_methods: raw.allow_methods,
        max_age,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Env};

    fn load(yaml: &str) -> Result<Config, String> {
        Config::from_yaml(yaml, None, &Env::isolated::<[(&str, &str); 0], _, _>([]))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn limits_and_cors_resolve() {
        let c = load(
            "proxy_settings:\n  rate_limits:\n    global: {rpm: 6000, tpm: 2000000}\n    per_key: {rpm: 600}\n  cors: {allow_origins: [\"*\"], max_age: 600}\n",
        )
        .unwrap();
        assert_eq!(c.rate_limits.global.rpm, Some(6000));
        assert_eq!(c.rate_limits.global.tpm, Some(2_000_000));
        assert_eq!(c.rate_limits.per_key.rpm, Some(600));
        assert_eq!(c.rate_limits.per_key.tpm, None);
        assert!(c.rate_limits.any());
        let cors = c.cors.unwrap();
        assert!(cors.allow_origins.is_empty());
        assert_eq!(cors.max_age, Some(std::time::Duration::from_secs(600)));

        let c = load("model_list: []\n").unwrap();
        assert!(!c.rate_limits.any());
        assert!(c.cors.is_none());
    }

    #[test]
    fn bad_values_name_their_key() {
        let e =
            load("proxy_settings:\n  rate_limits:\n    per_key: {rpm: 0, tmp: 5}\n").unwrap_err();
        assert!(
            e.contains("proxy_settings.rate_limits.per_key.tmp: unknown key"),
            "{e}"
        );
        assert!(
            e.contains("proxy_settings.rate_limits.per_key.rpm: must be at least 1"),
            "{e}"
        );
        let e = load(
            "proxy_settings:\n  cors: {allow_origins: [\"*\", \"app.example.com\"], allow_methods: [\"GE T\"]}\n",
        )
        .unwrap_err();
        assert!(e.contains("`*` allows every origin"), "{e}");
        assert!(e.contains("allow_methods[0]"), "{e}");
        let e =
            load("proxy_settings:\n  cors: {allow_origins: [\"app.example.com\"]}\n").unwrap_err();
        assert!(e.contains("allow_origins[0]"), "{e}");
    }
}
