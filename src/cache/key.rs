//! The cache key: SHA-256 of a canonical form of the request (the endpoint,
//! the configured model name, and the body with object keys sorted at every
//! depth), so two requests that differ only in key order or whitespace
//! share an entry.
//!
//! Left out of the body, because they do not change the answer: `cache`
//! (the proxy's own controls), `user`, `metadata`, `safety_identifier` and
//! `prompt_cache_key`. Everything else counts, `stream` included: a stream
//! and a non-stream request are separate entries.
//!
//! SHA-256 (the `sha2` crate, RustCrypto) rather than a fast
//! non-cryptographic hash: a key is an identity, and with a shared Redis
//! one client must not be able to craft a request that collides with
//! another's. The crate is already in the build (sqlx uses it), and
//! hashing a request costs microseconds next to an upstream call.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::sync::Arc;

use serde_json::Value;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::endpoint::Endpoint;
use crate::pipeline::request::RequestBody;

/// Body fields that do not affect the answer.
const IGNORED: &[&str] = &[
    "cache",
    "user",
    "metadata",
    "safety_identifier",
    "prompt_cache_key",
];

/// One cache entry's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// The configured model name the client asked for.
    pub model: Arc<str>,
    pub digest: [u8; 32],
}

impl Key {
    /// Computes the key. `client_key`, when given, is mixed in (never kept).
    pub fn new(
        endpoint: Endpoint,
        model: &str,
        body: &RequestBody<'_>,
        client_key: Option<&str>,
    ) -> Key {
        let mut h = HashWriter(Sha256::new());
        h.0.update(b"yallmp-cache-v1\0");
        h.0.update(endpoint.path().as_bytes());
        h.0.update(b"\0");
        h.0.update(model.as_bytes());
        h.0.update(b"\0");
        if let Some(k) = client_key {
            h.0.update(b"client-key\0");
            h.0.update((k.len() as u64).to_be_bytes());
            h.0.update(k.as_bytes());
        }
        // The last of a repeated key wins, as everywhere else.
        let mut fields: BTreeMap<&str, &RawValue> = BTreeMap::new();
        for (k, v) in body.fields() {
            if !IGNORED.contains(&k) {
                fields.insert(k, v);
            }
        }
        h.0.update(b"{");
        for (i, (k, v)) in fields.into_iter().enumerate() {
            if i > 0 {
                h.0.update(b",");
            }
            write_str(&mut h, k);
            h.0.update(b":");
            match serde_json::from_str::<Value>(v.get()) {
                Ok(v) => write_canonical(&mut h, &v),
                // The body was validated already; hash the text if not.
                Err(_) => h.0.update(v.get().as_bytes()),
            }
        }
        h.0.update(b"}");
        Key {
            model: Arc::from(model),
            digest: h.0.finalize().into(),
        }
    }

    /// The digest as lowercase hex.
    pub fn hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.digest {
            let _ = write!(s, "{b:02x}");
        }
        s
    }
}

/// Feeds serde_json's writer into the hash without building a string.
struct HashWriter(Sha256);

impl io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn write_str(h: &mut HashWriter, s: &str) {
    // Writing into a hasher cannot fail.
    let _ = serde_json::to_writer(&mut *h, s);
}

/// JSON with object keys sorted at every depth, no whitespace.
fn write_canonical(h: &mut HashWriter, v: &Value) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            h.0.update(b"{");
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    h.0.update(b",");
                }
                write_str(h, k);
                h.0.update(b":");
                if let Some(v) = m.get(k) {
                    write_canonical(h, v);
                }
            }
            h.0.update(b"}");
        }
        Value::Array(a) => {
            h.0.update(b"[");
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    h.0.update(b",");
                }
                write_canonical(h, v);
            }
            h.0.update(b"]");
        }
        other => {
            let _ = serde_json::to_writer(&mut *h, other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(body: &str) -> Key {
        key_with(Endpoint::ChatCompletions, "m", body, None)
    }

    fn key_with(e: Endpoint, model: &str, body: &str, client: Option<&str>) -> Key {
        let b = RequestBody::parse(body.as_bytes()).unwrap();
        Key::new(e, model, &b, client)
    }

    #[test]
    fn order_and_whitespace_do_not_matter() {
        let a = key(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0}"#);
        let b = key(
            r#"{ "temperature" : 0, "messages": [ {"content":"hi", "role":"user"} ], "model":"m" }"#,
        );
        assert_eq!(a, b);
        assert_eq!(a.hex().len(), 64);
    }

    #[test]
    fn what_changes_the_answer_changes_the_key() {
        let base = key(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
        for other in [
            r#"{"model":"m","messages":[{"role":"user","content":"ho"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":1}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[]}"#,
        ] {
            assert_ne!(base, key(other), "{other}");
        }
        let body = r#"{"model":"m","messages":[]}"#;
        assert_ne!(
            key_with(Endpoint::ChatCompletions, "m", body, None),
            key_with(Endpoint::Responses, "m", body, None)
        );
        assert_ne!(
            key_with(Endpoint::ChatCompletions, "m", body, None),
            key_with(Endpoint::ChatCompletions, "m2", body, None)
        );
        assert_ne!(
            key_with(Endpoint::ChatCompletions, "m", body, Some("k1")),
            key_with(Endpoint::ChatCompletions, "m", body, Some("k2"))
        );
    }

    #[test]
    fn ignored_fields_do_not_count() {
        assert_eq!(
            key(r#"{"model":"m","messages":[]}"#),
            key(
                r#"{"model":"m","messages":[],"user":"u1","cache":{"ttl":5},"metadata":{"a":"b"}}"#
            )
        );
        // The last of a repeated key wins.
        assert_eq!(
            key(r#"{"model":"m","n":1,"n":2}"#),
            key(r#"{"model":"m","n":2}"#)
        );
    }
}
