//! LiteLLM config keys that yallmp honours (src/config/litellm_map.rs):
//! each one loads without a warning and sets its yallmp equivalent.

use std::time::Duration;

use serde_json::{Value, json};
use yallmp::config::{Config, Env, cache::CacheBackend};

use crate::support::*;

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
    // drop_params is honoured (each deployment's default).
    assert!(!w.contains("drop_params"), "{w}");
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

#[test]
fn router_and_health_check_keys() {
    let yaml = format!(
        "{MODELS}  - model_name: c\n    litellm_params: {{model: openai/c, api_base: 'http://127.0.0.1:1/v1'}}\n    \
         fallbacks: [a]\n\
         router_settings:\n  disable_cooldowns: true\n  retry_after: 2\n  \
         model_group_alias: {{gpt-4: a, old: {{model: b, hidden: true}}, nope: zz}}\n  \
         default_fallbacks: [b]\n  fallbacks: [{{b: [c]}}]\n\
         general_settings: {{background_health_checks: true, health_check_interval: 45}}\n"
    );
    let c = load(&yaml);
    let w = c.warnings.join("\n");
    assert!(!c.router.cooldowns);
    assert_eq!(c.router.retry_backoff, Duration::from_secs(2));
    // Aliases: models with the same backends.
    let alias = c.model("gpt-4").unwrap();
    assert_eq!(alias.backends.len(), 1);
    assert_eq!(alias.backends[0].upstream_model.as_deref(), Some("a"));
    assert!(c.model("old").is_some());
    assert!(
        w.contains("model_group_alias.old: `hidden` is not implemented"),
        "{w}"
    );
    assert!(
        w.contains("model_group_alias.nope: `zz` is not a model_name"),
        "{w}"
    );
    // Default fallbacks: for models with none of their own.
    assert_eq!(c.model("a").unwrap().fallbacks, ["b"]);
    assert_eq!(c.model("b").unwrap().fallbacks, ["c"]);
    assert_eq!(c.model("c").unwrap().fallbacks, ["a"]);
    // Health checks on every backend, at the interval.
    let hc = c.model("a").unwrap().backends[0]
        .routing
        .health_check
        .clone();
    assert_eq!(hc.unwrap().interval, Duration::from_secs(45));
    assert_eq!(w.lines().count(), 2, "{w}");
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

/// Status, `x-yallmp-backend`, `x-yallmp-attempts`.
async fn ask(server: &yallmp::Server, model: &str) -> (u16, String, String) {
    let (status, headers, _) = post(server, "/v1/chat/completions", &chat(model)).await;
    let h = |n: &str| {
        headers
            .get(n)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    (status, h("x-yallmp-backend"), h("x-yallmp-attempts"))
}

fn entry(name: &str, mock: &Mock, extra: &str) -> String {
    format!(
        "  - {{model_name: {name}, litellm_params: {{model: openai/{name}, api_base: '{}', api_key: k{extra}}}}}\n",
        mock.url
    )
}

#[tokio::test]
async fn litellm_num_retries_and_timeout_apply_at_run_time() {
    let a = Mock::start(Reply::Echo).await;
    a.push(Reply::Json(500, json!({"error": {"message": "boom"}})));
    let slow = Mock::start(Reply::Delay(Duration::from_secs(5), Box::new(Reply::Echo))).await;
    let yaml = format!(
        "model_list:\n{}{}litellm_settings: {{num_retries: 1, request_timeout: 0.3}}\n",
        entry("m", &a, ""),
        entry("slow", &slow, "")
    );
    let server = proxy(&yaml).await;
    let (status, backend, attempts) = ask(&server, "m").await;
    assert_eq!(
        (status, backend.as_str(), attempts.as_str()),
        (200, "m#1", "2")
    );
    let t = std::time::Instant::now();
    let (status, _, _) = ask(&server, "slow").await;
    assert!(status >= 500, "{status}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    server.shutdown().await;
}

#[tokio::test]
async fn disable_cooldowns_keeps_a_failing_backend_in_rotation() {
    let a = Mock::start(Reply::Json(500, json!({"error": {"message": "down"}}))).await;
    let b = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n{}{}router_settings: {{routing_strategy: ordered, num_retries: 0, \
         allowed_fails: 0, cooldown_time: 60, disable_cooldowns: true}}\n",
        entry("m", &a, ", order: 1"),
        entry("m", &b, ", order: 2")
    );
    let server = proxy(&yaml).await;
    for _ in 0..3 {
        let (status, backend, attempts) = ask(&server, "m").await;
        assert_eq!(
            (status, backend.as_str(), attempts.as_str()),
            (200, "m#2", "2")
        );
    }
    // Each request tried m#1 first: it never cooled down.
    assert_eq!(a.count(), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn model_group_alias_and_default_fallbacks_route() {
    let a = Mock::start(Reply::Json(500, json!({"error": {"message": "down"}}))).await;
    let b = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n{}{}router_settings: {{model_group_alias: {{gpt-4: a}}, default_fallbacks: [b]}}\n",
        entry("a", &a, ""),
        entry("b", &b, "")
    );
    let server = proxy(&yaml).await;
    // `gpt-4` is `a`, which fails over to the default fallback `b`.
    let (status, backend, _) = ask(&server, "gpt-4").await;
    assert_eq!((status, backend.as_str()), (200, "b#1"));
    assert_eq!(a.count(), 1);
    let (status, backend, _) = ask(&server, "a").await;
    assert_eq!((status, backend.as_str()), (200, "b#1"));
    server.shutdown().await;
}

/// The fixtures in tests/fixtures/litellm (written from LiteLLM's documented
/// examples) load; their only warnings are for keys yallmp still ignores.
#[test]
fn litellm_fixtures_load_with_warnings_only_for_ignored_keys() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/litellm");
    let vars = env(&[
        ("OPENAI_API_KEY", "sk-o"),
        ("ANTHROPIC_API_KEY", "sk-a"),
        ("AZURE_API_BASE_EU", "https://eu.openai.azure.com"),
        ("AZURE_API_KEY_EU", "k-eu"),
        ("AZURE_API_BASE_US", "https://us.openai.azure.com"),
        ("AZURE_API_KEY_US", "k-us"),
        ("REDIS_HOST", "redis.internal"),
        ("REDIS_PORT", "6379"),
        ("REDIS_PASSWORD", "pw"),
        ("LITELLM_MASTER_KEY", "sk-1234"),
        ("DATABASE_URL", "postgresql://llm:pw@db:5432/litellm"),
        ("AZURE_API_BASE", "https://x.openai.azure.com"),
        ("AZURE_API_KEY", "k-az"),
        ("OPENAI_API_BASE", "https://api.openai.com/v1"),
        ("ANTHROPIC_API_BASE", "https://api.anthropic.com"),
    ]);
    let expected: &[(&str, &[&str])] = &[
        ("single_provider.yaml", &["model_list[2].model_info"]),
        (
            "azure_openai_fallbacks.yaml",
            &["litellm_settings.set_verbose"],
        ),
        ("redis_cache.yaml", &[]),
        ("multi_deployment_rpm_tpm.yaml", &[]),
        ("wildcard_routing.yaml", &[]),
        (
            "database_master_key.yaml",
            &[
                "general_settings.database_connection_pool_limit",
                "general_settings.proxy_batch_write_at",
            ],
        ),
    ];
    for (file, keys) in expected {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let c = Config::from_yaml(&text, None, &vars).unwrap_or_else(|e| panic!("{file}: {e}"));
        // Each warning is `PATH: LiteLLM setting not implemented by yallmp;
        // ignored`, with a hint in parentheses for some keys.
        let mut got: Vec<String> = c
            .warnings
            .iter()
            .map(|w| {
                let (path, rest) = w.split_once(": ").unwrap();
                assert!(
                    rest.starts_with("LiteLLM setting not implemented by yallmp; ignored"),
                    "{file}: {w}"
                );
                path.to_string()
            })
            .collect();
        got.sort();
        let mut want: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        want.sort();
        assert_eq!(got, want, "{file}");
        match *file {
            "single_provider.yaml" => {
                assert_eq!(c.router.num_retries, 3);
                let b = &c.model("gpt-4o").unwrap().backends[0];
                assert_eq!(b.request_timeout, Duration::from_secs(600));
            }
            "azure_openai_fallbacks.yaml" => {
                assert_eq!(c.router.num_retries, 2);
                let g = c.model("gpt-4o").unwrap();
                assert_eq!(g.backends[0].request_timeout, Duration::from_secs(30));
                assert_eq!(g.backends[1].request_timeout, Duration::from_secs(60));
                assert_eq!(g.fallbacks, ["gpt-4o-openai"]);
                assert_eq!(g.context_window_fallbacks, ["gpt-4o-openai"]);
                assert_eq!(c.model("gpt-4o-openai").unwrap().fallbacks, ["gpt-4o-mini"]);
                assert_eq!(c.model("gpt-4").unwrap().backends.len(), 2);
                assert_eq!(c.router.retry_backoff, Duration::from_secs(1));
            }
            "redis_cache.yaml" => {
                assert!(c.cache.enabled);
                assert_eq!(c.cache.backend, CacheBackend::Redis);
                let r = c.redis.as_ref().unwrap();
                assert_eq!(r.url.expose(), "redis://:pw@redis.internal:6379");
                assert_eq!(r.key_prefix, "litellm.caching:");
            }
            "multi_deployment_rpm_tpm.yaml" => {
                assert!(c.router.pre_call_checks);
                assert_eq!(
                    c.router.strategy,
                    yallmp::config::RoutingStrategy::UsageBased
                );
                let g = c.model("gpt-3.5-turbo").unwrap();
                let names: Vec<&str> = g.backends.iter().map(|b| b.name.as_str()).collect();
                assert_eq!(
                    names,
                    ["azure-chatgpt-v-2", "gpt-3.5-turbo#2", "gpt-3.5-turbo#3"]
                );
                assert!(g.backends.iter().all(|b| b.limits.rpm == Some(2)));
                assert_eq!(g.backends[2].limits.tpm, Some(100_000));
                assert_eq!(
                    c.redis.as_ref().unwrap().url.expose(),
                    "redis://redis.internal:6379"
                );
            }
            "wildcard_routing.yaml" => {
                let b = &c.model("anthropic/*").unwrap().backends[0];
                assert!(b.strip_prefix && b.upstream_model.is_none());
                assert_eq!(b.api_type, yallmp::config::ApiType::Anthropic);
            }
            "database_master_key.yaml" => {
                assert_eq!(c.auth.api_keys[0].expose(), "sk-1234");
                assert!(matches!(
                    c.database.target,
                    yallmp::config::DatabaseTarget::Postgres(_)
                ));
                assert!(
                    c.model("gpt-4o").unwrap().backends[0]
                        .routing
                        .health_check
                        .is_some()
                );
                assert!(c.router.cooldowns);
                // json_logs: yallmp's own log as JSON lines.
                assert_eq!(c.log_format, yallmp::config::LogFormat::Json);
                // model_info.id names the backend.
                assert_eq!(
                    c.model("gpt-4o").unwrap().backends[0].name,
                    "gpt-4o-primary"
                );
            }
            other => panic!("no checks for {other}"),
        }
    }
}

#[tokio::test]
async fn global_max_parallel_requests_answers_429_beyond_the_limit() {
    let slow = Mock::start(Reply::Delay(
        Duration::from_millis(800),
        Box::new(Reply::Echo),
    ))
    .await;
    let yaml = format!(
        "model_list:\n{}general_settings: {{global_max_parallel_requests: 1}}\n",
        entry("m", &slow, "")
    );
    let c = Config::from_yaml(&yaml, None, &env(&[])).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.rate_limits.max_parallel, Some(1));
    let server = proxy(&yaml).await;
    let first = {
        let body = chat("m");
        let s = &server;
        async move { post(s, "/v1/chat/completions", &body).await }
    };
    let second = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        post(&server, "/v1/chat/completions", &chat("m")).await
    };
    let ((s1, _, _), (s2, h2, b2)) = tokio::join!(first, second);
    assert_eq!(s1, 200);
    assert_eq!(s2, 429, "{b2}");
    assert!(h2.get("retry-after").is_some());
    assert!(b2.contains("max_parallel_requests"), "{b2}");
    // Once the first is done, the slot is free again.
    let (s3, _, _) = post(&server, "/v1/chat/completions", &chat("m")).await;
    assert_eq!(s3, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn organization_is_sent_as_openai_organization() {
    let a = Mock::start(Reply::Echo).await;
    let b = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n{}{}",
        entry("a", &a, ", organization: org-123"),
        entry("b", &b, "")
    );
    let c = Config::from_yaml(&yaml, None, &env(&[])).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let server = proxy(&yaml).await;
    assert_eq!(ask(&server, "a").await.0, 200);
    assert_eq!(ask(&server, "b").await.0, 200);
    let org = |m: &Mock| {
        m.hits()[0]
            .headers
            .get("openai-organization")
            .map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(org(&a).as_deref(), Some("org-123"));
    assert_eq!(org(&b), None);
    server.shutdown().await;
    // A value that cannot be a header is a config error.
    let bad = "model_list:\n  - {model_name: x, litellm_params: {model: openai/x, organization: \"o\\n1\"}}\n";
    let e = Config::from_yaml(bad, None, &env(&[])).err().unwrap();
    assert!(
        e.errors.join("\n").contains("organization"),
        "{:?}",
        e.errors
    );
}

#[test]
fn base_model_prices_a_backend() {
    let yaml = "model_list:\n  \
        - {model_name: my-azure, litellm_params: {model: azure/prod-deploy, api_base: 'https://x.openai.azure.com', api_key: k}, model_info: {base_model: azure/gpt-4o-mini}}\n  \
        - {model_name: own, litellm_params: {model: openai/o, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}, model_info: {base_model: gpt-4o}}\n  \
        - {model_name: odd, litellm_params: {model: openai/odd}, model_info: {base_model: no-such-model, mode: chat}}\n";
    let c = load(yaml);
    let p = c.model("my-azure").unwrap().backends[0].pricing.unwrap();
    assert_eq!((p.input, p.output), (0.15, 0.60));
    // The params' own price wins.
    let p = c.model("own").unwrap().backends[0].pricing.unwrap();
    assert!((p.input - 1.0).abs() < 1e-9, "{p:?}");
    assert!(c.model("odd").unwrap().backends[0].pricing.is_none());
    let w = c.warnings.join("\n");
    assert!(
        w.contains("model_list[2].model_info.base_model: `no-such-model` has no price"),
        "{w}"
    );
    // model_info's other keys are still warned; an emptied one is gone.
    assert!(w.contains("model_list[2].model_info: LiteLLM"), "{w}");
    assert_eq!(w.lines().count(), 2, "{w}");
}

#[test]
fn ignored_keys_with_a_yallmp_near_equivalent_say_so() {
    let c = load(
        "model_list:\n  - {model_name: a, litellm_params: {model: openai/a, rpm: 3}, model_info: {mode: chat}}\n",
    );
    let w = c.warnings.join("\n");
    assert!(
        w.lines()
            .any(|l| l.starts_with("model_list[0].model_info: ")
                && l.contains("only id, base_model and max_input_tokens are read")),
        "{w}"
    );
    // rpm is honoured: no warning.
    assert!(!w.contains("rpm"), "{w}");
}

#[test]
fn health_checks_skip_azure_and_cache_reads_a_string_true() {
    let c = Config::from_yaml(
        "model_list:\n  - {model_name: a, litellm_params: {model: openai/a}}\n  \
         - {model_name: z, litellm_params: {model: azure/dep, api_base: 'https://x.openai.azure.com', api_key: k}}\n\
         general_settings: {background_health_checks: true}\n\
         litellm_settings: {cache: os.environ/CACHE_ON, cache_params: {type: local}}\n",
        None,
        &env(&[("CACHE_ON", "True")]),
    )
    .unwrap();
    let hc = c.model("a").unwrap().backends[0]
        .routing
        .health_check
        .clone();
    assert_eq!(hc.unwrap().interval, Duration::from_secs(300));
    assert!(
        c.model("z").unwrap().backends[0]
            .routing
            .health_check
            .is_none()
    );
    let w = c.warnings.join("\n");
    assert!(w.contains("not applied to Azure backends"), "{w}");
    assert!(c.cache.enabled);
}

#[tokio::test]
async fn a_stream_holds_its_parallel_slot_until_it_ends() {
    let frames: Vec<String> = (0..4)
        .map(|i| chunk(&i.to_string()))
        .chain([DONE.to_string()])
        .collect();
    let slow = Mock::start(Reply::Sse {
        frames,
        gap: Duration::from_millis(150),
    })
    .await;
    let yaml = format!(
        "model_list:\n{}proxy_settings: {{rate_limits: {{max_parallel_requests: 1}}}}\n",
        entry("m", &slow, "")
    );
    let server = proxy(&yaml).await;
    let mut r = client()
        .post(format!("{}/v1/chat/completions", server.url()))
        .json(
            &json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _first = r.chunk().await.unwrap().unwrap();
    // Headers and a first event are out; the stream still holds the slot.
    let (s, _, _) = post(&server, "/v1/chat/completions", &chat("m")).await;
    assert_eq!(s, 429);
    while r.chunk().await.unwrap().is_some() {}
    drop(r);
    // The slot is released when the stream ends (its accounting, just after).
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let (s, _, _) = post(&server, "/v1/chat/completions", &chat("m")).await;
        if s == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn stream_timeout_bounds_streams_only() {
    let slow = Mock::start(Reply::Delay(
        Duration::from_millis(900),
        Box::new(Reply::Echo),
    ))
    .await;
    let yaml = format!(
        "model_list:\n{}",
        entry("m", &slow, ", stream_timeout: 0.3")
    );
    let c = Config::from_yaml(&yaml, None, &env(&[])).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let b = &c.model("m").unwrap().backends[0];
    assert_eq!(b.timeout_for(true), Duration::from_millis(300));
    assert_eq!(b.timeout_for(false), Duration::from_secs(30));
    let server = proxy(&yaml).await;
    // Not a stream: request_timeout (30 s) applies, the answer comes.
    let (s, _, _) = post(&server, "/v1/chat/completions", &chat("m")).await;
    assert_eq!(s, 200);
    // A stream: the headers must come within 0.3 s.
    let mut body = chat("m");
    body["stream"] = json!(true);
    let t = std::time::Instant::now();
    let (s, _, text) = post(&server, "/v1/chat/completions", &body).await;
    assert!(s >= 500, "{s} {text}");
    assert!(
        t.elapsed() < Duration::from_millis(850),
        "{:?}",
        t.elapsed()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn max_retries_is_a_backends_own_retries() {
    let a = Mock::start(Reply::Echo).await;
    a.push(Reply::Json(500, json!({"error": {"message": "boom"}})))
        .push(Reply::Json(503, json!({"error": {"message": "boom"}})));
    let b = Mock::start(Reply::Json(500, json!({"error": {"message": "down"}}))).await;
    let yaml = format!(
        "model_list:\n{}{}router_settings: {{num_retries: 0, retry_backoff_ms: 1}}\n",
        entry("a", &a, ", max_retries: 2"),
        entry("b", &b, "")
    );
    let c = Config::from_yaml(&yaml, None, &env(&[])).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let server = proxy(&yaml).await;
    let (status, backend, attempts) = ask(&server, "a").await;
    assert_eq!(
        (status, backend.as_str(), attempts.as_str()),
        (200, "a#1", "3")
    );
    // b has none of its own: the router's num_retries (0).
    let (status, _, attempts) = ask(&server, "b").await;
    assert_eq!((status, attempts.as_str()), (500, "1"));
    assert_eq!(b.count(), 1);
    server.shutdown().await;
}

#[test]
fn bedrock_region_name() {
    let c = load(
        r#"
model_list:
  - model_name: claude
    litellm_params:
      model: bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0
      aws_access_key_id: AKIDEXAMPLE
      aws_secret_access_key: secret
      region_name: eu-west-1
  - model_name: gpt
    litellm_params: {model: openai/gpt-4o, api_base: 'http://127.0.0.1:1/v1', region_name: eu-west-1}
"#,
    );
    let b = &c.model("claude").unwrap().backends[0];
    assert_eq!(
        b.api_base,
        "https://bedrock-runtime.eu-west-1.amazonaws.com"
    );
    // Not a Bedrock deployment: the key means nothing there, and says so.
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(c.warnings[0].contains("region_name"), "{:?}", c.warnings);
}

#[test]
fn otel_callbacks_turn_on_the_export() {
    let yaml = format!(
        "{MODELS}litellm_settings:\n  callbacks: [otel]\n  success_callback: [langfuse, otel]\n"
    );
    let c = Config::from_yaml(
        &yaml,
        None,
        &env(&[
            ("OTEL_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_HEADERS", "x-api-key=k1"),
        ]),
    )
    .unwrap();
    let t = &c.telemetry;
    assert!(t.enabled);
    assert_eq!(t.endpoint, "http://127.0.0.1:4318/v1/traces");
    assert_eq!(t.headers, vec![("x-api-key".to_string(), "k1".to_string())]);
    assert!(t.capture_content);
    // The other callback is named in its warning; otel twice is one export.
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(c.warnings[0].contains("`langfuse`"), "{:?}", c.warnings);

    // Langfuse's OTLP endpoint with its keys as Basic auth; no content when
    // LiteLLM's message logging is off.
    let yaml = format!(
        "{MODELS}litellm_settings:\n  callbacks: [langfuse_otel]\n  turn_off_message_logging: true\n"
    );
    let c = Config::from_yaml(
        &yaml,
        None,
        &env(&[
            ("LANGFUSE_HOST", "https://langfuse.example/"),
            ("LANGFUSE_PUBLIC_KEY", "pk"),
            ("LANGFUSE_SECRET_KEY", "sk"),
        ]),
    )
    .unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let t = &c.telemetry;
    assert!(t.enabled);
    assert!(!t.capture_content);
    assert_eq!(
        t.endpoint,
        "https://langfuse.example/api/public/otel/v1/traces"
    );
    // base64("pk:sk")
    assert_eq!(
        t.headers,
        vec![("Authorization".to_string(), "Basic cGs6c2s=".to_string())]
    );

    // Without a callback, nothing is turned on.
    assert!(!load(MODELS).telemetry.enabled);
}

/// LiteLLM's `environment_variables`: the config's own variables, seen by
/// its references and by the variables yallmp reads (here LiteLLM's
/// `REDIS_HOST`/`REDIS_PORT` for a Redis cache without a host); they win
/// over the process's, and a value may be a reference itself.
#[test]
fn environment_variables_are_the_configs_own() {
    let yaml = "environment_variables:\n  UPSTREAM: 'http://10.1.2.3:8000/v1'\n  KEY: os.environ/REAL_KEY\n  REDIS_HOST: redis.local\n  REDIS_PORT: 6390\n\
        model_list:\n  - {model_name: a, litellm_params: {model: openai/a, api_base: os.environ/UPSTREAM, api_key: os.environ/KEY}}\n\
        litellm_settings: {cache: true}\n";
    let c = Config::from_yaml(
        yaml,
        None,
        &env(&[("REAL_KEY", "sk-real"), ("UPSTREAM", "http://ignored/v1")]),
    )
    .unwrap();
    // Tests' overrides win over everything, so UPSTREAM here is the test's:
    // the config's own apply where nothing stronger sets them.
    let b = &c.model("a").unwrap().backends[0];
    assert_eq!(b.api_base, "http://ignored/v1");
    assert_eq!(b.api_key.as_ref().unwrap().expose(), "sk-real");
    assert_eq!(
        c.redis.as_ref().unwrap().url.expose(),
        "redis://redis.local:6390"
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let c = Config::from_yaml(yaml, None, &env(&[("REAL_KEY", "sk-real")])).unwrap();
    assert_eq!(
        c.model("a").unwrap().backends[0].api_base,
        "http://10.1.2.3:8000/v1"
    );
    // Not a map: an error.
    let e = Config::from_yaml("environment_variables: [A]\n", None, &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("environment_variables"), "{e}");
}

/// Fallbacks and cooldowns written under `litellm_settings` (as LiteLLM's
/// docs show them) are the router's; router_settings' own win.
#[test]
fn router_keys_under_litellm_settings() {
    let c = load(&format!(
        "{MODELS}litellm_settings:\n  fallbacks: [{{a: [b]}}]\n  context_window_fallbacks: [{{a: [b]}}]\n  allowed_fails: 7\n  cooldown_time: 9\nrouter_settings: {{cooldown_time: 2}}\n"
    ));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let a = c.model("a").unwrap();
    assert_eq!(a.fallbacks, ["b"]);
    assert_eq!(a.context_window_fallbacks, ["b"]);
    assert_eq!(c.router.allowed_fails, 7);
    assert_eq!(c.router.cooldown_time, Duration::from_secs(2));
}
