//! The `count_tokens` estimate (and the router's pre-call checks), for
//! backends that cannot count: about four
//! characters of text per token, the way OpenAI and Anthropic describe
//! English text. Counted: the system prompt, every message's text (tool
//! inputs and tool results as their JSON or text), the tool definitions as
//! JSON, plus 3 tokens per message and 3 for the reply's start. Images count
//! a flat 1600 tokens each (Anthropic's figure for a ~1.15 megapixel image).
//! It is an estimate: real tokenizers differ by tens of percent.

use serde_json::Value;

/// Tokens counted for one image.
pub const IMAGE_TOKENS: u64 = 1600;

/// The estimated `input_tokens` of an Anthropic Messages request body.
pub fn estimate(body: &Value) -> u64 {
    let mut chars = 0u64;
    let mut extra = 3u64;
    let mut add = |v: &Value, extra: &mut u64| count(v, &mut chars, extra);
    add(&body["system"], &mut extra);
    if let Some(msgs) = body["messages"].as_array() {
        for m in msgs {
            extra += 3;
            add(&m["content"], &mut extra);
        }
    }
    // A Responses request: `instructions` and `input` (text, or items).
    add(&body["instructions"], &mut extra);
    match &body["input"] {
        Value::Array(items) => {
            for item in items {
                extra += 3;
                add(item.get("content").unwrap_or(item), &mut extra);
            }
        }
        input => add(input, &mut extra),
    }
    if let Some(tools) = body["tools"].as_array() {
        for t in tools {
            chars += t.to_string().len() as u64;
        }
    }
    chars.div_ceil(4) + extra
}

fn count(v: &Value, chars: &mut u64, extra: &mut u64) {
    match v {
        Value::String(s) => *chars += s.chars().count() as u64,
        Value::Array(items) => items.iter().for_each(|i| count(i, chars, extra)),
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            // Anthropic's blocks, OpenAI chat's and Responses' parts.
            Some("image" | "document" | "image_url" | "input_image" | "input_file") => {
                *extra += IMAGE_TOKENS
            }
            Some("tool_use") => *chars += o.get("input").map_or(0, |i| i.to_string().len()) as u64,
            Some("tool_result") => count(o.get("content").unwrap_or(&Value::Null), chars, extra),
            Some("thinking") => count(o.get("thinking").unwrap_or(&Value::Null), chars, extra),
            _ => count(o.get("text").unwrap_or(&Value::Null), chars, extra),
        },
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_text_tools_and_images() {
        let body = json!({
            "system": "abcd",
            "messages": [
                {"role": "user", "content": "12345678"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "xyzw"},
                                              {"type": "image", "source": {"type": "url", "url": "u"}}]},
            ],
        });
        // 4 + 8 + 2 ("{}") + 4 = 18 chars → 5 tokens; 3 + 3*3 + 1600 extra.
        assert_eq!(estimate(&body), 5 + 12 + IMAGE_TOKENS);
        // Chat and Responses bodies count the same text.
        let chat = json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "12345678"}]}]});
        assert_eq!(estimate(&chat), 2 + 6);
        let responses =
            json!({"instructions": "abcd", "input": [{"role": "user", "content": "12345678"}]});
        assert_eq!(estimate(&responses), 3 + 6);
        assert_eq!(estimate(&json!({"input": "12345678"})), 2 + 3);
        let with_tools = json!({"messages": [], "tools": [{"name": "abcdefgh"}]});
        assert_eq!(
            estimate(&with_tools),
            (r#"{"name":"abcdefgh"}"#.len() as u64).div_ceil(4) + 3
        );
    }
}
