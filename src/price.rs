//! Token prices and the cost of one answer.
//!
//! A [`Price`] is USD per million tokens, by kind: input, output, input read
//! from the provider's prompt cache, input written to it, and reasoning when
//! a provider bills it apart from output. It comes from a backend's
//! `model_params.pricing` (our per-million keys, or LiteLLM's per-token
//! keys), else from the shipped catalog (`configs/prices.yaml`, built into
//! the binary) by the backend's upstream model name.
//!
//! A cost is only computed when every kind of token the answer used has a
//! price: an answer with cache reads and no `cached_input` price falls back
//! to the input price (that is how providers without a cache discount bill),
//! but a model with no price at all has no cost (`None`), never a made-up 0.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::usage::Usage;

/// USD per million tokens.
// No `deny_unknown_fields`: the config loader reports unknown keys itself
// (serde_ignored), with their key paths.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Input read from the prompt cache; the input price when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
    /// Input written to the prompt cache; the input price when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
    /// Reasoning output, when billed apart; the output price when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<f64>,
}

/// The pricing keys a model's `model_params` (or `litellm_params`) may
/// carry: ours, per million tokens, under `pricing`; LiteLLM's, per token,
/// at the top level.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawPricing {
    pub pricing: Option<Price>,
    pub input_cost_per_token: Option<f64>,
    pub output_cost_per_token: Option<f64>,
    pub cache_read_input_token_cost: Option<f64>,
    pub cache_creation_input_token_cost: Option<f64>,
    pub output_cost_per_reasoning_token: Option<f64>,
}

/// Why a price was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PriceError {
    #[error("`{0}` must be a finite number of USD, 0 or more")]
    Invalid(&'static str),
    #[error(
        "LiteLLM's per-token prices need both `input_cost_per_token` and `output_cost_per_token`"
    )]
    Incomplete,
    #[error("set `pricing` or LiteLLM's per-token keys, not both")]
    Both,
}

impl RawPricing {
    /// The price these keys give, if any.
    pub fn resolve(&self) -> Result<Option<Price>, PriceError> {
        let litellm = [
            self.input_cost_per_token,
            self.output_cost_per_token,
            self.cache_read_input_token_cost,
            self.cache_creation_input_token_cost,
            self.output_cost_per_reasoning_token,
        ]
        .iter()
        .any(Option::is_some);
        let price = match (self.pricing, litellm) {
            (Some(_), true) => return Err(PriceError::Both),
            (Some(p), false) => p,
            (None, false) => return Ok(None),
            (None, true) => {
                let per_million = |v: Option<f64>| v.map(|v| v * 1_000_000.0);
                let (Some(input), Some(output)) = (
                    per_million(self.input_cost_per_token),
                    per_million(self.output_cost_per_token),
                ) else {
                    return Err(PriceError::Incomplete);
                };
                Price {
                    input,
                    output,
                    cached_input: per_million(self.cache_read_input_token_cost),
                    cache_write: per_million(self.cache_creation_input_token_cost),
                    reasoning: per_million(self.output_cost_per_reasoning_token),
                }
            }
        };
        price.check()?;
        Ok(Some(price))
    }
}

impl Price {
    fn check(&self) -> Result<(), PriceError> {
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        for (name, v) in [
            ("input", Some(self.input)),
            ("output", Some(self.output)),
            ("cached_input", self.cached_input),
            ("cache_write", self.cache_write),
            ("reasoning", self.reasoning),
        ] {
            if let Some(v) = v
                && !ok(v)
            {
                return Err(PriceError::Invalid(name));
            }
        }
        Ok(())
    }

    /// The cost in USD of an answer's usage.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let per = |tokens: u64, price: f64| tokens as f64 * price / 1_000_000.0;
        let reasoning = match self.reasoning {
            Some(p) => per(usage.reasoning(), p),
            None => 0.0,
        };
        let plain_output = match self.reasoning {
            Some(_) => usage.output() - usage.reasoning(),
            None => usage.output(),
        };
        per(usage.uncached_input(), self.input)
            + per(usage.cache_read(), self.cached_input.unwrap_or(self.input))
            + per(usage.cache_write(), self.cache_write.unwrap_or(self.input))
            + per(plain_output, self.output)
            + reasoning
    }
}

/// The shipped catalog: `configs/prices.yaml`, built in.
const CATALOG: &str = include_str!("../configs/prices.yaml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Catalog {
    /// When the figures were read from the providers' price pages.
    #[allow(dead_code)]
    checked: String,
    models: HashMap<String, Price>,
}

fn catalog() -> &'static HashMap<String, Price> {
    static PRICES: OnceLock<HashMap<String, Price>> = OnceLock::new();
    PRICES.get_or_init(|| {
        // The file is part of the source: a unit test proves it parses.
        serde_yaml::from_str::<Catalog>(CATALOG)
            .map(|c| c.models)
            .unwrap_or_default()
    })
}

/// The shipped price of an upstream model name: exact, else without a
/// `provider/` prefix, else without a date suffix (`-2024-08-06`,
/// `-20250929`), else both.
pub fn shipped(model: &str) -> Option<Price> {
    let prices = catalog();
    let bare = model.rsplit_once('/').map_or(model, |(_, m)| m);
    // No allocation: this runs for every answer of an unpriced backend.
    let get = |m: &str| prices.get(m).copied();
    get(model)
        .or_else(|| undated(model).and_then(get))
        .or_else(|| get(bare))
        .or_else(|| undated(bare).and_then(get))
        .or_else(|| bedrock_profile(bare).and_then(get))
}

/// A Bedrock model id without its cross-region inference profile
/// (`us.anthropic.claude-...` → `anthropic.claude-...`).
fn bedrock_profile(m: &str) -> Option<&str> {
    ["us.", "eu.", "apac.", "global.", "us-gov.", "jp.", "au."]
        .iter()
        .find_map(|p| m.strip_prefix(p))
}

/// `m` without a trailing `-YYYY-MM-DD` or `-YYYYMMDD`.
fn undated(m: &str) -> Option<&str> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some((head, tail)) = m.rsplit_once('-')
        && tail.len() == 8
        && digits(tail)
    {
        return Some(head);
    }
    // `-YYYY-MM-DD`: the last 11 bytes.
    let b = m.as_bytes();
    let n = b.len();
    if n > 11
        && b[n - 11] == b'-'
        && b[n - 6] == b'-'
        && b[n - 3] == b'-'
        && digits(&m[n - 10..n - 6])
        && digits(&m[n - 5..n - 3])
        && digits(&m[n - 2..])
    {
        return Some(&m[..n - 11]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(body: &str) -> Usage {
        Usage::from_body(body.as_bytes()).unwrap()
    }

    #[test]
    fn the_shipped_catalog_parses_and_is_dated() {
        let c: Catalog = serde_yaml::from_str(CATALOG).unwrap();
        assert!(c.models.len() > 20);
        assert!(c.checked.len() >= 7, "{}", c.checked);
        for (name, p) in &c.models {
            assert!(p.check().is_ok(), "{name}");
            assert!(p.input > 0.0 || p.output > 0.0, "{name}");
        }
    }

    #[test]
    fn names_match_without_prefix_or_date() {
        let gpt4o = shipped("gpt-4o").unwrap();
        assert_eq!(shipped("openai/gpt-4o"), Some(gpt4o));
        assert_eq!(shipped("gpt-4o-2024-08-06"), Some(gpt4o));
        assert_ne!(shipped("gpt-4o-mini"), Some(gpt4o));
        assert!(shipped("claude-sonnet-4-5-20250929").is_some());
        assert_eq!(shipped("my-local-llama"), None);
        assert_eq!(undated("gpt-4o-audio-preview"), None);
        // Bedrock ids, and with a cross-region inference profile.
        let nova = shipped("amazon.nova-pro-v1:0").unwrap();
        assert_eq!(nova.input, 0.80);
        let sonnet = shipped("anthropic.claude-sonnet-4-20250514-v1:0").unwrap();
        assert_eq!(
            shipped("us.anthropic.claude-sonnet-4-20250514-v1:0"),
            Some(sonnet)
        );
        assert_eq!(
            shipped("bedrock/global.anthropic.claude-sonnet-4-20250514-v1:0"),
            Some(sonnet)
        );
    }

    #[test]
    fn cost_by_kind_of_token() {
        let p = Price {
            input: 3.0,
            output: 15.0,
            cached_input: Some(0.3),
            cache_write: Some(3.75),
            reasoning: None,
        };
        // Anthropic: input_tokens apart from the cache.
        let u = usage(
            r#"{"usage":{"input_tokens":1000000,"output_tokens":100000,
            "cache_read_input_tokens":2000000,"cache_creation_input_tokens":1000000}}"#,
        );
        let c = p.cost(&u);
        assert!((c - (3.0 + 1.5 + 0.6 + 3.75)).abs() < 1e-9, "{c}");
        // OpenAI: cached tokens inside prompt_tokens.
        let u = usage(
            r#"{"usage":{"prompt_tokens":1000000,"completion_tokens":0,
            "prompt_tokens_details":{"cached_tokens":500000}}}"#,
        );
        let c = p.cost(&u);
        assert!((c - (1.5 + 0.15)).abs() < 1e-9, "{c}");
        // Reasoning billed apart only when priced apart.
        let u = usage(
            r#"{"usage":{"prompt_tokens":0,"completion_tokens":1000000,
            "completion_tokens_details":{"reasoning_tokens":400000}}}"#,
        );
        assert!((p.cost(&u) - 15.0).abs() < 1e-9);
        let apart = Price {
            reasoning: Some(20.0),
            ..p
        };
        assert!((apart.cost(&u) - (9.0 + 8.0)).abs() < 1e-9);
    }

    #[test]
    fn litellm_per_token_keys_are_read() {
        let raw: RawPricing = serde_yaml::from_str(
            "input_cost_per_token: 0.0000025\noutput_cost_per_token: 0.00001\n\
             cache_read_input_token_cost: 0.00000125",
        )
        .unwrap();
        let p = raw.resolve().unwrap().unwrap();
        assert!((p.input - 2.5).abs() < 1e-9 && (p.output - 10.0).abs() < 1e-9);
        assert!((p.cached_input.unwrap() - 1.25).abs() < 1e-9);
        let half: RawPricing = serde_yaml::from_str("input_cost_per_token: 0.000001").unwrap();
        assert_eq!(half.resolve(), Err(PriceError::Incomplete));
        let both: RawPricing = serde_yaml::from_str(
            "pricing: {input: 1, output: 2}\ninput_cost_per_token: 0.000001\noutput_cost_per_token: 0.000001",
        )
        .unwrap();
        assert_eq!(both.resolve(), Err(PriceError::Both));
        let bad: RawPricing = serde_yaml::from_str("pricing: {input: -1, output: 2}").unwrap();
        assert_eq!(bad.resolve(), Err(PriceError::Invalid("input")));
        let none: RawPricing = serde_yaml::from_str("{}").unwrap();
        assert_eq!(none.resolve(), Ok(None));
    }
}
