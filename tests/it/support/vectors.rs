//! The parser vectors (tests/fixtures/parser-vectors/) and the one way an
//! answer is checked against them.

use serde_json::Value;

/// The shared vectors (a copy of shared/parser-vectors) and ours.
pub fn all() -> Vec<Value> {
    let mut all: Vec<Value> =
        serde_json::from_str(include_str!("../../fixtures/parser-vectors/vectors.json")).unwrap();
    let ours: Vec<Value> = serde_json::from_str(include_str!(
        "../../fixtures/parser-vectors/yallmp-vectors.json"
    ))
    .unwrap();
    all.extend(ours);
    all
}

/// What a client ended up with.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Answer {
    pub reasoning: String,
    pub content: String,
    /// (id, name, arguments as text)
    pub tools: Vec<(String, String, String)>,
    pub finish: Option<String>,
}

/// Trimmed; empty counts as null (the vectors' rule).
pub fn norm(s: &str) -> Value {
    let t = s.trim();
    if t.is_empty() {
        Value::Null
    } else {
        Value::from(t)
    }
}

/// Checks an answer against a vector's `expect`.
pub fn check(name: &str, got: &Answer, expect: &Value) {
    assert_eq!(
        norm(&got.reasoning),
        expect["reasoning"],
        "{name}: reasoning"
    );
    assert_eq!(norm(&got.content), expect["content"], "{name}: content");
    let want = expect["tool_calls"].as_array().unwrap();
    assert_eq!(got.tools.len(), want.len(), "{name}: tool calls {got:?}");
    for (g, w) in got.tools.iter().zip(want) {
        assert_eq!(g.1, w["name"].as_str().unwrap(), "{name}: tool name");
        let args: Value = serde_json::from_str(&g.2)
            .unwrap_or_else(|e| panic!("{name}: arguments {:?}: {e}", g.2));
        assert_eq!(args, w["arguments"], "{name}: arguments");
        if let Some(id) = w.get("id") {
            assert_eq!(g.0, id.as_str().unwrap(), "{name}: id");
        }
    }
    let want_finish = if want.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    assert_eq!(
        got.finish.as_deref(),
        Some(want_finish),
        "{name}: finish_reason"
    );
}
