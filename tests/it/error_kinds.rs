//! Upstream failures told apart by kind (LiteLLM's router_settings keys):
//! `context_window_fallbacks` and `content_policy_fallbacks` taken on the
//! providers' real errors, `retry_policy` counts seen as upstream hits,
//! `allowed_fails_policy` cooling a backend (and sharing its per-kind count
//! through Redis). Mock upstreams and the real proxy, over HTTP.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::logged::{attempts, logged_proxy, outcome, record};
use crate::support::redis::{redis_url, unique_prefix};
use crate::support::*;

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "a very long prompt"}]})
}

/// OpenAI's answer to a request longer than the model's context window.
fn openai_context_window() -> Reply {
    Reply::Json(
        400,
        json!({"error": {
            "message": "This model's maximum context length is 8192 tokens. However, your messages resulted in 12034 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}),
    )
}

/// Anthropic's.
fn anthropic_context_window() -> Reply {
    Reply::Json(
        400,
        json!({"type": "error", "error": {"type": "invalid_request_error",
            "message": "prompt is too long: 208310 tokens > 200000 maximum"},
            "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}),
    )
}

/// Azure OpenAI's content-filter refusal.
fn azure_refusal() -> Reply {
    Reply::Json(
        400,
        json!({"error": {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry.",
            "type": null, "param": "prompt", "code": "content_filter", "status": 400,
            "innererror": {"code": "ResponsibleAIPolicyViolation",
                "content_filter_result": {"violence": {"filtered": true, "severity": "medium"}}}}}),
    )
}

/// A 400 that is only a bad request.
fn plain_400() -> Reply {
    Reply::Json(
        400,
        json!({"error": {"message": "Invalid value for 'temperature': expected a number <= 2.",
            "type": "invalid_request_error", "param": "temperature", "code": "invalid_value"}}),
    )
}

fn entry(model: &str, mock: &Mock, extra: &str) -> String {
    format!(
        "  - {{model_name: {model}, model_params: {{api_base: '{}'{extra}}}}}\n",
        mock.url
    )
}

fn header(headers: &http::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_context_window_error_goes_to_the_context_window_fallback() {
    crate::support::warnings::capture();
    let small = Mock::start(openai_context_window()).await;
    let big = Mock::start(Reply::Echo).await;
    let other = Mock::start(Reply::Echo).await;
    // `other` is small's generic fallback: a 400 never goes there.
    let yaml = format!(
        "model_list:\n{}{}{}router_settings:\n  fallbacks: [{{small: [other]}}]\n  context_window_fallbacks: [{{small: [big]}}]\n",
        entry("small", &small, ""),
        entry("big", &big, ""),
        entry("other", &other, ""),
    );
    let l = logged_proxy(&yaml, None).await;
    let (status, headers, body) = post_with(
        &l.server,
        "/v1/chat/completions",
        &chat("small"),
        &[("x-request-id", "cw-openai")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-yallmp-backend"), "big#1");
    assert_eq!(header(&headers, "x-yallmp-attempts"), "2");
    assert_eq!((small.count(), big.count(), other.count()), (1, 1, 0));
    // The record has both attempts, as usual.
    let ev = record(&l.dir, "cw-openai").await;
    let tried = attempts(&ev);
    assert_eq!(tried.len(), 2, "{tried:?}");
    assert_eq!((tried[0].0.as_str(), &tried[0].1), ("small#1", &json!(400)));
    assert!(
        tried[0]
            .2
            .as_str()
            .unwrap()
            .contains("maximum context length"),
        "{tried:?}"
    );
    assert_eq!((tried[1].0.as_str(), &tried[1].1), ("big#1", &json!(200)));
    assert_eq!(outcome(&ev)["status"], 200);
    crate::support::warnings::wait_for(&["falling back on context window error", "small"]).await;
    l.server.shutdown().await;
}

#[tokio::test]
async fn a_plain_400_is_not_sent_to_the_context_window_fallback() {
    let small = Mock::start(plain_400()).await;
    let big = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n{}{}router_settings:\n  context_window_fallbacks: [{{small: [big]}}]\n  content_policy_fallbacks: {{small: big}}\n",
        entry("small", &small, ""),
        entry("big", &big, ""),
    );
    let server = proxy(&yaml).await;
    let (status, _, body) = post(&server, "/v1/chat/completions", &chat("small")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Invalid value for 'temperature'"), "{body}");
    assert_eq!((small.count(), big.count()), (1, 0));
    server.shutdown().await;
}

#[tokio::test]
async fn without_kind_fallbacks_a_context_window_error_is_relayed_as_before() {
    let small = Mock::start(openai_context_window()).await;
    let other = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n{}{}router_settings:\n  fallbacks: [{{small: [other]}}]\n",
        entry("small", &small, ""),
        entry("other", &other, ""),
    );
    let server = proxy(&yaml).await;
    let (status, _, body) = post(&server, "/v1/chat/completions", &chat("small")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("context_length_exceeded"), "{body}");
    assert_eq!((small.count(), other.count()), (1, 0));
    server.shutdown().await;
}

#[tokio::test]
async fn an_anthropic_context_window_error_goes_to_the_fallback_and_its_own_fallbacks() {
    let claude = Mock::start(anthropic_context_window()).await;
    let long = Mock::start(Reply::Json(500, json!({"error": {"message": "down"}}))).await;
    let longer = Mock::start(Reply::Echo).await;
    // The context-window fallback `long` fails; its own generic fallback
    // `longer` answers.
    let yaml = format!(
        "model_list:\n  - {{model_name: claude, model_params: {{api_type: anthropic, api_base: '{}', api_key: k}}}}\n{}{}router_settings:\n  fallbacks: [{{long: [longer]}}]\n  context_window_fallbacks: {{claude: long}}\n",
        claude.url,
        entry("long", &long, ""),
        entry("longer", &longer, ""),
    );
    let server = proxy(&yaml).await;
    let (status, headers, body) = post(&server, "/v1/chat/completions", &chat("claude")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-yallmp-backend"), "longer#1");
    assert_eq!(header(&headers, "x-yallmp-attempts"), "3");
    assert!(
        claude.hits()[0].path.ends_with("/messages"),
        "{:?}",
        claude.hits()[0].path
    );
    assert_eq!((claude.count(), long.count(), longer.count()), (1, 1, 1));
    server.shutdown().await;
}

#[tokio::test]
async fn a_content_filter_refusal_goes_to_the_content_policy_fallback_once() {
    crate::support::warnings::capture();
    let strict = Mock::start(azure_refusal()).await;
    let lenient = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n{}{}router_settings:\n  content_policy_fallbacks: [{{strict: [lenient]}}]\n",
        entry("strict", &strict, ""),
        entry("lenient", &lenient, ""),
    );
    let server = proxy(&yaml).await;
    let (status, headers, body) = post(&server, "/v1/chat/completions", &chat("strict")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-yallmp-backend"), "lenient#1");
    assert_eq!((strict.count(), lenient.count()), (1, 1));
    crate::support::warnings::wait_for(&["falling back on content policy error", "strict"]).await;
    server.shutdown().await;

    // Two models that are each other's fallback and both refuse: each is
    // tried once, then the refusal reaches the client as it was sent.
    let a = Mock::start(azure_refusal()).await;
    let b = Mock::start(azure_refusal()).await;
    let yaml = format!(
        "model_list:\n{}{}router_settings:\n  num_retries: 2\n  content_policy_fallbacks: [{{a: [b]}}, {{b: [a]}}]\n",
        entry("a", &a, ""),
        entry("b", &b, ""),
    );
    let server = proxy(&yaml).await;
    let (status, headers, body) = post(&server, "/v1/chat/completions", &chat("a")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("content_filter"), "{body}");
    assert_eq!(header(&headers, "x-yallmp-backend"), "b#1");
    assert_eq!((a.count(), b.count()), (1, 1));
    server.shutdown().await;
}

#[tokio::test]
async fn retry_policy_retries_a_bad_request_and_relays_it_in_the_end() {
    let a = Mock::start(plain_400()).await;
    let fb = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n{}{}router_settings:\n  retry_backoff_ms: 1\n  fallbacks: {{m: fb}}\n  retry_policy: {{BadRequestErrorRetries: 2}}\n",
        entry("m", &a, ""),
        entry("fb", &fb, ""),
    );
    let server = proxy(&yaml).await;
    let (status, headers, body) = post(&server, "/v1/chat/completions", &chat("m")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Invalid value for 'temperature'"), "{body}");
    assert_eq!(header(&headers, "x-yallmp-attempts"), "3");
    // 1 + 2 retries, and still final: no fallback model.
    assert_eq!((a.count(), fb.count()), (3, 0));
    // The effective config shows the policy by yallmp's names.
    let effective = get_json(&server, "/admin/config").await;
    assert_eq!(
        effective["router_settings"]["retry_policy"],
        json!({"bad_request": 2}),
        "{effective}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn retry_policy_counts_per_kind() {
    // A 429 with RateLimitErrorRetries 0 moves on at once, although
    // num_retries is 3.
    let limited = Mock::start(Reply::Json(429, json!({"error": {"message": "slow down"}}))).await;
    let broken = Mock::start(Reply::Json(500, json!({"error": {"message": "boom"}}))).await;
    let ok = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n{}{}{}router_settings:\n  routing_strategy: ordered\n  num_retries: 3\n  retry_backoff_ms: 1\n  allowed_fails: 100\n  retry_policy: {{rate_limit: 0}}\n",
        entry("m", &limited, ", order: 1"),
        entry("m", &broken, ", order: 2"),
        entry("m", &ok, ", order: 3"),
    );
    let server = proxy(&yaml).await;
    let (status, headers, body) = post(&server, "/v1/chat/completions", &chat("m")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-yallmp-backend"), "m#3");
    assert_eq!(limited.count(), 1, "no retry of the 429");
    // The 500s: one attempt, moved on (m#3 answered before m#2's retries).
    assert_eq!(broken.count(), 1);
    server.shutdown().await;

    // Alone in its model, a 500 gets InternalServerErrorRetries (2), not
    // num_retries (0).
    let broken = Mock::start(Reply::Json(500, json!({"error": {"message": "boom"}}))).await;
    let yaml = format!(
        "model_list:\n{}router_settings:\n  retry_backoff_ms: 1\n  allowed_fails: 100\n  retry_policy: {{InternalServerErrorRetries: 2}}\n",
        entry("five", &broken, ""),
    );
    let server = proxy(&yaml).await;
    let (status, headers, body) = post(&server, "/v1/chat/completions", &chat("five")).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(header(&headers, "x-yallmp-attempts"), "3");
    assert_eq!(broken.count(), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn authentication_retries_repeat_a_backend_before_skipping_it() {
    let denied = Mock::start(Reply::Json(401, json!({"error": {"message": "bad key"}}))).await;
    let yaml = format!(
        "model_list:\n{}router_settings:\n  retry_backoff_ms: 1\n  allowed_fails: 100\n  retry_policy: {{AuthenticationErrorRetries: 2}}\n",
        entry("m", &denied, ""),
    );
    let server = proxy(&yaml).await;
    let (status, _, body) = post(&server, "/v1/chat/completions", &chat("m")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(denied.count(), 3);
    server.shutdown().await;

    // Without the policy a 401 is a skip: one attempt.
    let denied = Mock::start(Reply::Json(401, json!({"error": {"message": "bad key"}}))).await;
    let yaml = format!(
        "model_list:\n{}router_settings:\n  num_retries: 2\n",
        entry("m", &denied, ""),
    );
    let server = proxy(&yaml).await;
    let (status, _, _) = post(&server, "/v1/chat/completions", &chat("m")).await;
    assert_eq!(status, 401);
    assert_eq!(denied.count(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn model_group_retry_policy_replaces_the_router_one_for_its_model() {
    let a = Mock::start(Reply::Json(503, json!({"error": {"message": "busy"}}))).await;
    let b = Mock::start(Reply::Json(503, json!({"error": {"message": "busy"}}))).await;
    let yaml = format!(
        "model_list:\n{}{}router_settings:\n  retry_backoff_ms: 1\n  allowed_fails: 100\n  retry_policy: {{ServiceUnavailableErrorRetries: 1}}\n  model_group_retry_policy: {{b: {{internal_server: 3}}}}\n",
        entry("a", &a, ""),
        entry("b", &b, ""),
    );
    let server = proxy(&yaml).await;
    assert_eq!(
        post(&server, "/v1/chat/completions", &chat("a")).await.0,
        503
    );
    assert_eq!(
        post(&server, "/v1/chat/completions", &chat("b")).await.0,
        503
    );
    // a: the router's policy for 503s; b: its own, where a 503 is an
    // internal server error.
    assert_eq!((a.count(), b.count()), (2, 4));
    server.shutdown().await;
}

/// The `/health` entry of backend `name`.
async fn backend_health(server: &yallmp::Server, name: &str) -> Value {
    let h = get_json(server, "/health").await;
    h["models"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["backends"].as_array().unwrap().iter())
        .find(|b| b["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

async fn wait_for_state(server: &yallmp::Server, name: &str, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let b = backend_health(server, name).await;
        if b["state"] == state {
            return b;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never became {state}: {b}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn allowed_fails_policy_cools_a_backend_down_after_401s() {
    let denied = Mock::start(Reply::Json(401, json!({"error": {"message": "bad key"}}))).await;
    let ok = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n{}{}router_settings:\n  routing_strategy: ordered\n  allowed_fails: 0\n  cooldown_time: 30\n  allowed_fails_policy: {{AuthenticationErrorAllowedFails: 1}}\n",
        entry("m", &denied, ", order: 1"),
        entry("m", &ok, ", order: 2"),
    );
    let server = proxy(&yaml).await;
    for _ in 0..2 {
        let (status, headers, _) = post(&server, "/v1/chat/completions", &chat("m")).await;
        assert_eq!(
            (status, header(&headers, "x-yallmp-backend").as_str()),
            (200, "m#2")
        );
    }
    // The second 401 is one more than allowed: m#1 is out of rotation...
    let h = backend_health(&server, "m#1").await;
    assert_eq!(h["state"], "cooling_down", "{h}");
    assert!(h["cooling_down_until"].is_string(), "{h}");
    // ...so the next requests go straight to m#2.
    for _ in 0..3 {
        let (_, headers, _) = post(&server, "/v1/chat/completions", &chat("m")).await;
        assert_eq!(header(&headers, "x-yallmp-attempts"), "1");
    }
    assert_eq!((denied.count(), ok.count()), (2, 5));
    server.shutdown().await;

    // Without the policy, 401s never cool a backend (allowed_fails 0 or not).
    let denied = Mock::start(Reply::Json(401, json!({"error": {"message": "bad key"}}))).await;
    let ok = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n{}{}router_settings:\n  routing_strategy: ordered\n  allowed_fails: 0\n  cooldown_time: 30\n",
        entry("m", &denied, ", order: 1"),
        entry("m", &ok, ", order: 2"),
    );
    let server = proxy(&yaml).await;
    for _ in 0..4 {
        assert_eq!(
            post(&server, "/v1/chat/completions", &chat("m")).await.0,
            200
        );
    }
    assert_eq!(backend_health(&server, "m#1").await["state"], "healthy");
    assert_eq!(denied.count(), 4);
    server.shutdown().await;
}

/// A proxy sharing state through `redis_url` under `prefix`.
async fn redis_proxy(models: &str, router: &str, redis_url: &str, prefix: &str) -> yallmp::Server {
    proxy(&format!(
        "model_list:\n{models}router_settings: {router}\nproxy_settings:\n  redis_url: {redis_url}\n  redis_key_prefix: \"{prefix}\"\n"
    ))
    .await
}

/// The keys under `prefix` matching `pattern` (after the prefix).
async fn redis_keys(url: &str, prefix: &str, pattern: &str) -> Vec<String> {
    let client = ::redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("{prefix}{pattern}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    keys
}

#[tokio::test]
async fn per_kind_failures_add_up_across_instances_through_redis() {
    let Some(url) = redis_url().await else {
        return;
    };
    let denied = Mock::start(Reply::Json(401, json!({"error": {"message": "bad key"}}))).await;
    let ok = Mock::start(Reply::Echo).await;
    let models = format!(
        "{}{}",
        entry("m", &denied, ", order: 1"),
        entry("m", &ok, ", order: 2")
    );
    // Each instance alone allows one 401; together they see two.
    let router = "{routing_strategy: ordered, allowed_fails: 100, cooldown_time: 30, allowed_fails_policy: {authentication: 1}}";
    let prefix = unique_prefix();
    let one = redis_proxy(&models, router, &url, &prefix).await;
    let two = redis_proxy(&models, router, &url, &prefix).await;
    assert_eq!(post(&one, "/v1/chat/completions", &chat("m")).await.0, 200);
    // The 401 is counted under a key of its kind, not the general one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let keys = loop {
        let keys = redis_keys(&url, &prefix, "fails:*").await;
        if !keys.is_empty() || tokio::time::Instant::now() > deadline {
            break keys;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        keys[0].starts_with(&format!("{prefix}fails:m#1:")) && keys[0].ends_with(":authentication"),
        "{keys:?}"
    );
    assert_eq!(backend_health(&one, "m#1").await["state"], "healthy");
    assert_eq!(post(&two, "/v1/chat/completions", &chat("m")).await.0, 200);
    // Two 401s over two instances: past the policy's one, so m#1 cools
    // down on both.
    wait_for_state(&one, "m#1", "cooling_down").await;
    wait_for_state(&two, "m#1", "cooling_down").await;
    assert_eq!(denied.count(), 2);
    one.shutdown().await;
    two.shutdown().await;
}

#[test]
fn the_keys_load_from_a_litellm_config_without_warnings() {
    let c = config(
        r#"
model_list:
  - {model_name: gpt-3.5-turbo, litellm_params: {model: openai/gpt-3.5-turbo, api_base: 'http://127.0.0.1:1/v1'}}
  - {model_name: gpt-4-32k, litellm_params: {model: openai/gpt-4-32k, api_base: 'http://127.0.0.1:1/v1'}}
  - {model_name: claude, litellm_params: {model: anthropic/claude-sonnet-4-5, api_key: k}}
router_settings:
  context_window_fallbacks: [{gpt-3.5-turbo: [gpt-4-32k]}]
  content_policy_fallbacks: [{gpt-3.5-turbo: [claude]}]
  retry_policy: {BadRequestErrorRetries: 1, AuthenticationErrorRetries: 0, TimeoutErrorRetries: 2, RateLimitErrorRetries: 3, ContentPolicyViolationErrorRetries: 4, InternalServerErrorRetries: 5}
  model_group_retry_policy: {gpt-4-32k: {RateLimitErrorRetries: 0}}
  allowed_fails_policy: {BadRequestErrorAllowedFails: 1000, AuthenticationErrorAllowedFails: 10, TimeoutErrorAllowedFails: 12, RateLimitErrorAllowedFails: 10000, ContentPolicyViolationErrorAllowedFails: 15, InternalServerErrorAllowedFails: 20}
"#,
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let m = c.model("gpt-3.5-turbo").unwrap();
    assert_eq!(m.context_window_fallbacks, ["gpt-4-32k"]);
    assert_eq!(m.content_policy_fallbacks, ["claude"]);
    assert!(m.fallbacks.is_empty());
    let r = &c.router.retry_policy;
    assert_eq!(
        (
            r.bad_request,
            r.authentication,
            r.timeout,
            r.rate_limit,
            r.content_policy,
            r.internal_server
        ),
        (Some(1), Some(0), Some(2), Some(3), Some(4), Some(5))
    );
    assert_eq!(c.router.retry_policy_for("gpt-4-32k").rate_limit, Some(0));
    assert_eq!(c.router.retry_policy_for("gpt-4-32k").timeout, None);
    assert_eq!(c.router.retry_policy_for("claude"), &c.router.retry_policy);
    let a = &c.router.allowed_fails_policy;
    assert_eq!(
        (
            a.bad_request,
            a.authentication,
            a.rate_limit,
            a.internal_server
        ),
        (Some(1000), Some(10), Some(10000), Some(20))
    );
}

#[test]
fn bad_kind_fallbacks_and_policies_are_errors() {
    let e = config_error(
        "model_list:\n  - {model_name: small, model_params: {api_type: stub}}\n  - {model_name: big, model_params: {api_type: stub}}\nrouter_settings:\n  context_window_fallbacks: [{small: [bigg]}]\n  content_policy_fallbacks: {smal: big}\n  retry_policy: {rate_limt: 1}\n  model_group_retry_policy: {bog: {timeout: 1}}\n",
    )
    .to_string();
    for want in [
        "router_settings.context_window_fallbacks[0].small[0]: unknown model `bigg` (models: small, big); did you mean `big`?",
        "router_settings.content_policy_fallbacks.smal: unknown model `smal`",
        "router_settings.retry_policy.rate_limt: unknown kind of failure `rate_limt`",
        "did you mean `rate_limit`?",
        "router_settings.model_group_retry_policy.bog: unknown model `bog`",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
    // A LiteLLM name yallmp does not tell apart loads, with a warning.
    let c = config(
        "model_list:\n  - {model_name: m, model_params: {api_type: stub}}\nrouter_settings:\n  retry_policy: {UnprocessableEntityErrorRetries: 1}\n",
    );
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(
        c.warnings[0].starts_with("router_settings.retry_policy.UnprocessableEntityErrorRetries: LiteLLM kind of failure not told apart by yallmp; ignored"),
        "{:?}",
        c.warnings
    );
}
