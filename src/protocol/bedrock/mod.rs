//! OpenAI chat ⇄ AWS Bedrock Converse (`api_type: bedrock`).
//!
//! A Bedrock backend is a chat backend to the rest of the proxy
//! ([`crate::protocol::wire`] answers chat completions for it): the
//! upstream client (`src/upstream/bedrock.rs`) translates the chat body to
//! a Converse request at the boundary, signs it, and turns what comes back
//! into chat again, so the router, the relay, the parsers, the request log
//! and the Responses/Messages translators see a chat backend.
//!
//! - `request`: a chat request → a Converse request (system blocks,
//!   content blocks, tools, inference settings, thinking).
//! - `response`: a Converse answer → a chat completion; Bedrock errors
//!   (`x-amzn-ErrorType` + `{"message"}`) → OpenAI's error shape and status.
//! - `stream`: ConverseStream events (decoded from the AWS event-stream
//!   framing by the upstream client) → chat chunk frames.
//!
//! Reasoning: Bedrock's `reasoningContent` blocks become `reasoning_content`
//! and `thinking_blocks` in the Anthropic style the rest of the proxy uses
//! (`{"type":"thinking","thinking","signature"}`,
//! `{"type":"redacted_thinking","data"}`); an assistant turn sent back with
//! signed `thinking_blocks` gets its `reasoningContent` blocks again, so
//! tool use with thinking keeps working over several turns. Unsigned
//! reasoning is not sent (Bedrock would refuse it).

use crate::config::{ApiType, Backend};
use crate::protocol::{TranslateError, Translated};

pub mod request;
pub mod response;
pub mod stream;

/// For a Bedrock backend, the chat body prepared for it checked against
/// Converse before it is sent: a request Converse cannot carry is the
/// client's error (400) here, and the chat fields it leaves out join the
/// attempt's `dropped` list. Other backends' bodies pass as they are.
pub fn check(backend: &Backend, mut t: Translated) -> Result<Translated, TranslateError> {
    if backend.api_type != ApiType::Bedrock {
        return Ok(t);
    }
    let converse = request::chat_to_converse(&t.body)?;
    for d in converse.dropped {
        if !t.dropped.contains(&d) {
            t.dropped.push(d);
        }
    }
    Ok(t)
}

/// Bedrock's `stopReason` → OpenAI's `finish_reason`.
pub fn finish_reason(stop: &str) -> &'static str {
    match stop {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        _ => "stop",
    }
}

/// Bedrock usage (`inputTokens`, `outputTokens`, `cacheReadInputTokens`,
/// `cacheWriteInputTokens`) → chat usage. Bedrock counts cached input apart
/// from `inputTokens`, as Anthropic does.
pub fn usage_to_openai(u: &serde_json::Value) -> serde_json::Value {
    let n = |k: &str| u.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    super::anthropic::response::usage_to_openai(&serde_json::json!({
        "input_tokens": n("inputTokens"),
        "output_tokens": n("outputTokens"),
        "cache_read_input_tokens": n("cacheReadInputTokens"),
        "cache_creation_input_tokens": n("cacheWriteInputTokens"),
    }))
}
