//! Per-request cache controls: the body's `cache` object (as the OpenAI
//! SDKs send it with `extra_body={"cache": {...}}`) and the
//! `Cache-Control` request header.
//!
//! - `no-cache: true` (or `Cache-Control: no-cache`): do not answer from the
//!   cache; the fresh answer is still stored.
//! - `no-store: true` (or `Cache-Control: no-store`): do not store the answer.
//! - `ttl: N`: keep this answer N seconds instead of the configured TTL
//!   (`0` means do not store).
//!
//! `no_cache` / `no_store` are accepted too. Other keys (LiteLLM's
//! `namespace`, `s-maxage`) are ignored; a known key of the wrong type is
//! a 400.

use std::time::Duration;

use http::{HeaderMap, header};
use serde_json::Value;
use serde_json::value::RawValue;

/// What the request asks of the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Controls {
    /// Do not answer from the cache.
    pub no_cache: bool,
    /// Do not store the answer.
    pub no_store: bool,
    /// Keep the answer this long instead of the configured TTL.
    pub ttl: Option<Duration>,
}

/// A `cache` field the proxy cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`cache` {0}")]
pub struct ControlError(String);

impl Controls {
    /// From the body's `cache` field (when present) and the headers.
    pub fn read(field: Option<&RawValue>, headers: &HeaderMap) -> Result<Controls, ControlError> {
        let mut c = Controls::default();
        if let Some(raw) = field {
            let v: Value =
                serde_json::from_str(raw.get()).map_err(|e| ControlError(e.to_string()))?;
            match v {
                Value::Object(m) => {
                    for (k, v) in &m {
                        match k.as_str() {
                            "no-cache" | "no_cache" => c.no_cache = flag(k, v)?,
                            "no-store" | "no_store" => c.no_store = flag(k, v)?,
                            "ttl" => c.ttl = Some(ttl(v)?),
                            _ => {}
                        }
                    }
                }
                Value::Null => {}
                _ => {
                    return Err(ControlError(
                        "must be an object, e.g. {\"no-cache\": true}".into(),
                    ));
                }
            }
        }
        for value in headers.get_all(header::CACHE_CONTROL) {
            let Ok(value) = value.to_str() else { continue };
            for directive in value.split(',') {
                let d = directive.trim();
                if d.eq_ignore_ascii_case("no-cache") {
                    c.no_cache = true;
                } else if d.eq_ignore_ascii_case("no-store") {
                    c.no_store = true;
                }
            }
        }
        if c.ttl == Some(Duration::ZERO) {
            c.no_store = true;
        }
        Ok(c)
    }
}

fn flag(k: &str, v: &Value) -> Result<bool, ControlError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Null => Ok(false),
        _ => Err(ControlError(format!("`{k}` must be true or false"))),
    }
}

fn ttl(v: &Value) -> Result<Duration, ControlError> {
    v.as_f64()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| ControlError("`ttl` must be a number of seconds (0 or more)".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(field: &str, cc: Option<&str>) -> Result<Controls, ControlError> {
        let raw: Box<RawValue> = serde_json::from_str(field).unwrap();
        let mut h = HeaderMap::new();
        if let Some(v) = cc {
            h.insert(header::CACHE_CONTROL, v.parse().unwrap());
        }
        Controls::read(Some(&raw), &h)
    }

    #[test]
    fn body_and_header() {
        assert_eq!(read("{}", None).unwrap(), Controls::default());
        let c = read(r#"{"no-cache":true,"ttl":5,"namespace":"x"}"#, None).unwrap();
        assert!(c.no_cache && !c.no_store);
        assert_eq!(c.ttl, Some(Duration::from_secs(5)));
        assert!(read(r#"{"no_store":true}"#, None).unwrap().no_store);
        assert!(read(r#"{"ttl":0}"#, None).unwrap().no_store);
        let c = read("null", Some("max-age=0, No-Cache")).unwrap();
        assert!(c.no_cache && !c.no_store);
        assert!(read("{}", Some("no-store")).unwrap().no_store);
    }

    #[test]
    fn wrong_types_are_errors() {
        assert!(read(r#""no-cache""#, None).is_err());
        assert!(read(r#"{"no-cache":"yes"}"#, None).is_err());
        assert!(read(r#"{"ttl":-1}"#, None).is_err());
        assert!(read(r#"{"ttl":"5"}"#, None).is_err());
    }
}
