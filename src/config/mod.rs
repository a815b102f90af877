//! Configuration: read the YAML file, substitute environment variables, accept
//! both dialects, and resolve everything into one immutable [`Config`] that the
//! rest of the proxy reads. Every error names the file and the key path.

pub mod cache;
pub mod connections;
pub mod env;
pub mod forward;
mod inherit;
mod limits;
pub mod overlay;
pub mod parsers;
mod raw;
pub mod reasoning;
mod resolve;
pub mod streaming;
pub mod thinking;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_yaml::Value;

pub use env::Env;

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

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, if any.
    pub path: Option<PathBuf>,
    pub server: ServerSettings,
    pub enable_responses_endpoint: bool,
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
}

/// Requests and tokens per minute; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limit {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

impl RateLimits {
    pub fn any(&self) -> bool {
        self.global != Limit::default() || self.per_key != Limit::default()
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
}

impl RoutingStrategy {
    /// The names the config accepts (LiteLLM's `latency-based-routing` too).
    pub const NAMES: &[&str] = &["simple-shuffle", "ordered", "least-busy", "latency-based"];

    pub fn parse(s: &str) -> Option<RoutingStrategy> {
        Some(match s {
            "simple-shuffle" => RoutingStrategy::SimpleShuffle,
            "ordered" => RoutingStrategy::Ordered,
            "least-busy" => RoutingStrategy::LeastBusy,
            "latency-based" | "latency-based-routing" => RoutingStrategy::LatencyBased,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RoutingStrategy::SimpleShuffle => "simple-shuffle",
            RoutingStrategy::Ordered => "ordered",
            RoutingStrategy::LeastBusy => "least-busy",
            RoutingStrategy::LatencyBased => "latency-based",
        }
    }
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
    /// Bodies (and a stream's frames, together) over this are truncated.
    pub max_body_bytes: usize,
    pub queue_size: usize,
    /// What the queued records may hold (bodies and frames), in bytes.
    pub queue_max_bytes: usize,
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
    /// The model's own response parsers (`enabled` always set).
    pub parsers: Option<parsers::ParsersSettings>,
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
}

impl ApiType {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiType::Openai => "openai",
            ApiType::Anthropic => "anthropic",
            ApiType::Stub => "stub",
            ApiType::Azure => "azure",
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
    /// Request parameter defaults.
    pub parameters: Arc<[Parameter]>,
    /// The endpoint URLs, parsed once, by [`Endpoint::index`](crate::endpoint::Endpoint::index).
    pub urls: Option<Arc<[reqwest::Url]>>,
    /// Weight, order and health check.
    pub routing: BackendRouting,
    /// `interleaved_thinking`, when on.
    pub thinking: Option<Arc<thinking::ThinkingSettings>>,
    /// Where an `api_type: azure` backend's deployment is.
    pub azure: Option<AzureTarget>,
    /// A wildcard model's backend: without a `model`/`target_model`, the
    /// requested name goes upstream without the pattern's literal prefix.
    pub strip_prefix: bool,
}

/// An Azure OpenAI deployment: the URL path and the `api-version` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureTarget {
    pub deployment: String,
    pub api_version: String,
}

impl Backend {
    /// Parses the endpoint URLs once (`urls`).
    pub fn parse_urls(&mut self) {
        let urls: Option<Vec<reqwest::Url>> = crate::endpoint::Endpoint::ALL
            .iter()
            .map(|e| reqwest::Url::parse(&self.endpoint_url(*e)).ok())
            .collect();
        self.urls = urls.map(Arc::from);
    }

    /// The URL of an endpoint on this backend: `api_base` + the path for
    /// OpenAI-compatible backends; `api_base` (without a trailing `/v1`) +
    /// `/v1` + the path for Anthropic ones, as Anthropic's SDK takes it;
    /// `{api_base}/openai/deployments/{deployment}` + the path +
    /// `?api-version=` for Azure ones.
    pub fn endpoint_url(&self, endpoint: crate::endpoint::Endpoint) -> String {
        match (self.api_type, &self.azure) {
            (ApiType::Anthropic, _) => {
                let base = self.api_base.strip_suffix("/v1").unwrap_or(&self.api_base);
                format!("{base}/v1{}", endpoint.path())
            }
            (ApiType::Azure, Some(az)) => format!(
                "{}/openai/deployments/{}{}?api-version={}",
                self.azure_base(),
                az.deployment,
                endpoint.path(),
                az.api_version
            ),
            _ => self.url(endpoint.path()),
        }
    }

    /// The URL of a `GET` on the backend's API (`/models` for health checks
    /// and model listings): `api_base` + the path, or for Azure
    /// `{api_base}/openai` + the path + `?api-version=`.
    pub fn api_url(&self, path: &str) -> String {
        match (self.api_type, &self.azure) {
            (ApiType::Azure, Some(az)) => format!(
                "{}/openai{path}?api-version={}",
                self.azure_base(),
                az.api_version
            ),
            _ => self.url(path),
        }
    }

    /// `api_base` without an `/openai` the user may have written.
    fn azure_base(&self) -> &str {
        self.api_base
            .strip_suffix("/openai")
            .unwrap_or(&self.api_base)
    }

    /// The URL for an endpoint path such as `/chat/completions`.
    pub fn url(&self, endpoint: &str) -> String {
        let mut url = String::with_capacity(self.api_base.len() + endpoint.len());
        url.push_str(&self.api_base);
        url.push_str(endpoint);
        url
    }
}

/// The userinfo of a URL (`user:password@` after the scheme), if any.
fn userinfo(url: &str) -> Option<(usize, &str)> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let at = authority.rfind('@')?;
    Some((start, &authority[..at]))
}

/// `url` with the password of its userinfo (or a lone user name, often a
/// token) shown as `***`: what the admin API, the banner and the logs show
/// of an `api_base`.
pub fn mask_url_secret(url: &str) -> std::borrow::Cow<'_, str> {
    let Some((start, info)) = userinfo(url) else {
        return url.into();
    };
    let shown = match info.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_string(),
    };
    format!("{}{shown}{}", &url[..start], &url[start + info.len()..]).into()
}

/// The secret part of a URL's userinfo (the password, or a lone user
/// name), for the scrubbers' known secrets.
pub fn url_secret(url: &str) -> Option<&str> {
    let (_, info) = userinfo(url)?;
    let secret = info.split_once(':').map_or(info, |(_, pw)| pw);
    (!secret.is_empty()).then_some(secret)
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

/// Everything wrong with a config file, each line with its key path.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub errors: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {e}", self.file)?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads `path` and the `.env` beside it.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with_overlay(path, None)
    }

    /// Like [`Config::load`], with `overlay` (when given) in place of the
    /// overlay file: runtime models shared through the database.
    pub fn load_with_overlay(
        path: &Path,
        shared: Option<&overlay::Overlay>,
    ) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let fail = |e: String| ConfigError {
            file: file.clone(),
            errors: vec![e],
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let env = Env::for_config_dir(dir).map_err(fail)?;
        let from_file;
        let overlay = match shared {
            Some(o) => o,
            None => {
                from_file =
                    overlay::Overlay::read(&overlay::Overlay::path_for(path)).map_err(fail)?;
                &from_file
            }
        };
        Config::from_yaml_with(&text, Some(path), &env, Some(overlay))
    }

    /// Parses config text with the given environment.
    pub fn from_yaml(text: &str, path: Option<&Path>, env: &Env) -> Result<Config, ConfigError> {
        Config::from_yaml_with(text, path, env, None)
    }

    /// Parses config text, with the runtime overlay's models on top.
    pub fn from_yaml_with(
        text: &str,
        path: Option<&Path>,
        env: &Env,
        overlay: Option<&overlay::Overlay>,
    ) -> Result<Config, ConfigError> {
        let file = path.map_or_else(|| "<config>".to_string(), |p| p.display().to_string());
        let mut errors = Vec::new();
        let mut warnings = Vec::new();

        let mut tree: Value = match serde_yaml::from_str(text) {
            Ok(Value::Null) => Value::Mapping(Default::default()),
            Ok(v) => v,
            Err(e) => {
                return Err(ConfigError {
                    file,
                    errors: vec![format!("not valid YAML: {e}")],
                });
            }
        };
        // The overlay goes in first, so its entries (copies of file entries
        // keep their `${VAR}` references) are substituted like the file's.
        let runtime = match overlay {
            Some(o) => o.apply(&mut tree),
            None => Default::default(),
        };
        // The admin password as written: a variable it names without a
        // default must not come out empty (that would open the admin API
        // to loopback clients with no password, silently).
        let password_refs = tree
            .get("proxy_settings")
            .and_then(|p| p.get("auth"))
            .and_then(|a| a.get("admin_password"))
            .and_then(Value::as_str)
            .map(env::required_refs)
            .unwrap_or_default();
        let mut whole = std::collections::HashSet::new();
        env::substitute_tree(&mut tree, env, &mut String::new(), &mut errors, &mut whole);
        take_litellm_accepted(&mut tree, &mut warnings);
        let derived = inherit::resolve(&mut tree, &mut errors);
        let raw = deserialize_collecting(tree, &mut errors, &whole);

        let sources = resolve::Sources { runtime, derived };
        let config = raw
            .and_then(|raw| resolve::resolve(raw, path, env, &sources, &mut errors, &mut warnings));
        if let Some(c) = &config
            && c.auth.admin_password.is_none()
            && !password_refs.is_empty()
        {
            errors.push(format!(
                "proxy_settings.auth.admin_password: empty, but it names {} (set to nothing): \
                 set a password, or write ${{{}:-}} to run without one (admin API for loopback clients only)",
                password_refs.join(", "),
                password_refs[0],
            ));
        }
        match config {
            Some(mut c) if errors.is_empty() => {
                c.warnings = warnings;
                c.origin = Origin {
                    text: Arc::new(text.to_string()),
                    env: env.clone(),
                    overlay: overlay.cloned().unwrap_or_default(),
                };
                Ok(c)
            }
            _ => Err(ConfigError { file, errors }),
        }
    }

    pub fn model(&self, name: &str) -> Option<&ModelConfig> {
        self.models.iter().find(|m| m.name == name)
    }
}

/// Deserializes the tree; each unknown key is reported with its path and the
/// nearest known key, removed, and the rest tried again, so one run reports
/// every typo. Any other error is reported and ends the attempt.
///
/// A value that was a whole `${VAR}` reference and fails as a string where
/// the schema wants a number or a boolean is retyped and tried again.
fn deserialize_collecting(
    mut tree: Value,
    errors: &mut Vec<String>,
    whole: &std::collections::HashSet<String>,
) -> Option<raw::RawConfig> {
    for _ in 0..200 {
        match serde_path_to_error::deserialize::<_, raw::RawConfig>(tree.clone()) {
            Ok(raw) => return Some(raw),
            Err(e) => {
                let path = e.path().to_string();
                let msg = e.inner().to_string();
                if msg.starts_with("invalid type: string")
                    && whole.contains(&path)
                    && retype_at(&mut tree, e.path())
                {
                    continue;
                }
                let Some(unknown) = msg
                    .strip_prefix("unknown field `")
                    .and_then(|r| r.split('`').next())
                else {
                    errors.push(format!("{path}: {msg}"));
                    return None;
                };
                let expected: Vec<&str> = msg
                    .split_once("expected")
                    .map(|(_, r)| r.split('`').skip(1).step_by(2).collect())
                    .unwrap_or_default();
                let mut line = format!("{path}: unknown key `{unknown}`");
                if let Some(s) = nearest(unknown, &expected) {
                    line.push_str(&format!("; did you mean `{s}`?"));
                } else if !expected.is_empty() {
                    line.push_str(&format!("; known keys: {}", expected.join(", ")));
                }
                errors.push(line);
                if !remove_at(&mut tree, e.path()) {
                    return None;
                }
            }
        }
    }
    None
}

/// The candidate closest to `word`, when it is close enough to be a typo.
pub fn nearest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// The node a serde path points at.
fn node_at<'a>(
    tree: &'a mut Value,
    segs: &[&serde_path_to_error::Segment],
) -> Option<&'a mut Value> {
    use serde_path_to_error::Segment;
    let mut node = tree;
    for seg in segs {
        node = match (seg, node) {
            (Segment::Map { key }, Value::Mapping(m)) => m.get_mut(key.as_str())?,
            (Segment::Seq { index }, Value::Sequence(s)) => s.get_mut(*index)?,
            _ => return None,
        };
    }
    Some(node)
}

/// Replaces the string at `path` with the number or boolean it spells.
fn retype_at(tree: &mut Value, path: &serde_path_to_error::Path) -> bool {
    let segs: Vec<_> = path.iter().collect();
    let Some(node) = node_at(tree, &segs) else {
        return false;
    };
    match node.as_str().and_then(env::retype_scalar) {
        Some(v) => {
            *node = v;
            true
        }
        None => false,
    }
}

/// Removes the key at `path`.
fn remove_at(tree: &mut Value, path: &serde_path_to_error::Path) -> bool {
    use serde_path_to_error::Segment;
    let segs: Vec<&Segment> = path.iter().collect();
    let Some((Segment::Map { key }, parents)) = segs.split_last() else {
        return false;
    };
    match node_at(tree, parents) {
        Some(Value::Mapping(m)) => m.remove(key.as_str()).is_some(),
        _ => false,
    }
}

/// Removes the LiteLLM keys yallmp accepts but does not implement yet, with
/// one warning for each.
fn take_litellm_accepted(tree: &mut Value, warnings: &mut Vec<String>) {
    for (section, keys) in raw::LITELLM_ACCEPTED {
        let segs: Vec<&str> = if section.is_empty() {
            Vec::new()
        } else {
            section.split('.').collect()
        };
        take_in(tree, &segs, keys, String::new(), warnings);
    }
}

fn take_in(
    node: &mut Value,
    segs: &[&str],
    keys: &[&str],
    path: String,
    warnings: &mut Vec<String>,
) {
    match segs.split_first() {
        None => {
            if let Value::Mapping(m) = node {
                for key in keys {
                    if m.remove(*key).is_some() {
                        let p = if path.is_empty() {
                            (*key).to_string()
                        } else {
                            format!("{path}.{key}")
                        };
                        warnings.push(format!(
                            "{p}: LiteLLM setting not implemented by yallmp; ignored"
                        ));
                    }
                }
            }
        }
        Some((&"*", rest)) => {
            if let Value::Sequence(items) = node {
                for (i, item) in items.iter_mut().enumerate() {
                    take_in(item, rest, keys, format!("{path}[{i}]"), warnings);
                }
            }
        }
        Some((seg, rest)) => {
            if let Value::Mapping(m) = node
                && let Some(child) = m.get_mut(*seg)
            {
                let p = if path.is_empty() {
                    (*seg).to_string()
                } else {
                    format!("{path}.{seg}")
                };
                take_in(child, rest, keys, p, warnings);
            }
        }
    }
}

#[cfg(test)]
mod url_secret_tests {
    use super::*;

    #[test]
    fn masks_userinfo() {
        assert_eq!(
            mask_url_secret("https://u:p4ss@h.example:8443/v1?x=@y"),
            "https://u:***@h.example:8443/v1?x=@y"
        );
        assert_eq!(mask_url_secret("http://tok@h/v1"), "http://***@h/v1");
        assert_eq!(mask_url_secret("http://h/v1/a@b"), "http://h/v1/a@b");
        assert_eq!(url_secret("https://u:p4ss@h/v1"), Some("p4ss"));
        assert_eq!(url_secret("http://tok@h"), Some("tok"));
        assert_eq!(url_secret("http://h/x@y"), None);
    }
}
