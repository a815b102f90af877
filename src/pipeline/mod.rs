//! What the proxy does to requests and responses on their way through.
//! `request`: the parsed client body and the per-backend rewrite.
//! `reasoning`: the field each provider reads to switch reasoning on.
//! `response`: the response parsers (reasoning and tool calls out of raw
//! model text, reasoning swapped into content, reasoning field names).

pub mod reasoning;
pub mod request;
pub mod response;
