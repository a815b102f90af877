//! Load balancing, cooldowns, health checks, `/health`, `/stats`, the
//! `x-yallmp-*` headers, and cooldowns shared through Redis: mock upstreams
//! and the real proxy, over HTTP.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::redis::{Gate, redis_url, unique_prefix};
use crate::support::*;

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

/// `model_list` entries for model `m`, one per (mock, extra params).
fn group(model: &str, backends: &[(&Mock, &str)]) -> String {
    backends
        .iter()
        .map(|(mock, extra)| {
            let sep = if extra.is_empty() { "" } else { ", " };
            format!(
                "  - {{model_name: {model}, model_params: {{api_base: '{}'{sep}{extra}}}}}\n",
                mock.url
            )
        })
        .collect()
}

async fn header(server: &yallmp::Server, model: &str) -> (u16, String, String) {
    let (status, headers, _) = post(server, "/v1/chat/completions", &chat(model)).await;
    let h = |n: &str| {
        headers
            .get(n)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    (status, h("x-yallmp-backend"), h("x-yallmp-attempts"))
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
async fn weighted_shuffle_spreads_by_weight() {
    let a = Mock::start(Reply::Echo).await;
    let b = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n{}",
        group("m", &[(&a, "weight: 3"), (&b, "weight: 1")])
    );
    let server = proxy(&yaml).await;
    let n = 400;
    for _ in 0..n {
        let (status, backend, attempts) = header(&server, "m").await;
        assert_eq!(status, 200);
        assert!(backend == "m#1" || backend == "m#2", "{backend}");
        assert_eq!(attempts, "1");
    }
    let share = a.count() as f64 / n as f64;
    // Expected 0.75; the standard deviation over 400 draws is ~0.022.
    assert!(
        (share - 0.75).abs() < 0.09,
        "share of the weight-3 backend: {share}"
    );
    assert_eq!(a.count() + b.count(), n);
    server.shutdown().await;
}

#[tokio::test]
async fn retry_moves_to_another_backend_first() {
    let a = Mock::start(Reply::Json(500, json!({"error": {"message": "down"}}))).await;
    let b = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n{}router_settings: {{routing_strategy: ordered, num_retries: 1, allowed_fails: 100}}\n",
        group("m", &[(&a, "order: 1"), (&b, "order: 2")])
    );
    let server = proxy(&yaml).await;
    let (status, backend, attempts) = header(&server, "m").await;
    assert_eq!(
        (status, backend.as_str(), attempts.as_str()),
        (200, "m#2", "2")
    );
    // a#1 was not repeated before b got its turn.
    assert_eq!(a.count(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn cooldown_takes_a_failing_backend_out_and_brings_it_back() {
    let a = Mock::start(Reply::Echo).await;
    a.push(Reply::Json(500, json!({"error": {"message": "boom"}})))
        .push(Reply::Json(503, json!({"error": {"message": "boom"}})));
    let b = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n{}router_settings: {{routing_strategy: ordered, allowed_fails: 1, cooldown_time: 0.6}}\n",
        group("m", &[(&a, "order: 1"), (&b, "order: 2")])
    );
    let server = proxy(&yaml).await;
    // Two failures: more than allowed_fails (1), so m#1 cools down.
    for _ in 0..2 {
        let (status, backend, attempts) = header(&server, "m").await;
        assert_eq!(
            (status, backend.as_str(), attempts.as_str()),
            (200, "m#2", "2")
        );
    }
    let h = backend_health(&server, "m#1").await;
    assert_eq!(h["state"], "cooling_down", "{h}");
    assert!(h["cooling_down_until"].is_string(), "{h}");
    // While it cools down, m#1 gets no traffic.
    for _ in 0..3 {
        let (_, backend, attempts) = header(&server, "m").await;
        assert_eq!((backend.as_str(), attempts.as_str()), ("m#2", "1"));
    }
    assert_eq!(a.count(), 2);
    // Then it is back, first in order again.
    wait_for_state(&server, "m#1", "healthy").await;
    let (status, backend, _) = header(&server, "m").await;
    assert_eq!((status, backend.as_str()), (200, "m#1"));
    server.shutdown().await;
}

#[tokio::test]
async fn rate_limit_with_retry_after_is_honoured() {
    let a = Mock::start(Reply::Echo).await;
    a.push(Reply::JsonHeaders(
        429,
        vec![("retry-after", "30".into())],
        json!({"error": {"message": "slow down"}}),
    ));
    let b = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n{}router_settings: {{routing_strategy: ordered, allowed_fails: 100}}\n",
        group("m", &[(&a, "order: 1"), (&b, "order: 2")])
    );
    let server = proxy(&yaml).await;
    let (status, backend, _) = header(&server, "m").await;
    assert_eq!((status, backend.as_str()), (200, "m#2"));
    let h = backend_health(&server, "m#1").await;
    assert_eq!(h["state"], "cooling_down");
    let until = chrono::DateTime::parse_from_rfc3339(h["cooling_down_until"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let left = (until - chrono::Utc::now()).num_seconds();
    assert!((25..=30).contains(&left), "cooldown left: {left}s");
    for _ in 0..3 {
        assert_eq!(header(&server, "m").await.1, "m#2");
    }
    assert_eq!(a.count(), 1, "not asked again before Retry-After passes");
    server.shutdown().await;
}

#[tokio::test]
async fn all_cooling_down_still_answers() {
    let fail = || Reply::Json(500, json!({"error": {"message": "boom"}}));
    let a = Mock::start(Reply::Echo).await;
    a.push(fail());
    let b = Mock::start(Reply::Echo).await;
    b.push(fail());
    let yaml = format!(
        "model_list:\n{}router_settings: {{allowed_fails: 0, cooldown_time: 60}}\n",
        group("m", &[(&a, ""), (&b, "")])
    );
    let server = proxy(&yaml).await;
    let (status, headers, _) = post(&server, "/v1/chat/completions", &chat("m")).await;
    assert_eq!(status, 500);
    assert_eq!(headers["x-yallmp-attempts"], "2");
    // Both cool down: not ready...
    let r = client()
        .get(format!("{}/health", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let h: Value = r.json().await.unwrap();
    assert_eq!(h["status"], "not_ready");
    assert_eq!(h["models"][0]["usable_backends"], 0);
    // ...yet the least recently failed one is still tried, and answers.
    let (status, backend, attempts) = header(&server, "m").await;
    assert_eq!(status, 200);
    assert_eq!(attempts, "1");
    assert!(backend == "m#1" || backend == "m#2");
    assert_eq!(a.count() + b.count(), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn least_busy_picks_the_idle_backend() {
    let slow = || Reply::Delay(Duration::from_millis(800), Box::new(Reply::Echo));
    let mocks = [
        Mock::start(slow()).await,
        Mock::start(slow()).await,
        Mock::start(slow()).await,
    ];
    let yaml = format!(
        "model_list:\n{}router_settings: {{routing_strategy: least-busy}}\n",
        group("m", &[(&mocks[0], ""), (&mocks[1], ""), (&mocks[2], "")])
    );
    let server = std::sync::Arc::new(proxy(&yaml).await);
    let mut tasks = Vec::new();
    for n in 1..=3 {
        let s = server.clone();
        tasks.push(tokio::spawn(async move { header(&s, "m").await }));
        // Wait until this request is in flight at some backend.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while mocks.iter().map(Mock::count).sum::<usize>() < n {
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Each request went to a backend with nothing in flight.
    for m in &mocks {
        assert_eq!(m.count(), 1);
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().0, 200);
    }
    let stats = get_json(&server, "/stats").await;
    for b in stats["backends"].as_array().unwrap() {
        assert_eq!(b["in_flight"], 0, "{b}");
        assert_eq!(b["requests"], 1, "{b}");
    }
}

#[tokio::test]
async fn latency_based_prefers_the_fast_backend() {
    let slow = Mock::start(Reply::Delay(
        Duration::from_millis(150),
        Box::new(Reply::Echo),
    ))
    .await;
    let fast = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n{}router_settings: {{routing_strategy: latency-based}}\n",
        group("m", &[(&slow, ""), (&fast, "")])
    );
    let server = proxy(&yaml).await;
    for _ in 0..8 {
        assert_eq!(header(&server, "m").await.0, 200);
    }
    // Each is measured once (unknown latency goes first); then the fast one
    // gets everything.
    assert_eq!(slow.count(), 1);
    assert_eq!(fast.count(), 7);
    server.shutdown().await;
}

#[tokio::test]
async fn health_check_takes_a_backend_out_and_sends_its_key() {
    let sick = Mock::start(Reply::Json(503, json!({"error": "down"}))).await;
    let well = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n{}",
        group(
            "m",
            &[
                (&sick, "api_key: sk-sick, health_check: {interval: 0.2}"),
                (&well, "health_check: {interval: 0.2, path: /health}"),
            ]
        )
    );
    let server = proxy(&yaml).await;
    let h = wait_for_state(&server, "m#1", "unhealthy").await;
    assert!(
        h["health_check_error"].as_str().unwrap().contains("503"),
        "{h}"
    );
    let hit = sick.hits()[0].clone();
    assert_eq!(hit.path, "/v1/models");
    assert_eq!(hit.headers["authorization"], "Bearer sk-sick");
    assert!(well.hits().iter().any(|h| h.path == "/v1/health"));
    let before = sick.count();
    for _ in 0..10 {
        assert_eq!(header(&server, "m").await.1, "m#2");
    }
    // Only health checks reach the sick one, no requests.
    assert!(sick.hits()[before..].iter().all(|h| h.path == "/v1/models"));
    let ready = get_json(&server, "/health").await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["models"][0]["usable_backends"], 1);
    server.shutdown().await;
}

#[tokio::test]
async fn stats_and_health_report_per_backend() {
    let a = Mock::start(Reply::Echo).await;
    a.push(Reply::Json(400, json!({"error": {"message": "bad"}})));
    let yaml = format!("model_list:\n{}", group("m", &[(&a, "")]));
    let server = proxy(&yaml).await;
    // A 400 is the request's fault: passed through, never a cooldown.
    let (status, backend, attempts) = header(&server, "m").await;
    assert_eq!(
        (status, backend.as_str(), attempts.as_str()),
        (400, "m#1", "1")
    );
    for _ in 0..3 {
        assert_eq!(header(&server, "m").await.0, 200);
    }
    let stats = get_json(&server, "/stats").await;
    let b = &stats["backends"][0];
    assert_eq!(b["name"], "m#1");
    assert_eq!(b["model"], "m");
    assert_eq!(b["requests"], 4);
    assert_eq!(b["successes"], 3);
    assert_eq!(b["failures"]["4xx"], 1);
    assert_eq!(b["failures"]["5xx"], 0);
    assert_eq!(b["in_flight"], 0);
    assert_eq!(b["state"], "healthy");
    assert!(b["latency_ms"]["p50"].as_f64().unwrap() > 0.0, "{b}");
    assert!(b["latency_ms"]["p99"].is_number());
    assert!(b["ttft_ms"].is_null(), "no stream yet");
    // The mock reports 3 prompt and 2 completion tokens per answer.
    assert_eq!(b["tokens"]["input"], 9, "{b}");
    assert_eq!(b["tokens"]["output"], 6, "{b}");
    let h = get_json(&server, "/health").await;
    assert_eq!(h["status"], "ready");
    assert_eq!(h["models"][0]["backends"][0]["state"], "healthy");
    assert_eq!(h["models"][0]["backends"][0]["recent_failures"], 0);
    assert_eq!(h["database"]["enabled"], true);
    assert_eq!(h["database"]["reachable"], true);
    assert!(h["redis"].is_null());
    server.shutdown().await;
}

#[tokio::test]
async fn streams_count_in_flight_until_they_end_and_report_ttft() {
    let a = Mock::start(Reply::Sse {
        frames: vec![chunk("a"), chunk("b"), DONE.to_string()],
        gap: Duration::from_millis(100),
    })
    .await;
    let yaml = format!("model_list:\n{}", group("m", &[(&a, "")]));
    let server = proxy(&yaml).await;
    let mut body = chat("m");
    body["stream"] = json!(true);
    let r = client()
        .post(format!("{}/v1/chat/completions", server.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-yallmp-backend"], "m#1");
    assert_eq!(r.headers()["x-yallmp-attempts"], "1");
    // Headers are here, the stream is not over: still in flight.
    let stats = get_json(&server, "/stats").await;
    assert_eq!(stats["backends"][0]["in_flight"], 1);
    let text = r.text().await.unwrap();
    assert!(text.ends_with(DONE));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let stats = get_json(&server, "/stats").await;
        let b = &stats["backends"][0];
        if b["in_flight"] == 0 {
            assert!(b["ttft_ms"]["p50"].as_f64().unwrap() >= 90.0, "{b}");
            // The latency covers the whole stream.
            assert!(b["latency_ms"]["p50"].as_f64().unwrap() >= 250.0, "{b}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{b}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_backend_that_cuts_every_stream_cools_down() {
    // m#1 sends its first event, then breaks the connection, every time.
    let a = Mock::start(Reply::SseCut(vec![chunk("partial ")])).await;
    let b = Mock::start(Reply::Sse {
        frames: vec![chunk("whole"), DONE.to_string()],
        gap: Duration::from_millis(1),
    })
    .await;
    let yaml = format!(
        "model_list:\n{}router_settings: {{routing_strategy: ordered, allowed_fails: 2, cooldown_time: 60}}\n",
        group("m", &[(&a, "order: 1"), (&b, "order: 2")])
    );
    let server = proxy(&yaml).await;
    let mut body = chat("m");
    body["stream"] = json!(true);
    for i in 0..3 {
        let (status, headers, text) = post(&server, "/v1/chat/completions", &body).await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-yallmp-backend"], "m#1", "stream {i}");
        assert!(text.contains("stream_interrupted"), "{text}");
    }
    // Three broken streams: more than allowed_fails (2). Each was a
    // failure of m#1, never a success.
    let h = wait_for_state(&server, "m#1", "cooling_down").await;
    assert_eq!(h["last_error"], "stream broke after its first event", "{h}");
    let stats = get_json(&server, "/stats").await;
    let s = stats["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "m#1")
        .unwrap()
        .clone();
    assert_eq!(s["requests"], 3, "{s}");
    assert_eq!(s["successes"], 0, "{s}");
    assert_eq!(s["failures"]["stream_broken"], 3, "{s}");
    // The next stream goes to m#2, whole.
    let (status, headers, text) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-yallmp-backend"], "m#2");
    assert!(text.ends_with(DONE), "{text}");
    assert_eq!(a.count(), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn an_error_event_mid_stream_is_a_failure_and_a_client_leaving_is_not() {
    let a = Mock::start(Reply::Sse {
        frames: vec![
            chunk("partial "),
            "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n".into(),
        ],
        gap: Duration::from_millis(1),
    })
    .await;
    let yaml = format!(
        "model_list:\n{}router_settings: {{allowed_fails: 100}}\n",
        group("m", &[(&a, "")])
    );
    let server = proxy(&yaml).await;
    let mut body = chat("m");
    body["stream"] = json!(true);
    let (status, _, text) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200);
    assert!(text.contains("overloaded"), "{text}");
    // A client that leaves mid-stream: the backend did nothing wrong.
    a.push(Reply::SseStall(vec![chunk("slow")]));
    let r = client()
        .post(format!("{}/v1/chat/completions", server.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(r);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let stats = get_json(&server, "/stats").await;
        let s = &stats["backends"][0];
        if s["requests"] == 2 && s["in_flight"] == 0 {
            assert_eq!(s["failures"]["stream_broken"], 1, "{s}");
            assert_eq!(s["successes"], 1, "{s}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn latency_based_does_not_prefer_a_backend_whose_streams_break() {
    // m#1's first event comes fast, then it cuts the stream; m#2's first
    // event is slower, and its streams end well.
    let cuts = Mock::start(Reply::SseCut(vec![chunk("partial ")])).await;
    let whole = Mock::start(Reply::Sse {
        frames: vec![chunk("whole"), DONE.to_string()],
        gap: Duration::from_millis(150),
    })
    .await;
    let yaml = format!(
        "model_list:\n{}router_settings: {{routing_strategy: latency-based, allowed_fails: 100}}\n",
        group("m", &[(&cuts, ""), (&whole, "")])
    );
    let server = proxy(&yaml).await;
    let mut body = chat("m");
    body["stream"] = json!(true);
    let mut served = Vec::new();
    for _ in 0..8 {
        let (status, headers, _) = post(&server, "/v1/chat/completions", &body).await;
        assert_eq!(status, 200);
        served.push(headers["x-yallmp-backend"].to_str().unwrap().to_string());
    }
    // Each is measured once (unknown goes first); then the one whose
    // streams end well gets everything.
    assert_eq!(cuts.count(), 1, "{served:?}");
    assert_eq!(whole.count(), 7, "{served:?}");
    server.shutdown().await;
}

#[test]
fn routing_config_errors_name_the_key() {
    let yaml = r#"
model_list:
  - {model_name: m, model_params: {api_base: 'http://a', weight: 0, health_check: {interval: -1, path: models}}}
  - {model_name: m, model_params: {api_base: 'http://b', order: 1}}
router_settings: {routing_strategy: least-bussy, cooldown_time: 0}
"#;
    let e = config_error(yaml).to_string();
    for want in [
        "router_settings.routing_strategy: unknown strategy `least-bussy`",
        "did you mean `least-busy`?",
        "router_settings.cooldown_time: must be a positive number of seconds",
        "model_list[0].model_params.weight: must be a number > 0",
        "model_list[0].model_params.health_check.interval: must be a positive number",
        "model_list[0].model_params.health_check.path: `models` must start with `/`",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
    let yaml =
        "model_list:\n  - {model_name: m, model_params: {api_base: 'http://b', order: 1.5}}\n";
    let e = config_error(yaml).to_string();
    assert!(e.contains("model_list[0].model_params.order"), "{e}");
    // LiteLLM's name for latency-based routing is accepted.
    let yaml = "model_list:\n  - {model_name: m, litellm_params: {api_base: 'http://b', weight: 2, order: 1}}\nrouter_settings: {routing_strategy: latency-based-routing, allowed_fails: 2}\n";
    let c = config(yaml);
    assert_eq!(
        c.router.strategy,
        yallmp::config::RoutingStrategy::LatencyBased
    );
    assert_eq!(c.router.allowed_fails, 2);
    assert_eq!(c.models[0].backends[0].routing.weight, 2.0);
    assert_eq!(c.models[0].backends[0].routing.order, Some(1));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

/// A proxy sharing state through `redis_url` under `prefix`.
async fn redis_proxy(models: &str, router: &str, redis_url: &str, prefix: &str) -> yallmp::Server {
    proxy(&format!(
        "model_list:\n{models}router_settings: {router}\nproxy_settings:\n  redis_url: {redis_url}\n  redis_key_prefix: \"{prefix}\"\n"
    ))
    .await
}

#[tokio::test]
async fn instances_sharing_redis_see_each_others_cooldowns() {
    let Some(url) = redis_url().await else {
        return;
    };
    let a = Mock::start(Reply::Json(500, json!({"error": {"message": "boom"}}))).await;
    let b = Mock::start(Reply::Echo).await;
    let models = group("m", &[(&a, "order: 1"), (&b, "order: 2")]);
    let router = "{routing_strategy: ordered, allowed_fails: 0, cooldown_time: 30}";
    let prefix = unique_prefix();
    let one = redis_proxy(&models, router, &url, &prefix).await;
    let two = redis_proxy(&models, router, &url, &prefix).await;
    // Instance one sees m#1 fail: it cools down there...
    let (status, backend, _) = header(&one, "m").await;
    assert_eq!((status, backend.as_str()), (200, "m#2"));
    assert_eq!(a.count(), 1);
    // ...and instance two hears of it through Redis.
    let h = wait_for_state(&two, "m#1", "cooling_down").await;
    assert!(h["cooling_down_until"].is_string());
    let health = get_json(&two, "/health").await;
    assert_eq!(health["redis"]["mode"], "shared");
    for _ in 0..3 {
        assert_eq!(header(&two, "m").await.1, "m#2");
    }
    assert_eq!(
        a.count(),
        1,
        "instance two never tried the cooled-down backend"
    );
    one.shutdown().await;
    two.shutdown().await;
}

#[tokio::test]
async fn failures_on_several_instances_add_up_through_redis() {
    let Some(url) = redis_url().await else {
        return;
    };
    let a = Mock::start(Reply::Json(500, json!({"error": {"message": "boom"}}))).await;
    let b = Mock::start(Reply::Echo).await;
    let models = group("m", &[(&a, "order: 1"), (&b, "order: 2")]);
    // Each instance alone allows one failure; together they see two.
    let router = "{routing_strategy: ordered, allowed_fails: 1, cooldown_time: 30}";
    let prefix = unique_prefix();
    let one = redis_proxy(&models, router, &url, &prefix).await;
    let two = redis_proxy(&models, router, &url, &prefix).await;
    assert_eq!(header(&one, "m").await.1, "m#2");
    assert_eq!(header(&two, "m").await.1, "m#2");
    wait_for_state(&one, "m#1", "cooling_down").await;
    wait_for_state(&two, "m#1", "cooling_down").await;
    one.shutdown().await;
    two.shutdown().await;
}

#[tokio::test]
async fn redis_going_away_does_not_break_requests() {
    let Some(url) = redis_url().await else {
        return;
    };
    let gate = Gate::start(&url).await;
    let a = Mock::start(Reply::Json(500, json!({"error": {"message": "boom"}}))).await;
    let b = Mock::start(Reply::Echo).await;
    let models = group("m", &[(&a, "order: 1"), (&b, "order: 2")]);
    let router = "{routing_strategy: ordered, allowed_fails: 0, cooldown_time: 30}";
    let server = redis_proxy(&models, router, &gate.url, &unique_prefix()).await;
    assert_eq!(header(&server, "m").await.0, 200);
    gate.cut();
    // The sync task notices within a tick or two.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let h = get_json(&server, "/health").await;
        if h["redis"]["mode"] == "local" {
            assert_eq!(h["status"], "ready");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{h}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Requests go on, and the local cooldown still keeps m#1 out.
    for _ in 0..5 {
        let (status, backend, _) = header(&server, "m").await;
        assert_eq!((status, backend.as_str()), (200, "m#2"));
    }
    assert_eq!(a.count(), 1);
    gate.restore();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let h = get_json(&server, "/health").await;
        if h["redis"]["mode"] == "shared" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(header(&server, "m").await.0, 200);
    server.shutdown().await;
}
