//! Request bodies between OpenAI chat completions and Anthropic Messages,
//! both ways. A translated request carries only what the target dialect
//! defines: each field of the client's dialect is mapped or dropped (see
//! docs/providers.md), a field the client's dialect does not define passes
//! only when the target's does, and every dropped field is named in the
//! `dropped` list the caller puts in the request record.
//!
//! `to_messages.rs` and `to_chat.rs` hold the two directions, `fields.rs`
//! the field lists and how unmapped fields are carried, `signed.rs` the
//! thinking blocks Anthropic can verify.

mod fields;
mod signed;
mod to_chat;
mod to_messages;

use serde_json::{Map, Value};

use crate::protocol::TranslateError;

pub use fields::{CHAT_FIELDS, MESSAGES_FIELDS};
pub(crate) use fields::{carry_rest, drop_subkeys};
pub use signed::{strip_unverifiable, verifiable};
pub use to_chat::messages_to_chat;
pub use to_messages::chat_to_messages;

/// `max_tokens` sent to Anthropic when the OpenAI request has none (the
/// Messages API requires one).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

pub(super) fn object(body: &[u8]) -> Result<Map<String, Value>, TranslateError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(TranslateError::new(
            "the request body must be a JSON object",
        )),
        Err(e) => Err(TranslateError::new(format!(
            "the request body is not valid JSON: {e}"
        ))),
    }
}

/// The text of OpenAI content (a string, or parts whose text is joined).
pub(super) fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::signed::all_verifiable;
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> Vec<u8> {
        crate::protocol::tests::fixture(&format!("anthropic/{name}"))
    }

    #[test]
    fn chat_request_becomes_messages() {
        let mut dropped = Vec::new();
        let out = chat_to_messages(&fixture("chat_request.json"), &mut dropped).unwrap();
        let want: Value =
            serde_json::from_slice(&fixture("chat_request.as_messages.json")).unwrap();
        assert_eq!(out, want, "{}", serde_json::to_string_pretty(&out).unwrap());
        // `top_k` is Anthropic's own: it passes; chat's `frequency_penalty` has no equivalent.
        assert_eq!(dropped, ["frequency_penalty"]);
    }

    #[test]
    fn messages_request_becomes_chat() {
        let mut dropped = Vec::new();
        let out = messages_to_chat(&fixture("messages_request.json"), &mut dropped).unwrap();
        let want: Value =
            serde_json::from_slice(&fixture("messages_request.as_chat.json")).unwrap();
        assert_eq!(out, want, "{}", serde_json::to_string_pretty(&out).unwrap());
        assert_eq!(dropped, ["custom_field", "thinking"]);
    }

    #[test]
    fn reasoning_effort_and_choices() {
        let out = chat_to_messages(
            br#"{"model":"c","messages":[{"role":"user","content":"hi"}],"reasoning_effort":"low","max_tokens":16000,
                "tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required","parallel_tool_calls":false,"stop":"END","temperature":1.7}"#,
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(
            out["thinking"],
            json!({"type": "enabled", "budget_tokens": 2048})
        );
        assert_eq!(
            out["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        assert_eq!(out["stop_sequences"], json!(["END"]));
        // Thinking (from reasoning_effort) means temperature 1.
        assert_eq!(out["temperature"], json!(1));
        assert_eq!(
            out["tools"][0]["input_schema"],
            json!({"type": "object", "properties": {}})
        );
        assert!(chat_to_messages(b"[]", &mut Vec::new()).is_err());
        assert!(chat_to_messages(br#"{"model":"m"}"#, &mut Vec::new()).is_err());
    }

    #[test]
    fn claude_code_fields_are_mapped_or_dropped() {
        let mut dropped = Vec::new();
        let out = messages_to_chat(
            br#"{"model":"c","max_tokens":32000,"messages":[{"role":"user","content":"hi"}],
                "context_management":{"edits":[]},"output_config":{"effort":"high","task_budget":1},
                "thinking":{"type":"enabled","budget_tokens":4000},"metadata":{"user_id":"u","x":1},
                "service_tier":"standard_only","top_k":5,"container":"c1","seed":7,"chat_template_kwargs":{}}"#,
            &mut dropped,
        )
        .unwrap();
        assert_eq!(out["reasoning_effort"], "high");
        assert_eq!(out["user"], "u");
        assert_eq!(out["service_tier"], "default");
        // `seed` is chat's own: it passes.
        assert_eq!(out["seed"], 7);
        for gone in [
            "context_management",
            "output_config",
            "thinking",
            "metadata",
            "top_k",
            "container",
            "chat_template_kwargs",
        ] {
            assert!(out.get(gone).is_none(), "{gone}: {out}");
        }
        dropped.sort();
        assert_eq!(
            dropped,
            [
                "chat_template_kwargs",
                "container",
                "context_management",
                "metadata.x",
                "output_config.task_budget",
                "thinking",
                "top_k"
            ]
        );
        // Thinking switched off: no effort; `max` is chat's highest.
        let mut dropped = Vec::new();
        let out = messages_to_chat(
            br#"{"model":"c","messages":[],"thinking":{"type":"disabled"},"output_config":{"effort":"max"}}"#,
            &mut dropped,
        )
        .unwrap();
        assert!(out.get("reasoning_effort").is_none());
        assert!(dropped.contains(&"output_config.effort".to_string()));
        let out = messages_to_chat(
            br#"{"model":"c","messages":[],"output_config":{"effort":"max","format":{"type":"json_schema","schema":{"type":"object"}}}}"#,
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(out["reasoning_effort"], "xhigh");
        assert_eq!(
            out["response_format"]["json_schema"]["schema"],
            json!({"type": "object"})
        );
    }

    #[test]
    fn unsigned_thinking_is_not_sent_to_anthropic() {
        let mut dropped = Vec::new();
        let out = chat_to_messages(
            br#"{"model":"c","messages":[{"role":"user","content":"hi"},
                {"role":"assistant","content":"ok","thinking_blocks":[{"type":"thinking","thinking":"t","signature":""}]},
                {"role":"user","content":"more"}]}"#,
            &mut dropped,
        )
        .unwrap();
        assert_eq!(
            out["messages"][1]["content"],
            json!([{"type": "text", "text": "ok"}])
        );
        assert_eq!(dropped, ["messages[1].thinking_blocks (unsigned)"]);
        let messages = r#"[{"role":"user","content":"hi"},{"role":"assistant","content":[
            {"type":"thinking","thinking":"a","signature":""},{"type":"thinking","thinking":"b"},
            {"type":"thinking","thinking":"c","signature":"sig"},{"type":"redacted_thinking","data":"d"},
            {"type":"text","text":"x"}]}]"#;
        let (clean, dropped) = strip_unverifiable(messages).unwrap();
        assert_eq!(
            clean[1]["content"],
            json!([{"type": "thinking", "thinking": "c", "signature": "sig"},
                   {"type": "redacted_thinking", "data": "d"}, {"type": "text", "text": "x"}])
        );
        assert_eq!(
            dropped,
            [
                "messages[1].content[0] (unsigned thinking)",
                "messages[1].content[1] (unsigned thinking)"
            ]
        );
        assert_eq!(all_verifiable(messages), Some(false));
        assert!(strip_unverifiable(r#"[{"role":"user","content":"no thinking here"}]"#).is_none());
        // Text blocks may say anything, signatures may be escaped.
        let signed = r#"[{"role":"assistant","content":[{"type":"text","text":"\"type\":\"thinking\""},
            {"type":"thinking","thinking":"t","signature":"a\/b"}]},{"role":"assistant","content":"thinking"}]"#;
        assert_eq!(all_verifiable(signed), Some(true));
        assert!(strip_unverifiable(signed).is_none());
        assert!(strip_unverifiable(r#"[{"role":"assistant","content":[{"type":"thinking","thinking":"c","signature":"s"}]}]"#).is_none());
    }
}
