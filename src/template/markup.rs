//! The vocabulary of a model's chat markup that a template reveals and the
//! `parse_tags` / `swap_reasoning_content` settings name: tool-call formats,
//! argument formats, the text around a think tag. It lives here, below the
//! config, so detection needs nothing from the config; `config::parsers`
//! re-exports it under its old names.

use serde::{Deserialize, Serialize};

/// How tool calls are written in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolFormat {
    /// Every known format (or the template's, when one is given).
    Auto,
    /// `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (Hermes, Qwen).
    Hermes,
    /// `<tool_call><function=NAME><parameter=K>v</parameter></function></tool_call>`.
    Qwen3Coder,
    /// `<tool_call>NAME<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>`.
    Glm,
    /// `<|tool_calls_section_begin|>...` (Kimi K2).
    KimiK2,
    /// `<minimax:tool_call><invoke name="N">...` (MiniMax M2).
    MinimaxM2,
    /// `<｜tool▁calls▁begin｜>...` (DeepSeek V3.1).
    DeepseekV31,
    /// `tool_open`/`tool_close` with XML-style arguments.
    Xml,
    /// `tool_open`/`tool_close` with a JSON object.
    Json,
}

/// Argument format of the generic tool formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArgFormat {
    Xml,
    Json,
}

/// Text around a think tag.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Affix {
    pub prefix: String,
    pub suffix: String,
}
