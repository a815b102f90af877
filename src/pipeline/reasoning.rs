//! Reasoning controls: the request field each provider reads to switch
//! reasoning on, written from `model_params.reasoning` (or the seed's
//! `supports_reasoning: true`) only when the client did not set that field.
//!
//! | style | field written |
//! |---|---|
//! | `zai`, `deepseek`, `kimi` | `thinking: {type: enabled}` |
//! | `openai` | `reasoning_effort: <effort, default medium>` |
//! | `openrouter` | `reasoning: {max_tokens: budget}`, else `{effort}`, else `{enabled: true}` |
//! | `vllm_chat_template` | `chat_template_kwargs: {enable_thinking: true}` (merged) |
//! | `anthropic` | `thinking: {type: enabled, budget_tokens}` (kept below `max_tokens`) |
//! | `none` | nothing |

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use crate::config::reasoning::{Effort, Reasoning, ReasoningStyle};
use crate::config::{ApiType, Backend};

/// Anthropic's smallest thinking budget.
pub const MIN_ANTHROPIC_BUDGET: u64 = 1024;

/// The reasoning block in force for a backend: its own, else the seed's
/// `supports_reasoning: true` (Anthropic's style for an Anthropic backend,
/// whose API rejects `thinking` without a budget).
pub fn effective(backend: &Backend) -> Option<Reasoning> {
    if let Some(r) = backend.reasoning {
        return Some(r);
    }
    backend.supports_reasoning.then_some(Reasoning {
        style: match backend.api_type {
            ApiType::Anthropic => ReasoningStyle::Anthropic,
            // The Gemini transport reads `reasoning_effort` (thinkingConfig).
            ApiType::Gemini | ApiType::Vertex => ReasoningStyle::Openai,
            _ => ReasoningStyle::Zai,
        },
        effort: None,
        budget_tokens: None,
    })
}

/// A request body's top-level values as JSON text, for [`style_edits`]
/// (implemented here for a parsed JSON object, and by `RequestBody`, the
/// body read once).
pub trait Fields {
    fn raw(&self, key: &str) -> Option<Cow<'_, str>>;
}

impl Fields for Map<String, Value> {
    fn raw(&self, key: &str) -> Option<Cow<'_, str>> {
        self.get(key).map(|v| Cow::Owned(v.to_string()))
    }
}

/// The top-level fields to set on `body` for `backend` (none when the
/// client already set the style's field).
pub fn edits(backend: &Backend, body: &(impl Fields + ?Sized)) -> Vec<(&'static str, Value)> {
    match effective(backend) {
        Some(r) => style_edits(r, body),
        None => Vec::new(),
    }
}

/// A client's effort in any dialect's words (chat's `reasoning_effort`,
/// Responses' `reasoning.effort`, Anthropic's `output_config.effort`) as
/// one of the three the styles know; `none` (and anything unknown) is none.
pub fn client_effort(e: &str) -> Option<Effort> {
    match e {
        "minimal" => Some(Effort::Low),
        "xhigh" | "max" => Some(Effort::High),
        e => Effort::parse(e),
    }
}

/// A translated chat request's `reasoning_effort` (the effort the client
/// asked for in its own dialect) moved into the field `backend`'s
/// [`reasoning`](crate::config::reasoning) style reads: left as it is for
/// the `openai` style and for a backend without a reasoning block (it is
/// chat's own field), written as the style's field otherwise (a thinking
/// budget for `anthropic`, `reasoning: {effort}` for `openrouter`, ...).
/// Returns `false` when the effort is dropped: `style: none`, or an effort
/// the style cannot express (`none`).
pub fn restyle(backend: &Backend, body: &mut Map<String, Value>) -> bool {
    let Some(r) = effective(backend) else {
        return true;
    };
    if r.style == ReasoningStyle::Openai || !body.contains_key("reasoning_effort") {
        return true;
    }
    let asked = body.remove("reasoning_effort");
    let Some(effort) = asked
        .as_ref()
        .and_then(Value::as_str)
        .and_then(client_effort)
    else {
        return false;
    };
    if r.style == ReasoningStyle::None {
        return false;
    }
    let styled = Reasoning {
        style: r.style,
        effort: Some(effort),
        budget_tokens: None,
    };
    for (k, v) in style_edits(styled, &*body) {
        body.insert(k.into(), v);
    }
    true
}

/// The fields `r` writes on `body` (none when the client already set the
/// style's field).
fn style_edits(r: Reasoning, body: &(impl Fields + ?Sized)) -> Vec<(&'static str, Value)> {
    let absent = |k: &str| body.raw(k).is_none_or(|v| v == "null");
    let effort = r.effort.unwrap_or(Effort::Medium);
    match r.style {
        ReasoningStyle::None => Vec::new(),
        ReasoningStyle::Zai | ReasoningStyle::Deepseek | ReasoningStyle::Kimi => {
            if absent("thinking") {
                vec![("thinking", json!({"type": "enabled"}))]
            } else {
                Vec::new()
            }
        }
        ReasoningStyle::Openai => {
            if absent("reasoning_effort") {
                vec![("reasoning_effort", json!(effort.as_str()))]
            } else {
                Vec::new()
            }
        }
        ReasoningStyle::Openrouter => {
            if !absent("reasoning") {
                return Vec::new();
            }
            let v = match (r.budget_tokens, r.effort) {
                (Some(b), _) => json!({"max_tokens": b}),
                (None, Some(e)) => json!({"effort": e.as_str()}),
                (None, None) => json!({"enabled": true}),
            };
            vec![("reasoning", v)]
        }
        ReasoningStyle::VllmChatTemplate => {
            let current = body
                .raw("chat_template_kwargs")
                .and_then(|v| serde_json::from_str::<Value>(&v).ok());
            match current {
                None | Some(Value::Null) => {
                    vec![("chat_template_kwargs", json!({"enable_thinking": true}))]
                }
                Some(Value::Object(mut m)) if !m.contains_key("enable_thinking") => {
                    m.insert("enable_thinking".into(), Value::Bool(true));
                    vec![("chat_template_kwargs", Value::Object(m))]
                }
                Some(_) => Vec::new(),
            }
        }
        ReasoningStyle::Anthropic => {
            if !absent("thinking") {
                return Vec::new();
            }
            let mut budget = r
                .budget_tokens
                .unwrap_or_else(|| effort.budget())
                .max(MIN_ANTHROPIC_BUDGET);
            let max_tokens = body.raw("max_tokens").and_then(|v| v.parse::<u64>().ok());
            if let Some(max) = max_tokens {
                // The budget must stay below max_tokens; leave room to answer.
                if max <= MIN_ANTHROPIC_BUDGET + 1 {
                    return Vec::new();
                }
                if budget >= max {
                    budget = (max / 2).max(MIN_ANTHROPIC_BUDGET);
                }
            }
            let mut edits = vec![(
                "thinking",
                json!({"type": "enabled", "budget_tokens": budget}),
            )];
            // Anthropic refuses any other temperature while thinking.
            if body
                .raw("temperature")
                .is_some_and(|t| t.parse::<f64>().ok() != Some(1.0))
            {
                edits.push(("temperature", json!(1)));
            }
            edits
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::request::RequestBody;
    use bytes::Bytes;

    fn backend(yaml_params: &str) -> Backend {
        let yaml = format!("model_list:\n  - {{model_name: m, model_params: {yaml_params}}}\n");
        let c = crate::Config::from_yaml(
            &yaml,
            None,
            &crate::config::Env::isolated::<[(&str, &str); 0], _, _>([]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        (*c.models[0].backends[0]).clone()
    }

    fn out(params: &str, body: &str) -> Value {
        let b = backend(params);
        let raw = Bytes::from(body.to_string());
        let out = RequestBody::parse(&raw).unwrap().for_backend(&raw, &b);
        serde_json::from_slice(&out).unwrap()
    }

    const BASE: &str = "api_base: 'http://x'";

    #[test]
    fn every_style_writes_its_field() {
        let body = r#"{"model":"m","max_tokens":20000}"#;
        for style in ["zai", "deepseek", "kimi"] {
            let v = out(&format!("{{{BASE}, reasoning: {{style: {style}}}}}"), body);
            assert_eq!(v["thinking"], json!({"type": "enabled"}), "{style}");
        }
        let v = out(
            &format!("{{{BASE}, reasoning: {{style: openai, effort: high}}}}"),
            body,
        );
        assert_eq!(v["reasoning_effort"], "high");
        let v = out(&format!("{{{BASE}, reasoning: {{style: openai}}}}"), body);
        assert_eq!(v["reasoning_effort"], "medium");
        let v = out(
            &format!("{{{BASE}, reasoning: {{style: openrouter, effort: low}}}}"),
            body,
        );
        assert_eq!(v["reasoning"], json!({"effort": "low"}));
        let v = out(
            &format!("{{{BASE}, reasoning: {{style: openrouter, budget_tokens: 3000}}}}"),
            body,
        );
        assert_eq!(v["reasoning"], json!({"max_tokens": 3000}));
        let v = out(
            &format!("{{{BASE}, reasoning: {{style: vllm_chat_template}}}}"),
            r#"{"model":"m","chat_template_kwargs":{"x":1}}"#,
        );
        assert_eq!(
            v["chat_template_kwargs"],
            json!({"x": 1, "enable_thinking": true})
        );
        let v = out(
            &format!("{{{BASE}, reasoning: {{style: anthropic, effort: low}}}}"),
            body,
        );
        assert_eq!(
            v["thinking"],
            json!({"type": "enabled", "budget_tokens": 2048})
        );
        let v = out(
            &format!("{{{BASE}, supports_reasoning: true, reasoning: {{style: none}}}}"),
            body,
        );
        assert!(v.get("thinking").is_none());
    }

    #[test]
    fn client_fields_win() {
        let v = out(
            &format!("{{{BASE}, reasoning: {{style: openai, effort: high}}}}"),
            r#"{"model":"m","reasoning_effort":"low"}"#,
        );
        assert_eq!(v["reasoning_effort"], "low");
        let v = out(
            &format!("{{{BASE}, reasoning: {{style: vllm_chat_template}}}}"),
            r#"{"model":"m","chat_template_kwargs":{"enable_thinking":false}}"#,
        );
        assert_eq!(v["chat_template_kwargs"]["enable_thinking"], false);
        let v = out(
            &format!("{{{BASE}, reasoning: {{style: anthropic}}}}"),
            r#"{"model":"m","thinking":{"type":"disabled"}}"#,
        );
        assert_eq!(v["thinking"], json!({"type": "disabled"}));
    }

    #[test]
    fn anthropic_budget_stays_below_max_tokens() {
        let p = format!("{{{BASE}, reasoning: {{style: anthropic, budget_tokens: 16000}}}}");
        let v = out(&p, r#"{"model":"m","max_tokens":4096}"#);
        assert_eq!(v["thinking"]["budget_tokens"], 2048);
        let v = out(&p, r#"{"model":"m","max_tokens":1000}"#);
        assert!(v.get("thinking").is_none());
        // Thinking on means temperature 1, as Anthropic requires.
        let v = out(&p, r#"{"model":"m","max_tokens":40000,"temperature":0.2}"#);
        assert_eq!(v["temperature"], 1);
        assert_eq!(v["thinking"]["budget_tokens"], 16000);
        // The seed switch on an Anthropic backend means Anthropic's style.
        let v = out(
            &format!("{{{BASE}, api_type: anthropic, supports_reasoning: true}}"),
            r#"{"model":"m","max_tokens":32000}"#,
        );
        assert_eq!(
            v["thinking"],
            json!({"type": "enabled", "budget_tokens": 8192})
        );
    }
}
