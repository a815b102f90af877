//! Keeping secrets out of the log: credential headers and secret-named body
//! fields become `***`, and every known secret value (backend keys) is
//! scrubbed from whatever text is about to be written.

use http::HeaderMap;
use serde_json::{Map, Value};

use crate::config::Config;

pub const MASK: &str = "***";

/// Header names whose values are always masked.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "cookie",
    "set-cookie",
];

/// Whether a header or field name looks like it holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    if SECRET_HEADERS.contains(&n.as_str()) {
        return true;
    }
    let n = n.replace('-', "_");
    n.contains("api_key")
        || n.contains("apikey")
        || n.contains("password")
        || n.contains("passwd")
        || n.contains("secret")
        || n.ends_with("_key") && !n.ends_with("cache_key") && !n.ends_with("idempotency_key")
        || n == "key"
        || n.ends_with("access_token")
        || n.ends_with("refresh_token")
        || n.ends_with("auth_token")
        || n == "token"
        || n.ends_with("_auth")
        || n == "auth"
}

/// Headers as a JSON object (name → value or list of values), secrets masked.
pub fn headers(map: &HeaderMap) -> Value {
    let mut out = Map::new();
    for name in map.keys() {
        let masked = is_secret_name(name.as_str());
        let values: Vec<Value> = map
            .get_all(name)
            .iter()
            .map(|v| {
                if masked {
                    Value::String(MASK.into())
                } else {
                    Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned())
                }
            })
            .collect();
        let v = if values.len() == 1 {
            values.into_iter().next().unwrap_or(Value::Null)
        } else {
            Value::Array(values)
        };
        out.insert(name.as_str().to_string(), v);
    }
    Value::Object(out)
}

/// Masks secret-named fields anywhere in a JSON value; true if it changed.
pub fn json_fields(v: &mut Value) -> bool {
    match v {
        Value::Object(map) => {
            let mut changed = false;
            for (k, val) in map.iter_mut() {
                if is_secret_name(k)
                    && !val.is_null()
                    && !matches!(val, Value::Object(_) | Value::Array(_))
                {
                    *val = Value::String(MASK.into());
                    changed = true;
                } else {
                    changed |= json_fields(val);
                }
            }
            changed
        }
        Value::Array(items) => items.iter_mut().fold(false, |c, i| json_fields(i) | c),
        _ => false,
    }
}

/// The body text to log: the original bytes unless a secret-named field had
/// to be masked (then the re-serialized, masked JSON).
pub fn body(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !may_hold_secret(bytes) {
        return bytes.into();
    }
    let Ok(mut v) = serde_json::from_slice::<Value>(bytes) else {
        return bytes.into();
    };
    if json_fields(&mut v) {
        serde_json::to_vec(&v).map_or(bytes.into(), Into::into)
    } else {
        bytes.into()
    }
}

/// A cheap test before parsing: does a key name that looks like a secret
/// occur at all? Object keys end with a quote, so `max_tokens"` does not
/// match `_token"` and ordinary chat bodies are never parsed here.
fn may_hold_secret(bytes: &[u8]) -> bool {
    const ENDINGS: &[&[u8]] = &[
        b"key\"",
        b"Key\"",
        b"KEY\"",
        b"ssword\"",
        b"SSWORD\"",
        b"asswd\"",
        b"ecret\"",
        b"ECRET\"",
        b"_token\"",
        b"Token\"",
        b"\"token\"",
        b"auth\"",
        b"Auth\"",
        b"AUTH\"",
        b"authorization\"",
        b"Authorization\"",
    ];
    ENDINGS
        .iter()
        .any(|w| memchr::memmem::find(bytes, w).is_some())
}

/// Known secret values, scrubbed from all logged text.
#[derive(Debug, Clone, Default)]
pub struct Scrubber {
    secrets: Vec<String>,
}

impl Scrubber {
    /// Every backend key in the config (and the database password).
    pub fn from_config(config: &Config) -> Scrubber {
        let mut secrets: Vec<String> = config
            .models
            .iter()
            .flat_map(|m| m.backends.iter())
            .filter_map(|b| b.api_key.as_ref().map(|k| k.expose().to_string()))
            .collect();
        if let crate::config::DatabaseTarget::Postgres(p) = &config.database.target
            && let Some(pw) = &p.password
        {
            secrets.push(pw.expose().to_string());
        }
        // Short values would mask ordinary words; keys are long.
        secrets.retain(|s| s.len() >= 6);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Scrubber { secrets }
    }

    /// `text` with every known secret replaced by `***`.
    pub fn scrub(&self, text: String) -> String {
        if self.secrets.iter().all(|s| !text.contains(s.as_str())) {
            return text;
        }
        let mut out = text;
        for s in &self.secrets {
            out = out.replace(s.as_str(), MASK);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn names() {
        for n in [
            "Authorization",
            "x-api-key",
            "api_key",
            "OPENAI_API_KEY",
            "password",
            "client_secret",
            "access_token",
            "key",
            "x-goog-api-key",
        ] {
            assert!(is_secret_name(n), "{n}");
        }
        for n in [
            "max_tokens",
            "model",
            "prompt_cache_key",
            "tokens",
            "content-type",
            "keywords",
            "monkey",
        ] {
            assert!(!is_secret_name(n), "{n}");
        }
    }

    #[test]
    fn headers_masked() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer sk-1"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        let v = headers(&h);
        assert_eq!(v["authorization"], MASK);
        assert_eq!(v["content-type"], "application/json");
    }

    #[test]
    fn body_fields_masked_and_untouched_otherwise() {
        let raw = br#"{"model":"m","max_tokens":5}"#;
        assert_eq!(&*body(raw), raw);
        let raw = br#"{"model":"m","metadata":{"api_key":"sk-1","password":"p"},"max_tokens":5}"#;
        let out: Value = serde_json::from_slice(&body(raw)).unwrap();
        assert_eq!(out["metadata"]["api_key"], MASK);
        assert_eq!(out["metadata"]["password"], MASK);
        assert_eq!(out["max_tokens"], 5);
    }

    #[test]
    fn cheap_test_skips_ordinary_bodies() {
        assert!(!may_hold_secret(
            br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"my key is"}]}"#
        ));
        assert!(may_hold_secret(br#"{"api_key":"x"}"#));
        assert!(may_hold_secret(br#"{"access_token":"x"}"#));
        assert!(may_hold_secret(br#"{"Password":"x"}"#));
    }

    #[test]
    fn scrubber() {
        let s = Scrubber {
            secrets: vec!["sk-very-secret".into()],
        };
        assert_eq!(s.scrub("a sk-very-secret b".into()), "a *** b");
        assert_eq!(s.scrub("clean".into()), "clean");
    }
}
