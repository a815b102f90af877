//! Unknown keys: the raw config types leave keys they do not know unread,
//! `serde_ignored` hands the loader the path of each, and this file turns
//! one into an error line: the key path, the nearest known key as a hint, or
//! else the keys known there.
//!
//! The known keys are the struct's own field names (aliases included),
//! learned from its `Deserialize` impl by [`Probe`], so no list is written
//! twice. Structs read through a `#[serde(untagged)]` enum are buffered by
//! serde before they are typed, out of `serde_ignored`'s sight; those keep
//! `#[serde(deny_unknown_fields)]` (`RawParameterFull`).

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use super::errors::{Errors, KeyPath, nearest};

/// One step of a key path: a map key or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    Key(String),
    Index(usize),
}

/// The steps of a path `serde_ignored` reports; `Option` and newtype
/// layers leave no mark in a key path.
pub(super) fn steps(path: &serde_ignored::Path<'_>) -> Vec<Step> {
    use serde_ignored::Path;
    let mut out = match path {
        Path::Root => return Vec::new(),
        Path::Seq { parent, .. }
        | Path::Map { parent, .. }
        | Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => steps(parent),
    };
    match path {
        Path::Seq { index, .. } => out.push(Step::Index(*index)),
        Path::Map { key, .. } => out.push(Step::Key(key.clone())),
        _ => {}
    }
    out
}

/// The key path the steps spell (`model_list[0].model_params.api_bse`).
fn key_path(steps: &[Step]) -> KeyPath {
    steps.iter().fold(KeyPath::default(), |p, s| match s {
        Step::Key(k) => p.key(k),
        Step::Index(i) => p.index(*i),
    })
}

/// Reports the unknown key at `at`, a path into `T` (the raw config):
/// `unknown key `x``, then `; did you mean `y`?` when a known key is close,
/// else `; known keys: a, b, c`.
pub(super) fn report<'de, T: Deserialize<'de>>(at: &[Step], errors: &mut Errors) {
    let (unknown, parent) = match at.split_last() {
        Some((Step::Key(k), parent)) => (k.clone(), parent),
        Some((Step::Index(i), parent)) => (i.to_string(), parent),
        None => return,
    };
    let known = known_keys::<T>(parent);
    let mut what = format!("unknown key `{unknown}`");
    if let Some(s) = nearest(&unknown, known) {
        what.push_str(&format!("; did you mean `{s}`?"));
    } else if !known.is_empty() {
        what.push_str(&format!("; known keys: {}", known.join(", ")));
    }
    errors.at(key_path(at), what);
}

/// The field names of the struct at `path` in `T`; empty when no struct is
/// found there.
pub(super) fn known_keys<'de, T: Deserialize<'de>>(path: &[Step]) -> &'static [&'static str] {
    match T::deserialize(Probe { path }) {
        Err(Found(Some(fields))) => fields,
        _ => &[],
    }
}

/// A deserializer without data that walks a type's `Deserialize` impl down
/// `path` (one map entry or list item per step, through `Option`s and
/// newtypes) and stops at the struct found at its end with that struct's
/// field names, the list serde itself names in its errors.
struct Probe<'p> {
    path: &'p [Step],
}

/// How a probe ends: with the field names, or `None` when the path led to
/// no struct.
#[derive(Debug)]
struct Found(Option<&'static [&'static str]>);

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("probe ended")
    }
}

impl std::error::Error for Found {}

impl de::Error for Found {
    fn custom<M: fmt::Display>(_: M) -> Found {
        Found(None)
    }
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = Found;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Found> {
        Err(Found(None))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Found> {
        match self.path.first() {
            None => Err(Found(Some(fields))),
            Some(_) => self.deserialize_map(visitor),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Found> {
        match self.path.split_first() {
            Some((Step::Key(key), rest)) => visitor.visit_map(Entry {
                key: Some(key),
                rest,
            }),
            _ => Err(Found(None)),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Found> {
        match self.path.split_first() {
            Some((Step::Index(_), rest)) => visitor.visit_seq(Item { rest: Some(rest) }),
            _ => Err(Found(None)),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Found> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Found> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct tuple tuple_struct enum identifier
        ignored_any
    }
}

/// The one map entry a probe step stands for: its key, then a probe of
/// the rest of the path as its value.
struct Entry<'p> {
    key: Option<&'p String>,
    rest: &'p [Step],
}

impl<'de> MapAccess<'de> for Entry<'_> {
    type Error = Found;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Found> {
        match self.key.take() {
            Some(key) => seed.deserialize(key.as_str().into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Found> {
        seed.deserialize(Probe { path: self.rest })
    }
}

/// The one list item a probe step stands for.
struct Item<'p> {
    rest: Option<&'p [Step]>,
}

impl<'de> SeqAccess<'de> for Item<'_> {
    type Error = Found;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Found> {
        match self.rest.take() {
            Some(path) => seed.deserialize(Probe { path }).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::RawConfig;

    fn path(steps: &[&str]) -> Vec<Step> {
        steps
            .iter()
            .map(|s| match s.parse() {
                Ok(i) => Step::Index(i),
                Err(_) => Step::Key(s.to_string()),
            })
            .collect()
    }

    #[test]
    fn probe_finds_the_fields_of_the_struct_at_a_path() {
        let top = known_keys::<RawConfig>(&[]);
        assert!(top.contains(&"model_list") && top.contains(&"proxy_settings"));
        let params = known_keys::<RawConfig>(&path(&["model_list", "0", "model_params"]));
        // Aliases count: serde accepts them.
        assert!(params.contains(&"api_base") && params.contains(&"timeout"));
        let affix = known_keys::<RawConfig>(&path(&[
            "proxy_settings",
            "parsers",
            "swap_reasoning_content",
            "think_open",
        ]));
        assert_eq!(affix, ["prefix", "suffix"]);
        assert!(known_keys::<RawConfig>(&path(&["nope"])).is_empty());
        assert!(known_keys::<RawConfig>(&path(&["model_list", "0", "model_name"])).is_empty());
    }

    #[test]
    fn the_loader_reports_unknown_keys_in_order_then_the_first_other_error() {
        let e = crate::Config::from_yaml(
            "proxy_settings:\n  servr: {}\n  parsers: {swap_reasoning_content: {think_open: {prefx: '<'}}}\n  server: {port: high}\n  bogus: 1\n",
            None,
            &crate::config::Env::isolated::<[(&str, &str); 0], _, _>([]),
        )
        .unwrap_err()
        .errors;
        assert_eq!(e.len(), 3, "{e:?}");
        assert_eq!(
            e[0],
            "proxy_settings.servr: unknown key `servr`; did you mean `server`?"
        );
        // `Affix` is read through its twin in `parsers.rs`.
        assert_eq!(
            e[1],
            "proxy_settings.parsers.swap_reasoning_content.think_open.prefx: unknown key `prefx`; did you mean `prefix`?"
        );
        assert!(
            e[2].starts_with("proxy_settings.server.port: invalid type: string"),
            "{e:?}"
        );
    }

    #[test]
    fn report_names_the_path_and_suggests() {
        let mut errors = Errors::default();
        report::<RawConfig>(&path(&["proxy_settings", "servr"]), &mut errors);
        report::<RawConfig>(&path(&["database", "connection", "zzz"]), &mut errors);
        assert_eq!(
            &errors[..],
            [
                "proxy_settings.servr: unknown key `servr`; did you mean `server`?",
                "database.connection.zzz: unknown key `zzz`; known keys: sqlite, postgres",
            ]
        );
    }
}
