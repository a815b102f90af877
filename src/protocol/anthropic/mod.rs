//! OpenAI chat completions ⇄ Anthropic Messages: `request` (bodies both
//! ways), `response` (whole answers and errors both ways), `stream` (event
//! streams both ways).

pub mod request;
pub mod response;
pub mod stream;

/// The `anthropic-version` header sent when the client sent none.
pub const VERSION: &str = "2023-06-01";
