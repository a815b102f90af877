//! The shared Redis connection: a proxy whose Redis goes away keeps
//! serving on local state, says so in its status, and resumes when Redis
//! returns. (The features that share state through Redis test their own
//! behaviour in their own files.)

use std::time::Duration;

use crate::support::redis::{Gate, redis_url, unique_prefix};
use crate::support::*;

#[tokio::test]
async fn redis_outage_is_noticed_and_recovered() {
    let Some(url) = redis_url().await else {
        return;
    };
    let gate = Gate::start(&url).await;
    let yaml = format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_type: stub}}}}\nproxy_settings:\n  redis_url: {}\n  redis_key_prefix: \"{}\"\n",
        gate.url,
        unique_prefix()
    );
    let server = proxy(&yaml).await;
    let redis = server.state().redis.clone().expect("redis configured");
    assert!(redis.ping().await, "reachable through the gate");

    gate.cut();
    assert!(!redis.ping().await);
    assert_eq!(redis.status().mode, "local");
    // Requests still work while Redis is away.
    let (status, _, _) = post(
        &server,
        "/v1/chat/completions",
        &serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200);

    gate.restore();
    // The background probe notices within a few seconds.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !redis.is_up() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "redis never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(redis.status().mode, "shared");
    server.shutdown().await;
}
