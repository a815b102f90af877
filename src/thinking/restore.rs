//! On the way in: the assistant turns of a request that come without their
//! reasoning, looked up and given back in the field the backend's settings
//! name. Only those messages are rewritten; every other message goes
//! upstream byte for byte. A turn whose stored reasoning came from another
//! provider (a fallback to a different backend) gets `on_miss` instead.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::keys::{self, Call, Key, Scope};
use super::tags::{self, Wrap};
use super::{Entry, source_of};
use crate::config::Backend;
use crate::config::thinking::{OnMiss, ReasoningField, Scope as TurnScope, ThinkingSettings};

/// One assistant message that came without reasoning.
#[derive(Debug)]
struct Turn {
    /// Position in `messages`.
    index: usize,
    /// The message; its content without the folded think block, if any.
    message: Map<String, Value>,
    has_calls: bool,
    /// The reasoning the client kept folded into the content
    /// (`swap_reasoning_content`).
    folded: Option<String>,
    keys: Vec<Key>,
    /// The entries found, in key order.
    found: Vec<Arc<Entry>>,
}

/// The request's `messages` and its turns without reasoning.
#[derive(Debug)]
pub struct Restore {
    items: Vec<Box<RawValue>>,
    turns: Vec<Turn>,
}

/// What one backend gets.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub restored: usize,
    /// Nothing stored (or expired).
    pub missing: usize,
    /// Stored, but produced by another provider.
    pub foreign: usize,
}

impl Restore {
    /// Reads `messages`; `None` when no assistant turn lacks reasoning.
    /// `fold` is the think block `swap_reasoning_content` writes, when the
    /// model's parsers fold reasoning into content.
    pub fn read(messages: &RawValue, scope: &Scope, fold: Option<&Wrap>) -> Option<Restore> {
        let items: Vec<Box<RawValue>> = serde_json::from_str(messages.get()).ok()?;
        let mut turns = Vec::new();
        for (index, item) in items.iter().enumerate() {
            if !item.get().contains("\"assistant\"") {
                continue;
            }
            let Ok(mut message) = serde_json::from_str::<Map<String, Value>>(item.get()) else {
                continue;
            };
            if message.get("role").and_then(Value::as_str) != Some("assistant")
                || carries_reasoning(&message)
            {
                continue;
            }
            let mut folded = None;
            if let Some(Value::String(content)) = message.get("content") {
                if let Some((r, rest)) = fold.and_then(|w| w.split(content)) {
                    folded = Some(r.to_string());
                    let rest = rest.to_string();
                    message.insert("content".into(), Value::String(rest));
                } else if Wrap::default().starts(content) {
                    // Reasoning kept in think tags (MiniMax's own form).
                    continue;
                }
            }
            let calls: Vec<Call> = match message.get("tool_calls") {
                Some(Value::Array(a)) => a.iter().filter_map(Call::from_json).collect(),
                _ => Vec::new(),
            };
            let content = keys::content_text(message.get("content"));
            turns.push(Turn {
                index,
                has_calls: !calls.is_empty(),
                keys: keys::turn_keys(scope, &content, &calls),
                message,
                folded,
                found: Vec::new(),
            });
        }
        (!turns.is_empty()).then_some(Restore { items, turns })
    }

    /// Every key to look up.
    pub fn keys(&self) -> Vec<Key> {
        self.turns
            .iter()
            .flat_map(|t| t.keys.iter().copied())
            .collect()
    }

    /// Takes the lookup's result: per turn, the entries in key order (a
    /// backend gets the first one its own provider produced).
    pub fn resolve(&mut self, found: &HashMap<Key, Arc<Entry>>) {
        for t in &mut self.turns {
            t.found = t
                .keys
                .iter()
                .filter_map(|k| found.get(k).cloned())
                .collect();
        }
    }

    /// The reasoning (and signature) `backend` may get for each turn in
    /// its scope; `Err(true)` when only another provider's was found.
    #[allow(clippy::type_complexity)]
    fn plan<'s>(
        &'s self,
        s: &ThinkingSettings,
        source: &str,
    ) -> impl Iterator<Item = (&'s Turn, Result<(&'s str, Option<&'s str>), bool>)> + 's {
        let source = source.to_string();
        let all = s.scope == TurnScope::AllTurns;
        self.turns
            .iter()
            .filter(move |t| all || t.has_calls)
            .map(move |t| {
                let own = t.found.iter().find(|e| e.source == source);
                let r = match (own, &t.folded) {
                    (Some(e), _) => Ok((e.reasoning.as_str(), e.signature.as_deref())),
                    (None, _) if !t.found.is_empty() => Err(true),
                    (None, Some(f)) => Ok((f.as_str(), None)),
                    (None, None) => Err(false),
                };
                (t, r)
            })
    }

    /// What `backend` would get: restored, missing, foreign.
    pub fn tally(&self, backend: &Backend) -> Tally {
        let mut tally = Tally::default();
        let Some(s) = backend.thinking.as_deref() else {
            return tally;
        };
        for (_, r) in self.plan(s, &source_of(backend)) {
            match r {
                Ok(_) => tally.restored += 1,
                Err(true) => tally.foreign += 1,
                Err(false) => tally.missing += 1,
            }
        }
        tally
    }

    /// The `messages` array for `backend`, when it changes anything.
    pub fn messages_for(&self, backend: &Backend) -> Option<String> {
        let s = backend.thinking.as_deref()?;
        let source = source_of(backend);
        let mut replaced: Vec<(usize, String)> = Vec::new();
        for (turn, r) in self.plan(s, &source) {
            let mut m = turn.message.clone();
            match r {
                Ok((text, sig)) => write(&mut m, s.field, text, sig),
                Err(_) => match s.on_miss {
                    OnMiss::Empty => write_empty(&mut m, s.field),
                    // `error` stops the request before the first backend;
                    // a fallback without reasoning gets the turn bare.
                    OnMiss::Drop | OnMiss::Error if turn.folded.is_none() => continue,
                    OnMiss::Drop | OnMiss::Error => {}
                },
            }
            replaced.push((turn.index, Value::Object(m).to_string()));
        }
        if replaced.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(
            self.items.iter().map(|i| i.get().len() + 1).sum::<usize>() + 256,
        );
        out.push('[');
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match replaced.iter().find(|(at, _)| *at == i) {
                Some((_, text)) => out.push_str(text),
                None => out.push_str(item.get()),
            }
        }
        out.push(']');
        Some(out)
    }
}

/// Whether an assistant message already has reasoning of its own.
fn carries_reasoning(m: &Map<String, Value>) -> bool {
    let text = |k: &str| matches!(m.get(k), Some(Value::String(s)) if !s.is_empty());
    let list = |k: &str| matches!(m.get(k), Some(Value::Array(a)) if !a.is_empty());
    text("reasoning_content")
        || text("reasoning")
        || list("reasoning_details")
        || list("thinking_blocks")
}

/// Writes `reasoning` where `field` says.
fn write(m: &mut Map<String, Value>, field: ReasoningField, reasoning: &str, sig: Option<&str>) {
    match field {
        ReasoningField::ReasoningContent | ReasoningField::Reasoning => {
            m.insert(field.as_str().into(), Value::String(reasoning.into()));
        }
        ReasoningField::ReasoningDetails => {
            m.insert(
                "reasoning_details".into(),
                json!([{"type": "reasoning.text", "text": reasoning, "format": "unknown", "index": 0}]),
            );
        }
        ReasoningField::ThinkTags => {
            let content = match m.get("content") {
                Some(Value::String(s)) => s.clone(),
                _ => String::new(),
            };
            m.insert(
                "content".into(),
                Value::String(tags::minimax(reasoning, &content)),
            );
        }
        ReasoningField::AnthropicThinking => {
            let mut block = json!({"type": "thinking", "thinking": reasoning});
            if let Some(s) = sig {
                block["signature"] = Value::from(s);
            }
            m.insert("thinking_blocks".into(), Value::Array(vec![block]));
        }
    }
}

/// `on_miss: empty`: `""` where a text field is expected; the other forms
/// have no empty value and are left out.
fn write_empty(m: &mut Map<String, Value>, field: ReasoningField) {
    if matches!(
        field,
        ReasoningField::ReasoningContent | ReasoningField::Reasoning
    ) {
        m.insert(field.as_str().into(), Value::String(String::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::thinking::StoreKind;
    use crate::config::{ApiType, Backend};
    use std::time::Duration;

    fn backend(model: &str, field: ReasoningField, on_miss: OnMiss) -> Backend {
        Backend {
            name: format!("{model}#1"),
            model_name: model.into(),
            api_type: ApiType::Openai,
            api_base: "http://x".into(),
            api_key: None,
            upstream_model: None,
            request_timeout: Duration::from_secs(1),
            supports_reasoning: false,
            reasoning: None,
            supports_responses: true,
            responses_websocket: false,
            pricing: None,
            parameters: Vec::new().into(),
            urls: None,
            routing: Default::default(),
            thinking: Some(Arc::new(ThinkingSettings {
                field,
                scope: TurnScope::ToolTurns,
                on_miss,
                ttl: Duration::from_secs(60),
                max_entries: 10,
                store: StoreKind::Memory,
            })),
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

    const MESSAGES: &str = r#"[{"role":"user","content":"hi", "x": 1.50},
        {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"ls","arguments":"{}"}}]},
        {"role":"tool","tool_call_id":"c1","content":"a"},
        {"role":"assistant","content":"done"},
        {"role":"assistant","reasoning_content":"kept","tool_calls":[{"id":"c2","function":{"name":"ls","arguments":"{}"}}]}]"#;

    fn read() -> Restore {
        let raw: Box<RawValue> = serde_json::from_str(MESSAGES).unwrap();
        Restore::read(&raw, &Scope::new("m", Some("k")), None).unwrap()
    }

    #[test]
    fn restores_only_tool_turns_without_reasoning_and_keeps_the_rest_exact() {
        let mut r = read();
        assert_eq!(
            r.turns.len(),
            2,
            "the turn with its own reasoning is left alone"
        );
        let entry = Arc::new(Entry {
            reasoning: "why \"ls\"\n".into(),
            signature: None,
            source: "openai:m".into(),
        });
        let found: HashMap<Key, Arc<Entry>> = [(r.turns[0].keys[0], entry)].into();
        r.resolve(&found);
        let b = backend("m", ReasoningField::ReasoningContent, OnMiss::Empty);
        assert_eq!(
            r.tally(&b),
            Tally {
                restored: 1,
                missing: 0,
                foreign: 0
            }
        );
        let out = r.messages_for(&b).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v[1]["reasoning_content"], "why \"ls\"\n");
        assert!(v[3].get("reasoning_content").is_none(), "not a tool turn");
        assert!(out.starts_with(r#"[{"role":"user","content":"hi", "x": 1.50},"#));
        // A fallback of another model: foreign reasoning is not sent.
        let other = backend("n", ReasoningField::ReasoningContent, OnMiss::Empty);
        assert_eq!(r.tally(&other).foreign, 1);
        let v: Value = serde_json::from_str(&r.messages_for(&other).unwrap()).unwrap();
        assert_eq!(v[1]["reasoning_content"], "");
        let drop = backend("n", ReasoningField::ReasoningContent, OnMiss::Drop);
        assert!(r.messages_for(&drop).is_none());
    }

    #[test]
    fn fields() {
        let mut r = read();
        let entry = Arc::new(Entry {
            reasoning: "R".into(),
            signature: Some("sig".into()),
            source: "openai:m".into(),
        });
        let found: HashMap<Key, Arc<Entry>> = [(r.turns[0].keys[1], entry)].into();
        r.resolve(&found);
        let get = |f| -> Value {
            serde_json::from_str(&r.messages_for(&backend("m", f, OnMiss::Drop)).unwrap()).unwrap()
        };
        assert_eq!(get(ReasoningField::Reasoning)[1]["reasoning"], "R");
        assert_eq!(
            get(ReasoningField::ReasoningDetails)[1]["reasoning_details"][0]["text"],
            "R"
        );
        assert_eq!(
            get(ReasoningField::ThinkTags)[1]["content"],
            "<think>\nR\n</think>\n\n"
        );
        let a = get(ReasoningField::AnthropicThinking);
        assert_eq!(
            a[1]["thinking_blocks"],
            json!([{"type": "thinking", "thinking": "R", "signature": "sig"}])
        );
    }

    #[test]
    fn folded_think_blocks_are_taken_out_of_content() {
        let raw: Box<RawValue> = serde_json::from_str(
            r#"[{"role":"assistant","content":"<think>\nplan\n</think>\nok","tool_calls":[{"id":"c","function":{"name":"f","arguments":"{}"}}]}]"#,
        )
        .unwrap();
        let wrap = Wrap {
            open: "<think>\n".into(),
            close: "\n</think>".into(),
            newline: true,
        };
        let r = Restore::read(&raw, &Scope::new("m", None), Some(&wrap)).unwrap();
        let b = backend("m", ReasoningField::ReasoningContent, OnMiss::Empty);
        let v: Value = serde_json::from_str(&r.messages_for(&b).unwrap()).unwrap();
        assert_eq!(v[0]["content"], "ok");
        assert_eq!(v[0]["reasoning_content"], "plan");
        // Without the fold setting, a think block is reasoning carried along.
        assert!(Restore::read(&raw, &Scope::new("m", None), None).is_none());
    }
}
