//! The resolved configuration: the immutable [`Config`] the rest of the
//! proxy reads, and its parts other than the models (see `model.rs`).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{
    Env, ModelConfig, cache, connections, forward, overlay, parsers, streaming, telemetry,
};

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, if any.
    pub path: Option<PathBuf>,
    pub server: ServerSettings,
    pub enable_responses_endpoint: bool,
    /// `proxy_settings.moderation_model`: the model `/v1/moderations` uses
    /// when the request names none.
    pub moderation_model: Option<String>,
    /// `proxy_settings.files_model`: the model whose backend takes
    /// `/v1/files` and `/v1/batches`.
    pub files_model: Option<String>,
    pub router: RouterSettings,
    /// Models in the order the file first names them.
    pub models: Vec<ModelConfig>,
    pub logging: LoggingSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    /// Response parsers for models without their own block (`enabled` is
    /// always set).
    pub parsers: parsers::ParsersSettings,
    /// Redis for state shared across instances, when configured.
    pub redis: Option<RedisSettings>,
    /// `proxy_settings.rate_limits`.
    pub rate_limits: RateLimits,
    /// `proxy_settings.cors`; `None` when off.
    pub cors: Option<CorsSettings>,
    /// The response cache (`proxy_settings.cache`).
    pub cache: cache::CacheSettings,
    /// Bounds on upstream event streams (`proxy_settings.streaming`).
    pub streaming: streaming::StreamSettings,
    /// `proxy_settings.log_format` (read at start-up; `--log-format` wins).
    pub log_format: super::LogFormat,
    /// OpenTelemetry traces (`proxy_settings.telemetry`; read at start-up).
    pub telemetry: telemetry::TelemetrySettings,
    /// `forwarder_settings` and `http_forwarder_settings`, environment
    /// overrides applied.
    pub forward: forward::ForwardSettings,
    /// What it was built from, for reloads and admin changes.
    pub origin: Origin,
    /// Things that loaded but deserve a word (LiteLLM keys not implemented).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub max_body_bytes: u64,
    /// The largest whole (not streamed) answer read from a backend; past
    /// it the attempt fails (502 `upstream_response_too_large`).
    pub max_response_bytes: usize,
    pub shutdown_grace: Duration,
    pub workers: Workers,
    /// Client timeouts and the cap on open connections (read at start-up).
    pub connections: connections::ConnectionLimits,
    /// `proxy_settings.server.allowed_hosts`: `Host` names `/admin` answers
    /// besides loopback addresses, `localhost` and the listen address;
    /// lowercase, `name` (any port) or `name:port`; `*` allows any.
    pub allowed_hosts: Vec<String>,
    /// `proxy_settings.server.tls`: serve HTTPS with these files.
    pub tls: Option<super::TlsFiles>,
}

/// `proxy_settings.server.workers`: which threads serve client connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// This many threads, each running its own single-threaded runtime with
    /// its own upstream connection pool; each accepted connection stays on
    /// one of them, so a request never changes thread (`auto`: one a core).
    PerThread(usize),
    /// Every connection on the process's shared work-stealing runtime.
    Shared,
}

impl Workers {
    /// One thread a core (what `auto` means).
    pub fn auto() -> Workers {
        Workers::PerThread(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

/// `proxy_settings.redis_url` / `redis_key_prefix`.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// May hold a password: never shown.
    pub url: Secret,
    pub key_prefix: String,
}

/// `proxy_settings.rate_limits`: the limit over all clients, and the one
/// each client key (or key-less client address) has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    pub global: Limit,
    pub per_key: Limit,
    /// Requests in flight at once over all clients (this instance).
    pub max_parallel: Option<u64>,
}

/// Requests and tokens per minute; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limit {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

impl RateLimits {
    pub fn any(&self) -> bool {
        self.global != Limit::default()
            || self.per_key != Limit::default()
            || self.max_parallel.is_some()
    }
}

/// `proxy_settings.cors` (read at start-up).
#[derive(Debug, Clone, PartialEq)]
pub struct CorsSettings {
    /// Empty means any origin (`"*"`).
    pub allow_origins: Vec<String>,
    /// `None`: mirror what the preflight asks for.
    pub allow_headers: Option<Vec<String>>,
    pub allow_methods: Option<Vec<String>>,
    pub max_age: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct RouterSettings {
    /// Extra attempts per backend after the first.
    pub num_retries: u32,
    pub retry_backoff: Duration,
    pub max_retry_after: Duration,
    /// How a model's backends share its traffic.
    pub strategy: RoutingStrategy,
    /// Failures within a minute a backend may have; one more cools it down.
    pub allowed_fails: u32,
    /// How long a backend stays out of rotation.
    pub cooldown_time: Duration,
    /// `latency-based`: backends within this fraction of the fastest's
    /// latency share the traffic.
    pub latency_buffer: f64,
    /// False with `disable_cooldowns: true`: no failure (nor a 429's
    /// `Retry-After`) takes a backend out of rotation.
    pub cooldowns: bool,
    /// `retry_policy`: retries per kind of failure, in place of
    /// `num_retries` (and a backend's `max_retries`) for that kind.
    pub retry_policy: KindCounts,
    /// `model_group_retry_policy`: a model's own `retry_policy` (its
    /// backends' attempts use it instead of `retry_policy`).
    pub model_group_retry_policy: Arc<std::collections::HashMap<String, KindCounts>>,
    /// `allowed_fails_policy`: failures of a kind a backend may have within
    /// a minute, in place of `allowed_fails` for that kind.
    pub allowed_fails_policy: KindCounts,
    /// `enable_pre_call_checks`: a backend whose `max_input_tokens` the
    /// request's estimated input exceeds is passed over.
    pub pre_call_checks: bool,
}

impl RouterSettings {
    /// The retry policy for the backends of `model`.
    pub fn retry_policy_for(&self, model: &str) -> &KindCounts {
        self.model_group_retry_policy
            .get(model)
            .unwrap_or(&self.retry_policy)
    }
}

/// A number per kind of upstream failure (`retry_policy`,
/// `allowed_fails_policy`); `None` where the policy gives none. The router
/// tells the kinds apart (`router::ErrorKind`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KindCounts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bad_request: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_policy: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authentication: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_found: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal_server: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bad_gateway: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_unavailable: Option<u32>,
    /// `retry_policy` only (LiteLLM's `DefaultRetries`): every kind without
    /// a number of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<u32>,
}

impl KindCounts {
    /// The policy's keys: yallmp's name, LiteLLM's for `retry_policy`
    /// (`…Retries`) and for `allowed_fails_policy` (`…AllowedFails`, `None`
    /// where LiteLLM has none), and the field.
    #[allow(clippy::type_complexity)]
    pub const KEYS: &[(
        &str,
        Option<&str>,
        Option<&str>,
        fn(&mut KindCounts) -> &mut Option<u32>,
    )] = &[
        (
            "bad_request",
            Some("BadRequestErrorRetries"),
            Some("BadRequestErrorAllowedFails"),
            |c| &mut c.bad_request,
        ),
        ("context_window", None, None, |c| &mut c.context_window),
        (
            "content_policy",
            Some("ContentPolicyViolationErrorRetries"),
            Some("ContentPolicyViolationErrorAllowedFails"),
            |c| &mut c.content_policy,
        ),
        (
            "authentication",
            Some("AuthenticationErrorRetries"),
            Some("AuthenticationErrorAllowedFails"),
            |c| &mut c.authentication,
        ),
        (
            "not_found",
            Some("NotFoundErrorRetries"),
            Some("NotFoundErrorAllowedFails"),
            |c| &mut c.not_found,
        ),
        (
            "timeout",
            Some("TimeoutErrorRetries"),
            Some("TimeoutErrorAllowedFails"),
            |c| &mut c.timeout,
        ),
        (
            "rate_limit",
            Some("RateLimitErrorRetries"),
            Some("RateLimitErrorAllowedFails"),
            |c| &mut c.rate_limit,
        ),
        (
            "internal_server",
            Some("InternalServerErrorRetries"),
            Some("InternalServerErrorAllowedFails"),
            |c| &mut c.internal_server,
        ),
        (
            "bad_gateway",
            Some("BadGatewayErrorRetries"),
            Some("BadGatewayErrorAllowedFails"),
            |c| &mut c.bad_gateway,
        ),
        (
            "service_unavailable",
            Some("ServiceUnavailableErrorRetries"),
            Some("ServiceUnavailableErrorAllowedFails"),
            |c| &mut c.service_unavailable,
        ),
    ];

    pub fn is_empty(&self) -> bool {
        *self == KindCounts::default()
    }
}

/// `router_settings.routing_strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoutingStrategy {
    /// Weighted random by `weight`.
    #[default]
    SimpleShuffle,
    /// By `order` (lower first); file order within one order.
    Ordered,
    /// Fewest requests in flight first.
    LeastBusy,
    /// Lowest recent latency first (within `latency_buffer`, at random).
    LatencyBased,
    /// Most headroom first: fewest tokens used this minute, then fewest
    /// requests (LiteLLM's `usage-based-routing` and `-v2`).
    UsageBased,
}

impl RoutingStrategy {
    /// The names the config accepts (LiteLLM's `latency-based-routing` too).
    pub const NAMES: &[&str] = &[
        "simple-shuffle",
        "ordered",
        "least-busy",
        "latency-based",
        "usage-based",
    ];

    pub fn parse(s: &str) -> Option<RoutingStrategy> {
        Some(match s {
            "simple-shuffle" => RoutingStrategy::SimpleShuffle,
            "ordered" => RoutingStrategy::Ordered,
            "least-busy" => RoutingStrategy::LeastBusy,
            "latency-based" | "latency-based-routing" => RoutingStrategy::LatencyBased,
            "usage-based" | "usage-based-routing" | "usage-based-routing-v2" => {
                RoutingStrategy::UsageBased
            }
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RoutingStrategy::SimpleShuffle => "simple-shuffle",
            RoutingStrategy::Ordered => "ordered",
            RoutingStrategy::LeastBusy => "least-busy",
            RoutingStrategy::LatencyBased => "latency-based",
            RoutingStrategy::UsageBased => "usage-based",
        }
    }
}

/// The inputs of a config: its text, the environment it was read with, and
/// the runtime overlay applied to it.
#[derive(Clone, Default)]
pub struct Origin {
    pub text: Arc<String>,
    pub env: Env,
    pub overlay: overlay::Overlay,
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The environment holds secrets.
        f.write_str("Origin { .. }")
    }
}

/// Who may call the proxy and its admin API.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// Client keys for `/v1/*`; empty means no key is needed.
    pub api_keys: Vec<Secret>,
    /// The admin password (`YALLMP_ADMIN_PASSWORD`); without one the admin
    /// API answers loopback clients only and protected models cannot change.
    pub admin_password: Option<Secret>,
    /// `general_settings.master_key` (LiteLLM's): a client key, the admin
    /// password when none is set, and always accepted as
    /// `Authorization: Bearer` on the LiteLLM-shaped management endpoints
    /// (docs/migrating-from-litellm.md).
    pub master_key: Option<Secret>,
    /// Virtual keys declared in the config (docs/keys-and-spend.md).
    pub keys: Vec<DeclaredKey>,
    /// Teams declared in the config.
    pub teams: Vec<DeclaredTeam>,
}

/// `proxy_settings.auth.keys[]`, resolved.
#[derive(Debug, Clone)]
pub struct DeclaredKey {
    pub name: String,
    pub secret: Secret,
    /// The declared team's name.
    pub team: Option<String>,
    pub limits: crate::grant::Limits,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub metadata: serde_json::Value,
}

/// `proxy_settings.auth.teams[]`, resolved.
#[derive(Debug, Clone)]
pub struct DeclaredTeam {
    pub name: String,
    pub limits: crate::grant::Limits,
    pub metadata: serde_json::Value,
}

/// The request log.
#[derive(Debug, Clone)]
pub struct LoggingSettings {
    /// Directory for per-request files; `None` when file logging is off.
    pub files_dir: Option<PathBuf>,
    /// Whether records go to the database.
    pub database: bool,
    pub log_parsed_response: bool,
    pub log_parsed_stream: bool,
    /// `log_multipart_files`: a form's file parts in the log too (base64).
    pub log_multipart_files: bool,
    /// Bodies (and a stream's frames, together) over this are truncated.
    pub max_body_bytes: usize,
    pub queue_size: usize,
    /// What the queued records may hold (bodies and frames), in bytes.
    pub queue_max_bytes: usize,
    /// What a full queue does: drop new records, or make new requests wait.
    pub on_full: OnFull,
    /// How the files are laid out.
    pub layout: FileLayout,
    /// A segment file is rolled past this many bytes (`segments` layout).
    pub segment_max_bytes: u64,
}

/// `proxy_settings.logging.on_full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFull {
    /// A finished record that finds the queue full is dropped (counted).
    Drop,
    /// A new request waits at admission while the queue is full (bounded
    /// by its timeout); finished records are always taken.
    #[default]
    Wait,
}

/// `proxy_settings.logging.files.layout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileLayout {
    /// One file per request.
    #[default]
    PerRequest,
    /// Records appended, one JSON line each, to rolling segment files.
    Segments,
}

/// Where the database is.
#[derive(Debug, Clone)]
pub enum DatabaseTarget {
    Sqlite { path: PathBuf },
    Postgres(PostgresTarget),
}

#[derive(Debug, Clone)]
pub struct PostgresTarget {
    /// A full URL, when given; it may hold a password, so it is a secret.
    pub url: Option<Secret>,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<Secret>,
}

impl DatabaseTarget {
    /// A description without credentials.
    pub fn describe(&self) -> String {
        match self {
            DatabaseTarget::Sqlite { path } => format!("sqlite {}", path.display()),
            DatabaseTarget::Postgres(p) => match &p.url {
                Some(url) => {
                    let u = url.expose();
                    let rest = u.split_once('@').map_or(u, |(_, r)| r);
                    format!("postgres {}", rest.split('?').next().unwrap_or(rest))
                }
                None => format!("postgres {}:{}/{}", p.host, p.port, p.database),
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub target: DatabaseTarget,
    pub max_age: Option<Duration>,
    pub max_rows: Option<u64>,
}

/// A secret string: never printed, never serialized.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for the one place that needs it (an outgoing header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl Config {
    pub fn model(&self, name: &str) -> Option<&ModelConfig> {
        self.models.iter().find(|m| m.name == name)
    }
}
