//! LiteLLM keys that have a meaning in yallmp, rewritten in the YAML tree
//! into the yallmp keys that do the same, before the tree is typed. A yallmp
//! key written in the file always wins over the LiteLLM key that maps to it.
//! Values yallmp cannot honour are dropped with a precise warning; the rest
//! of `litellm_settings` is dropped with one warning a key (`litellm.rs`
//! lists the keys still ignored elsewhere).

use serde_yaml::{Mapping, Value};

use super::env::Env;

/// Rewrites the LiteLLM keys of `tree` yallmp honours; see the module doc.
pub(super) fn map(tree: &mut Value, env: &Env, warnings: &mut Vec<String>) {
    let Value::Mapping(root) = tree else {
        return;
    };
    let mut ls = match root.remove("litellm_settings") {
        Some(Value::Mapping(m)) => m,
        Some(Value::Null) | None => Mapping::new(),
        Some(_) => {
            warnings.push("litellm_settings: not a map; ignored".to_string());
            Mapping::new()
        }
    };
    let mut router = take_map(root, "router_settings");
    let mut general = take_map(root, "general_settings");
    // Router keys LiteLLM also reads from `litellm_settings` (its docs show
    // the fallbacks there): router_settings' own win.
    for key in [
        "fallbacks",
        "context_window_fallbacks",
        "content_policy_fallbacks",
        "default_fallbacks",
        "allowed_fails",
        "cooldown_time",
        "retry_policy",
        "allowed_fails_policy",
    ] {
        if let Some(v) = ls.remove(key)
            && !router.contains_key(key)
        {
            router.insert(key.into(), v);
        }
    }

    // Retries and timeouts.
    if let Some(n) = ls.remove("num_retries") {
        set_default(root, &["router_settings"], "num_retries", n);
    }
    let timeout = router
        .remove("timeout")
        .or_else(|| ls.remove("request_timeout"));
    ls.remove("request_timeout");
    if let Some(t) = timeout {
        for_each_params(root, |params| {
            if !params.contains_key("timeout") && !params.contains_key("request_timeout") {
                params.insert("request_timeout".into(), t.clone());
            }
        });
    }

    // Redis: the router's connection, then the cache's.
    let router_redis = redis_url(
        router.remove("redis_url"),
        router.remove("redis_host"),
        router.remove("redis_port"),
        router.remove("redis_password"),
        false,
    );
    if let Some(url) = router_redis {
        set_default(root, &["proxy_settings"], "redis_url", Value::from(url));
    }
    cache(root, &mut ls, env, warnings);
    callbacks(root, &mut ls, env, warnings);

    // The request log's database.
    if let Some(url) = general.remove("database_url") {
        let has_db = root
            .get("database")
            .and_then(Value::as_mapping)
            .is_some_and(|d| d.contains_key("url") || d.contains_key("backend"));
        let empty = url.as_str().is_some_and(|s| s.trim().is_empty());
        if !has_db && !empty {
            set_default(root, &["database"], "url", url);
        }
    }

    // Router: backoff, aliases, default fallbacks.
    if let Some(secs) = router.remove("retry_after")
        && !router.contains_key("retry_backoff_ms")
    {
        match secs.as_f64() {
            Some(s) if s.is_finite() && s >= 0.0 => {
                router.insert("retry_backoff_ms".into(), Value::from((s * 1000.0) as u64));
            }
            _ => warnings.push(format!(
                "router_settings.retry_after: not a number of seconds ({secs:?}); ignored"
            )),
        }
    }
    if let Some(aliases) = router.remove("model_group_alias") {
        for (alias, target) in model_group_alias(root, aliases, warnings) {
            alias_router_entries(&mut router, &alias, &target);
        }
    }
    if let Some(defaults) = router.remove("default_fallbacks") {
        default_fallbacks(root, &mut router, defaults);
    }

    if let Some(args) = router.remove("routing_strategy_args") {
        routing_strategy_args(&mut router, args, warnings);
    }
    let drop_params = ls.remove("drop_params");
    // JSON lines for yallmp's own log.
    if let Some(json) = ls.remove("json_logs")
        && json.as_bool() == Some(true)
    {
        set_default(root, &["proxy_settings"], "log_format", Value::from("json"));
    }
    deployments(root, general.remove("max_parallel_requests"), drop_params);
    capacity_weights(root);
    base_model(root, warnings);
    bedrock_region(root);

    // `store_model_in_db`: models added at run time kept in the database,
    // which yallmp does whenever the database is PostgreSQL.
    if let Some(v) = general.remove("store_model_in_db")
        && v.as_bool() == Some(true)
        && !(postgres_database(root) && database_logging(root))
    {
        warnings.push(
            "general_settings.store_model_in_db: runtime models are kept in the database only \
             when it is PostgreSQL; here they go to the overlay file beside the config"
                .to_string(),
        );
    }

    // Concurrency over the whole proxy.
    if let Some(n) = general.remove("global_max_parallel_requests") {
        set_default(
            root,
            &["proxy_settings", "rate_limits"],
            "max_parallel_requests",
            n,
        );
    }

    // Active health checks.
    let interval = general.remove("health_check_interval");
    if general
        .remove("background_health_checks")
        .and_then(|v| v.as_bool())
        == Some(true)
    {
        let interval = interval.unwrap_or(Value::from(300));
        let mut azure = false;
        for_each_params(root, |params| {
            // yallmp's check GETs `api_base/models`, which Azure's
            // deployments URL layout does not answer.
            let is_azure = params.get("api_type").and_then(Value::as_str) == Some("azure")
                || params
                    .get("model")
                    .and_then(Value::as_str)
                    .is_some_and(|m| m.starts_with("azure/"));
            azure |= is_azure;
            if !is_azure && !params.contains_key("health_check") {
                let mut hc = Mapping::new();
                hc.insert("interval".into(), interval.clone());
                params.insert("health_check".into(), Value::Mapping(hc));
            }
        });
        if azure {
            warnings.push(
                "general_settings.background_health_checks: not applied to Azure backends \
                 (yallmp's check is GET api_base/models); they are checked by their traffic"
                    .to_string(),
            );
        }
    }

    put_back(root, "router_settings", router);
    put_back(root, "general_settings", general);
    for (k, _) in ls {
        let k = k.as_str().map_or_else(|| format!("{k:?}"), str::to_string);
        warnings.push(format!(
            "litellm_settings.{k}: LiteLLM setting not implemented by yallmp; ignored"
        ));
    }
}

/// `litellm_settings.callbacks` / `success_callback` / `failure_callback`:
/// `otel` and `langfuse_otel` turn on the OpenTelemetry export
/// (`proxy_settings.telemetry`), the others warn by name. `otel` takes
/// LiteLLM's `OTEL_ENDPOINT` / `OTEL_HEADERS` when set (else the standard
/// `OTEL_EXPORTER_OTLP_*` variables apply); `langfuse_otel` sends to
/// `{LANGFUSE_OTEL_HOST|LANGFUSE_HOST|https://cloud.langfuse.com}/api/public/otel`
/// with `LANGFUSE_PUBLIC_KEY:LANGFUSE_SECRET_KEY` as Basic auth. Prompts and
/// completions go as span events, as LiteLLM's callbacks send them, unless
/// `turn_off_message_logging: true`.
fn callbacks(root: &mut Mapping, ls: &mut Mapping, env: &Env, warnings: &mut Vec<String>) {
    let no_content = ls
        .remove("turn_off_message_logging")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let mut names: Vec<(String, String)> = Vec::new();
    for key in ["callbacks", "success_callback", "failure_callback"] {
        match ls.remove(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(one)) => names.push((key.to_string(), one)),
            Some(Value::Sequence(list)) => {
                for v in list {
                    match v.as_str() {
                        Some(n) => names.push((key.to_string(), n.to_string())),
                        None => warnings.push(format!(
                            "litellm_settings.{key}: an entry that is not a name ({v:?}); ignored"
                        )),
                    }
                }
            }
            Some(other) => warnings.push(format!(
                "litellm_settings.{key}: not a list of names ({other:?}); ignored"
            )),
        }
    }
    let mut chosen: Option<String> = None;
    for (key, name) in names {
        if name != "otel" && name != "langfuse_otel" {
            warnings.push(format!(
                "litellm_settings.{key}: `{name}` is not implemented by yallmp; ignored \
                 (`otel` and `langfuse_otel` map to the OpenTelemetry export)"
            ));
            continue;
        }
        match &chosen {
            Some(c) if *c == name => continue,
            Some(c) => {
                warnings.push(format!(
                    "litellm_settings.{key}: `{name}` ignored: yallmp exports to one collector, \
                     and `{c}` came first"
                ));
                continue;
            }
            None => chosen = Some(name.clone()),
        }
        let path = ["proxy_settings", "telemetry"];
        set_default(root, &path, "enabled", Value::Bool(true));
        set_default(root, &path, "capture_content", Value::Bool(!no_content));
        let mut headers = Mapping::new();
        if name == "otel" {
            if let Some(ep) = env.get("OTEL_ENDPOINT").filter(|e| !e.trim().is_empty()) {
                set_default(root, &path, "endpoint", Value::from(ep.trim()));
            }
            for pair in env.get("OTEL_HEADERS").unwrap_or_default().split(',') {
                if let Some((k, v)) = pair.split_once('=')
                    && !k.trim().is_empty()
                {
                    headers.insert(Value::from(k.trim()), Value::from(v.trim()));
                }
            }
        } else {
            let host = env
                .get("LANGFUSE_OTEL_HOST")
                .or_else(|| env.get("LANGFUSE_HOST"))
                .filter(|h| !h.trim().is_empty())
                .unwrap_or_else(|| "https://cloud.langfuse.com".to_string());
            let endpoint = format!("{}/api/public/otel", host.trim().trim_end_matches('/'));
            set_default(root, &path, "endpoint", Value::from(endpoint));
            match (
                env.get("LANGFUSE_PUBLIC_KEY"),
                env.get("LANGFUSE_SECRET_KEY"),
            ) {
                (Some(pk), Some(sk)) => {
                    use base64::Engine as _;
                    let token =
                        base64::engine::general_purpose::STANDARD.encode(format!("{pk}:{sk}"));
                    headers.insert(
                        "Authorization".into(),
                        Value::from(format!("Basic {token}")),
                    );
                }
                _ => warnings.push(format!(
                    "litellm_settings.{key}: langfuse_otel without LANGFUSE_PUBLIC_KEY and \
                     LANGFUSE_SECRET_KEY: spans are sent without credentials"
                )),
            }
        }
        if !headers.is_empty() {
            set_default(root, &path, "headers", Value::Mapping(headers));
        }
    }
}

/// `litellm_settings.cache` / `cache_params` → `proxy_settings.cache`.
fn cache(root: &mut Mapping, ls: &mut Mapping, env: &Env, warnings: &mut Vec<String>) {
    let on = ls.remove("cache");
    let mut params = match ls.remove("cache_params") {
        Some(Value::Mapping(m)) => m,
        _ => Mapping::new(),
    };
    let on = on.map(|v| match v {
        // `os.environ/CACHE` comes out as a string.
        Value::String(s) => Value::Bool(s.trim().eq_ignore_ascii_case("true")),
        v => v,
    });
    if on.as_ref().and_then(Value::as_bool) != Some(true) {
        if !params.is_empty() {
            warnings.push(
                "litellm_settings.cache_params: ignored, as litellm_settings.cache is not true"
                    .to_string(),
            );
        }
        return;
    }
    let at = ["proxy_settings", "cache"];
    set_default(root, &at, "enabled", Value::Bool(true));
    // LiteLLM's proxy defaults to Redis.
    let kind = params
        .remove("type")
        .and_then(|t| t.as_str().map(str::to_string))
        .unwrap_or_else(|| "redis".to_string());
    let host = params.remove("host");
    let port = params.remove("port");
    let password = params.remove("password");
    let ssl = params.remove("ssl").and_then(|v| v.as_bool()) == Some(true);
    let url = params.remove("url").or_else(|| params.remove("redis_url"));
    match kind.as_str() {
        "local" => set_default(root, &at, "backend", Value::from("memory")),
        "redis" => {
            let url = redis_url(url, host, port, password, ssl).or_else(|| {
                // LiteLLM reads these when cache_params has no host.
                redis_url(
                    env.get("REDIS_URL").map(Value::from),
                    env.get("REDIS_HOST").map(Value::from),
                    env.get("REDIS_PORT").map(Value::from),
                    env.get("REDIS_PASSWORD").map(Value::from),
                    false,
                )
            });
            if let Some(url) = url {
                set_default(root, &["proxy_settings"], "redis_url", Value::from(url));
            }
            let has_redis = root
                .get("proxy_settings")
                .and_then(|p| p.get("redis_url"))
                .is_some();
            if has_redis {
                set_default(root, &at, "backend", Value::from("redis"));
            } else {
                warnings.push(
                    "litellm_settings.cache_params.type: redis without a host (cache_params.host, \
                     router_settings.redis_host, REDIS_HOST or proxy_settings.redis_url); \
                     caching in memory instead"
                        .to_string(),
                );
                set_default(root, &at, "backend", Value::from("memory"));
            }
        }
        other => {
            warnings.push(format!(
                "litellm_settings.cache_params.type: `{other}` caches are not implemented by \
                 yallmp (local or redis); caching in memory instead"
            ));
            set_default(root, &at, "backend", Value::from("memory"));
        }
    }
    if let Some(ttl) = params.remove("ttl") {
        set_default(root, &at, "ttl", ttl);
    }
    if let Some(ns) = params.remove("namespace")
        && let Some(ns) = ns.as_str().filter(|s| !s.is_empty())
    {
        set_default(
            root,
            &["proxy_settings"],
            "redis_key_prefix",
            Value::from(format!("{ns}:")),
        );
    }
    if let Some(types) = params.remove("supported_call_types") {
        let mut endpoints = Vec::new();
        for t in types.as_sequence().into_iter().flatten() {
            let e = match t.as_str().unwrap_or("") {
                "completion" | "acompletion" => "chat_completions",
                "embedding" | "aembedding" => "embeddings",
                "responses" | "aresponses" => "responses",
                other => {
                    warnings.push(format!(
                        "litellm_settings.cache_params.supported_call_types: `{other}` is not \
                         cached by yallmp (completion, embedding, responses); ignored"
                    ));
                    continue;
                }
            };
            if !endpoints.contains(&e) {
                endpoints.push(e);
            }
        }
        set_default(
            root,
            &at,
            "endpoints",
            Value::Sequence(endpoints.into_iter().map(Value::from).collect()),
        );
    }
    for (k, _) in params {
        let k = k.as_str().map_or_else(|| format!("{k:?}"), str::to_string);
        warnings.push(format!(
            "litellm_settings.cache_params.{k}: LiteLLM setting not implemented by yallmp; ignored"
        ));
    }
}

/// A Redis URL from LiteLLM's parts; `url` wins. Empty values count as
/// absent.
fn redis_url(
    url: Option<Value>,
    host: Option<Value>,
    port: Option<Value>,
    password: Option<Value>,
    ssl: bool,
) -> Option<String> {
    let text = |v: Option<Value>| -> Option<String> {
        match v? {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    if let Some(url) = text(url) {
        return Some(url);
    }
    let host = text(host)?;
    let port = text(port).unwrap_or_else(|| "6379".to_string());
    let auth = text(password)
        .map(|p| {
            format!(
                ":{}@",
                percent_encoding::utf8_percent_encode(&p, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .unwrap_or_default();
    let scheme = if ssl { "rediss" } else { "redis" };
    Some(format!("{scheme}://{auth}{host}:{port}"))
}

fn take_map(root: &mut Mapping, key: &str) -> Mapping {
    match root.remove(key) {
        Some(Value::Mapping(m)) => m,
        Some(other) => {
            // Not ours to judge: the typed pass reports it.
            let mut m = Mapping::new();
            m.insert(Value::from("\u{0}"), other);
            m
        }
        None => Mapping::new(),
    }
}

fn put_back(root: &mut Mapping, key: &str, mut m: Mapping) {
    if let Some(other) = m.remove("\u{0}") {
        root.insert(key.into(), other);
        return;
    }
    let existing = root.remove(key);
    if let Some(Value::Mapping(added)) = existing {
        for (k, v) in added {
            if !m.contains_key(&k) {
                m.insert(k, v);
            }
        }
    }
    if !m.is_empty() {
        root.insert(key.into(), Value::Mapping(m));
    }
}

/// Sets `key` in the map at `path` (made when absent) unless it is set.
fn set_default(root: &mut Mapping, path: &[&str], key: &str, value: Value) {
    let mut node = root;
    for seg in path {
        let entry = node
            .entry(Value::from(*seg))
            .or_insert_with(|| Value::Mapping(Mapping::new()));
        if !entry.is_mapping() {
            return;
        }
        let Value::Mapping(m) = entry else {
            return;
        };
        node = m;
    }
    if !node.contains_key(key) {
        node.insert(key.into(), value);
    }
}

/// A Bedrock deployment's `region_name` (LiteLLM's spelling) is its
/// `aws_region_name`, unless that is set too. On other deployments it
/// stays, and warns as an ignored key.
fn bedrock_region(root: &mut Mapping) {
    for_each_params(root, |p| {
        let bedrock = p.get("api_type").and_then(Value::as_str) == Some("bedrock")
            || p.get("custom_llm_provider").and_then(Value::as_str) == Some("bedrock")
            || p.get("model")
                .and_then(Value::as_str)
                .is_some_and(|m| m.starts_with("bedrock/"));
        if bedrock
            && let Some(region) = p.remove("region_name")
            && !p.contains_key("aws_region_name")
        {
            p.insert("aws_region_name".into(), region);
        }
    });
}

/// Calls `f` on each model entry's `litellm_params` / `model_params`.
fn for_each_params(root: &mut Mapping, mut f: impl FnMut(&mut Mapping)) {
    let Some(Value::Sequence(list)) = root.get_mut("model_list") else {
        return;
    };
    for entry in list {
        let Value::Mapping(e) = entry else { continue };
        if e.contains_key("extends") {
            continue;
        }
        for key in ["litellm_params", "model_params"] {
            if let Some(Value::Mapping(p)) = e.get_mut(key) {
                f(p);
            }
        }
    }
}

/// Whether the request log's database (where runtime models live with
/// several instances) is PostgreSQL.
fn postgres_database(root: &Mapping) -> bool {
    let Some(db) = root.get("database").and_then(Value::as_mapping) else {
        return false;
    };
    matches!(
        db.get("backend").and_then(Value::as_str),
        Some("postgres" | "postgresql")
    ) || db
        .get("url")
        .and_then(Value::as_str)
        .is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
}

/// Whether `proxy_settings.logging.database.enabled` leaves the database
/// on (the runtime models live there only then).
fn database_logging(root: &Mapping) -> bool {
    root.get("proxy_settings")
        .and_then(|p| p.get("logging"))
        .and_then(|l| l.get("database"))
        .and_then(|d| d.get("enabled"))
        .and_then(Value::as_bool)
        != Some(false)
}

/// Completion arguments a LiteLLM deployment may carry in `litellm_params`,
/// read as its request defaults: those with the same name and meaning in
/// every dialect a backend is spoken to (chat, Responses, Messages), since
/// `parameters` are written into the body after its translation. The others
/// (`max_tokens`, `stop`, `seed`, …) are named differently or absent in some
/// dialect and stay ignored with a warning.
const SAMPLING_DEFAULTS: &[&str] = &["temperature", "top_p"];

/// Per-deployment keys LiteLLM writes outside `litellm_params`, and
/// defaults for every deployment: the entry's `rpm`/`tpm` and
/// `model_info.id` go into the params (as `rpm`, `tpm`, `id`), where the
/// params do not set them; `general_settings.max_parallel_requests` (a
/// per-deployment limit in LiteLLM) and `litellm_settings.drop_params`
/// become each deployment's default.
fn deployments(root: &mut Mapping, max_parallel: Option<Value>, drop_params: Option<Value>) {
    let Some(Value::Sequence(list)) = root.get_mut("model_list") else {
        return;
    };
    for entry in list {
        let Value::Mapping(e) = entry else { continue };
        let mut moved = Mapping::new();
        for k in ["rpm", "tpm"] {
            if let Some(v) = e.remove(k) {
                moved.insert(k.into(), v);
            }
        }
        if let Some(Value::Mapping(info)) = e.get_mut("model_info") {
            // The context window pre-call checks read.
            if let Some(n) = info.remove("max_input_tokens") {
                moved.insert("max_input_tokens".into(), n);
            }
            if let Some(id) = info.remove("id") {
                // LiteLLM takes ids as strings or numbers.
                let id = match id {
                    Value::Number(n) => Value::from(n.to_string()),
                    other => other,
                };
                moved.insert("id".into(), id);
            }
            if info.is_empty() {
                e.remove("model_info");
            }
        }
        if e.contains_key("extends") {
            continue;
        }
        // Completion arguments in `litellm_params` are the deployment's
        // defaults (LiteLLM passes them with each call; the request's own
        // win): yallmp's `parameters`.
        let mut defaults = Mapping::new();
        if let Some(Value::Mapping(p)) = e.get_mut("litellm_params") {
            for k in SAMPLING_DEFAULTS {
                if let Some(v) = p.remove(*k) {
                    defaults.insert(Value::from(*k), v);
                }
            }
        }
        if !defaults.is_empty() {
            let parameters = e
                .entry("parameters".into())
                .or_insert_with(|| Value::Mapping(Mapping::new()));
            if let Value::Mapping(params) = parameters {
                for (k, v) in defaults {
                    if !params.contains_key(&k) {
                        params.insert(k, v);
                    }
                }
            }
        }
        for key in ["litellm_params", "model_params"] {
            if let Some(Value::Mapping(p)) = e.get_mut(key) {
                for (k, v) in &moved {
                    if !p.contains_key(k) {
                        p.insert(k.clone(), v.clone());
                    }
                }
                if let Some(n) = &max_parallel
                    && !p.contains_key("max_parallel_requests")
                {
                    p.insert("max_parallel_requests".into(), n.clone());
                }
                if let Some(d) = &drop_params
                    && !p.contains_key("drop_params")
                {
                    p.insert("drop_params".into(), d.clone());
                }
            }
        }
    }
}

/// LiteLLM's `simple-shuffle` picks deployments in proportion to their
/// `rpm` (else `tpm`) when none has a `weight`: the same weights here,
/// for a model whose deployments all give one.
fn capacity_weights(root: &mut Mapping) {
    let Some(Value::Sequence(list)) = root.get_mut("model_list") else {
        return;
    };
    let params = |e: &Value| -> Option<Mapping> {
        ["litellm_params", "model_params"]
            .iter()
            .find_map(|k| e.get(*k).and_then(Value::as_mapping).cloned())
    };
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, e) in list.iter().enumerate() {
        if e.get("extends").is_some() {
            continue;
        }
        let Some(name) = e.get("model_name").and_then(Value::as_str) else {
            continue;
        };
        match groups.iter_mut().find(|(n, _)| n == name) {
            Some((_, members)) => members.push(i),
            None => groups.push((name.to_string(), vec![i])),
        }
    }
    for (_, members) in groups.into_iter().filter(|(_, m)| m.len() > 1) {
        let all: Vec<Mapping> = members.iter().filter_map(|i| params(&list[*i])).collect();
        if all.len() != members.len() || all.iter().any(|p| p.contains_key("weight")) {
            continue;
        }
        let Some(key) = ["rpm", "tpm"].into_iter().find(|k| {
            all.iter()
                .all(|p| p.get(*k).and_then(Value::as_u64).is_some_and(|n| n > 0))
        }) else {
            continue;
        };
        for i in members {
            let Value::Mapping(e) = &mut list[i] else {
                continue;
            };
            for k in ["litellm_params", "model_params"] {
                if let Some(Value::Mapping(p)) = e.get_mut(k)
                    && let Some(n) = p.get(key).cloned()
                {
                    p.insert("weight".into(), n);
                }
            }
        }
    }
}

/// `routing_strategy_args`: `lowest_latency_buffer` is yallmp's
/// `latency_buffer`; the rest (`ttl`, LiteLLM's cache times) have no
/// equivalent and warn.
fn routing_strategy_args(router: &mut Mapping, args: Value, warnings: &mut Vec<String>) {
    let Value::Mapping(args) = args else {
        warnings.push("router_settings.routing_strategy_args: not a map; ignored".to_string());
        return;
    };
    for (k, v) in args {
        match k.as_str() {
            Some("lowest_latency_buffer") => {
                if !router.contains_key("latency_buffer") {
                    router.insert("latency_buffer".into(), v);
                }
            }
            other => warnings.push(format!(
                "router_settings.routing_strategy_args.{}: not implemented by yallmp \
                 (latency estimates expire after 5 minutes; usage counts per clock minute); ignored",
                other.unwrap_or("?")
            )),
        }
    }
}

/// `model_group_alias: {alias: model}` (or `{alias: {model: m, hidden: b}}`):
/// one more model named `alias` that extends `model`, so it has the same
/// backends.
/// Returns the (alias, target) pairs made.
fn model_group_alias(
    root: &mut Mapping,
    aliases: Value,
    warnings: &mut Vec<String>,
) -> Vec<(String, String)> {
    let mut made = Vec::new();
    let Value::Mapping(aliases) = aliases else {
        warnings.push("router_settings.model_group_alias: not a map; ignored".to_string());
        return made;
    };
    let names = model_names(root);
    let Some(Value::Sequence(list)) = root.get_mut("model_list") else {
        return made;
    };
    for (alias, target) in aliases {
        let Some(alias) = alias.as_str().map(str::to_string) else {
            continue;
        };
        let (target, hidden) = match &target {
            Value::String(t) => (t.clone(), false),
            Value::Mapping(m) => (
                m.get("model")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                m.get("hidden").and_then(Value::as_bool) == Some(true),
            ),
            _ => (String::new(), false),
        };
        if names.contains(&alias) {
            warnings.push(format!(
                "router_settings.model_group_alias.{alias}: a model of model_list has this name; \
                 the alias is ignored"
            ));
            continue;
        }
        if !names.contains(&target) {
            warnings.push(format!(
                "router_settings.model_group_alias.{alias}: `{target}` is not a model_name of \
                 model_list; ignored"
            ));
            continue;
        }
        if hidden {
            warnings.push(format!(
                "router_settings.model_group_alias.{alias}: `hidden` is not implemented by \
                 yallmp; the alias is listed by /v1/models"
            ));
        }
        let mut entry = Mapping::new();
        entry.insert("model_name".into(), Value::from(alias.clone()));
        entry.insert("extends".into(), Value::from(target.clone()));
        list.push(Value::Mapping(entry));
        made.push((alias, target));
    }
    made
}

/// LiteLLM resolves an alias before routing, so the target's fallbacks
/// (of every kind) and its `model_group_retry_policy` are the alias's too:
/// copied to the alias where it has none of its own.
fn alias_router_entries(router: &mut Mapping, alias: &str, target: &str) {
    for key in [
        "fallbacks",
        "context_window_fallbacks",
        "content_policy_fallbacks",
    ] {
        match router.get_mut(key) {
            Some(Value::Sequence(list)) => {
                let has_own = list
                    .iter()
                    .any(|item| item.as_mapping().is_some_and(|m| m.contains_key(alias)));
                let theirs: Vec<Value> = list
                    .iter()
                    .filter_map(|item| item.as_mapping()?.get(target).cloned())
                    .collect();
                if !has_own {
                    for to in theirs {
                        let mut m = Mapping::new();
                        m.insert(Value::from(alias), to);
                        list.push(Value::Mapping(m));
                    }
                }
            }
            Some(Value::Mapping(map)) => {
                if !map.contains_key(alias)
                    && let Some(to) = map.get(target).cloned()
                {
                    map.insert(Value::from(alias), to);
                }
            }
            _ => {}
        }
    }
    if let Some(Value::Mapping(policies)) = router.get_mut("model_group_retry_policy")
        && !policies.contains_key(alias)
        && let Some(p) = policies.get(target).cloned()
    {
        policies.insert(Value::from(alias), p);
    }
}

/// `default_fallbacks: [m, ...]`: the fallbacks of every model that has
/// none of its own (LiteLLM's meaning), as router-level fallbacks.
fn default_fallbacks(root: &Mapping, router: &mut Mapping, defaults: Value) {
    let defaults: Vec<String> = match defaults {
        Value::String(s) => vec![s],
        Value::Sequence(v) => v
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    let mut has: Vec<String> = Vec::new();
    match router.get("fallbacks") {
        Some(Value::Sequence(items)) => {
            for item in items {
                if let Value::Mapping(m) = item {
                    has.extend(m.keys().filter_map(|k| k.as_str().map(str::to_string)));
                }
            }
        }
        Some(Value::Mapping(m)) => {
            has.extend(m.keys().filter_map(|k| k.as_str().map(str::to_string)));
        }
        _ => {}
    }
    if let Some(Value::Sequence(list)) = root.get("model_list") {
        for e in list {
            let own = e.get("fallbacks").is_some()
                || ["litellm_params", "model_params"]
                    .iter()
                    .any(|k| e.get(*k).and_then(|p| p.get("fallbacks")).is_some());
            if own && let Some(n) = e.get("model_name").and_then(Value::as_str) {
                has.push(n.to_string());
            }
        }
    }
    let mut added = Vec::new();
    for name in model_names(root) {
        if has.contains(&name) || added.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let to: Vec<Value> = defaults
            .iter()
            .filter(|d| **d != name)
            .map(|d| Value::from(d.as_str()))
            .collect();
        if !to.is_empty() {
            added.push((name, to));
        }
    }
    if added.is_empty() {
        return;
    }
    let fallbacks = router
        .entry("fallbacks".into())
        .or_insert_with(|| Value::Sequence(Vec::new()));
    for (name, to) in added {
        match fallbacks {
            Value::Sequence(items) => {
                let mut m = Mapping::new();
                m.insert(Value::from(name), Value::Sequence(to));
                items.push(Value::Mapping(m));
            }
            Value::Mapping(m) => {
                m.insert(Value::from(name), Value::Sequence(to));
            }
            _ => return,
        }
    }
}

/// The `model_name`s of `model_list`, in order, once each.
fn model_names(root: &Mapping) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    if let Some(Value::Sequence(list)) = root.get("model_list") {
        for e in list {
            if let Some(n) = e.get("model_name").and_then(Value::as_str)
                && !names.iter().any(|x| x == n)
            {
                names.push(n.to_string());
            }
        }
    }
    names
}

/// `model_info.base_model`: the backend's price is the shipped catalog's
/// price of that model, unless the params set one. An emptied `model_info`
/// goes (its other keys stay, for the warning).
fn base_model(root: &mut Mapping, warnings: &mut Vec<String>) {
    let Some(Value::Sequence(list)) = root.get_mut("model_list") else {
        return;
    };
    for (i, entry) in list.iter_mut().enumerate() {
        let Value::Mapping(e) = entry else { continue };
        let Some(Value::Mapping(info)) = e.get_mut("model_info") else {
            continue;
        };
        let Some(base) = info.remove("base_model") else {
            continue;
        };
        if info.is_empty() {
            e.remove("model_info");
        }
        let Some(base) = base.as_str().map(str::trim).filter(|b| !b.is_empty()) else {
            continue;
        };
        let priced = ["litellm_params", "model_params"].iter().any(|k| {
            e.get(*k).and_then(Value::as_mapping).is_some_and(|p| {
                ["pricing", "input_cost_per_token", "output_cost_per_token"]
                    .iter()
                    .any(|c| p.contains_key(*c))
            })
        });
        if priced {
            continue;
        }
        let price = crate::price::shipped(base).and_then(|p| serde_yaml::to_value(p).ok());
        let Some(price) = price else {
            warnings.push(format!(
                "model_list[{i}].model_info.base_model: `{base}` has no price in the shipped \
                 catalog; ignored"
            ));
            continue;
        };
        for k in ["litellm_params", "model_params"] {
            if let Some(Value::Mapping(p)) = e.get_mut(k) {
                p.insert("pricing".into(), price.clone());
            }
        }
    }
}
