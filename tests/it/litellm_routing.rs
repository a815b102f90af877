//! LiteLLM's per-deployment keys at run time: `rpm`/`tpm` as a backend's
//! own limits (shared through Redis), `usage-based-routing-v2`,
//! `max_parallel_requests`, `model_info.id` as the backend's name,
//! `drop_params` / `additional_drop_params`, `custom_llm_provider`,
//! `routing_strategy_args`; and the fixtures of tests/fixtures/litellm that
//! exercise them, run against mock upstreams.

use std::time::Duration;

use serde_json::{Value, json};
use yallmp::config::{ApiType, Config, Env, RoutingStrategy};

use crate::support::redis::{redis_url, unique_prefix};
use crate::support::*;

fn env(vars: &[(&str, &str)]) -> Env {
    Env::isolated(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

/// Status, `x-yallmp-backend`, body.
async fn ask(
    server: &yallmp::Server,
    model: &str,
) -> (u16, String, String, reqwest::header::HeaderMap) {
    let (status, headers, body) = post(server, "/v1/chat/completions", &chat(model)).await;
    let backend = headers
        .get("x-yallmp-backend")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, backend, body, headers)
}

/// Per-minute counts are of the clock's minute: a test that counts waits
/// out the last seconds of a minute rather than straddle two.
async fn settle_minute() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let into = now.as_secs_f64() % 60.0;
    if into > 50.0 {
        tokio::time::sleep(Duration::from_secs_f64(60.5 - into)).await;
    }
}

/// A chat completion whose usage is `tokens` in all.
fn answer(tokens: u64) -> Reply {
    Reply::Json(
        200,
        json!({"id": "c", "object": "chat.completion", "created": 1, "model": "x",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": tokens - 1, "completion_tokens": 1, "total_tokens": tokens}}),
    )
}

fn deployment(name: &str, mock: &Mock, extra: &str) -> String {
    format!(
        "  - model_name: {name}\n    litellm_params: {{model: openai/{name}, api_base: '{}', api_key: k{extra}}}\n",
        mock.url
    )
}

#[tokio::test]
async fn rpm_limits_pass_a_backend_over_then_answer_429() {
    settle_minute().await;
    let a = Mock::start(Reply::Echo).await;
    let b = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n{}{}",
        deployment("m", &a, ", rpm: 2"),
        deployment("m", &b, ", rpm: 3"),
    );
    let c = Config::from_yaml(&yaml, None, &env(&[])).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let g = c.model("m").unwrap();
    assert_eq!(g.backends[0].limits.rpm, Some(2));
    assert_eq!(g.backends[1].limits.rpm, Some(3));
    // LiteLLM's simple-shuffle weighs deployments by rpm.
    assert_eq!(g.backends[0].routing.weight, 2.0);
    let server = proxy(&yaml).await;
    for _ in 0..5 {
        let (status, _, body, _) = ask(&server, "m").await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!((a.count(), b.count()), (2, 3));
    let (status, _, body, headers) = ask(&server, "m").await;
    assert_eq!(status, 429, "{body}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "backend_rate_limited", "{body}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("at its rpm limit"), "{msg}");
    assert!(msg.contains("m#1") && msg.contains("m#2"), "{msg}");
    // Nothing more reached the upstreams.
    assert_eq!((a.count(), b.count()), (2, 3));
    let m = metrics_text(&server).await;
    assert!(
        metric_value(
            &m,
            "yallmp_backend_limited_total",
            &[("backend", "m#2"), ("limit", "rpm")]
        )
        .is_some_and(|v| v >= 1.0),
        "{m}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn tpm_limits_count_the_answers_tokens() {
    settle_minute().await;
    let a = Mock::start(answer(40)).await;
    let b = Mock::start(answer(40)).await;
    let yaml = format!(
        "model_list:\n  - model_name: t\n    litellm_params: {{model: openai/t, api_base: '{}', api_key: k}}\n    tpm: 50\n    model_info: {{id: first}}\n  - model_name: t\n    litellm_params: {{model: openai/t, api_base: '{}', api_key: k, tpm: 30}}\nrouter_settings: {{routing_strategy: ordered}}\n",
        a.url, b.url
    );
    let c = Config::from_yaml(&yaml, None, &env(&[])).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.model("t").unwrap().backends[0].limits.tpm, Some(50));
    assert_eq!(c.model("t").unwrap().backends[0].name, "first");
    let server = proxy(&yaml).await;
    // 40 of 50: `first` still has room; 80: full, `t#2` takes over; then
    // it is full too (40 of 30).
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (status, backend, body, _) = ask(&server, "t").await;
        assert_eq!(status, 200, "{body}");
        seen.push(backend);
    }
    assert_eq!(seen, ["first", "first", "t#2"]);
    let (status, _, body, _) = ask(&server, "t").await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("at its tpm limit"), "{body}");
    server.shutdown().await;
}

#[tokio::test]
async fn usage_based_routing_prefers_the_backend_with_the_fewest_tokens() {
    settle_minute().await;
    let heavy = Mock::start(answer(100)).await;
    let light = Mock::start(answer(10)).await;
    let yaml = format!(
        "model_list:\n{}{}router_settings: {{routing_strategy: usage-based-routing-v2}}\n",
        deployment("u", &heavy, ""),
        deployment("u", &light, ""),
    );
    let c = Config::from_yaml(&yaml, None, &env(&[])).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.router.strategy, RoutingStrategy::UsageBased);
    let server = proxy(&yaml).await;
    for _ in 0..8 {
        let (status, _, body, _) = ask(&server, "u").await;
        assert_eq!(status, 200, "{body}");
    }
    // The first pick is free; after it the heavy one (100 tokens) waits
    // until the light one has used more (ten of its answers).
    assert!(heavy.count() <= 1, "{} {}", heavy.count(), light.count());
    assert_eq!(heavy.count() + light.count(), 8);
    server.shutdown().await;
}

#[tokio::test]
async fn rpm_limits_hold_across_instances_through_redis() {
    let Some(url) = redis_url().await else {
        return;
    };
    settle_minute().await;
    let a = Mock::start(Reply::Echo).await;
    let prefix = unique_prefix();
    let yaml = format!(
        "model_list:\n{}router_settings:\n  redis_url: {url}\nproxy_settings:\n  redis_key_prefix: \"{prefix}\"\n",
        deployment("r", &a, ", rpm: 3"),
    );
    let one = proxy(&yaml).await;
    let two = proxy(&yaml).await;
    let mut ok = 0;
    let mut limited = 0;
    for i in 0..6 {
        let server = if i % 2 == 0 { &one } else { &two };
        match ask(server, "r").await.0 {
            200 => ok += 1,
            429 => limited += 1,
            s => panic!("status {s}"),
        }
    }
    // Three in all, not three each.
    assert_eq!((ok, limited), (3, 3));
    assert_eq!(a.count(), 3);
    one.shutdown().await;
    two.shutdown().await;
}

#[tokio::test]
async fn max_parallel_requests_per_deployment() {
    let slow = Mock::start(Reply::Delay(
        Duration::from_millis(800),
        Box::new(Reply::Echo),
    ))
    .await;
    let other = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n{}{}router_settings: {{routing_strategy: ordered}}\n",
        deployment("p", &slow, ", max_parallel_requests: 1, order: 1"),
        deployment("p", &other, ", order: 2"),
    );
    let c = Config::from_yaml(&yaml, None, &env(&[])).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let server = proxy(&yaml).await;
    let first = async { ask(&server, "p").await };
    let second = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ask(&server, "p").await
    };
    let ((s1, b1, _, _), (s2, b2, _, _)) = tokio::join!(first, second);
    assert_eq!((s1, b1.as_str()), (200, "p#1"));
    // p#1 has its one request in flight: the second goes to p#2.
    assert_eq!((s2, b2.as_str()), (200, "p#2"));
    assert_eq!((slow.count(), other.count()), (1, 1));
    server.shutdown().await;

    // general_settings.max_parallel_requests: every deployment's default.
    // With no other deployment free, a request waits for a place (as
    // LiteLLM's semaphore), within the backend's request_timeout.
    let slow = Mock::start(Reply::Delay(
        Duration::from_millis(1200),
        Box::new(Reply::Echo),
    ))
    .await;
    let yaml = format!(
        "model_list:\n{}general_settings: {{max_parallel_requests: 1}}\n",
        deployment("q", &slow, ", timeout: 2"),
    );
    let c = Config::from_yaml(&yaml, None, &env(&[])).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(
        c.model("q").unwrap().backends[0].limits.max_parallel,
        Some(1)
    );
    let server = proxy(&yaml).await;
    let after = |ms: u64| {
        let s = &server;
        async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let (status, _, body, headers) = ask(s, "q").await;
            (status, body, headers)
        }
    };
    let (a, b, c) = tokio::join!(after(0), after(100), after(200));
    let mut statuses = [a.0, b.0, c.0];
    statuses.sort();
    // Two in turn; the third waited past its 2 s and is refused.
    assert_eq!(statuses, [200, 200, 429], "{} {} {}", a.1, b.1, c.1);
    let refused = [a, b, c].into_iter().find(|r| r.0 == 429).unwrap();
    assert!(refused.1.contains("max_parallel_requests"), "{}", refused.1);
    assert_eq!(refused.2["retry-after"], "1");
    // Never two at once upstream.
    let hits = slow.hits();
    assert_eq!(hits.len(), 2);
    assert!(hits[1].at.duration_since(hits[0].at) >= Duration::from_millis(1100));
    server.shutdown().await;
}

#[tokio::test]
async fn model_info_id_names_the_backend_everywhere() {
    let a = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n  - model_name: n\n    litellm_params: {{model: openai/n, api_base: '{}', api_key: k}}\n    model_info: {{id: 'eu-deployment-1'}}\n  - model_name: alias\n    litellm_params: {{model: openai/n, api_base: '{}', api_key: k}}\n    model_info: {{id: 7}}\n",
        a.url, a.url
    );
    let c = Config::from_yaml(&yaml, None, &env(&[])).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.model("alias").unwrap().backends[0].name, "7");
    let server = proxy(&yaml).await;
    let (status, backend, _, _) = ask(&server, "n").await;
    assert_eq!((status, backend.as_str()), (200, "eu-deployment-1"));
    let health = get_json(&server, "/health").await;
    assert!(health.to_string().contains("eu-deployment-1"), "{health}");
    server.shutdown().await;

    // Two deployments with one id: refused, naming it.
    let dup = format!(
        "model_list:\n  - model_name: n\n    litellm_params: {{model: openai/n, api_base: '{}'}}\n    model_info: {{id: same}}\n  - model_name: o\n    litellm_params: {{model: openai/o, api_base: '{}'}}\n    model_info: {{id: same}}\n",
        a.url, a.url
    );
    let e = Config::from_yaml(&dup, None, &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("two backends are named `same`"), "{e}");
    // A model_group_alias copies the deployments, not their ids.
    let alias = format!(
        "model_list:\n  - model_name: n\n    litellm_params: {{model: openai/n, api_base: '{}'}}\n    model_info: {{id: only}}\nrouter_settings: {{model_group_alias: {{gpt-4: n}}}}\n",
        a.url
    );
    let c = Config::from_yaml(&alias, None, &env(&[])).unwrap();
    assert_eq!(c.model("gpt-4").unwrap().backends[0].name, "gpt-4#1");
}

#[tokio::test]
async fn drop_params_false_refuses_and_additional_drop_params_strip() {
    let openai = Mock::start(Reply::Echo).await;
    let anthropic = Mock::start(Reply::Json(
        200,
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "c",
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 1, "output_tokens": 1}}),
    ))
    .await;
    let yaml = format!(
        "model_list:\n  - model_name: strict\n    litellm_params: {{model: anthropic/claude, api_base: '{}', api_key: k}}\n  - model_name: lax\n    litellm_params: {{model: anthropic/claude, api_base: '{}', api_key: k, drop_params: true}}\n  - model_name: trimmed\n    litellm_params: {{model: openai/t, api_base: '{}', api_key: k, additional_drop_params: [user, seed]}}\nlitellm_settings: {{drop_params: false}}\n",
        anthropic.url, anthropic.url, openai.url
    );
    let c = Config::from_yaml(&yaml, None, &env(&[])).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(c.model("strict").unwrap().backends[0].drop.refuse);
    assert!(!c.model("lax").unwrap().backends[0].drop.refuse);
    let server = proxy(&yaml).await;
    let body = json!({"model": "strict", "messages": [{"role": "user", "content": "hi"}],
        "logit_bias": {"50256": -100}});
    let (status, _, text) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("logit_bias") && text.contains("drop_params: false"),
        "{text}"
    );
    assert_eq!(anthropic.count(), 0);
    let mut body = body;
    body["model"] = json!("lax");
    let (status, _, text) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(anthropic.count(), 1);
    assert!(anthropic.hits()[0].json().get("logit_bias").is_none());

    let body = json!({"model": "trimmed", "messages": [{"role": "user", "content": "hi"}],
        "user": "u-1", "seed": 4, "temperature": 0.5});
    let (status, _, text) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{text}");
    let sent = openai.hits()[0].json();
    assert!(
        sent.get("user").is_none() && sent.get("seed").is_none(),
        "{sent}"
    );
    assert_eq!(sent["temperature"], 0.5);
    server.shutdown().await;
}

#[test]
fn custom_llm_provider_and_routing_strategy_args() {
    let yaml = "model_list:\n  - model_name: c\n    litellm_params: {model: claude-sonnet-4-5, custom_llm_provider: anthropic, api_key: k}\n  - model_name: d\n    litellm_params: {model: gpt-4o, custom_llm_provider: azure, api_base: 'https://x.openai.azure.com', api_key: k}\nrouter_settings:\n  routing_strategy: latency-based-routing\n  routing_strategy_args: {lowest_latency_buffer: 0.5, ttl: 10}\n";
    let c = Config::from_yaml(yaml, None, &env(&[])).unwrap();
    // custom_llm_provider wins over a prefix naming another provider, and
    // the model then goes as written (LiteLLM's rule).
    let v = Config::from_yaml(
        "model_list:\n  - model_name: v\n    litellm_params: {model: openai/gpt-oss-120b, custom_llm_provider: hosted_vllm, api_base: 'http://10.0.0.9:8000/v1'}\n  - model_name: w\n    litellm_params: {model: anthropic/claude-x, custom_llm_provider: anthropic, api_key: k}\n",
        None,
        &env(&[]),
    )
    .unwrap();
    let vb = &v.model("v").unwrap().backends[0];
    assert_eq!(vb.api_type, ApiType::Openai);
    assert_eq!(vb.upstream_model.as_deref(), Some("openai/gpt-oss-120b"));
    let wb = &v.model("w").unwrap().backends[0];
    assert_eq!(wb.upstream_model.as_deref(), Some("claude-x"));
    let b = &c.model("c").unwrap().backends[0];
    assert_eq!(b.api_type, ApiType::Anthropic);
    assert_eq!(b.api_base, "https://api.anthropic.com");
    assert_eq!(b.upstream_model.as_deref(), Some("claude-sonnet-4-5"));
    let d = &c.model("d").unwrap().backends[0];
    assert_eq!(d.api_type, ApiType::Azure);
    assert_eq!(d.azure.as_ref().unwrap().deployment, "gpt-4o");
    assert_eq!(c.router.latency_buffer, 0.5);
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(
        c.warnings[0].contains("routing_strategy_args.ttl"),
        "{:?}",
        c.warnings
    );
    let e = Config::from_yaml(
        "model_list:\n  - model_name: c\n    litellm_params: {model: x, custom_llm_provider: antropic, api_key: k}\n",
        None,
        &env(&[]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("did you mean `anthropic`"), "{e}");
}

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/litellm")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

/// tests/fixtures/litellm/multi_deployment_rpm_tpm.yaml against mock
/// upstreams (Azure's and OpenAI's URL layouts), through the real Redis:
/// usage-based routing spreads the requests, each deployment takes its rpm,
/// and the seventh request of the minute gets 429.
#[tokio::test]
async fn fixture_multi_deployment_rpm_tpm_runs_as_configured() {
    let Some(url) = redis_url().await else {
        return;
    };
    let parsed = reqwest::Url::parse(&url).unwrap();
    let host = parsed.host_str().unwrap().to_string();
    let port = parsed.port().unwrap_or(6379).to_string();
    settle_minute().await;
    let azure = Mock::start(answer(5)).await;
    let openai = Mock::start(answer(5)).await;
    let azure_base = azure.url.trim_end_matches("/v1").to_string();
    let vars = [
        ("AZURE_API_BASE", azure_base.as_str()),
        ("AZURE_API_KEY", "k-az"),
        ("OPENAI_API_BASE", openai.url.as_str()),
        ("OPENAI_API_KEY", "k-oa"),
        ("REDIS_HOST", host.as_str()),
        ("REDIS_PORT", port.as_str()),
    ];
    let server = proxy_with_env(&fixture("multi_deployment_rpm_tpm.yaml"), &vars).await;
    let mut backends = Vec::new();
    for _ in 0..6 {
        let (status, backend, body, _) = ask(&server, "gpt-3.5-turbo").await;
        assert_eq!(status, 200, "{body}");
        backends.push(backend);
    }
    backends.sort();
    assert_eq!(
        backends,
        [
            "azure-chatgpt-v-2",
            "azure-chatgpt-v-2",
            "gpt-3.5-turbo#2",
            "gpt-3.5-turbo#2",
            "gpt-3.5-turbo#3",
            "gpt-3.5-turbo#3"
        ]
    );
    let paths: Vec<String> = azure.hits().iter().map(|h| h.path.clone()).collect();
    assert_eq!(
        paths
            .iter()
            .filter(|p| p.contains("/openai/deployments/chatgpt-v-2/chat/completions"))
            .count(),
        2,
        "{paths:?}"
    );
    assert_eq!(openai.count(), 2);
    let (status, _, body, _) = ask(&server, "gpt-3.5-turbo").await;
    assert_eq!(status, 429, "{body}");
    server.shutdown().await;
}

/// tests/fixtures/litellm/wildcard_routing.yaml: `anthropic/*` and
/// `openai/*` send the matched name to their provider; the exact entry
/// wins over the wildcard.
#[tokio::test]
async fn fixture_wildcard_routing_runs_as_configured() {
    let anthropic = Mock::start(Reply::Json(
        200,
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "c",
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 1, "output_tokens": 1}}),
    ))
    .await;
    let openai = Mock::start(Reply::Echo).await;
    let anthropic_base = anthropic.url.trim_end_matches("/v1").to_string();
    let vars = [
        ("ANTHROPIC_API_BASE", anthropic_base.as_str()),
        ("ANTHROPIC_API_KEY", "k-an"),
        ("OPENAI_API_BASE", openai.url.as_str()),
        ("OPENAI_API_KEY", "k-oa"),
    ];
    let server = proxy_with_env(&fixture("wildcard_routing.yaml"), &vars).await;
    let (status, backend, body, _) = ask(&server, "anthropic/claude-sonnet-4-5").await;
    assert_eq!((status, backend.as_str()), (200, "anthropic/*#1"), "{body}");
    let sent = anthropic.hits()[0].json();
    assert_eq!(sent["model"], "claude-sonnet-4-5");
    assert!(anthropic.hits()[0].path.ends_with("/v1/messages"));
    let (status, backend, _, _) = ask(&server, "openai/gpt-4.1-mini").await;
    assert_eq!((status, backend.as_str()), (200, "openai/*#1"));
    assert_eq!(openai.hits()[0].json()["model"], "gpt-4.1-mini");
    let (status, backend, _, _) = ask(&server, "openai/gpt-4o").await;
    assert_eq!((status, backend.as_str()), (200, "openai/gpt-4o#1"));
    assert_eq!(openai.hits()[1].json()["model"], "gpt-4o-2024-08-06");
    // No wildcard for it: 404 in OpenAI's shape.
    let (status, _, _, _) = ask(&server, "groq/llama").await;
    assert_eq!(status, 404);
    server.shutdown().await;
}

/// A proxy on port 0 for a fixture, with its variables.
async fn fixture_proxy(name: &str, vars: &[(&str, &str)]) -> yallmp::Server {
    let mut config = Config::from_yaml(&fixture(name), None, &env(vars))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    config.server.host = "127.0.0.1".into();
    config.server.port = 0;
    isolate_logs(&mut config);
    yallmp::serve(config).await.unwrap()
}

/// tests/fixtures/litellm/redis_cache.yaml through the real Redis: the
/// second identical request is answered from LiteLLM's Redis cache
/// (namespace `litellm.caching`), without reaching the upstream.
#[tokio::test]
async fn fixture_redis_cache_runs_as_configured() {
    let Some(url) = redis_url().await else {
        return;
    };
    let parsed = reqwest::Url::parse(&url).unwrap();
    let host = parsed.host_str().unwrap().to_string();
    let port = parsed.port().unwrap_or(6379).to_string();
    let password = parsed.password().unwrap_or("").to_string();
    let openai = Mock::start(Reply::Echo).await;
    let vars = [
        ("OPENAI_API_BASE", openai.url.as_str()),
        ("OPENAI_API_KEY", "k-oa"),
        ("ANTHROPIC_API_BASE", "http://127.0.0.1:9"),
        ("ANTHROPIC_API_KEY", "k-an"),
        ("REDIS_HOST", host.as_str()),
        ("REDIS_PORT", port.as_str()),
        ("REDIS_PASSWORD", password.as_str()),
    ];
    let server = fixture_proxy("redis_cache.yaml", &vars).await;
    // A question of its own: an earlier run's cached answer is not this one's.
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user",
        "content": format!("cache me {}", uuid::Uuid::new_v4())}]});
    let (s1, h1, b1) = post(&server, "/v1/chat/completions", &body).await;
    let (s2, h2, b2) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!((s1, s2), (200, 200), "{b1} {b2}");
    assert_eq!(openai.count(), 1, "the second came from the cache");
    assert_eq!(h1["x-yallmp-cache"], "miss");
    assert_eq!(h2["x-yallmp-cache"], "hit");
    let a: Value = serde_json::from_str(&b1).unwrap();
    let b: Value = serde_json::from_str(&b2).unwrap();
    assert_eq!(a["choices"], b["choices"]);
    // The entry is in Redis under LiteLLM's namespace.
    let client = ::redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("litellm.caching:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    server.shutdown().await;
}

/// tests/fixtures/litellm/database_master_key.yaml on a fresh PostgreSQL
/// database: the master key is required, the backend is named by its
/// `model_info.id`, priced by its `base_model`, and the request reaches the
/// database's spend log.
#[tokio::test]
async fn fixture_database_master_key_runs_as_configured() {
    crate::support::pg::with_fresh_database(|db| async move {
        let openai = Mock::start(Reply::Echo).await;
        let vars = [
            ("OPENAI_API_BASE", openai.url.as_str()),
            ("OPENAI_API_KEY", "k-oa"),
            ("LITELLM_MASTER_KEY", "sk-fixture-master"),
            ("DATABASE_URL", db.as_str()),
        ];
        let server = fixture_proxy("database_master_key.yaml", &vars).await;
        let (status, _, _) = post(&server, "/v1/chat/completions", &chat("gpt-4o")).await;
        assert_eq!(status, 401, "the master key is required");
        let url = format!("http://{}/v1/chat/completions", server.addr());
        let r = client()
            .post(&url)
            .bearer_auth("sk-fixture-master")
            .json(&chat("gpt-4o"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-yallmp-backend"], "gpt-4o-primary");
        let spend_url = format!("http://{}/spend/logs", server.addr());
        let mut rows = Vec::new();
        for _ in 0..200 {
            let v: Value = client()
                .get(&spend_url)
                .bearer_auth("sk-fixture-master")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            rows = v.as_array().cloned().unwrap_or_default();
            if !rows.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0]["model"], "gpt-4o");
        // gpt-4o's catalog price (base_model) for 3 + 2 tokens: above zero.
        assert!(rows[0]["spend"].as_f64().unwrap() > 0.0, "{}", rows[0]);
        server.shutdown().await;
    })
    .await;
}

/// azure_openai_fallbacks.yaml with its two Azure deployments and OpenAI
/// at these mocks.
async fn azure_fixture_proxy(eu: &Mock, us: &Mock, openai: &Mock) -> yallmp::Server {
    let eu_base = eu.url.trim_end_matches("/v1");
    let us_base = us.url.trim_end_matches("/v1");
    let vars = [
        ("AZURE_API_BASE_EU", eu_base),
        ("AZURE_API_KEY_EU", "k-eu"),
        ("AZURE_API_BASE_US", us_base),
        ("AZURE_API_KEY_US", "k-us"),
        ("OPENAI_API_BASE", openai.url.as_str()),
        ("OPENAI_API_KEY", "k-oa"),
    ];
    fixture_proxy("azure_openai_fallbacks.yaml", &vars).await
}

/// tests/fixtures/litellm/azure_openai_fallbacks.yaml: a context-window
/// error at an Azure deployment goes straight to the model's
/// `context_window_fallbacks`; 5xx everywhere use the retries (`num_retries:
/// 2`, so three attempts at each Azure deployment) and then `fallbacks`.
#[tokio::test]
async fn fixture_azure_openai_fallbacks_runs_as_configured() {
    let too_long = json!({"error": {"message": "This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}});
    let eu = Mock::start(Reply::Json(400, too_long.clone())).await;
    let us = Mock::start(Reply::Json(400, too_long)).await;
    let openai = Mock::start(Reply::Echo).await;
    let server = azure_fixture_proxy(&eu, &us, &openai).await;
    // The alias `gpt-4` is `gpt-4o` with the same fallbacks by name.
    let (status, backend, body, headers) = ask(&server, "gpt-4o").await;
    assert_eq!(
        (status, backend.as_str()),
        (200, "gpt-4o-openai#1"),
        "{body}"
    );
    assert_eq!(headers["x-yallmp-attempts"], "2");
    assert_eq!(
        eu.count() + us.count(),
        1,
        "no retry of a context-window error"
    );
    assert_eq!(openai.hits()[0].json()["model"], "gpt-4o");
    server.shutdown().await;

    // 5xx: retried at both deployments, then the fallback.
    let eu = Mock::start(Reply::Json(500, json!({"error": {"message": "boom"}}))).await;
    let us = Mock::start(Reply::Json(503, json!({"error": {"message": "busy"}}))).await;
    let server = azure_fixture_proxy(&eu, &us, &openai).await;
    let (status, backend, body, headers) = ask(&server, "gpt-4").await;
    assert_eq!(
        (status, backend.as_str()),
        (200, "gpt-4o-openai#1"),
        "{body}"
    );
    assert_eq!((eu.count(), us.count()), (3, 3));
    assert_eq!(headers["x-yallmp-attempts"], "7");
    let h = &eu.hits()[0];
    assert_eq!(h.path, "/openai/deployments/gpt-4o-eu/chat/completions");
    assert_eq!(h.query, "api-version=2024-10-21");
    assert_eq!(h.headers["api-key"], "k-eu");
    server.shutdown().await;
}

/// tests/fixtures/litellm/single_provider.yaml: `num_retries: 3` gives a
/// failing deployment four attempts; the names go upstream without their
/// provider prefix; embeddings route like chat.
#[tokio::test]
async fn fixture_single_provider_runs_as_configured() {
    let openai = Mock::start(Reply::Echo).await;
    for _ in 0..3 {
        openai.push(Reply::Json(500, json!({"error": {"message": "boom"}})));
    }
    let vars = [
        ("OPENAI_API_BASE", openai.url.as_str()),
        ("OPENAI_API_KEY", "k-oa"),
    ];
    let server = fixture_proxy("single_provider.yaml", &vars).await;
    let (status, backend, body, headers) = ask(&server, "gpt-4o").await;
    assert_eq!((status, backend.as_str()), (200, "gpt-4o#1"), "{body}");
    assert_eq!(headers["x-yallmp-attempts"], "4");
    assert_eq!(openai.count(), 4);
    assert_eq!(openai.hits()[3].json()["model"], "gpt-4o");
    assert_eq!(openai.hits()[3].headers["authorization"], "Bearer k-oa");
    let (status, _, text) = post(
        &server,
        "/v1/embeddings",
        &json!({"model": "text-embedding-3-small", "input": "hi"}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let hit = openai.hits().last().cloned().unwrap();
    assert_eq!(hit.path, "/v1/embeddings");
    assert_eq!(hit.json()["model"], "text-embedding-3-small");
    server.shutdown().await;
}

/// A `model_group_alias` reaches the same deployment: its `rpm` counts
/// once for the model and the alias together (LiteLLM resolves the alias
/// to the same deployment).
#[tokio::test]
async fn an_alias_shares_its_targets_limits() {
    settle_minute().await;
    let a = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n{}router_settings: {{model_group_alias: {{gpt-4: m}}}}\n",
        deployment("m", &a, ", rpm: 2"),
    );
    let c = Config::from_yaml(&yaml, None, &env(&[])).unwrap();
    let alias = &c.model("gpt-4").unwrap().backends[0];
    assert_eq!(alias.limits.from.as_deref(), Some("m#1"));
    let server = proxy(&yaml).await;
    assert_eq!(ask(&server, "m").await.0, 200);
    assert_eq!(ask(&server, "gpt-4").await.0, 200);
    let (status, _, body, _) = ask(&server, "gpt-4").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(ask(&server, "m").await.0, 429);
    assert_eq!(a.count(), 2);
    server.shutdown().await;
}

/// `drop_params: false` refuses at that backend only: another backend of
/// the model that takes the field answers.
#[tokio::test]
async fn a_strict_backend_passes_the_request_on() {
    let anthropic = Mock::start(Reply::Echo).await;
    let openai = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n  - model_name: m\n    litellm_params: {{model: anthropic/c, api_base: '{}', api_key: k, drop_params: false, order: 1}}\n  - model_name: m\n    litellm_params: {{model: openai/o, api_base: '{}', api_key: k, order: 2}}\nrouter_settings: {{routing_strategy: ordered}}\n",
        anthropic.url, openai.url
    );
    let server = proxy(&yaml).await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "logit_bias": {"50256": -100}});
    let (status, headers, text) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["x-yallmp-backend"], "m#2");
    assert_eq!(anthropic.count(), 0);
    assert_eq!(openai.hits()[0].json()["logit_bias"]["50256"], -100);
    server.shutdown().await;
}

/// `temperature` and `top_p` in `litellm_params` are the deployment's
/// request defaults (names every dialect shares): sent when the request
/// leaves them out, the request's own win. `max_tokens`, `seed`, … are warned: their
/// names differ between dialects, and `parameters` are written after the
/// translation.
#[tokio::test]
async fn litellm_params_completion_arguments_are_defaults() {
    let a = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n{}",
        deployment(
            "d",
            &a,
            ", temperature: 0.1, top_p: 0.5, max_tokens: 50, seed: 7"
        ),
    );
    let c = Config::from_yaml(&yaml, None, &env(&[])).unwrap();
    let w = c.warnings.join("\n");
    assert_eq!(c.warnings.len(), 2, "{w}");
    assert!(
        w.contains("litellm_params.max_tokens") && w.contains("litellm_params.seed"),
        "{w}"
    );
    let server = proxy(&yaml).await;
    assert_eq!(ask(&server, "d").await.0, 200);
    let sent = a.hits()[0].json();
    assert_eq!(sent["temperature"].as_f64(), Some(0.1));
    assert_eq!(sent["top_p"].as_f64(), Some(0.5));
    assert!(
        sent.get("max_tokens").is_none() && sent.get("seed").is_none(),
        "{sent}"
    );
    let body =
        json!({"model": "d", "temperature": 0.9, "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, _) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200);
    assert_eq!(a.hits()[1].json()["temperature"].as_f64(), Some(0.9));
    server.shutdown().await;
}

#[test]
fn store_model_in_db_is_what_postgresql_does() {
    let base = "model_list:\n  - {model_name: a, litellm_params: {model: openai/a, api_base: 'http://x/v1'}}\n";
    let pg = Config::from_yaml(
        &format!("{base}general_settings: {{store_model_in_db: true, database_url: 'postgresql://u@db/x'}}\n"),
        None,
        &env(&[]),
    )
    .unwrap();
    assert!(pg.warnings.is_empty(), "{:?}", pg.warnings);
    let file = Config::from_yaml(
        &format!("{base}general_settings: {{store_model_in_db: true}}\n"),
        None,
        &env(&[]),
    )
    .unwrap();
    assert_eq!(file.warnings.len(), 1, "{:?}", file.warnings);
    assert!(
        file.warnings[0].contains("overlay file"),
        "{:?}",
        file.warnings
    );
}

/// `enable_pre_call_checks` with `model_info.max_input_tokens`: a request
/// over a deployment's context window is not sent to it; when no
/// deployment of the model takes it, the context-window fallbacks do, and
/// without one the client hears a context-window error, with no upstream
/// call at all.
#[tokio::test]
async fn pre_call_checks_keep_requests_within_context_windows() {
    let small = Mock::start(Reply::Echo).await;
    let large = Mock::start(Reply::Echo).await;
    let big = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n  - model_name: m\n    litellm_params: {{model: openai/s, api_base: '{}', api_key: k}}\n    model_info: {{max_input_tokens: 20}}\n  - model_name: m\n    litellm_params: {{model: openai/l, api_base: '{}', api_key: k}}\n    model_info: {{max_input_tokens: 200}}\n  - model_name: only-small\n    litellm_params: {{model: openai/s, api_base: '{}', api_key: k, max_input_tokens: 20}}\n  - model_name: no-fallback\n    litellm_params: {{model: openai/s, api_base: '{}', api_key: k, max_input_tokens: 20}}\n  - model_name: huge\n    litellm_params: {{model: openai/h, api_base: '{}', api_key: k}}\nrouter_settings:\n  enable_pre_call_checks: true\n  context_window_fallbacks: [{{only-small: [huge]}}]\n",
        small.url, large.url, small.url, small.url, big.url
    );
    let c = Config::from_yaml(&yaml, None, &env(&[])).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(c.router.pre_call_checks);
    assert_eq!(
        c.model("m").unwrap().backends[0].limits.max_input_tokens,
        Some(20)
    );
    let server = proxy(&yaml).await;
    // About 100 tokens (400 characters): over 20, within 200.
    let long = "word ".repeat(80);
    let body =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": long}]});
    for _ in 0..4 {
        let (status, headers, text) = post(&server, "/v1/chat/completions", &body("m")).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(headers["x-yallmp-backend"], "m#2");
    }
    assert_eq!(small.count(), 0);
    assert_eq!(large.count(), 4);
    // No deployment of `only-small` takes it: its context-window fallback.
    let (status, headers, text) = post(&server, "/v1/chat/completions", &body("only-small")).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["x-yallmp-backend"], "huge#1");
    assert_eq!((small.count(), big.count()), (0, 1));
    // No fallback: the context-window error, in OpenAI's shape.
    let (status, _, text) = post(&server, "/v1/chat/completions", &body("no-fallback")).await;
    assert_eq!(status, 400, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], "context_length_exceeded", "{text}");
    assert_eq!(small.count(), 0);
    // A short request fits the small one too.
    let (status, _, _) = post(&server, "/v1/chat/completions", &chat("no-fallback")).await;
    assert_eq!(status, 200);
    assert_eq!(small.count(), 1);
    server.shutdown().await;

    // Without the switch, the window is not checked.
    let off = yaml.replace("  enable_pre_call_checks: true\n", "");
    let server = proxy(&off).await;
    let (status, _, _) = post(&server, "/v1/chat/completions", &body("no-fallback")).await;
    assert_eq!(status, 200);
    assert_eq!(small.count(), 2);
    server.shutdown().await;
}

/// A context-window pass-over never hides what else happened: a backend
/// that fits but is at its rpm makes the answer 429, not a context-window
/// error; and a busy backend that fits is waited for even when the backend
/// passed over for its window comes after it in the order.
#[tokio::test]
async fn window_pass_overs_rank_below_limits_and_busy_backends() {
    settle_minute().await;
    let small = Mock::start(Reply::Echo).await;
    let fits = Mock::start(Reply::Echo).await;
    let slow = Mock::start(Reply::Delay(
        Duration::from_millis(600),
        Box::new(Reply::Echo),
    ))
    .await;
    let yaml = format!(
        "model_list:\n  - model_name: mixed\n    litellm_params: {{model: openai/s, api_base: '{}', api_key: k, max_input_tokens: 20, order: 1}}\n  - model_name: mixed\n    litellm_params: {{model: openai/f, api_base: '{}', api_key: k, rpm: 1, order: 2}}\n  - model_name: busy\n    litellm_params: {{model: openai/b, api_base: '{}', api_key: k, max_parallel_requests: 1, timeout: 5, order: 1}}\n  - model_name: busy\n    litellm_params: {{model: openai/s, api_base: '{}', api_key: k, max_input_tokens: 20, order: 2}}\nrouter_settings:\n  enable_pre_call_checks: true\n  routing_strategy: ordered\n",
        small.url, fits.url, slow.url, small.url
    );
    let server = proxy(&yaml).await;
    let long = "word ".repeat(80);
    let body =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": long}]});
    let (status, headers, text) = post(&server, "/v1/chat/completions", &body("mixed")).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["x-yallmp-backend"], "mixed#2");
    let (status, _, text) = post(&server, "/v1/chat/completions", &body("mixed")).await;
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("rpm limit"), "{text}");
    assert_eq!(small.count(), 0);

    // busy#1 is taken by the first request; the second passes it over
    // (another backend is left), finds busy#2 too small, and then waits.
    let first = async { post(&server, "/v1/chat/completions", &body("busy")).await };
    let second = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        post(&server, "/v1/chat/completions", &body("busy")).await
    };
    let ((s1, h1, _), (s2, h2, t2)) = tokio::join!(first, second);
    assert_eq!((s1, s2), (200, 200), "{t2}");
    assert_eq!(
        (&h1["x-yallmp-backend"], &h2["x-yallmp-backend"]),
        (&"busy#1".parse().unwrap(), &"busy#1".parse().unwrap())
    );
    assert_eq!(slow.count(), 2);
    assert_eq!(small.count(), 0);
    server.shutdown().await;
}

/// Embeddings are not held to a context window (the limit is per input,
/// and a batch is many): the pre-call check leaves them alone.
#[tokio::test]
async fn pre_call_checks_leave_embeddings_alone() {
    let a = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n  - model_name: e\n    litellm_params: {{model: openai/e, api_base: '{}', api_key: k, max_input_tokens: 10}}\nrouter_settings: {{enable_pre_call_checks: true}}\n",
        a.url
    );
    let server = proxy(&yaml).await;
    let inputs: Vec<String> = (0..20)
        .map(|i| format!("sentence number {i} of the batch"))
        .collect();
    let (status, _, text) = post(
        &server,
        "/v1/embeddings",
        &json!({"model": "e", "input": inputs}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(a.count(), 1);
    server.shutdown().await;
}
