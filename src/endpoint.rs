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
    /// Speech to text (multipart).
    AudioTranscriptions,
    /// Speech to English text (multipart).
    AudioTranslations,
    /// Text to speech: JSON in, audio bytes out.
    AudioSpeech,
    ImagesGenerations,
    /// Image edits (multipart).
    ImagesEdits,
    Moderations,
    /// Cohere/Jina-shaped reranking (vLLM, TEI, Infinity).
    Rerank,
}

impl Endpoint {
    /// Every endpoint, in [`index`](Self::index) order.
    pub const ALL: [Endpoint; 13] = [
        Endpoint::ChatCompletions,
        Endpoint::Embeddings,
        Endpoint::Responses,
        Endpoint::Completions,
        Endpoint::Messages,
        Endpoint::CountTokens,
        Endpoint::AudioTranscriptions,
        Endpoint::AudioTranslations,
        Endpoint::AudioSpeech,
        Endpoint::ImagesGenerations,
        Endpoint::ImagesEdits,
        Endpoint::Moderations,
        Endpoint::Rerank,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Responses => "/responses",
            Endpoint::Completions => "/completions",
            Endpoint::Messages => "/messages",
            Endpoint::CountTokens => "/messages/count_tokens",
            Endpoint::AudioTranscriptions => "/audio/transcriptions",
            Endpoint::AudioTranslations => "/audio/translations",
            Endpoint::AudioSpeech => "/audio/speech",
            Endpoint::ImagesGenerations => "/images/generations",
            Endpoint::ImagesEdits => "/images/edits",
            Endpoint::Moderations => "/moderations",
            Endpoint::Rerank => "/rerank",
        }
    }

    /// Its place in [`Backend::urls`](crate::config::Backend).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the endpoint can answer with an event stream.
    pub fn can_stream(self) -> bool {
        !matches!(self, Endpoint::Embeddings | Endpoint::CountTokens) && !self.is_media()
    }

    /// A text generation from a conversation (chat, Responses, Messages,
    /// legacy completions): what a context window bounds.
    pub fn is_generation(self) -> bool {
        matches!(
            self,
            Endpoint::ChatCompletions
                | Endpoint::Responses
                | Endpoint::Completions
                | Endpoint::Messages
        )
    }

    /// The endpoints passed through as they are (audio, images,
    /// moderations, rerank): no translation, no sampling defaults, no
    /// response parsers; their answers need not be JSON.
    pub fn is_media(self) -> bool {
        matches!(
            self,
            Endpoint::AudioTranscriptions
                | Endpoint::AudioTranslations
                | Endpoint::AudioSpeech
                | Endpoint::ImagesGenerations
                | Endpoint::ImagesEdits
                | Endpoint::Moderations
                | Endpoint::Rerank
        )
    }

    /// Whether the client's body is `multipart/form-data`.
    pub fn is_multipart(self) -> bool {
        matches!(
            self,
            Endpoint::AudioTranscriptions | Endpoint::AudioTranslations | Endpoint::ImagesEdits
        )
    }
}
