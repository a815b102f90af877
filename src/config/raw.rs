//! The config file as written: serde types for both dialects (yallmp's
//! `model_params` and LiteLLM's `litellm_params`). Defaults live here: a key
//! left out stays `None` as written (so `key:` with no value means the
//! default too), and the accessor of the same name gives its value or the
//! default; the `DEFAULT_*` values are re-exported by `config`. The structs
//! leave unknown keys unread; the loader reports each with its key path
//! (`unknown.rs`; the LiteLLM keys accepted with a warning are in
//! `litellm.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// Default listen host and port.
pub const DEFAULT_HOST: &str = "127.0.0.1";
pub const DEFAULT_PORT: u16 = 7979;
pub const DEFAULT_MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;
/// `proxy_settings.server.max_response_bytes` when not set (64 MiB).
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
pub const DEFAULT_LOG_DIR: &str = "logs/requests";
pub const DEFAULT_SQLITE_PATH: &str = "logs/yallmp.db";
pub const DEFAULT_LOG_MAX_BODY: u64 = 10 * 1024 * 1024;
pub const DEFAULT_LOG_QUEUE: usize = 10_000;
/// `proxy_settings.logging.queue_max_bytes`: 64 MiB.
pub const DEFAULT_LOG_QUEUE_BYTES: u64 = 64 << 20;
/// `proxy_settings.logging.files.segment_max_bytes`: 64 MiB.
pub const DEFAULT_LOG_SEGMENT_BYTES: u64 = 64 << 20;
/// The Azure OpenAI `api-version` used when a backend names none (the GA
/// version the data-plane documentation leads with).
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";
/// `router_settings.max_retry_after` when not set.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(10);
/// `router_settings.cooldown_time` when not set.
pub const DEFAULT_COOLDOWN_TIME: Duration = Duration::from_secs(5);
/// `model_params.health_check.interval` when not set.
pub const DEFAULT_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    #[serde(default)]
    pub model_list: Vec<RawModelEntry>,
    #[serde(default)]
    pub proxy_settings: RawProxySettings,
    #[serde(default)]
    pub router_settings: RawRouterSettings,
    #[serde(default)]
    pub general_settings: RawGeneralSettings,
    #[serde(default)]
    pub database: RawDatabase,
    /// The TCP forwarder (`yallmp forward tcp`).
    #[serde(default)]
    pub forwarder_settings: super::forward::RawTcpForwarder,
    /// The HTTP forwarder (`yallmp forward http`).
    #[serde(default)]
    pub http_forwarder_settings: super::forward::RawHttpForwarder,
}

impl RawConfig {
    /// `proxy_settings.enable_responses_endpoint`, else LiteLLM's
    /// `general_settings` one; off by default.
    pub fn enable_responses_endpoint(&self) -> bool {
        self.proxy_settings
            .enable_responses_endpoint
            .or(self.general_settings.enable_responses_endpoint)
            .unwrap_or(false)
    }
}

#[derive(Debug, Deserialize)]
pub struct RawModelEntry {
    pub model_name: String,
    pub model_params: Option<RawModelParams>,
    pub litellm_params: Option<RawModelParams>,
    pub fallbacks: Option<OneOrMany>,
    /// Inherit from another model (resolved on the YAML tree before this
    /// type is read; kept here so the key is known).
    #[allow(dead_code)]
    pub extends: Option<String>,
    /// Request parameter defaults.
    #[serde(default)]
    pub parameters: BTreeMap<String, RawParameter>,
    /// Admin edits and deletes need the admin password.
    pub protected: Option<bool>,
    /// Response parsers for this model; replaces `proxy_settings.parsers`.
    pub parsers: Option<super::parsers::ParsersSettings>,
}

impl RawModelEntry {
    pub fn protected(&self) -> bool {
        self.protected.unwrap_or(false)
    }
}

/// `temperature: {default: 1.0, allow_override: false}`, or just a value.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawParameter {
    Full(RawParameterFull),
    Bare(serde_json::Value),
}

/// Rejects unknown keys itself: read through the untagged [`RawParameter`],
/// it is out of `serde_ignored`'s sight, and a map with other keys is a
/// bare value instead.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawParameterFull {
    pub default: serde_json::Value,
    pub allow_override: Option<bool>,
}

impl RawParameterFull {
    /// By default a request's own value wins over the default.
    pub fn allow_override(&self) -> bool {
        self.allow_override.unwrap_or(true)
    }
}

/// Backend parameters; the same keys in both dialects.
#[derive(Debug, Default, Deserialize)]
pub struct RawModelParams {
    pub api_base: Option<String>,
    pub api_key: Option<String>,
    pub model: Option<String>,
    pub target_model: Option<String>,
    /// Seconds; LiteLLM calls it `timeout`.
    #[serde(alias = "timeout")]
    pub request_timeout: Option<f64>,
    pub supports_reasoning: Option<bool>,
    /// How the backend is asked to reason (`style`, `effort`, `budget_tokens`).
    pub reasoning: Option<super::reasoning::RawReasoning>,
    /// Whether the backend serves `/responses` itself (default true);
    /// false: Responses requests are translated to chat completions.
    pub supports_responses: Option<bool>,
    /// Whether the backend serves the Responses WebSocket mode (default
    /// false): a client's WebSocket turns reach it over one upstream socket.
    pub responses_websocket: Option<bool>,
    /// USD per million tokens (`input`, `output`, `cached_input`,
    /// `cache_write`, `reasoning`); docs/keys-and-spend.md.
    pub pricing: Option<crate::price::Price>,
    /// LiteLLM's prices, USD per token (read, not ignored).
    pub input_cost_per_token: Option<f64>,
    pub output_cost_per_token: Option<f64>,
    pub cache_read_input_token_cost: Option<f64>,
    pub cache_creation_input_token_cost: Option<f64>,
    pub output_cost_per_reasoning_token: Option<f64>,
    pub api_type: Option<String>,
    /// Azure OpenAI: the `api-version` query (default 2024-10-21).
    pub api_version: Option<String>,
    /// Sent as `OpenAI-Organization` to this backend.
    pub organization: Option<String>,
    /// Seconds; `request_timeout` for streamed requests.
    pub stream_timeout: Option<f64>,
    /// Extra attempts at this backend (default `router_settings.num_retries`).
    pub max_retries: Option<u32>,
    /// Requests per minute this backend takes (LiteLLM's `rpm`).
    pub rpm: Option<u64>,
    /// Tokens per minute this backend takes (LiteLLM's `tpm`).
    pub tpm: Option<u64>,
    /// Attempts in flight at once at this backend.
    pub max_parallel_requests: Option<u64>,
    /// The model's context window for input, for
    /// `router_settings.enable_pre_call_checks` (LiteLLM's
    /// `model_info.max_input_tokens`).
    pub max_input_tokens: Option<u64>,
    /// Count this backend's limits together with the backend of that name
    /// (one deployment under two models); set on derived models' copies.
    pub limits_from: Option<String>,
    /// The backend's name in headers, the log and the UI (default
    /// `MODEL#N`; LiteLLM's `model_info.id`).
    pub id: Option<String>,
    /// The provider, for a `model` without a provider prefix (LiteLLM's).
    pub custom_llm_provider: Option<String>,
    /// `false`: refuse a request with fields this backend's dialect does
    /// not take instead of leaving them out (default true).
    pub drop_params: Option<bool>,
    /// Top-level request fields never sent to this backend.
    pub additional_drop_params: Option<Vec<String>>,
    /// Azure OpenAI: the deployment name (default: the model).
    pub deployment: Option<String>,
    /// Bedrock (`api_type: bedrock`): SigV4 credentials, region, profile
    /// (src/config/bedrock.rs).
    pub aws_access_key_id: Option<String>,
    pub aws_secret_access_key: Option<String>,
    pub aws_session_token: Option<String>,
    pub aws_region_name: Option<String>,
    pub aws_profile_name: Option<String>,
    /// Vertex AI: the Google Cloud project (`api_type: vertex`).
    pub vertex_project: Option<String>,
    /// Vertex AI: the region, or `global` (default `us-central1`).
    pub vertex_location: Option<String>,
    /// Vertex AI: a service-account key file (or its JSON text); default
    /// `GOOGLE_APPLICATION_CREDENTIALS`.
    pub vertex_credentials: Option<String>,
    /// Wildcard models: send the requested name without the pattern's
    /// literal prefix (`openai/*`: `openai/gpt-4o` → `gpt-4o`).
    pub strip_prefix: Option<bool>,
    pub fallbacks: Option<OneOrMany>,
    /// Share of traffic under `simple-shuffle` (relative, > 0; default 1).
    pub weight: Option<f64>,
    /// Priority under `ordered`: lower goes first.
    pub order: Option<i64>,
    /// Active health checks of this backend.
    pub health_check: Option<RawHealthCheck>,
    /// Give the model its earlier reasoning back (stateful interleaved
    /// thinking).
    pub interleaved_thinking: Option<super::thinking::RawInterleavedThinking>,
}

impl RawModelParams {
    pub fn supports_reasoning(&self) -> bool {
        self.supports_reasoning.unwrap_or(false)
    }
    pub fn supports_responses(&self) -> bool {
        self.supports_responses.unwrap_or(true)
    }
    pub fn responses_websocket(&self) -> bool {
        self.responses_websocket.unwrap_or(false)
    }
    pub fn strip_prefix(&self) -> bool {
        self.strip_prefix.unwrap_or(false)
    }
    /// Checked by the resolver (> 0).
    pub fn weight(&self) -> f64 {
        self.weight.unwrap_or(1.0)
    }
    /// `api_version`, trimmed, when given and not empty; else the default.
    pub fn api_version(&self) -> &str {
        self.api_version
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .unwrap_or(DEFAULT_AZURE_API_VERSION)
    }
}

/// `model_params.health_check`.
#[derive(Debug, Default, Deserialize)]
pub struct RawHealthCheck {
    /// Seconds between checks (default 30).
    pub interval: Option<f64>,
    /// Path under `api_base` (default `/models`).
    pub path: Option<String>,
    /// Seconds a check may take (default: the smaller of `interval` and 10).
    pub timeout: Option<f64>,
}

impl RawHealthCheck {
    pub fn path(&self) -> String {
        self.path.clone().unwrap_or_else(|| "/models".to_string())
    }
    /// The timeout when none is set: the interval, at most 10 seconds.
    pub fn default_timeout(interval: Duration) -> Duration {
        interval.min(Duration::from_secs(10))
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct RawProxySettings {
    #[serde(default)]
    pub server: RawServer,
    pub enable_responses_endpoint: Option<bool>,
    /// The model `/v1/moderations` uses when the request names none.
    pub moderation_model: Option<String>,
    /// The model whose backend takes `/v1/files` and `/v1/batches`.
    pub files_model: Option<String>,
    #[serde(default)]
    pub logging: RawLogging,
    #[serde(default)]
    pub auth: RawAuth,
    /// Response parsers for every model without its own block.
    pub parsers: Option<super::parsers::ParsersSettings>,
    /// Redis for state shared by several instances (cooldowns, rate
    /// limits, cache); env-substituted. Empty or absent: in-process only.
    pub redis_url: Option<String>,
    /// Prefix of every key this proxy writes in Redis (default `yallmp:`).
    pub redis_key_prefix: Option<String>,
    /// Requests and tokens per minute, globally and per client key.
    #[serde(default)]
    pub rate_limits: RawRateLimits,
    /// Cross-origin requests from browsers; off when absent.
    pub cors: Option<RawCors>,
    /// The response cache (off by default).
    #[serde(default)]
    pub cache: super::cache::RawCache,
    /// Bounds on upstream event streams.
    #[serde(default)]
    pub streaming: super::streaming::RawStreaming,
    /// yallmp's own log on stderr: `plain` (default) or `json`.
    pub log_format: Option<String>,
    /// OpenTelemetry traces (off by default).
    #[serde(default)]
    pub telemetry: super::telemetry::RawTelemetry,
}

impl RawProxySettings {
    pub fn redis_key_prefix(&self) -> String {
        self.redis_key_prefix
            .clone()
            .unwrap_or_else(|| "yallmp:".to_string())
    }
}

/// `proxy_settings.rate_limits`.
#[derive(Debug, Default, Deserialize)]
pub struct RawRateLimits {
    pub global: Option<RawLimit>,
    pub per_key: Option<RawLimit>,
    /// Requests in flight at once over all clients; more get 429.
    pub max_parallel_requests: Option<u64>,
}

/// `{rpm, tpm}`: either may be left out (no limit).
#[derive(Debug, Default, Deserialize)]
pub struct RawLimit {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

/// `proxy_settings.cors`.
#[derive(Debug, Default, Deserialize)]
pub struct RawCors {
    /// Origins allowed (`https://app.example.com`), or `["*"]` for any.
    #[serde(default)]
    pub allow_origins: Vec<String>,
    /// Request headers allowed; absent: whatever the preflight asks for.
    pub allow_headers: Option<Vec<String>>,
    /// Methods allowed; absent: whatever the preflight asks for.
    pub allow_methods: Option<Vec<String>>,
    /// Seconds a browser may cache a preflight answer.
    pub max_age: Option<f64>,
}

/// `proxy_settings.auth`.
#[derive(Debug, Default, Deserialize)]
pub struct RawAuth {
    /// Keys clients must send (`Authorization: Bearer` or `x-api-key`).
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// The admin password; `YALLMP_ADMIN_PASSWORD` in the environment wins.
    pub admin_password: Option<String>,
    /// Virtual keys declared here (read-only through the admin API).
    #[serde(default)]
    pub keys: Vec<RawDeclaredKey>,
    /// Teams declared here.
    #[serde(default)]
    pub teams: Vec<RawDeclaredTeam>,
}

/// `proxy_settings.auth.keys[]`: a virtual key with its secret.
#[derive(Debug, Default, Deserialize)]
pub struct RawDeclaredKey {
    pub name: Option<String>,
    /// The secret itself (through `${VAR}`).
    pub key: Option<String>,
    /// The team's name.
    pub team: Option<String>,
    #[serde(default)]
    pub models: Vec<String>,
    pub max_budget: Option<f64>,
    pub budget_duration: Option<String>,
    pub rpm_limit: Option<u64>,
    pub tpm_limit: Option<u64>,
    /// RFC 3339.
    pub expires_at: Option<String>,
    pub metadata: Option<serde_json::Value>,
}

/// `proxy_settings.auth.teams[]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawDeclaredTeam {
    pub name: Option<String>,
    #[serde(default)]
    pub models: Vec<String>,
    pub max_budget: Option<f64>,
    pub budget_duration: Option<String>,
    pub rpm_limit: Option<u64>,
    pub tpm_limit: Option<u64>,
    pub metadata: Option<serde_json::Value>,
}

/// `proxy_settings.logging`: the request log.
#[derive(Debug, Default, Deserialize)]
pub struct RawLogging {
    #[serde(default)]
    pub files: RawLogFiles,
    #[serde(default)]
    pub database: RawToggle,
    pub log_parsed_response: Option<bool>,
    pub log_parsed_stream: Option<bool>,
    /// Multipart requests' file parts logged too (base64), within `max_body_bytes`.
    pub log_multipart_files: Option<bool>,
    /// Bodies larger than this are truncated in the log, with a marker.
    pub max_body_bytes: Option<u64>,
    /// Records waiting for the writer before new ones are dropped.
    pub queue_size: Option<usize>,
    /// Bytes those records may hold before new ones are dropped.
    pub queue_max_bytes: Option<u64>,
    /// `drop` or `wait` (default): what a full queue does.
    pub on_full: Option<String>,
}

impl RawLogging {
    pub fn log_parsed_response(&self) -> bool {
        self.log_parsed_response.unwrap_or(false)
    }
    pub fn log_parsed_stream(&self) -> bool {
        self.log_parsed_stream.unwrap_or(false)
    }
    pub fn max_body_bytes(&self) -> u64 {
        self.max_body_bytes.unwrap_or(DEFAULT_LOG_MAX_BODY)
    }
    /// Checked by the resolver (at least 1).
    pub fn queue_size(&self) -> usize {
        self.queue_size.unwrap_or(DEFAULT_LOG_QUEUE)
    }
    /// Checked by the resolver (at least 1).
    pub fn queue_max_bytes(&self) -> u64 {
        self.queue_max_bytes.unwrap_or(DEFAULT_LOG_QUEUE_BYTES)
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct RawLogFiles {
    pub enabled: Option<bool>,
    pub dir: Option<String>,
    /// `per_request` (default) or `segments`.
    pub layout: Option<String>,
    /// A segment file is rolled past this many bytes.
    pub segment_max_bytes: Option<u64>,
}

impl RawLogFiles {
    /// Per-request files are on by default.
    pub fn enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }
    pub fn dir(&self) -> String {
        self.dir
            .clone()
            .unwrap_or_else(|| DEFAULT_LOG_DIR.to_string())
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct RawToggle {
    pub enabled: Option<bool>,
}

impl RawToggle {
    /// On unless turned off.
    pub fn enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }
}

/// Top-level `database`: where request records (and later runtime state) go.
#[derive(Debug, Default, Deserialize)]
pub struct RawDatabase {
    /// `sqlite` (default) or `postgres`.
    pub backend: Option<String>,
    /// A full URL (`postgres://...`, `sqlite://path`); wins over `connection`.
    pub url: Option<String>,
    #[serde(default)]
    pub connection: RawConnection,
    #[serde(default)]
    pub retention: RawRetention,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawConnection {
    #[serde(default)]
    pub sqlite: RawSqlite,
    #[serde(default)]
    pub postgres: RawPostgres,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawSqlite {
    pub path: Option<String>,
}

impl RawSqlite {
    pub fn path(&self) -> String {
        self.path
            .clone()
            .unwrap_or_else(|| DEFAULT_SQLITE_PATH.to_string())
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct RawPostgres {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub database: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl RawPostgres {
    pub fn host(&self) -> String {
        self.host.clone().unwrap_or_else(|| "localhost".into())
    }
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(5432)
    }
    pub fn database(&self) -> String {
        self.database.clone().unwrap_or_else(|| "yallmp".into())
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRetention {
    pub max_age_days: Option<f64>,
    pub max_rows: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawServer {
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: Option<u64>,
    /// Largest whole (not streamed) upstream answer read, in bytes.
    pub max_response_bytes: Option<u64>,
    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM.
    pub shutdown_grace_period: Option<f64>,
    /// `auto`, a thread count, or `shared` (see `config::Workers`).
    pub workers: Option<RawWorkers>,
    // Client connection limits (`config::connections`), read at start-up.
    /// Seconds from a request's first byte (or the connection's opening)
    /// to the end of its head (default 30; 0 turns it off).
    pub header_read_timeout: Option<f64>,
    /// Seconds a request body may go without a byte (default 60; 0 off).
    pub body_read_timeout: Option<f64>,
    /// Seconds a keep-alive connection may sit between requests (default
    /// 75; 0 off).
    pub idle_timeout: Option<f64>,
    /// Client connections open at once (default 4096, or half the
    /// open-files limit when lower).
    pub max_connections: Option<u64>,
    /// Host names `/admin` answers besides loopback, `localhost` and the
    /// listen address (see `config::ServerSettings::allowed_hosts`).
    pub allowed_hosts: Option<Vec<String>>,
    /// TLS on the listener: `{cert, key}` PEM files.
    pub tls: Option<super::tls::RawTls>,
}

impl RawServer {
    /// `host`, else LiteLLM's `general_settings.host`, else the default.
    pub fn host(&self, general: &RawGeneralSettings) -> String {
        self.host
            .clone()
            .or_else(|| general.host.clone())
            .unwrap_or_else(|| DEFAULT_HOST.to_string())
    }
    /// `port`, else LiteLLM's `general_settings.port`, else the default.
    pub fn port(&self, general: &RawGeneralSettings) -> u16 {
        self.port.or(general.port).unwrap_or(DEFAULT_PORT)
    }
    /// Checked by the resolver (at least 1).
    pub fn max_body_bytes(&self) -> u64 {
        self.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES)
    }
    /// Checked by the resolver (at least `MIN_RESPONSE_BYTES`).
    pub fn max_response_bytes(&self) -> u64 {
        self.max_response_bytes
            .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES)
    }
}

/// `proxy_settings.server.workers`: a count or a word.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawWorkers {
    Count(i64),
    Word(String),
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRouterSettings {
    pub num_retries: Option<u32>,
    pub fallbacks: Option<RawFallbacks>,
    /// Base of the jittered backoff between retries of one backend, ms.
    pub retry_backoff_ms: Option<u64>,
    /// Cap on an upstream's `Retry-After`, seconds.
    pub max_retry_after: Option<f64>,
    /// How a model's backends share its traffic (default `simple-shuffle`).
    pub routing_strategy: Option<String>,
    /// Failures within a minute a backend may have before it cools down.
    pub allowed_fails: Option<u32>,
    /// Seconds a backend stays out of rotation once it cools down.
    pub cooldown_time: Option<f64>,
    /// `latency-based`: backends within this fraction of the fastest share
    /// the traffic (default 0.1).
    pub latency_buffer: Option<f64>,
    /// LiteLLM's: never take a backend out of rotation.
    pub disable_cooldowns: Option<bool>,
    /// Pass over a backend whose `max_input_tokens` the request's estimate
    /// exceeds (LiteLLM's key).
    pub enable_pre_call_checks: Option<bool>,
    /// Models tried when the answer is a context-window error (same shapes
    /// as `fallbacks`).
    pub context_window_fallbacks: Option<RawFallbacks>,
    /// Models tried when the answer is a content-policy refusal.
    pub content_policy_fallbacks: Option<RawFallbacks>,
    /// Retries per kind of failure: LiteLLM's `RateLimitErrorRetries`, …
    /// or yallmp's `rate_limit`, … (checked by the resolver).
    pub retry_policy: Option<BTreeMap<String, u32>>,
    /// A model's own `retry_policy`, by model name.
    pub model_group_retry_policy: Option<BTreeMap<String, BTreeMap<String, u32>>>,
    /// Failures per kind a backend may have within a minute: LiteLLM's
    /// `RateLimitErrorAllowedFails`, … or yallmp's `rate_limit`, ….
    pub allowed_fails_policy: Option<BTreeMap<String, u32>>,
}

impl RawRouterSettings {
    /// No retries unless asked for.
    pub fn num_retries(&self) -> u32 {
        self.num_retries.unwrap_or(0)
    }
    pub fn retry_backoff_ms(&self) -> u64 {
        self.retry_backoff_ms.unwrap_or(100)
    }
    pub fn allowed_fails(&self) -> u32 {
        self.allowed_fails.unwrap_or(3)
    }
    /// Checked by the resolver (a fraction >= 0).
    pub fn latency_buffer(&self) -> f64 {
        self.latency_buffer.unwrap_or(0.1)
    }
}

/// LiteLLM's `general_settings`; what yallmp does not implement is kept aside
/// and warned about by the loader.
#[derive(Debug, Default, Deserialize)]
pub struct RawGeneralSettings {
    pub enable_responses_endpoint: Option<bool>,
    /// LiteLLM's proxy key: one more client key, the admin password when
    /// none is set, and the management endpoints' key (resolve.rs).
    pub master_key: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
}

/// `fallbacks`: LiteLLM's list of single-key maps, or a plain map.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawFallbacks {
    List(Vec<BTreeMap<String, OneOrMany>>),
    Map(BTreeMap<String, OneOrMany>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}
