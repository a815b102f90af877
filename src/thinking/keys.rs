//! The keys an assistant turn is remembered under, tried in this order:
//! each `tool_calls[].id`; a hash of the turn's normalized content and its
//! tool calls (name and canonical arguments, never the ids); each tool call
//! alone (name and canonical arguments). Every key is scoped by the model
//! the client asked for and a hash of the client's key, so two users'
//! conversations never meet. Keys are SHA-256 digests: nothing of the
//! conversation or the client key can be read back from them.

use std::fmt::Write as _;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// One key of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(pub [u8; 32]);

impl Key {
    /// 64 hex digits (the database and Redis form).
    pub fn hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            let _ = write!(s, "{b:02x}");
        }
        s
    }
}

/// Who and what a key belongs to: the model the client asked for and the
/// hash of its key.
#[derive(Debug, Clone)]
pub struct Scope {
    pub model: String,
    client: [u8; 32],
}

impl Scope {
    /// `client_key` is the key the client presented (Authorization Bearer
    /// or x-api-key); only its hash is kept.
    pub fn new(model: &str, client_key: Option<&str>) -> Scope {
        let client = match client_key.filter(|k| !k.is_empty()) {
            Some(k) => Sha256::digest(k.as_bytes()).into(),
            None => [0; 32],
        };
        Scope {
            model: model.to_string(),
            client,
        }
    }

    fn key(&self, kind: &str, parts: &[&str]) -> Key {
        let mut h = Sha256::new();
        h.update(b"yallmp-thinking-v1\0");
        h.update(self.model.as_bytes());
        h.update([0]);
        h.update(self.client);
        h.update(kind.as_bytes());
        for p in parts {
            // Length-prefixed: no two different part lists hash alike.
            h.update((p.len() as u64).to_le_bytes());
            h.update(p.as_bytes());
        }
        Key(h.finalize().into())
    }
}

/// A tool call as the keys see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub id: Option<String>,
    pub name: String,
    /// Canonical arguments ([`canonical_arguments`]).
    pub arguments: String,
}

impl Call {
    /// Reads one `tool_calls[]` entry (`{id, function: {name, arguments}}`).
    pub fn from_json(v: &Value) -> Option<Call> {
        let f = v.get("function")?;
        let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
        let arguments = match f.get("arguments") {
            Some(Value::String(s)) => canonical_arguments(s),
            Some(Value::Null) | None => String::new(),
            // Some clients send the arguments as an object.
            Some(other) => canonical_json(other),
        };
        Some(Call {
            id: v
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(String::from),
            name: name.to_string(),
            arguments,
        })
    }
}

/// The keys of one assistant turn, in lookup order.
pub fn turn_keys(scope: &Scope, content: &str, calls: &[Call]) -> Vec<Key> {
    let mut keys = Vec::with_capacity(calls.len() * 2 + 1);
    for c in calls {
        if let Some(id) = &c.id {
            keys.push(scope.key("id", &[id]));
        }
    }
    let mut parts: Vec<&str> = Vec::with_capacity(1 + calls.len() * 2);
    parts.push(content);
    for c in calls {
        parts.push(&c.name);
        parts.push(&c.arguments);
    }
    keys.push(scope.key("turn", &parts));
    for c in calls {
        keys.push(scope.key("call", &[&c.name, &c.arguments]));
    }
    keys
}

/// Arguments the way every client writes them alike: parsed and written
/// back with sorted keys, no spaces, integral numbers without a fraction.
/// Text that is not JSON is only trimmed.
pub fn canonical_arguments(s: &str) -> String {
    match serde_json::from_str::<Value>(s) {
        Ok(v) => canonical_json(&v),
        Err(_) => s.trim().to_string(),
    }
}

pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        Value::Number(n) => match n.as_f64() {
            // 1.0 and 1 are one number (JavaScript clients write 1).
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                let _ = write!(out, "{}", f as i64);
            }
            _ => {
                let _ = write!(out, "{n}");
            }
        },
        other => out.push_str(&other.to_string()),
    }
}

/// The text of a message's `content`: a string, or the `text` of its
/// parts, trimmed.
pub fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Array(parts)) => {
            let mut s = String::new();
            for p in parts {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    s.push_str(t);
                }
            }
            s.trim().to_string()
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_arguments_ignore_order_spacing_and_integral_fractions() {
        let a = canonical_arguments(r#"{"b": [1, {"y": 2, "x": "é"}], "a": 1.0}"#);
        let b = canonical_arguments("{\"a\":1,\n \"b\":[1,{\"x\":\"\\u00e9\",\"y\":2.0}]}");
        assert_eq!(a, b);
        assert_eq!(a, r#"{"a":1,"b":[1,{"x":"é","y":2}]}"#);
        assert_ne!(
            canonical_arguments(r#"{"a":1.5}"#),
            canonical_arguments(r#"{"a":1}"#)
        );
        assert_eq!(canonical_arguments("  not json "), "not json");
    }

    #[test]
    fn keys_are_scoped_by_model_and_client() {
        let call = Call::from_json(&json!({"id": "call_1", "type": "function",
            "function": {"name": "ls", "arguments": "{\"path\": \".\"}"}}))
        .unwrap();
        let a = turn_keys(
            &Scope::new("m", Some("k1")),
            "",
            std::slice::from_ref(&call),
        );
        let b = turn_keys(
            &Scope::new("m", Some("k2")),
            "",
            std::slice::from_ref(&call),
        );
        let c = turn_keys(
            &Scope::new("n", Some("k1")),
            "",
            std::slice::from_ref(&call),
        );
        let d = turn_keys(
            &Scope::new("m", Some("k1")),
            "",
            std::slice::from_ref(&call),
        );
        assert_eq!(a.len(), 3, "id, turn, call");
        assert_eq!(a, d);
        for (x, y) in a.iter().zip(&b) {
            assert_ne!(x, y);
        }
        for (x, y) in a.iter().zip(&c) {
            assert_ne!(x, y);
        }
        assert_eq!(a[0].hex().len(), 64);
    }

    #[test]
    fn turn_key_ignores_ids_but_not_content() {
        let s = Scope::new("m", None);
        let call = |id: &str, args: &str| {
            Call::from_json(&json!({"id": id, "function": {"name": "f", "arguments": args}}))
                .unwrap()
        };
        let a = turn_keys(&s, "hi", &[call("1", r#"{"a":1,"b":2}"#)]);
        let b = turn_keys(&s, "hi", &[call("2", r#"{ "b": 2, "a": 1 }"#)]);
        assert_ne!(a[0], b[0], "ids differ");
        assert_eq!(a[1], b[1], "same content and calls");
        assert_eq!(a[2], b[2], "same call");
        let c = turn_keys(&s, "hello", &[call("2", r#"{"a":1,"b":2}"#)]);
        assert_ne!(a[1], c[1]);
        assert_eq!(a[2], c[2]);
        // Objects as arguments match their string form.
        let d = Call::from_json(&json!({"function": {"name": "f", "arguments": {"b": 2, "a": 1}}}))
            .unwrap();
        assert_eq!(d.arguments, r#"{"a":1,"b":2}"#);
        assert_eq!(d.id, None);
    }

    #[test]
    fn content_text_reads_strings_and_parts() {
        assert_eq!(content_text(Some(&json!("  hi \n"))), "hi");
        assert_eq!(
            content_text(Some(
                &json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b "}])
            )),
            "ab"
        );
        assert_eq!(content_text(Some(&Value::Null)), "");
        assert_eq!(content_text(None), "");
    }
}
