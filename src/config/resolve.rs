//! Raw file types → resolved [`Config`]: dialects merged, defaults applied,
//! references between models checked.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::raw::{RawConfig, RawFallbacks, RawModelParams, RawWorkers};
use super::*;

/// LiteLLM provider prefixes (`openai/gpt-4o`): the protocol and, where the
/// provider has a public endpoint, the default `api_base`.
const PROVIDERS: &[(&str, ApiType, Option<&str>)] = &[
    ("openai", ApiType::Openai, Some("https://api.openai.com/v1")),
    ("custom_openai", ApiType::Openai, None),
    (
        "text-completion-openai",
        ApiType::Openai,
        Some("https://api.openai.com/v1"),
    ),
    ("hosted_vllm", ApiType::Openai, None),
    ("vllm", ApiType::Openai, None),
    ("llamacpp", ApiType::Openai, None),
    ("lm_studio", ApiType::Openai, None),
    ("ollama", ApiType::Openai, None),
    ("ollama_chat", ApiType::Openai, None),
    (
        "deepseek",
        ApiType::Openai,
        Some("https://api.deepseek.com/v1"),
    ),
    (
        "moonshot",
        ApiType::Openai,
        Some("https://api.moonshot.ai/v1"),
    ),
    (
        "openrouter",
        ApiType::Openai,
        Some("https://openrouter.ai/api/v1"),
    ),
    (
        "groq",
        ApiType::Openai,
        Some("https://api.groq.com/openai/v1"),
    ),
    (
        "mistral",
        ApiType::Openai,
        Some("https://api.mistral.ai/v1"),
    ),
    ("xai", ApiType::Openai, Some("https://api.x.ai/v1")),
    (
        "together_ai",
        ApiType::Openai,
        Some("https://api.together.xyz/v1"),
    ),
    (
        "fireworks_ai",
        ApiType::Openai,
        Some("https://api.fireworks.ai/inference/v1"),
    ),
    ("zai", ApiType::Openai, Some("https://api.z.ai/api/paas/v4")),
    (
        "minimax",
        ApiType::Openai,
        Some("https://api.minimax.io/v1"),
    ),
    (
        "anthropic",
        ApiType::Anthropic,
        Some("https://api.anthropic.com"),
    ),
    ("azure", ApiType::Azure, None),
];

const API_TYPES: &[&str] = &["openai", "anthropic", "stub", "azure"];

/// The Azure OpenAI `api-version` used when a backend names none (the GA
/// version the data-plane documentation leads with).
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";

/// Which models came from where, known before typing.
#[derive(Debug, Default)]
pub(super) struct Sources {
    pub runtime: HashSet<String>,
    pub derived: HashSet<String>,
}

pub(super) fn resolve(
    raw: RawConfig,
    _path: Option<&Path>,
    env: &Env,
    sources: &Sources,
    errors: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Option<Config> {
    let start = errors.len();
    let ps = raw.proxy_settings;
    let gs = raw.general_settings;
    let mut api_keys: Vec<Secret> = ps
        .auth
        .api_keys
        .into_iter()
        .chain(gs.master_key.clone())
        .filter(|k| !k.trim().is_empty())
        .map(Secret::new)
        .collect();
    api_keys.dedup();
    let auth = AuthSettings {
        api_keys,
        admin_password: env
            .get("YALLMP_ADMIN_PASSWORD")
            .filter(|p| !p.is_empty())
            .or(ps.auth.admin_password.filter(|p| !p.is_empty()))
            .map(Secret::new),
    };
    let redis = ps
        .redis_url
        .filter(|u| !u.trim().is_empty())
        .map(|url| RedisSettings {
            url: Secret::new(url.trim()),
            key_prefix: ps
                .redis_key_prefix
                .clone()
                .unwrap_or_else(|| "yallmp:".to_string()),
        });
    if let Some(r) = &redis
        && !["redis://", "rediss://", "unix://", "redis+unix://"]
            .iter()
            .any(|scheme| r.url.expose().starts_with(scheme))
    {
        errors.push(
            "proxy_settings.redis_url: expected redis://host:port[/db] (or rediss://, unix://)"
                .to_string(),
        );
    }
    let cache = cache::resolve(ps.cache, redis.is_some(), errors);
    let streaming = super::streaming::resolve(ps.streaming, errors);
    if gs.host.is_some() || gs.port.is_some() {
        warnings.push(
            "general_settings.host/port: read as the listen address (proxy_settings.server takes precedence)"
                .to_string(),
        );
    }
    let server = ServerSettings {
        host: ps
            .server
            .host
            .or(gs.host)
            .unwrap_or_else(|| DEFAULT_HOST.to_string()),
        port: ps.server.port.or(gs.port).unwrap_or(DEFAULT_PORT),
        max_body_bytes: match ps.server.max_body_bytes {
            None => DEFAULT_MAX_BODY_BYTES,
            Some(0) => {
                errors.push(
                    "proxy_settings.server.max_body_bytes: must be at least 1 (0 would refuse every request with a body)"
                        .to_string(),
                );
                DEFAULT_MAX_BODY_BYTES
            }
            Some(n) => n,
        },
        max_response_bytes: max_response_bytes(ps.server.max_response_bytes, errors),
        shutdown_grace: seconds(
            ps.server.shutdown_grace_period,
            DEFAULT_SHUTDOWN_GRACE,
            "proxy_settings.server.shutdown_grace_period",
            errors,
        ),
        workers: workers(ps.server.workers, errors),
        connections: super::connections::resolve(
            super::connections::RawConnectionLimits {
                header_read_timeout: ps.server.header_read_timeout,
                body_read_timeout: ps.server.body_read_timeout,
                idle_timeout: ps.server.idle_timeout,
                max_connections: ps.server.max_connections,
            },
            "proxy_settings.server",
            errors,
        ),
        allowed_hosts: allowed_hosts(ps.server.allowed_hosts, errors),
    };
    let rs = raw.router_settings;
    let router = RouterSettings {
        num_retries: rs.num_retries.unwrap_or(0),
        retry_backoff: Duration::from_millis(rs.retry_backoff_ms.unwrap_or(100)),
        max_retry_after: seconds(
            rs.max_retry_after,
            Duration::from_secs(10),
            "router_settings.max_retry_after",
            errors,
        ),
        strategy: strategy(rs.routing_strategy.as_deref(), errors),
        allowed_fails: rs.allowed_fails.unwrap_or(3),
        cooldown_time: seconds(
            rs.cooldown_time,
            Duration::from_secs(5),
            "router_settings.cooldown_time",
            errors,
        ),
        latency_buffer: match rs.latency_buffer {
            None => 0.1,
            Some(b) if b.is_finite() && b >= 0.0 => b,
            Some(b) => {
                errors.push(format!(
                    "router_settings.latency_buffer: must be a fraction >= 0 (0.1 = 10%), got {b}"
                ));
                0.1
            }
        },
    };

    let parsers = parsers::resolve(
        ps.parsers.unwrap_or_default(),
        "proxy_settings.parsers",
        false,
        _path,
        errors,
    );
    let logging = logging(ps.logging, errors);
    let rate_limits = super::limits::rate_limits(ps.rate_limits, errors);
    let cors = ps.cors.and_then(|c| super::limits::cors(c, errors));
    let database = database(raw.database, errors);
    let forward = super::forward::resolve(
        raw.forwarder_settings,
        raw.http_forwarder_settings,
        env,
        errors,
    );
    let mut models: Vec<ModelConfig> = Vec::new();
    // (key path, model, its fallbacks) from every place fallbacks are written.
    let mut fallback_refs: Vec<(String, String, Vec<String>)> = Vec::new();
    for (i, entry) in raw.model_list.into_iter().enumerate() {
        let at = format!("model_list[{i}]");
        let name = entry.model_name.trim().to_string();
        if name.is_empty() {
            errors.push(format!("{at}.model_name: must not be empty"));
            continue;
        }
        if name.chars().any(char::is_control) {
            errors.push(format!(
                "{at}.model_name: must not contain control characters (CR, LF, tab, NUL, ...)"
            ));
            continue;
        }
        let (params, key, litellm) = match (entry.model_params, entry.litellm_params) {
            (Some(p), None) => (p, "model_params", false),
            (None, Some(p)) => (p, "litellm_params", true),
            (Some(_), Some(_)) => {
                errors.push(format!(
                    "{at}: has both model_params and litellm_params; keep one"
                ));
                continue;
            }
            (None, None) => {
                errors.push(format!("{at}: needs model_params (or litellm_params)"));
                continue;
            }
        };
        if let Some(f) = entry.fallbacks {
            fallback_refs.push((format!("{at}.fallbacks"), name.clone(), f.into_vec()));
        }
        let parameters = parameters(entry.parameters);
        let protected = entry.protected.unwrap_or(false);
        let own_parsers = entry
            .parsers
            .map(|p| parsers::resolve(p, &format!("{at}.parsers"), true, _path, errors));
        let idx = match models.iter().position(|m| m.name == name) {
            Some(idx) => idx,
            None => {
                let source = if sources.runtime.contains(&name) {
                    ModelSource::Runtime
                } else if sources.derived.contains(&name) {
                    ModelSource::Derived
                } else {
                    ModelSource::Config
                };
                models.push(ModelConfig {
                    name: name.clone(),
                    source,
                    protected: false,
                    backends: Vec::new(),
                    fallbacks: Vec::new(),
                    parsers: None,
                });
                models.len() - 1
            }
        };
        let n = models[idx].backends.len() + 1;
        let at = format!("{at}.{key}");
        if let Some(f) = &params.fallbacks {
            fallback_refs.push((
                format!("{at}.fallbacks"),
                name.clone(),
                f.clone().into_vec(),
            ));
        }
        models[idx].protected |= protected;
        if let Some(p) = own_parsers {
            match &models[idx].parsers {
                Some(prev) if *prev != p => errors.push(format!(
                    "{at}: model `{name}` already has a different `parsers` block; give it once"
                )),
                _ => models[idx].parsers = Some(p),
            }
        }
        let mut params = params;
        let thinking = params.interleaved_thinking.take().and_then(|t| {
            super::thinking::resolve(
                t,
                &format!("{at}.interleaved_thinking"),
                redis.is_some(),
                errors,
            )
        });
        if let Some(mut backend) = backend(&name, n, params, &at, litellm, parameters, errors) {
            backend.thinking = thinking.map(Arc::new);
            models[idx].backends.push(Arc::new(backend));
        }
    }

    // Router-level fallbacks come first, then per-model ones.
    let mut router_refs: Vec<(String, String, Vec<String>)> = Vec::new();
    match rs.fallbacks {
        Some(RawFallbacks::List(list)) => {
            for (i, map) in list.into_iter().enumerate() {
                for (k, v) in map {
                    router_refs.push((
                        format!("router_settings.fallbacks[{i}].{k}"),
                        k,
                        v.into_vec(),
                    ));
                }
            }
        }
        Some(RawFallbacks::Map(map)) => {
            for (k, v) in map {
                router_refs.push((format!("router_settings.fallbacks.{k}"), k, v.into_vec()));
            }
        }
        None => {}
    }
    let names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    for (at, from, to) in router_refs.into_iter().chain(fallback_refs) {
        let Some(m) = models.iter_mut().find(|m| m.name == from) else {
            errors.push(unknown_model(&at, &from, &name_refs));
            continue;
        };
        let mut valid = Vec::with_capacity(to.len());
        for (j, target) in to.into_iter().enumerate() {
            if !names.contains(&target) {
                errors.push(unknown_model(&format!("{at}[{j}]"), &target, &name_refs));
            } else if target == from {
                warnings.push(format!(
                    "{at}: model `{from}` lists itself as a fallback; ignored"
                ));
            } else {
                valid.push(target);
            }
        }
        push_unique(&mut m.fallbacks, valid);
    }

    if errors.len() > start {
        return None;
    }
    Some(Config {
        path: _path.map(Path::to_path_buf),
        server,
        enable_responses_endpoint: ps
            .enable_responses_endpoint
            .or(gs.enable_responses_endpoint)
            .unwrap_or(false),
        router,
        models,
        logging,
        database,
        auth,
        redis,
        rate_limits,
        cors,
        cache,
        streaming,
        forward,
        parsers,
        origin: Origin::default(),
        warnings: Vec::new(),
    })
}

fn backend(
    model_name: &str,
    n: usize,
    p: RawModelParams,
    at: &str,
    litellm: bool,
    parameters: Arc<[Parameter]>,
    errors: &mut Vec<String>,
) -> Option<Backend> {
    let start = errors.len();
    // LiteLLM names the provider in front of the model: `openai/gpt-4o`.
    let mut provider: Option<&(&str, ApiType, Option<&str>)> = None;
    let mut model = p.model.filter(|m| !m.trim().is_empty());
    if litellm
        && let Some(m) = &model
        && let Some((prefix, rest)) = m.split_once('/')
        && let Some(found) = PROVIDERS.iter().find(|(name, _, _)| *name == prefix)
    {
        provider = Some(found);
        model = Some(rest.to_string());
    }
    let api_type = match p.api_type.as_deref() {
        None => provider.map_or(ApiType::Openai, |p| p.1),
        Some("openai") => ApiType::Openai,
        Some("anthropic") => ApiType::Anthropic,
        Some("stub") => ApiType::Stub,
        Some("azure") => ApiType::Azure,
        Some(other) => {
            let hint = nearest(other, API_TYPES)
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            errors.push(format!(
                "{at}.api_type: unknown api_type `{other}` (one of: {}){hint}",
                API_TYPES.join(", ")
            ));
            ApiType::Openai
        }
    };
    let api_base = match p
        .api_base
        .map(|s| s.trim().trim_end_matches('/').to_string())
    {
        Some(b) if !b.is_empty() => {
            if !(b.starts_with("http://") || b.starts_with("https://")) {
                errors.push(format!(
                    "{at}.api_base: `{b}` is not an http:// or https:// URL"
                ));
            }
            b
        }
        _ => match (api_type, provider.and_then(|p| p.2)) {
            (ApiType::Stub, _) => "stub://local".to_string(),
            (_, Some(default)) => default.to_string(),
            _ => {
                errors.push(format!(
                    "{at}.api_base: required for api_type {}",
                    api_type.as_str()
                ));
                String::new()
            }
        },
    };
    let request_timeout = seconds(
        p.request_timeout,
        DEFAULT_REQUEST_TIMEOUT,
        &format!("{at}.request_timeout"),
        errors,
    );
    let routing = routing(p.weight, p.order, p.health_check, at, errors);
    let reasoning = p
        .reasoning
        .and_then(|r| super::reasoning::Reasoning::resolve(r, &format!("{at}.reasoning"), errors));
    let azure = (api_type == ApiType::Azure).then(|| {
        let deployment = p.deployment.as_deref().or(model.as_deref());
        azure(deployment, p.api_version.as_deref(), at, errors)
    });
    // A control character (CR, LF, NUL) in what becomes a URL or a header
    // would be dropped or split it on the wire: refused here, for the file
    // and the admin API alike.
    for (key, v) in [
        ("api_base", Some(&api_base)),
        ("api_key", p.api_key.as_ref()),
        ("target_model", p.target_model.as_ref()),
        ("model", model.as_ref()),
    ] {
        if v.is_some_and(|v| v.chars().any(char::is_control)) {
            errors.push(format!(
                "{at}.{key}: must not contain control characters (CR, LF, tab, NUL, ...)"
            ));
        }
    }
    let strip_prefix = p.strip_prefix.unwrap_or(false);
    if strip_prefix && !crate::wildcard::is_pattern(model_name) {
        errors.push(format!(
            "{at}.strip_prefix: only for a wildcard model_name (with a `*`); `{model_name}` has none"
        ));
    }
    if errors.len() > start {
        return None;
    }
    let mut backend = Backend {
        name: format!("{model_name}#{n}"),
        model_name: model_name.to_string(),
        api_type,
        api_base,
        api_key: p.api_key.filter(|k| !k.is_empty()).map(Secret::new),
        upstream_model: p.target_model.filter(|m| !m.trim().is_empty()).or(model),
        request_timeout,
        supports_reasoning: p.supports_reasoning.unwrap_or(false),
        reasoning,
        supports_responses: p.supports_responses.unwrap_or(true),
        responses_websocket: p.responses_websocket.unwrap_or(false),
        parameters,
        urls: None,
        routing,
        thinking: None,
        azure: azure.flatten(),
        strip_prefix,
    };
    backend.parse_urls();
    Some(backend)
}

/// An Azure backend's deployment (`deployment`, else the model) and
/// `api_version`; both go into the URL, so they are checked for characters
/// that would need escaping.
fn azure(
    deployment: Option<&str>,
    api_version: Option<&str>,
    at: &str,
    errors: &mut Vec<String>,
) -> Option<AzureTarget> {
    let url_safe = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    let deployment = deployment.map(str::trim).filter(|d| !d.is_empty());
    let Some(deployment) = deployment else {
        errors.push(format!(
            "{at}.deployment: required for api_type azure (or `model: azure/<deployment>`)"
        ));
        return None;
    };
    if !url_safe(deployment) {
        errors.push(format!(
            "{at}.deployment: `{deployment}` may hold only letters, digits, `-`, `_` and `.`"
        ));
        return None;
    }
    let api_version = api_version
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_AZURE_API_VERSION);
    if !url_safe(api_version) {
        errors.push(format!(
            "{at}.api_version: `{api_version}` is not an api-version such as {DEFAULT_AZURE_API_VERSION}"
        ));
        return None;
    }
    Some(AzureTarget {
        deployment: deployment.to_string(),
        api_version: api_version.to_string(),
    })
}

fn strategy(name: Option<&str>, errors: &mut Vec<String>) -> RoutingStrategy {
    let Some(name) = name else {
        return RoutingStrategy::default();
    };
    RoutingStrategy::parse(name.trim()).unwrap_or_else(|| {
        let hint = nearest(name, RoutingStrategy::NAMES)
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        errors.push(format!(
            "router_settings.routing_strategy: unknown strategy `{name}` (one of: {}){hint}",
            RoutingStrategy::NAMES.join(", ")
        ));
        RoutingStrategy::default()
    })
}

/// A backend's `weight`, `order` and `health_check`.
fn routing(
    weight: Option<f64>,
    order: Option<i64>,
    check: Option<super::raw::RawHealthCheck>,
    at: &str,
    errors: &mut Vec<String>,
) -> BackendRouting {
    let weight = match weight {
        None => 1.0,
        Some(w) if w.is_finite() && w > 0.0 => w,
        Some(w) => {
            errors.push(format!("{at}.weight: must be a number > 0, got {w}"));
            1.0
        }
    };
    let health_check = check.map(|c| {
        let interval = seconds(
            c.interval,
            Duration::from_secs(30),
            &format!("{at}.health_check.interval"),
            errors,
        );
        let timeout = seconds(
            c.timeout,
            interval.min(Duration::from_secs(10)),
            &format!("{at}.health_check.timeout"),
            errors,
        );
        let path = c.path.unwrap_or_else(|| "/models".to_string());
        if !path.starts_with('/') {
            errors.push(format!(
                "{at}.health_check.path: `{path}` must start with `/` (it is appended to api_base)"
            ));
        }
        HealthCheck {
            interval,
            path,
            timeout,
        }
    });
    BackendRouting {
        weight,
        order,
        health_check,
    }
}

fn parameters(
    raw: std::collections::BTreeMap<String, super::raw::RawParameter>,
) -> Arc<[Parameter]> {
    raw.into_iter()
        .map(|(name, p)| match p {
            super::raw::RawParameter::Full(f) => Parameter {
                name,
                default: f.default,
                allow_override: f.allow_override.unwrap_or(true),
            },
            super::raw::RawParameter::Bare(v) => Parameter {
                name,
                default: v,
                allow_override: true,
            },
        })
        .collect()
}

fn logging(raw: super::raw::RawLogging, errors: &mut Vec<String>) -> LoggingSettings {
    let files_on = raw.files.enabled.unwrap_or(true);
    let dir = raw.files.dir.unwrap_or_else(|| DEFAULT_LOG_DIR.to_string());
    if files_on && dir.trim().is_empty() {
        errors.push("proxy_settings.logging.files.dir: must not be empty".into());
    }
    let queue_size = raw.queue_size.unwrap_or(DEFAULT_LOG_QUEUE);
    if queue_size == 0 {
        errors.push("proxy_settings.logging.queue_size: must be at least 1".into());
    }
    let queue_max_bytes = raw.queue_max_bytes.unwrap_or(DEFAULT_LOG_QUEUE_BYTES);
    if queue_max_bytes == 0 {
        errors.push("proxy_settings.logging.queue_max_bytes: must be at least 1".into());
    }
    LoggingSettings {
        files_dir: files_on.then(|| PathBuf::from(dir)),
        database: raw.database.enabled.unwrap_or(true),
        log_parsed_response: raw.log_parsed_response.unwrap_or(false),
        log_parsed_stream: raw.log_parsed_stream.unwrap_or(false),
        max_body_bytes: usize::try_from(raw.max_body_bytes.unwrap_or(DEFAULT_LOG_MAX_BODY))
            .unwrap_or(usize::MAX),
        queue_size: queue_size.max(1),
        queue_max_bytes: usize::try_from(queue_max_bytes.max(1)).unwrap_or(usize::MAX),
    }
}

fn database(raw: super::raw::RawDatabase, errors: &mut Vec<String>) -> DatabaseSettings {
    let max_age = raw.retention.max_age_days.and_then(|d| {
        if d.is_finite() && d > 0.0 && d <= MAX_RETENTION_DAYS {
            Some(Duration::from_secs_f64(d * 86_400.0))
        } else {
            errors.push(format!(
                "database.retention.max_age_days: must be a number of days above 0 and at most {MAX_RETENTION_DAYS}, got {d}"
            ));
            None
        }
    });
    let max_rows = raw.retention.max_rows.and_then(|n| {
        if n >= 1 && i64::try_from(n).is_ok() {
            Some(n)
        } else {
            errors.push(format!(
                "database.retention.max_rows: must be from 1 to {}, got {n}",
                i64::MAX
            ));
            None
        }
    });
    let target = match (
        raw.url.filter(|u| !u.trim().is_empty()),
        raw.backend.as_deref(),
    ) {
        (Some(url), _) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            DatabaseTarget::Postgres(PostgresTarget {
                url: Some(Secret::new(url)),
                host: String::new(),
                port: 5432,
                database: String::new(),
                user: None,
                password: None,
            })
        }
        (Some(url), _) if url.starts_with("sqlite:") => {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            DatabaseTarget::Sqlite {
                path: PathBuf::from(path.split('?').next().unwrap_or(path)),
            }
        }
        (Some(url), _) => {
            errors.push(format!(
                "database.url: `{}` is neither a postgres:// nor a sqlite: URL",
                url.split('@').next_back().unwrap_or("")
            ));
            DatabaseTarget::Sqlite {
                path: PathBuf::from(DEFAULT_SQLITE_PATH),
            }
        }
        (None, None | Some("sqlite")) => DatabaseTarget::Sqlite {
            path: PathBuf::from(
                raw.connection
                    .sqlite
                    .path
                    .unwrap_or_else(|| DEFAULT_SQLITE_PATH.to_string()),
            ),
        },
        (None, Some("postgres" | "postgresql")) => {
            let p = raw.connection.postgres;
            DatabaseTarget::Postgres(PostgresTarget {
                url: None,
                host: p.host.unwrap_or_else(|| "localhost".into()),
                port: p.port.unwrap_or(5432),
                database: p.database.unwrap_or_else(|| "yallmp".into()),
                user: p.user.filter(|u| !u.is_empty()),
                password: p.password.filter(|p| !p.is_empty()).map(Secret::new),
            })
        }
        (None, Some(other)) => {
            let hint = nearest(other, &["sqlite", "postgres"])
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            errors.push(format!(
                "database.backend: unknown backend `{other}` (sqlite or postgres){hint}"
            ));
            DatabaseTarget::Sqlite {
                path: PathBuf::from(DEFAULT_SQLITE_PATH),
            }
        }
    };
    DatabaseSettings {
        target,
        max_age,
        max_rows,
    }
}

/// The smallest `proxy_settings.server.max_response_bytes` accepted: below
/// it ordinary answers would fail.
const MIN_RESPONSE_BYTES: u64 = 1024;

fn max_response_bytes(v: Option<u64>, errors: &mut Vec<String>) -> usize {
    const AT: &str = "proxy_settings.server.max_response_bytes";
    let default = usize::try_from(DEFAULT_MAX_RESPONSE_BYTES).unwrap_or(usize::MAX);
    match v {
        None => default,
        Some(n) if n >= MIN_RESPONSE_BYTES => usize::try_from(n).unwrap_or(usize::MAX),
        Some(n) => {
            errors.push(format!(
                "{AT}: {n} is too small (at least {MIN_RESPONSE_BYTES} bytes; the default is {DEFAULT_MAX_RESPONSE_BYTES})"
            ));
            default
        }
    }
}

/// The longest `database.retention.max_age_days` accepted: a century. A
/// cutoff further back than the calendar can hold would stop retention.
const MAX_RETENTION_DAYS: f64 = 36_500.0;

/// The largest `proxy_settings.server.workers` count accepted.
const MAX_WORKERS: i64 = 1024;

fn workers(v: Option<RawWorkers>, errors: &mut Vec<String>) -> Workers {
    const AT: &str = "proxy_settings.server.workers";
    match v {
        None => Workers::auto(),
        Some(RawWorkers::Count(n)) if (1..=MAX_WORKERS).contains(&n) => {
            Workers::PerThread(n as usize)
        }
        Some(RawWorkers::Count(n)) => {
            errors.push(format!(
                "{AT}: {n} is out of range (1 to {MAX_WORKERS}, `auto` or `shared`)"
            ));
            Workers::auto()
        }
        Some(RawWorkers::Word(w)) => match w.trim().to_ascii_lowercase().as_str() {
            "auto" => Workers::auto(),
            "shared" => Workers::Shared,
            _ => {
                errors.push(format!(
                    "{AT}: expected `auto`, `shared` or a thread count, got `{w}`"
                ));
                Workers::auto()
            }
        },
    }
}

fn seconds(v: Option<f64>, default: Duration, at: &str, errors: &mut Vec<String>) -> Duration {
    match v {
        None => default,
        Some(s) if s.is_finite() && s > 0.0 && s < 1e9 => Duration::from_secs_f64(s),
        Some(s) => {
            errors.push(format!(
                "{at}: must be a positive number of seconds, got {s}"
            ));
            default
        }
    }
}

/// `proxy_settings.server.allowed_hosts`: host names (optionally with a
/// port) or `*`; no scheme, path or spaces.
fn allowed_hosts(v: Option<Vec<String>>, errors: &mut Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    for (i, h) in v.unwrap_or_default().into_iter().enumerate() {
        let h = h.trim().to_ascii_lowercase();
        let ok = h == "*"
            || (!h.is_empty()
                && !h.contains("://")
                && !h.starts_with(':')
                && h.chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']')
                }));
        if ok {
            out.push(h);
        } else {
            errors.push(format!(
                "proxy_settings.server.allowed_hosts[{i}]: expected a host name as the `Host` header \
                 carries it (`proxy.example.com`, `proxy.example.com:8443`, `10.0.0.5`) or `*`, got `{h}`"
            ));
        }
    }
    out
}

fn unknown_model(at: &str, name: &str, known: &[&str]) -> String {
    let hint = nearest(name, known)
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default();
    format!(
        "{at}: unknown model `{name}` (models: {}){hint}",
        known.join(", ")
    )
}

fn push_unique(into: &mut Vec<String>, items: Vec<String>) {
    let mut seen: HashSet<String> = into.iter().cloned().collect();
    for item in items {
        if seen.insert(item.clone()) {
            into.push(item);
        }
    }
}
