//! The resolved models: a name clients ask for, its backends (one upstream
//! deployment each) and how each takes part in balancing.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{Secret, parsers, reasoning, thinking};

/// One model name clients can ask for: its backends and fallbacks.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub name: String,
    /// Where the model came from.
    pub source: ModelSource,
    /// Admin edits and deletes need the admin password.
    pub protected: bool,
    pub backends: Vec<Arc<Backend>>,
    /// Models tried after every backend of this one failed, in order.
    pub fallbacks: Vec<String>,
    /// Models tried instead when an answer is a context-window error
    /// (`router_settings.context_window_fallbacks`).
    pub context_window_fallbacks: Vec<String>,
    /// Models tried instead when an answer is a content-policy refusal
    /// (`router_settings.content_policy_fallbacks`).
    pub content_policy_fallbacks: Vec<String>,
    /// The model's own response parsers (`enabled` always set).
    pub parsers: Option<parsers::ParsersSettings>,
}

impl ModelConfig {
    /// The models tried instead on a failure of `kind`.
    pub fn kind_fallbacks(&self, kind: FallbackKind) -> &[String] {
        match kind {
            FallbackKind::ContextWindow => &self.context_window_fallbacks,
            FallbackKind::ContentPolicy => &self.content_policy_fallbacks,
        }
    }
}

/// A kind of failure with fallbacks of its own: the request itself will not
/// do at this model (too long for its context window, refused by its
/// content policy), so other models are tried instead of answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FallbackKind {
    ContextWindow,
    ContentPolicy,
}

impl FallbackKind {
    pub const ALL: [FallbackKind; 2] = [FallbackKind::ContextWindow, FallbackKind::ContentPolicy];
}

/// Where a model is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelSource {
    /// The config file.
    Config,
    /// Registered through the admin API (kept in the runtime overlay).
    Runtime,
    /// Derived from another model (`extends`, or `Base:Variant`).
    Derived,
}

/// A request parameter default for a model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Parameter {
    pub name: String,
    /// The value, as JSON.
    pub default: serde_json::Value,
    /// When false the default always wins; when true it fills in only what
    /// the request leaves out.
    pub allow_override: bool,
}

/// Which protocol a backend speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiType {
    /// OpenAI-compatible HTTP API.
    Openai,
    /// Anthropic Messages (`{api_base}/v1/messages`, `x-api-key`).
    Anthropic,
    /// Built-in local backend that echoes; needs no network or key.
    Stub,
    /// Azure OpenAI: OpenAI's protocol on
    /// `{api_base}/openai/deployments/{deployment}/...?api-version=`,
    /// the key in `api-key`.
    Azure,
    /// AWS Bedrock's Converse API (`{api_base}/model/{id}/converse`),
    /// SigV4-signed; chat requests translated (src/upstream/bedrock.rs).
    Bedrock,
    /// Google AI Studio's Gemini API (`generateContent`, `x-goog-api-key`);
    /// chat completions translated (src/upstream/google.rs).
    Gemini,
    /// Gemini on Vertex AI: the same contents, a project/location URL and
    /// an OAuth token (service account or given).
    Vertex,
}

impl ApiType {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiType::Openai => "openai",
            ApiType::Anthropic => "anthropic",
            ApiType::Stub => "stub",
            ApiType::Azure => "azure",
            ApiType::Bedrock => "bedrock",
            ApiType::Gemini => "gemini",
            ApiType::Vertex => "vertex",
        }
    }
}

/// One upstream deployment of a model.
#[derive(Debug, Clone)]
pub struct Backend {
    /// `model_name#n`, n counting from 1 within the model: stable and unique.
    pub name: String,
    pub model_name: String,
    pub api_type: ApiType,
    /// Base URL without a trailing slash, e.g. `https://api.openai.com/v1`.
    pub api_base: String,
    pub api_key: Option<Secret>,
    /// The model name sent upstream; `None` forwards the client's.
    pub upstream_model: Option<String>,
    pub request_timeout: Duration,
    pub supports_reasoning: bool,
    /// `model_params.reasoning`: the field written to ask for reasoning.
    pub reasoning: Option<reasoning::Reasoning>,
    /// Whether the backend serves `/responses` itself; when false, Responses
    /// requests reach it translated to chat completions.
    pub supports_responses: bool,
    /// Whether the backend serves the Responses WebSocket mode: a client's
    /// WebSocket turns to it go over one upstream WebSocket per client
    /// socket (`src/upstream/ws.rs`) instead of one HTTP request each.
    pub responses_websocket: bool,
    /// `pricing` (or LiteLLM's per-token keys): USD per million tokens.
    /// Without one, the shipped catalog's price of the upstream model
    /// applies ([`Backend::price_for`]).
    pub pricing: Option<crate::price::Price>,
    /// Request parameter defaults.
    pub parameters: Arc<[Parameter]>,
    /// The endpoint URLs, parsed once, by [`Endpoint::index`](crate::endpoint::Endpoint::index).
    pub urls: Option<Arc<[super::url::Target]>>,
    /// Weight, order and health check.
    pub routing: BackendRouting,
    /// `interleaved_thinking`, when on.
    pub thinking: Option<Arc<thinking::ThinkingSettings>>,
    /// Where an `api_type: azure` backend's deployment is.
    pub azure: Option<AzureTarget>,
    /// An `api_type: bedrock` backend's region and credentials.
    pub bedrock: Option<Arc<super::bedrock::BedrockAuth>>,
    /// Where an `api_type: vertex` backend's models are, and its credentials.
    pub vertex: Option<Arc<super::google::VertexTarget>>,
    /// A wildcard model's backend: without a `model`/`target_model`, the
    /// requested name goes upstream without the pattern's literal prefix.
    pub strip_prefix: bool,
    /// Sent as `OpenAI-Organization` (LiteLLM's `organization`).
    pub organization: Option<String>,
    /// `request_timeout` for streamed requests (LiteLLM's `stream_timeout`).
    pub stream_timeout: Option<Duration>,
    /// Extra attempts at this backend; `router_settings.num_retries` when
    /// unset (LiteLLM's `max_retries`).
    pub max_retries: Option<u32>,
    /// Requests and tokens per minute, and requests in flight, this
    /// backend takes (LiteLLM's per-deployment `rpm`, `tpm`,
    /// `max_parallel_requests`).
    pub limits: BackendLimits,
    /// What happens to the client's fields this backend's dialect does not
    /// take, and fields never sent to it (`drop_params`,
    /// `additional_drop_params`).
    pub drop: DropParams,
}

/// A backend's own limits (docs/routing.md, "Per-backend limits"). A
/// backend at a limit is passed over for the rest of the minute (or while
/// that many requests are in flight); when every backend of a request is,
/// the client gets 429 with `Retry-After`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendLimits {
    /// Requests a minute (a fixed window on the clock's minute).
    pub rpm: Option<u64>,
    /// Tokens (input + output) a minute: a backend is admitted while the
    /// minute's tokens are under it (a request's tokens are known after it).
    pub tpm: Option<u64>,
    /// Attempts in flight at once, on this instance.
    pub max_parallel: Option<u64>,
    /// Its context window for input (`max_input_tokens`), read by
    /// `router_settings.enable_pre_call_checks`.
    pub max_input_tokens: Option<u64>,
    /// The backend whose counters these limits share (`limits_from`): a
    /// derived model's copy of a backend is the same deployment, so both
    /// count together (same `api_base` only).
    pub from: Option<Arc<str>>,
}

impl BackendLimits {
    /// Whether a per-minute limit is set (then usage is counted, and
    /// shared through Redis).
    pub fn per_minute(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some()
    }
}

/// `drop_params` and `additional_drop_params` of a backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropParams {
    /// `drop_params: false`: a request whose fields the translation to
    /// this backend would leave out is refused (400) instead.
    pub refuse: bool,
    /// Top-level fields never sent to this backend.
    pub always: Arc<[String]>,
}

/// An Azure OpenAI deployment: the URL path and the `api-version` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureTarget {
    pub deployment: String,
    pub api_version: String,
}

/// How one backend takes part in balancing (`weight`, `order`,
/// `health_check` of its params).
#[derive(Debug, Clone, PartialEq)]
pub struct BackendRouting {
    /// Relative share under `simple-shuffle` (and among ties of
    /// `least-busy` and `latency-based`).
    pub weight: f64,
    /// Lower goes first under `ordered`; `None` after every ordered one.
    pub order: Option<i64>,
    pub health_check: Option<HealthCheck>,
}

impl Default for BackendRouting {
    fn default() -> Self {
        BackendRouting {
            weight: 1.0,
            order: None,
            health_check: None,
        }
    }
}

/// An active health check: `GET api_base + path` every `interval`.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub interval: Duration,
    /// Starts with `/`; appended to `api_base`.
    pub path: String,
    pub timeout: Duration,
}

impl Backend {
    /// The price of an answer this backend gave for `upstream_model` (the
    /// model name it was sent): its own `pricing`, else the shipped
    /// catalog's; `None` when neither knows it.
    /// How long to wait for the headers and between two chunks: the
    /// `stream_timeout` for a stream when set, else `request_timeout`.
    pub fn timeout_for(&self, stream: bool) -> Duration {
        match self.stream_timeout {
            Some(t) if stream => t,
            _ => self.request_timeout,
        }
    }

    pub fn price_for(&self, upstream_model: &str) -> Option<crate::price::Price> {
        self.pricing
            .or_else(|| crate::price::shipped(upstream_model))
    }
}
