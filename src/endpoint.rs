//! The endpoint a request is for, shared by every layer: the HTTP surface
//! names it, the router and translators branch on it, config builds URLs
//! from it. A leaf, so that none of them has to import another for it.

/// The endpoint a request is for; the path appended to `api_base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Embeddings,
    Responses,
    /// Legacy text completions.
    Completions,
    /// Anthropic Messages.
    Messages,
    /// Anthropic's token counter.
    CountTokens,
}

impl Endpoint {
    /// Every endpoint, in [`index`](Self::index) order.
    pub const ALL: [Endpoint; 6] = [
        Endpoint::ChatCompletions,
        Endpoint::Embeddings,
        Endpoint::Responses,
        Endpoint::Completions,
        Endpoint::Messages,
        Endpoint::CountTokens,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Responses => "/responses",
            Endpoint::Completions => "/completions",
            Endpoint::Messages => "/messages",
            Endpoint::CountTokens => "/messages/count_tokens",
        }
    }

    /// Its place in [`Backend::urls`](crate::config::Backend).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the endpoint can answer with an event stream.
    pub fn can_stream(self) -> bool {
        !matches!(self, Endpoint::Embeddings | Endpoint::CountTokens)
    }
}
