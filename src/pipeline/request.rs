//! The client's request body, parsed once: the top-level fields of the JSON
//! object as raw slices of the original bytes. The proxy reads what it needs
//! (`model`, `stream`), rewrites only what a feature owns, and writes every
//! other value back byte for byte. A body that needs no rewrite is forwarded
//! as the original bytes.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::config::Backend;

/// Why a body cannot be proxied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("request body must be a JSON object")]
    NotAnObject,
    #[error("`model` is required")]
    MissingModel,
    #[error("`model` must be a string")]
    ModelNotString,
}

/// A JSON object as its top-level keys and raw values, in order.
#[derive(Debug)]
pub struct RequestBody<'a> {
    fields: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> RequestBody<'a> {
    /// Parses and validates `bytes` as one JSON object.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BodyError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let fields = de.deserialize_any(FieldsVisitor).map_err(|e| {
            if e.to_string().starts_with(NOT_OBJECT) {
                BodyError::NotAnObject
            } else {
                BodyError::InvalidJson(e.to_string())
            }
        })?;
        de.end()
            .map_err(|e| BodyError::InvalidJson(e.to_string()))?;
        Ok(RequestBody { fields })
    }

    /// The raw value of a top-level key (the last one, if repeated).
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
    }

    /// The `model` the client asked for.
    pub fn model(&self) -> Result<String, BodyError> {
        let raw = self.get("model").ok_or(BodyError::MissingModel)?;
        match serde_json::from_str::<Cow<'_, str>>(raw.get()) {
            Ok(m) if !m.is_empty() => Ok(m.into_owned()),
            Ok(_) => Err(BodyError::MissingModel),
            Err(_) if raw.get() == "null" => Err(BodyError::MissingModel),
            Err(_) => Err(BodyError::ModelNotString),
        }
    }

    /// `stream: true`.
    pub fn stream(&self) -> bool {
        self.get("stream").is_some_and(|v| v.get() == "true")
    }

    /// The top-level fields in order (repeated keys included).
    pub fn fields(&self) -> impl Iterator<Item = (&str, &'a RawValue)> + '_ {
        self.fields.iter().map(|(k, v)| (k.as_ref(), *v))
    }

    /// The object without `key` (every occurrence), every other field
    /// written back byte for byte.
    pub fn without(&self, key: &str) -> Bytes {
        let mut out = Vec::with_capacity(
            self.fields
                .iter()
                .map(|(k, v)| k.len() + v.get().len() + 4)
                .sum::<usize>()
                + 2,
        );
        out.push(b'{');
        for (k, v) in self.fields.iter().filter(|(k, _)| k != key) {
            if out.len() > 1 {
                out.push(b',');
            }
            write_key(&mut out, k);
            out.extend_from_slice(v.get().as_bytes());
        }
        out.push(b'}');
        Bytes::from(out)
    }

    /// The body to send to `backend`: the original bytes when nothing
    /// changes, else the object with the backend's rewrites applied (upstream
    /// `model`, the reasoning switch, parameter defaults) and every other
    /// value untouched, byte for byte.
    pub fn for_backend(&self, original: &Bytes, backend: &Backend) -> Bytes {
        self.for_backend_with(original, backend, true)
    }

    /// As [`for_backend`](Self::for_backend); `sampling: false` (embeddings)
    /// rewrites the model only: no reasoning switch, no parameter defaults.
    pub fn for_backend_with(&self, original: &Bytes, backend: &Backend, sampling: bool) -> Bytes {
        self.for_backend_replacing(original, backend, sampling, None)
    }

    /// As [`for_backend_with`](Self::for_backend_with), with one top-level
    /// value replaced by raw JSON (interleaved thinking's `messages`).
    pub fn for_backend_replacing(
        &self,
        original: &Bytes,
        backend: &Backend,
        sampling: bool,
        replace: Option<(&str, &str)>,
    ) -> Bytes {
        let mut edits: Vec<Edit<'_>> = Vec::new();
        if let Some((key, json)) = replace {
            edits.push(Edit::Set(key, Value::Text(json)));
        }
        // A wildcard backend with `strip_prefix` sends the requested name
        // without the pattern's literal prefix.
        let requested = (backend.upstream_model.is_none() && backend.strip_prefix)
            .then(|| self.model().ok())
            .flatten();
        let upstream = backend.upstream_model.as_deref().or(requested
            .as_deref()
            .map(|r| crate::wildcard::stripped(&backend.model_name, r)));
        if let Some(m) = upstream
            && self.get("model").is_none_or(|raw| !json_str_eq(raw, m))
        {
            edits.push(Edit::Set("model", Value::String(m)));
        }
        if sampling {
            for (k, v) in super::reasoning::edits(backend, self) {
                edits.push(Edit::Set(k, Value::Owned(v)));
            }
        }
        for p in backend.parameters.iter().filter(|_| sampling) {
            match self.get(&p.name) {
                None => edits.push(Edit::Set(&p.name, Value::Json(&p.default))),
                Some(raw) if !p.allow_override && !json_eq(raw, &p.default) => {
                    edits.push(Edit::Set(&p.name, Value::Json(&p.default)))
                }
                Some(_) => {}
            }
        }
        if edits.is_empty() {
            return original.clone();
        }
        let mut out = Vec::with_capacity(original.len() + 64);
        out.push(b'{');
        let mut first = true;
        let mut sep = |out: &mut Vec<u8>| {
            if !first {
                out.push(b',');
            }
            first = false;
        };
        let edit_for = |k: &str| edits.iter().find(|Edit::Set(key, _)| *key == k);
        for (k, v) in &self.fields {
            sep(&mut out);
            write_key(&mut out, k);
            match edit_for(k) {
                Some(Edit::Set(_, value)) => value.write(&mut out),
                None => out.extend_from_slice(v.get().as_bytes()),
            }
        }
        for Edit::Set(key, value) in &edits {
            if self.get(key).is_none() {
                sep(&mut out);
                write_key(&mut out, key);
                value.write(&mut out);
            }
        }
        out.push(b'}');
        Bytes::from(out)
    }
}

/// A change to one top-level field.
enum Edit<'a> {
    Set(&'a str, Value<'a>),
}

/// A value to write.
enum Value<'a> {
    String(&'a str),
    /// Raw JSON text.
    Text(&'a str),
    Json(&'a serde_json::Value),
    Owned(serde_json::Value),
}

impl Value<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Value::String(s) => write_string(out, s),
            Value::Text(t) => out.extend_from_slice(t.as_bytes()),
            Value::Json(v) => write_json(out, v),
            Value::Owned(v) => write_json(out, v),
        }
    }
}

fn write_json(out: &mut Vec<u8>, v: &serde_json::Value) {
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.extend_from_slice(b"null");
    }
}

fn json_eq(raw: &RawValue, v: &serde_json::Value) -> bool {
    serde_json::from_str::<serde_json::Value>(raw.get()).is_ok_and(|r| &r == v)
}

fn json_str_eq(raw: &RawValue, s: &str) -> bool {
    serde_json::from_str::<Cow<'_, str>>(raw.get()).is_ok_and(|v| v == s)
}

fn write_key(out: &mut Vec<u8>, k: &str) {
    write_string(out, k);
    out.push(b':');
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    // serde_json's string escaping cannot fail when writing into a Vec.
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

const NOT_OBJECT: &str = "yallmp: not an object";

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Vec<(Cow<'de, str>, &'de RawValue)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let value: &'de RawValue = map.next_value()?;
            fields.push((key.0, value));
        }
        Ok(fields)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(de::Error::custom(NOT_OBJECT))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(E::custom(NOT_OBJECT))
    }
}

/// A key borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

impl super::reasoning::Fields for RequestBody<'_> {
    fn raw(&self, key: &str) -> Option<Cow<'_, str>> {
        self.get(key).map(|v| Cow::Borrowed(v.get()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ApiType, Backend};
    use std::time::Duration;

    fn backend(model: Option<&str>, reasoning: bool) -> Backend {
        Backend {
            name: "m#1".into(),
            model_name: "m".into(),
            api_type: ApiType::Openai,
            api_base: "http://x".into(),
            api_key: None,
            upstream_model: model.map(String::from),
            request_timeout: Duration::from_secs(1),
            supports_reasoning: reasoning,
            reasoning: None,
            supports_responses: true,
            responses_websocket: false,
            pricing: None,
            parameters: Vec::new().into(),
            urls: None,
            routing: Default::default(),
            thinking: None,
            azure: None,
            bedrock: None,
            vertex: None,
            strip_prefix: false,
            organization: None,
            stream_timeout: None,
            max_retries: None,
            limits: Default::default(),
            drop: Default::default(),
        }
    }

    #[test]
    fn reads_model_and_stream() {
        let b =
            RequestBody::parse(br#"{"model":"a\u0062","stream":true,"x":[1,{"y":null}]}"#).unwrap();
        assert_eq!(b.model().unwrap(), "ab");
        assert!(b.stream());
        assert!(
            !RequestBody::parse(br#"{"model":"a","stream":false}"#)
                .unwrap()
                .stream()
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            RequestBody::parse(b"[1]").unwrap_err(),
            BodyError::NotAnObject
        );
        assert!(matches!(
            RequestBody::parse(b"{").unwrap_err(),
            BodyError::InvalidJson(_)
        ));
        assert!(matches!(
            RequestBody::parse(b"{} x").unwrap_err(),
            BodyError::InvalidJson(_)
        ));
        assert_eq!(
            RequestBody::parse(b"{}").unwrap().model().unwrap_err(),
            BodyError::MissingModel
        );
        assert_eq!(
            RequestBody::parse(br#"{"model":3}"#)
                .unwrap()
                .model()
                .unwrap_err(),
            BodyError::ModelNotString
        );
    }

    #[test]
    fn untouched_when_nothing_to_rewrite() {
        let raw = Bytes::from_static(b"{ \"model\" : \"m\",\n \"z\": 1.50 }");
        let b = RequestBody::parse(&raw).unwrap();
        assert_eq!(b.for_backend(&raw, &backend(None, false)), raw);
        assert_eq!(b.for_backend(&raw, &backend(Some("m"), false)), raw);
    }

    #[test]
    fn parameter_defaults_fill_in_or_force() {
        use crate::config::Parameter;
        let mut b = backend(None, false);
        b.parameters = vec![
            Parameter {
                name: "temperature".into(),
                default: serde_json::json!(1.0),
                allow_override: false,
            },
            Parameter {
                name: "max_tokens".into(),
                default: serde_json::json!(4096),
                allow_override: true,
            },
        ]
        .into();
        let raw = Bytes::from_static(br#"{"model":"m","temperature":0.2,"max_tokens":5}"#);
        let out = RequestBody::parse(&raw).unwrap().for_backend(&raw, &b);
        assert_eq!(
            &out[..],
            br#"{"model":"m","temperature":1.0,"max_tokens":5}"#
        );
        let raw = Bytes::from_static(br#"{"model":"m"}"#);
        let out = RequestBody::parse(&raw).unwrap().for_backend(&raw, &b);
        assert_eq!(
            &out[..],
            br#"{"model":"m","temperature":1.0,"max_tokens":4096}"#
        );
        let raw = Bytes::from_static(br#"{"model":"m","temperature":1.0,"max_tokens":7}"#);
        assert_eq!(RequestBody::parse(&raw).unwrap().for_backend(&raw, &b), raw);
        // Embeddings get neither parameter defaults nor the reasoning switch.
        b.supports_reasoning = true;
        let raw = Bytes::from_static(br#"{"model":"m","input":"x"}"#);
        assert_eq!(
            RequestBody::parse(&raw)
                .unwrap()
                .for_backend_with(&raw, &b, false),
            raw
        );
    }

    #[test]
    fn rewrites_model_and_adds_thinking_keeping_values_exact() {
        let raw = Bytes::from_static(b"{\"model\":\"m\",\"z\": 1.50e0, \"u\":\"\\u00e9\"}");
        let b = RequestBody::parse(&raw).unwrap();
        let out = b.for_backend(&raw, &backend(Some("up/\"x\""), true));
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"model":"up/\"x\"","z":1.50e0,"u":"\u00e9","thinking":{"type":"enabled"}}"#
        );
        let raw = Bytes::from_static(br#"{"model":"m","thinking":{"type":"disabled"}}"#);
        let b = RequestBody::parse(&raw).unwrap();
        assert_eq!(b.for_backend(&raw, &backend(None, true)), raw);
    }

    #[test]
    fn without_drops_every_occurrence_and_keeps_the_rest_exact() {
        let raw = Bytes::from_static(
            b"{\"cache\":{\"ttl\":1}, \"model\":\"m\",\"z\": 1.50e0,\"cache\":null}",
        );
        let b = RequestBody::parse(&raw).unwrap();
        assert_eq!(&b.without("cache")[..], b"{\"model\":\"m\",\"z\":1.50e0}");
        let only = Bytes::from_static(br#"{"cache":{}}"#);
        assert_eq!(
            &RequestBody::parse(&only).unwrap().without("cache")[..],
            b"{}"
        );
        assert_eq!(b.fields().count(), 4);
    }
}
