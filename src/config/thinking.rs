//! `model_params.interleaved_thinking`: give a model its earlier reasoning
//! back (see `crate::thinking`). Serde types with their defaults, and the
//! resolved, checked settings a backend carries.

use std::time::Duration;

use super::errors::{Errors, KeyPath};
use serde::{Deserialize, Serialize};

/// Where a restored reasoning is written in an assistant message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasoningField {
    /// `"reasoning_content": "..."` (DeepSeek, Kimi, GLM, vLLM).
    #[default]
    ReasoningContent,
    /// `"reasoning": "..."` (OpenRouter, Ollama, some vLLM builds).
    Reasoning,
    /// `"reasoning_details": [{"type": "reasoning.text", "text": "..."}]`
    /// (OpenRouter, MiniMax with `reasoning_split`).
    ReasoningDetails,
    /// `<think>...</think>` at the start of `content` (MiniMax-M2's own
    /// format).
    ThinkTags,
    /// `"thinking_blocks": [{"type": "thinking", "thinking": "...",
    /// "signature": "..."}]` (Anthropic-shaped backends).
    AnthropicThinking,
}

impl ReasoningField {
    pub fn as_str(self) -> &'static str {
        match self {
            ReasoningField::ReasoningContent => "reasoning_content",
            ReasoningField::Reasoning => "reasoning",
            ReasoningField::ReasoningDetails => "reasoning_details",
            ReasoningField::ThinkTags => "think_tags",
            ReasoningField::AnthropicThinking => "anthropic_thinking",
        }
    }
}

/// Which assistant turns are remembered and restored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Only assistant turns with tool calls (what the providers demand).
    #[default]
    ToolTurns,
    /// Every assistant turn.
    AllTurns,
}

/// What happens to an assistant turn whose reasoning is not found (or was
/// produced by another provider).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnMiss {
    /// `""` in the field (reasoning_content / reasoning): what DeepSeek and
    /// Kimi accept. The other fields are left out.
    #[default]
    Empty,
    /// Leave the turn as the client sent it.
    Drop,
    /// Answer 400 `reasoning_not_found` before anything goes upstream.
    Error,
}

/// Where remembered reasoning lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// In this process: bounded by `max_entries`, TTL per entry.
    #[default]
    Memory,
    /// The request log's database (`database:`): survives restarts,
    /// shared by instances on one PostgreSQL.
    Database,
    /// Redis (`proxy_settings.redis_url`): shared, expiring keys; the
    /// memory store stands in while Redis is away.
    Redis,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Database => "database",
            StoreKind::Redis => "redis",
        }
    }
}

/// A duration as seconds (`86400`) or with a unit (`90s`, `30m`, `24h`,
/// `7d`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawDuration {
    Seconds(f64),
    Text(String),
}

impl RawDuration {
    fn seconds(&self) -> Option<f64> {
        match self {
            RawDuration::Seconds(s) => Some(*s),
            RawDuration::Text(t) => {
                let t = t.trim();
                let (num, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
                    Some(i) => t.split_at(i),
                    None => (t, "s"),
                };
                let n: f64 = num.trim().parse().ok()?;
                let mul = match unit.trim() {
                    "s" => 1.0,
                    "m" => 60.0,
                    "h" => 3600.0,
                    "d" => 86400.0,
                    _ => return None,
                };
                Some(n * mul)
            }
        }
    }
}

/// `interleaved_thinking` as written.
#[derive(Debug, Clone, Deserialize)]
pub struct RawInterleavedThinking {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub field: ReasoningField,
    #[serde(default)]
    pub scope: Scope,
    #[serde(default)]
    pub on_miss: OnMiss,
    /// How long a turn's reasoning is kept (default `24h`).
    pub ttl: Option<RawDuration>,
    /// Entries the memory store keeps per model (default 100000).
    #[serde(default = "default_max_entries")]
    pub max_entries: u64,
    #[serde(default)]
    pub store: StoreKind,
}

fn yes() -> bool {
    true
}
fn default_max_entries() -> u64 {
    100_000
}

pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// The resolved settings of one backend (present only when enabled).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThinkingSettings {
    pub field: ReasoningField,
    pub scope: Scope,
    pub on_miss: OnMiss,
    #[serde(serialize_with = "as_seconds")]
    pub ttl: Duration,
    pub max_entries: u64,
    pub store: StoreKind,
}

fn as_seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Checks the block at `at`; `None` when it is off.
pub fn resolve(
    raw: RawInterleavedThinking,
    at: &KeyPath,
    has_redis: bool,
    errors: &mut Errors,
) -> Option<ThinkingSettings> {
    let ttl = match &raw.ttl {
        None => DEFAULT_TTL,
        Some(d) => match d.seconds() {
            Some(s) if s.is_finite() && s > 0.0 && s < 1e9 => Duration::from_secs_f64(s),
            _ => {
                errors.at(at.key("ttl"), format!("must be a positive duration (seconds, or like `90s`, `30m`, `24h`, `7d`), got {d:?}"));
                DEFAULT_TTL
            }
        },
    };
    if raw.max_entries == 0 {
        errors.at(at.key("max_entries"), "must be at least 1");
    }
    if raw.enabled && raw.store == StoreKind::Redis && !has_redis {
        errors.at(
            at.key("store"),
            "`redis` needs proxy_settings.redis_url (or use `store: memory` or `database`)",
        );
    }
    raw.enabled.then_some(ThinkingSettings {
        field: raw.field,
        scope: raw.scope,
        on_miss: raw.on_miss,
        ttl,
        max_entries: raw.max_entries.max(1),
        store: raw.store,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str, has_redis: bool) -> (Option<ThinkingSettings>, Vec<String>) {
        let raw: RawInterleavedThinking = serde_yaml::from_str(yaml).unwrap();
        let mut errors = Errors::default();
        let s = resolve(
            raw,
            &"m.interleaved_thinking".into(),
            has_redis,
            &mut errors,
        );
        (s, errors.into_lines())
    }

    #[test]
    fn defaults() {
        let (s, e) = parse("{}", false);
        assert!(e.is_empty());
        let s = s.unwrap();
        assert_eq!(s.field, ReasoningField::ReasoningContent);
        assert_eq!(s.scope, Scope::ToolTurns);
        assert_eq!(s.on_miss, OnMiss::Empty);
        assert_eq!(s.ttl, DEFAULT_TTL);
        assert_eq!(s.max_entries, 100_000);
        assert_eq!(s.store, StoreKind::Memory);
        assert!(parse("{enabled: false}", false).0.is_none());
    }

    #[test]
    fn durations_with_units() {
        for (text, secs) in [
            ("90", 90),
            ("90s", 90),
            ("30m", 1800),
            ("24h", 86400),
            ("2d", 172800),
        ] {
            let (s, e) = parse(&format!("{{ttl: {text}}}"), false);
            assert!(e.is_empty(), "{e:?}");
            assert_eq!(s.unwrap().ttl, Duration::from_secs(secs), "{text}");
        }
        let (_, e) = parse("{ttl: 3w}", false);
        assert!(e[0].starts_with("m.interleaved_thinking.ttl:"), "{e:?}");
        let (_, e) = parse("{ttl: 0}", false);
        assert_eq!(e.len(), 1);
    }

    #[test]
    fn unknown_keys_and_values_are_errors() {
        // The raw type leaves an unknown key unread; loading a config
        // reports it (`config/unknown.rs`).
        let e = crate::Config::from_yaml(
            "model_list:\n  - {model_name: m, model_params: {api_type: stub, interleaved_thinking: {feild: reasoning}}}\n",
            None,
            &crate::config::Env::isolated::<[(&str, &str); 0], _, _>([]),
        )
        .unwrap_err();
        assert_eq!(
            e.errors,
            [
                "model_list[0].model_params.interleaved_thinking.feild: unknown key `feild`; did you mean `field`?"
            ]
        );
        assert!(serde_yaml::from_str::<RawInterleavedThinking>("{field: thoughts}").is_err());
        assert!(serde_yaml::from_str::<RawInterleavedThinking>("{on_miss: maybe}").is_err());
    }

    #[test]
    fn redis_store_needs_redis_url() {
        let (_, e) = parse("{store: redis}", false);
        assert!(e[0].starts_with("m.interleaved_thinking.store:"), "{e:?}");
        assert!(parse("{store: redis}", true).1.is_empty());
        assert!(parse("{store: database, max_entries: 0}", false).1[0].contains("max_entries"));
    }
}
