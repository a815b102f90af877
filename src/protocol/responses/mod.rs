//! OpenAI Responses API ⇄ chat completions, for backends without a native
//! `/responses`: `request` (a Responses request as chat), `response` (a chat
//! answer as a `response` object), `stream` (chat chunks as Responses
//! events).

pub mod request;
pub mod response;
pub mod stream;
