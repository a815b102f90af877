//! Raw file types → resolved [`Config`]: each section resolved by its own
//! file (server, router, models, logging, database, cache, …), in the order
//! their errors are reported; client keys, the admin password and Redis
//! here.

use std::collections::HashSet;
use std::path::Path;

use super::errors::Errors;
use super::raw::RawConfig;
use super::{
    AuthSettings, Config, Env, Origin, RedisSettings, Secret, cache, database, logging, models,
    parsers, router, server,
};

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
    errors: &mut Errors,
    warnings: &mut Vec<String>,
) -> Option<Config> {
    let start = errors.mark();
    let enable_responses_endpoint = raw.enable_responses_endpoint();
    let ps = raw.proxy_settings;
    let moderation_model = ps.moderation_model.clone();
    let files_model = ps.files_model.clone();
    let key_prefix = ps.redis_key_prefix();
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
    let master_key = gs
        .master_key
        .clone()
        .filter(|k| !k.trim().is_empty())
        .map(Secret::new);
    let auth = AuthSettings {
        api_keys,
        // LiteLLM's master key is the admin password unless one is set.
        admin_password: env
            .get("YALLMP_ADMIN_PASSWORD")
            .filter(|p| !p.is_empty())
            .or(ps.auth.admin_password.filter(|p| !p.is_empty()))
            .map(Secret::new)
            .or_else(|| master_key.clone()),
        master_key,
        keys: Vec::new(),
        teams: Vec::new(),
    };
    let mut auth = auth;
    (auth.teams, auth.keys) = super::keys::resolve(ps.auth.teams, ps.auth.keys, errors);
    let redis = ps
        .redis_url
        .filter(|u| !u.trim().is_empty())
        .map(|url| RedisSettings {
            url: Secret::new(url.trim()),
            key_prefix,
        });
    if let Some(r) = &redis
        && !["redis://", "rediss://", "unix://", "redis+unix://"]
            .iter()
            .any(|scheme| r.url.expose().starts_with(scheme))
    {
        errors.at(
            "proxy_settings.redis_url",
            "expected redis://host:port[/db] (or rediss://, unix://)",
        );
    }
    let cache = cache::resolve(ps.cache, redis.is_some(), errors);
    let streaming = super::streaming::resolve(ps.streaming, errors);
    let telemetry = super::telemetry::resolve(ps.telemetry, env, errors, warnings);
    if gs.host.is_some() || gs.port.is_some() {
        warnings.push(
            "general_settings.host/port: read as the listen address (proxy_settings.server takes precedence)"
                .to_string(),
        );
    }
    let server = server::resolve(ps.server, &gs, _path, errors);
    let log_format = logging::log_format(ps.log_format, errors);
    let mut rs = raw.router_settings;
    let router_fallbacks = super::models::RouterFallbacks {
        generic: rs.fallbacks.take(),
        context_window: rs.context_window_fallbacks.take(),
        content_policy: rs.content_policy_fallbacks.take(),
    };
    let router = router::resolve(rs, errors, warnings);

    let parsers = parsers::resolve(
        ps.parsers.unwrap_or_default(),
        &"proxy_settings.parsers".into(),
        false,
        _path,
        errors,
    );
    let logging = logging::resolve(ps.logging, errors);
    let rate_limits = super::limits::rate_limits(ps.rate_limits, errors);
    let cors = ps.cors.and_then(|c| super::limits::cors(c, errors));
    let database = database::resolve(raw.database, errors);
    let forward = super::forward::resolve(
        raw.forwarder_settings,
        raw.http_forwarder_settings,
        env,
        errors,
    );
    let mut model_list = raw.model_list;
    // Vertex AI backends without a key of their own use Google's usual
    // variable (ignored by every other api_type).
    if let Some(adc) = env.get("GOOGLE_APPLICATION_CREDENTIALS") {
        for p in model_list
            .iter_mut()
            .flat_map(|e| [e.model_params.as_mut(), e.litellm_params.as_mut()])
            .flatten()
            .filter(|p| p.vertex_credentials.is_none() && p.api_key.is_none())
        {
            p.vertex_credentials = Some(adc.clone());
        }
    }
    let models = models::resolve(
        model_list,
        router_fallbacks,
        sources,
        env,
        redis.is_some(),
        _path,
        errors,
        warnings,
    );
    router::check_model_groups(&router, &models, errors);

    if errors.since(start) {
        return None;
    }
    Some(Config {
        path: _path.map(Path::to_path_buf),
        server,
        enable_responses_endpoint,
        moderation_model,
        files_model,
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
        log_format,
        telemetry,
        forward,
        parsers,
        origin: Origin::default(),
        warnings: Vec::new(),
    })
}
