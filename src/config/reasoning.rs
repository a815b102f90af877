//! `model_params.reasoning`: how a backend is asked to think. The style names
//! the provider's dialect (which request field it reads); `effort` and
//! `budget_tokens` are mapped to that field by [`crate::pipeline::reasoning`].

use super::errors::{Errors, KeyPath};
use serde::{Deserialize, Serialize};

/// `model_params.reasoning` as written.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawReasoning {
    pub style: Option<String>,
    pub effort: Option<String>,
    pub budget_tokens: Option<u64>,
}

/// The request field a provider reads to switch reasoning on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasoningStyle {
    /// z.ai GLM: `thinking: {type: enabled}`.
    Zai,
    /// DeepSeek: `thinking: {type: enabled}`.
    Deepseek,
    /// Moonshot Kimi: `thinking: {type: enabled}`.
    Kimi,
    /// OpenAI: `reasoning_effort`.
    Openai,
    /// OpenRouter: `reasoning: {effort}` or `reasoning: {max_tokens}`.
    Openrouter,
    /// vLLM / SGLang chat templates: `chat_template_kwargs: {enable_thinking: true}`.
    VllmChatTemplate,
    /// Anthropic Messages: `thinking: {type: enabled, budget_tokens}`.
    Anthropic,
    /// Write nothing (and switch off `supports_reasoning`'s injection).
    None,
}

impl ReasoningStyle {
    pub const NAMES: &'static [&'static str] = &[
        "zai",
        "deepseek",
        "kimi",
        "openai",
        "openrouter",
        "vllm_chat_template",
        "anthropic",
        "none",
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "zai" => Self::Zai,
            "deepseek" => Self::Deepseek,
            "kimi" => Self::Kimi,
            "openai" => Self::Openai,
            "openrouter" => Self::Openrouter,
            "vllm_chat_template" => Self::VllmChatTemplate,
            "anthropic" => Self::Anthropic,
            "none" => Self::None,
            _ => return None,
        })
    }
}

/// How hard to think.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Effort {
    Low,
    Medium,
    High,
}

impl Effort {
    pub const NAMES: &'static [&'static str] = &["low", "medium", "high"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "low" => Self::Low,
            "medium" => Self::Medium,
            "high" => Self::High,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }

    /// The thinking budget an effort stands for where a style wants tokens
    /// (Anthropic): 2048, 8192, 24576.
    pub fn budget(self) -> u64 {
        match self {
            Self::Low => 2048,
            Self::Medium => 8192,
            Self::High => 24576,
        }
    }
}

/// The resolved `reasoning` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Reasoning {
    pub style: ReasoningStyle,
    pub effort: Option<Effort>,
    pub budget_tokens: Option<u64>,
}

impl Reasoning {
    /// Resolves a raw block; errors name `at` (the block's key path).
    pub fn resolve(raw: RawReasoning, at: &KeyPath, errors: &mut Errors) -> Option<Reasoning> {
        let start = errors.mark();
        let style = match raw.style.as_deref().map(str::trim) {
            None => {
                errors.at(
                    at.key("style"),
                    format!("required (one of: {})", ReasoningStyle::NAMES.join(", ")),
                );
                ReasoningStyle::None
            }
            Some(s) => ReasoningStyle::parse(s).unwrap_or_else(|| {
                errors.at(
                    at.key("style"),
                    format!(
                        "unknown style `{s}` (one of: {})",
                        ReasoningStyle::NAMES.join(", ")
                    ),
                );
                ReasoningStyle::None
            }),
        };
        let effort = raw.effort.as_deref().map(str::trim).and_then(|e| {
            let parsed = Effort::parse(e);
            if parsed.is_none() {
                errors.at(
                    at.key("effort"),
                    format!(
                        "unknown effort `{e}` (one of: {})",
                        Effort::NAMES.join(", ")
                    ),
                );
            }
            parsed
        });
        if raw.budget_tokens == Some(0) {
            errors.at(at.key("budget_tokens"), "must be > 0");
        }
        (!errors.since(start)).then_some(Reasoning {
            style,
            effort,
            budget_tokens: raw.budget_tokens,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_and_names_errors() {
        let mut errors = Errors::default();
        let r = Reasoning::resolve(
            RawReasoning {
                style: Some("openrouter".into()),
                effort: Some("high".into()),
                budget_tokens: None,
            },
            &"m".into(),
            &mut errors,
        );
        assert_eq!(r.unwrap().style, ReasoningStyle::Openrouter);
        assert!(errors.is_empty());
        let r = Reasoning::resolve(
            RawReasoning {
                style: Some("zia".into()),
                effort: Some("max".into()),
                budget_tokens: Some(0),
            },
            &"model_list[0].model_params.reasoning".into(),
            &mut errors,
        );
        assert!(r.is_none());
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("model_list[0].model_params.reasoning.style"));
    }
}
