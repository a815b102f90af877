//! Helpers for the Anthropic and Responses tests: the recorded-shape
//! fixtures in tests/fixtures/anthropic/, SSE replies made of them, and the
//! events of an answer.

use std::time::Duration;

use serde_json::{Value, json};

use super::Reply;
pub use super::post_with;

pub fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/anthropic/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap()
}

/// The frames of an SSE fixture, each with its terminator.
pub fn frames(name: &str) -> Vec<String> {
    fixture(name)
        .split_inclusive("\n\n")
        .map(str::to_string)
        .collect()
}

pub fn sse(frames: Vec<String>) -> Reply {
    Reply::Sse {
        frames,
        gap: Duration::from_millis(1),
    }
}

/// The `data:` payloads of an event stream, with their event names.
pub fn events(body: &str) -> Vec<(Option<String>, Value)> {
    body.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .filter_map(|f| {
            let mut name = None;
            let mut data = None;
            for line in f.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = Some(d.to_string());
                }
            }
            let data = data?;
            let v = if data == "[DONE]" {
                json!("[DONE]")
            } else {
                serde_json::from_str(&data).unwrap_or_else(|e| panic!("{data}: {e}"))
            };
            Some((name, v))
        })
        .collect()
}

/// The proxy with one model, `claude`, on an Anthropic backend at `mock`
/// (`extra`: more `model_params`, each starting with a comma).
pub async fn anthropic_proxy(mock: &super::Mock, extra: &str) -> yallmp::Server {
    super::proxy(&format!(
        "model_list:\n  - {{model_name: claude, model_params: {{api_type: anthropic, api_base: '{}', api_key: sk-ant-test, target_model: claude-sonnet-4-5{extra}}}}}\n",
        mock.url
    ))
    .await
}
