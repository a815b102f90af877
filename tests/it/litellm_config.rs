//! LiteLLM config keys that yallmp honours (src/config/litellm_map.rs):
//! each one loads without a warning and sets its yallmp equivalent.

use std::time::Duration;

use yallmp::config::{Config, Env, cache::CacheBackend};

fn env(vars: &[(&str, &str)]) -> Env {
    Env::isolated(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fn load(yaml: &str) -> Config {
    Config::from_yaml(yaml, None, &env(&[])).unwrap()
}

const MODELS: &str = r#"
model_list:
  - model_name: a
    litellm_params: {model: openai/a, api_base: 'http://127.0.0.1:1/v1'}
  - model_name: b
    litellm_params: {model: openai/b, api_base: 'http://127.0.0.1:1/v1', timeout: 7}
"#;

#[test]
fn retries_and_timeouts() {
    let c = load(&format!(
        "{MODELS}litellm_settings: {{num_retries: 2, request_timeout: 30}}\n"
    ));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.router.num_retries, 2);
    let a = &c.model("a").unwrap().backends[0];
    assert_eq!(a.request_timeout, Duration::from_secs(30));
    // A deployment's own timeout wins.
    let b = &c.model("b").unwrap().backends[0];
    assert_eq!(b.request_timeout, Duration::from_secs(7));

    // router_settings wins over litellm_settings.
    let c = load(&format!(
        "{MODELS}litellm_settings: {{num_retries: 2, request_timeout: 30}}\n\
         router_settings: {{num_retries: 1, timeout: 12}}\n"
    ));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.router.num_retries, 1);
    let a = &c.model("a").unwrap().backends[0];
    assert_eq!(a.request_timeout, Duration::from_secs(12));
}

#[test]
fn other_litellm_settings_warn_one_by_one() {
    let c = load(&format!(
        "{MODELS}litellm_settings: {{num_retries: 1, drop_params: true, set_verbose: false}}\n"
    ));
    let w = c.warnings.join("\n");
    assert!(
        w.contains("litellm_settings.drop_params: LiteLLM setting not implemented"),
        "{w}"
    );
    assert!(
        w.contains("litellm_settings.set_verbose: LiteLLM setting not implemented"),
        "{w}"
    );
    assert!(!w.contains("num_retries"), "{w}");
}

#[test]
fn redis_cache() {
    let c = load(&format!(
        "{MODELS}litellm_settings:\n  cache: true\n  cache_params:\n    type: redis\n    \
         host: redis.internal\n    port: 6380\n    password: 'p@ss'\n    namespace: team1\n    \
         ttl: 60\n    supported_call_types: [acompletion, aembedding]\n"
    ));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(c.cache.enabled);
    assert_eq!(c.cache.backend, CacheBackend::Redis);
    assert_eq!(c.cache.ttl, Duration::from_secs(60));
    assert_eq!(c.cache.endpoints.len(), 2);
    let redis = c.redis.as_ref().unwrap();
    assert_eq!(redis.url.expose(), "redis://:p%40ss@redis.internal:6380");
    assert_eq!(redis.key_prefix, "team1:");
}

#[test]
fn local_cache_and_unsupported_types() {
    let c = load(&format!(
        "{MODELS}litellm_settings: {{cache: true, cache_params: {{type: local, ttl: 5}}}}\n"
    ));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(c.cache.enabled);
    assert_eq!(c.cache.backend, CacheBackend::Memory);
    assert!(c.redis.is_none());

    let c = load(&format!(
        "{MODELS}litellm_settings: {{cache: true, cache_params: {{type: s3, s3_bucket_name: x}}}}\n"
    ));
    let w = c.warnings.join("\n");
    assert!(c.cache.enabled);
    assert_eq!(c.cache.backend, CacheBackend::Memory);
    assert!(
        w.contains("cache_params.type: `s3` caches are not implemented"),
        "{w}"
    );
    assert!(
        w.contains("cache_params.s3_bucket_name: LiteLLM setting not implemented"),
        "{w}"
    );

    // LiteLLM's default type is redis, from REDIS_HOST when no host is given.
    let c = Config::from_yaml(
        &format!("{MODELS}litellm_settings: {{cache: true}}\n"),
        None,
        &env(&[("REDIS_HOST", "r1"), ("REDIS_PORT", "6390")]),
    )
    .unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.cache.backend, CacheBackend::Redis);
    assert_eq!(c.redis.as_ref().unwrap().url.expose(), "redis://r1:6390");

    // Without any Redis: memory, with a warning.
    let c = load(&format!("{MODELS}litellm_settings: {{cache: true}}\n"));
    assert_eq!(c.cache.backend, CacheBackend::Memory);
    assert!(c.warnings.join("\n").contains("redis without a host"));
}

#[test]
fn router_redis_and_database_url() {
    let c = load(&format!(
        "{MODELS}router_settings: {{redis_host: h, redis_port: 7000, redis_password: pw}}\n\
         general_settings: {{database_url: 'postgresql://u:p@db:5432/litellm'}}\n"
    ));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.redis.as_ref().unwrap().url.expose(), "redis://:pw@h:7000");
    match &c.database.target {
        yallmp::config::DatabaseTarget::Postgres(p) => {
            assert_eq!(
                p.url.as_ref().unwrap().expose(),
                "postgresql://u:p@db:5432/litellm"
            )
        }
        other => panic!("{other:?}"),
    }
    // redis_url wins over its parts; proxy_settings.redis_url over both.
    let c = load(&format!(
        "{MODELS}router_settings: {{redis_url: 'redis://x:1', redis_host: h}}\n"
    ));
    assert_eq!(c.redis.as_ref().unwrap().url.expose(), "redis://x:1");
    let c = load(&format!(
        "{MODELS}router_settings: {{redis_url: 'redis://x:1'}}\n\
         proxy_settings: {{redis_url: 'redis://mine:2'}}\n\
         database: {{url: 'sqlite://own.db'}}\n\
         general_settings: {{database_url: 'postgresql://u:p@db/l'}}\n"
    ));
    assert_eq!(c.redis.as_ref().unwrap().url.expose(), "redis://mine:2");
    assert!(matches!(
        c.database.target,
        yallmp::config::DatabaseTarget::Sqlite { .. }
    ));
}
