//! The top-level fields each dialect defines and each translation maps, and
//! how the rest is carried or dropped (shared with the Responses
//! translation).

use serde_json::{Map, Value};

/// Every top-level field of an OpenAI chat completions request.
pub const CHAT_FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "temperature",
    "top_p",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning_effort",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "metadata",
    "n",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "seed",
    "response_format",
    "functions",
    "function_call",
    "store",
    "modalities",
    "audio",
    "prediction",
    "service_tier",
    "web_search_options",
    "verbosity",
];

/// The chat fields [`chat_to_messages`](super::chat_to_messages) maps (the other chat fields are
/// dropped).
pub(super) const CHAT_MAPPED: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "temperature",
    "top_p",
    "stream",
    // Honoured by the stream translator (the usage chunk).
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning_effort",
    "user",
    "safety_identifier",
    "service_tier",
];

/// Every top-level field of an Anthropic Messages request.
pub const MESSAGES_FIELDS: &[&str] = &[
    "model",
    "messages",
    "system",
    "max_tokens",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "stream",
    "tools",
    "tool_choice",
    "thinking",
    "metadata",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
    "output_config",
    "output_format",
    "cache_control",
    "inference_geo",
    "speed",
];

/// The Messages fields [`messages_to_chat`](super::messages_to_chat) maps (the other Messages fields
/// are dropped).
pub(super) const MESSAGES_MAPPED: &[&str] = &[
    "model",
    "messages",
    "system",
    "max_tokens",
    "stop_sequences",
    "temperature",
    "top_p",
    "stream",
    "tools",
    "tool_choice",
    "metadata",
    "service_tier",
    "output_config",
    "output_format",
];

/// The fields left after a translation mapped what it maps: a field of
/// the client's dialect (`source`) is dropped; one it does not define
/// passes when the target dialect defines it, else it is dropped too.
pub(crate) fn carry_rest(
    rest: Map<String, Value>,
    source: &[&str],
    mapped: &[&str],
    target: &[&str],
    out: &mut Map<String, Value>,
    dropped: &mut Vec<String>,
) {
    let start = dropped.len();
    for (k, v) in rest {
        if mapped.contains(&k.as_str()) {
            continue;
        }
        // A field the mapping already wrote wins over the client's own.
        if !out.contains_key(&k) && !source.contains(&k.as_str()) && target.contains(&k.as_str()) {
            out.insert(k, v);
        } else {
            dropped.push(k);
        }
    }
    // In name order: the client's order is not kept by the time they get here.
    dropped[start..].sort();
}

/// The keys of an object field other than `kept`, as `field.key` (what a
/// translation drops of an object it maps in part).
pub(crate) fn drop_subkeys(
    field: &str,
    value: Option<&Value>,
    kept: &[&str],
    dropped: &mut Vec<String>,
) {
    match value {
        Some(Value::Object(m)) => {
            for k in m.keys().filter(|k| !kept.contains(&k.as_str())) {
                dropped.push(format!("{field}.{k}"));
            }
        }
        Some(Value::Null) | None => {}
        Some(_) => dropped.push(field.to_string()),
    }
}
