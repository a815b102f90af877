//! Rate limits (requests and tokens per minute, per key and global; local
//! and shared through Redis) and CORS.

use std::time::Duration;

use http::HeaderMap;
use serde_json::{Value, json};

use crate::support::redis::{Gate, redis_url, unique_prefix};
use crate::support::*;

fn body() -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
}

/// POSTs a chat completion with `key` as the client's key.
async fn call(server: &yallmp::Server, key: &str) -> (u16, HeaderMap, String) {
    let auth = format!("Bearer {key}");
    post_with(
        server,
        "/v1/chat/completions",
        &body(),
        &[("authorization", &auth)],
    )
    .await
}

fn retry_after(headers: &HeaderMap) -> u64 {
    headers
        .get("retry-after")
        .expect("Retry-After on a 429")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The client keys the tests present: per-key limits count by key only
/// for configured keys (any other token counts as its address).
const CLIENT_KEYS: &str = "  auth: {api_keys: [key-one, key-two, a, b, c, tk, stream-key, shared-key, other-key, third-key, fourth-key, tokens-key, k, other]}\n";

/// A stub model and these settings, with [`CLIENT_KEYS`] unless the
/// settings have their own `auth`.
fn stub_with(settings: &str) -> String {
    let keys = if settings.contains("  auth:") {
        ""
    } else {
        CLIENT_KEYS
    };
    format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_type: stub}}}}\nproxy_settings:\n{keys}{settings}"
    )
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let server = proxy(&stub_with("  rate_limits:\n    per_key: {rpm: 2}\n")).await;
    assert_eq!(call(&server, "key-one").await.0, 200);
    assert_eq!(call(&server, "key-one").await.0, 200);
    let (status, headers, text) = call(&server, "key-one").await;
    assert_eq!(status, 429, "{text}");
    // Two a minute: the next one conforms 30 s after the burst.
    let wait = retry_after(&headers);
    assert!((1..=30).contains(&wait), "{wait}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("2 requests per minute"), "{msg}");
    assert!(!msg.contains("key-one"), "the key is never echoed: {msg}");
    assert!(headers.contains_key("x-request-id"));
    // Another key has its own bucket; health and the model list are not limited.
    assert_eq!(call(&server, "key-two").await.0, 200);
    for _ in 0..3 {
        assert_eq!(
            client()
                .get(format!("{}/healthz", server.url()))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn global_limit_counts_every_client() {
    let server = proxy(&stub_with(
        "  rate_limits:\n    global: {rpm: 3}\n    per_key: {rpm: 1}\n",
    ))
    .await;
    assert_eq!(call(&server, "other").await.0, 200);
    assert_eq!(call(&server, "a").await.0, 200);
    assert_eq!(call(&server, "b").await.0, 200);
    let (status, headers, text) = call(&server, "c").await;
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("for all clients"), "{text}");
    assert!(retry_after(&headers) >= 1);
    server.shutdown().await;
}

#[tokio::test]
async fn without_client_keys_a_client_counts_by_its_address_whatever_token_it_sends() {
    let server = proxy(&stub_with(
        "  auth: {api_keys: []}\n  rate_limits:\n    per_key: {rpm: 2}\n",
    ))
    .await;
    // A new token each time escapes nothing: the address is the client.
    assert_eq!(call(&server, "rotating-1").await.0, 200);
    assert_eq!(call(&server, "rotating-2").await.0, 200);
    let (status, headers, text) = call(&server, "rotating-3").await;
    assert_eq!(status, 429, "{text}");
    assert!(retry_after(&headers) >= 1);
    // Nor does sending none.
    let (status, _, text) = post(&server, "/v1/chat/completions", &body()).await;
    assert_eq!(status, 429, "{text}");
    server.shutdown().await;
}

#[tokio::test]
async fn tokens_are_charged_after_the_answer() {
    // The mock reports 5 tokens per answer; the key may use 4 a minute:
    // the first request is admitted (not in debt yet), and its answer puts
    // the key 15 s into debt.
    let mock = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\nproxy_settings:\n  auth: {{api_keys: [tk, stream-key]}}\n  rate_limits:\n    per_key: {{tpm: 4}}\n",
        mock.url
    );
    let server = proxy(&yaml).await;
    assert_eq!(call(&server, "tk").await.0, 200);
    let (status, headers, text) = call(&server, "tk").await;
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("4 tokens per minute"), "{text}");
    let wait = retry_after(&headers);
    assert!((14..=15).contains(&wait), "{wait}");

    // A stream's usage is charged when it ends.
    mock.push(Reply::Sse {
        frames: vec![
            chunk("hi"),
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":11,\"total_tokens\":18}}\n\n".into(),
            DONE.into(),
        ],
        gap: Duration::from_millis(1),
    });
    let r = client()
        .post(format!("{}/v1/chat/completions", server.url()))
        .bearer_auth("stream-key")
        .json(&json!({"model": "m", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("[DONE]"));
    // The charge lands as the relay ends, a moment after the client has
    // the last byte.
    // 18 tokens at 4 a minute: 270 s of debt, 210 s beyond the minute
    // (an answer of the mock in between adds 5 more).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, headers, _) = call(&server, "stream-key").await;
        if status == 429 {
            let wait = retry_after(&headers);
            assert!(wait >= 200, "{wait}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stream tokens never charged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await;
}

fn redis_yaml(url: &str, prefix: &str, limits: &str) -> String {
    stub_with(&format!(
        "  redis_url: {url}\n  redis_key_prefix: \"{prefix}\"\n  rate_limits:\n{limits}"
    ))
}

#[tokio::test]
async fn two_instances_sharing_redis_see_each_others_limits() {
    let Some(url) = redis_url().await else {
        return;
    };
    let prefix = unique_prefix();
    let yaml = redis_yaml(
        &url,
        &prefix,
        "    per_key: {rpm: 3}\n    global: {rpm: 5}\n",
    );
    let a = proxy(&yaml).await;
    let b = proxy(&yaml).await;
    assert_eq!(call(&a, "shared-key").await.0, 200);
    assert_eq!(call(&a, "shared-key").await.0, 200);
    assert_eq!(call(&b, "shared-key").await.0, 200);
    // The key's third request went to `b`; `a` knows.
    let (status, headers, text) = call(&a, "shared-key").await;
    assert_eq!(status, 429, "{text}");
    assert!(retry_after(&headers) >= 1);
    assert_eq!(call(&b, "shared-key").await.0, 429);
    // The global limit too: two more anywhere, then none.
    assert_eq!(call(&b, "other-key").await.0, 200);
    assert_eq!(call(&a, "third-key").await.0, 200);
    let (status, _, text) = call(&b, "fourth-key").await;
    assert_eq!(status, 429);
    assert!(text.contains("for all clients"), "{text}");
    // Keys are hashed in Redis: the client key never appears.
    let client = ::redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    assert!(keys.iter().all(|k| !k.contains("shared-key")), "{keys:?}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn token_charges_are_shared_through_redis() {
    let Some(url) = redis_url().await else {
        return;
    };
    let yaml = redis_yaml(&url, &unique_prefix(), "    per_key: {tpm: 1}\n");
    let a = proxy(&yaml).await;
    let b = proxy(&yaml).await;
    // The stub reports a few tokens: more than one a minute allows.
    assert_eq!(call(&a, "tokens-key").await.0, 200);
    // Charged in Redis from a task of its own: `b` sees it a moment later.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, headers, text) = call(&b, "tokens-key").await;
        if status == 429 {
            assert!(text.contains("tokens per minute"), "{text}");
            assert!(retry_after(&headers) >= 60, "{headers:?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the charge never reached b"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn redis_going_away_falls_back_to_local_limits() {
    let Some(url) = redis_url().await else {
        return;
    };
    let gate = Gate::start(&url).await;
    let server = proxy(&redis_yaml(
        &gate.url,
        &unique_prefix(),
        "    per_key: {rpm: 2}\n",
    ))
    .await;
    // Counted in Redis.
    assert_eq!(call(&server, "k").await.0, 200);
    gate.cut();
    // Redis is gone: requests keep being served, counted in the local table
    // (which starts empty, so two more pass), then refused by it.
    assert_eq!(call(&server, "k").await.0, 200);
    assert_eq!(call(&server, "k").await.0, 200);
    let (status, headers, text) = call(&server, "k").await;
    assert_eq!(status, 429, "{text}");
    assert!(retry_after(&headers) >= 1);
    assert_eq!(call(&server, "other").await.0, 200);
    let redis = server.state().redis.clone().unwrap();
    assert_eq!(redis.status().mode, "local");
    gate.restore();
    server.shutdown().await;
}

#[tokio::test]
async fn cors_answers_preflights_without_a_key_when_configured() {
    let server = proxy(&stub_with(
        "  auth: {api_keys: [ck-cors]}\n  cors: {allow_origins: ['https://app.example.com'], max_age: 600}\n",
    ))
    .await;
    let pre = client()
        .request(
            http::Method::OPTIONS,
            format!("{}/v1/chat/completions", server.url()),
        )
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(pre.status().is_success(), "{}", pre.status());
    let h = pre.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-max-age"], "600");
    assert!(
        h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    // The real request carries the header and exposes the request id.
    let r = client()
        .post(format!("{}/v1/chat/completions", server.url()))
        .header("origin", "https://app.example.com")
        .bearer_auth("ck-cors")
        .json(&body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(
        r.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("x-request-id")
    );
    // Another origin gets no grant.
    let r = client()
        .get(format!("{}/healthz", server.url()))
        .header("origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    server.shutdown().await;

    // Off when not configured.
    let server = proxy(&stub_with("  auth: {api_keys: []}\n")).await;
    let r = client()
        .get(format!("{}/healthz", server.url()))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    server.shutdown().await;
}
