//! The response cache end to end: hits and misses for plain and stream
//! answers, the per-request controls, invalidation, the request log's
//! `cache` field, and the Redis backend shared by two instances and
//! surviving a Redis outage.

use std::time::Duration;

use serde_json::{Value, json};

use yallmp::Server;
use yallmp::cache::Key;
use yallmp::endpoint::Endpoint;
use yallmp::pipeline::request::RequestBody;

use crate::support::redis::{Gate, redis_url, unique_prefix};
use crate::support::*;

fn yaml(api_base: &str, cache: &str) -> String {
    format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_base: '{api_base}'}}}}\n  - {{model_name: m2, model_params: {{api_base: '{api_base}'}}}}\nproxy_settings:\n  cache: {cache}\n"
    )
}

fn cache_header(h: &http::HeaderMap) -> Option<&str> {
    h.get("x-yallmp-cache").and_then(|v| v.to_str().ok())
}

/// Waits until the answer to `body` is stored (stores run in the
/// background).
async fn wait_stored(server: &Server, body: &Value) {
    wait_stored_at(server, Endpoint::ChatCompletions, body).await
}

async fn wait_stored_at(server: &Server, endpoint: Endpoint, body: &Value) {
    let cache = server.state().cache.clone().expect("cache on");
    let mut b = body.clone();
    if let Some(o) = b.as_object_mut() {
        o.remove("cache");
    }
    let raw = b.to_string();
    let parsed = RequestBody::parse(raw.as_bytes()).unwrap();
    let model = parsed.model().unwrap();
    let key = Key::new(endpoint, &model, &parsed, None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cache.contains(&key).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "answer never stored"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn chat(content: &str) -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": content}], "temperature": 0.7})
}

#[tokio::test]
async fn non_stream_miss_then_hit() {
    let mock = Mock::start(Reply::Echo).await;
    let server = proxy(&yaml(&mock.url, "{enabled: true}")).await;
    let body = chat("hello");
    let (s, h, first) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!((s, cache_header(&h)), (200, Some("miss")));
    wait_stored(&server, &body).await;
    // Same request, keys in another order: the same entry.
    let reordered = json!({"temperature": 0.7, "messages": [{"content": "hello", "role": "user"}], "model": "m"});
    let (s, h, second) = post(&server, "/v1/chat/completions", &reordered).await;
    assert_eq!((s, cache_header(&h)), (200, Some("hit")));
    assert_eq!(second, first);
    assert_eq!(h["content-type"], "application/json");
    assert!(h.contains_key("x-request-id"));
    assert_eq!(mock.count(), 1, "the hit never reached the upstream");
    // Another prompt, another entry.
    let (_, h, _) = post(&server, "/v1/chat/completions", &chat("other")).await;
    assert_eq!(cache_header(&h), Some("miss"));
    assert_eq!(mock.count(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn stream_miss_then_hit_replays_the_frames() {
    let frames = vec![chunk("Hel"), chunk("lo"), DONE.to_string()];
    let mock = Mock::start(Reply::Sse {
        frames: frames.clone(),
        gap: Duration::from_millis(1),
    })
    .await;
    let server = proxy(&yaml(&mock.url, "{enabled: true}")).await;
    let mut body = chat("stream me");
    body["stream"] = json!(true);
    let (s, h, first) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!((s, cache_header(&h)), (200, Some("miss")));
    assert_eq!(first, frames.concat());
    wait_stored(&server, &body).await;
    let (s, h, second) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!((s, cache_header(&h)), (200, Some("hit")));
    assert_eq!(h["content-type"], "text/event-stream");
    assert_eq!(second, first);
    assert_eq!(mock.count(), 1);
    // The non-stream form of the same request is its own entry.
    body["stream"] = json!(false);
    mock.push(Reply::Echo);
    let (_, h, _) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(cache_header(&h), Some("miss"));
    server.shutdown().await;
}

#[tokio::test]
async fn failed_and_broken_answers_are_not_cached() {
    let mock = Mock::start(Reply::Echo).await;
    let server = proxy(&yaml(&mock.url, "{enabled: true}")).await;
    // A 4xx passed through.
    mock.push(Reply::Json(400, json!({"error": {"message": "bad"}})));
    let body = chat("x");
    let (s, _, _) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(s, 400);
    let (s, h, _) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!((s, cache_header(&h)), (200, Some("miss")));
    // A stream cut before its end, and one that carries an error event.
    let mut stream = chat("y");
    stream["stream"] = json!(true);
    mock.push(Reply::SseCut(vec![chunk("a")]));
    let (s, _, _) = post(&server, "/v1/chat/completions", &stream).await;
    assert_eq!(s, 200);
    mock.push(Reply::Sse {
        frames: vec![
            chunk("a"),
            "data: {\"error\":{\"message\":\"mid-stream\"}}\n\n".into(),
            DONE.into(),
        ],
        gap: Duration::ZERO,
    });
    let (_, h, _) = post(&server, "/v1/chat/completions", &stream).await;
    assert_eq!(cache_header(&h), Some("miss"));
    mock.push(Reply::Sse {
        frames: vec![chunk("ok"), DONE.into()],
        gap: Duration::ZERO,
    });
    let (_, h, _) = post(&server, "/v1/chat/completions", &stream).await;
    assert_eq!(cache_header(&h), Some("miss"), "nothing was stored before");
    let before = mock.count();
    wait_stored(&server, &stream).await;
    let (_, h, text) = post(&server, "/v1/chat/completions", &stream).await;
    assert_eq!(cache_header(&h), Some("hit"));
    assert_eq!(text, [chunk("ok"), DONE.to_string()].concat());
    assert_eq!(mock.count(), before);
    server.shutdown().await;
}

#[tokio::test]
async fn no_cache_no_store_and_ttl() {
    let mock = Mock::start(Reply::Echo).await;
    let server = proxy(&yaml(&mock.url, "{enabled: true}")).await;
    let body = chat("controls");
    post(&server, "/v1/chat/completions", &body).await;
    wait_stored(&server, &body).await;

    // no-cache: not read (and the field never goes upstream).
    let mut skip = body.clone();
    skip["cache"] = json!({"no-cache": true});
    let (s, h, _) = post(&server, "/v1/chat/completions", &skip).await;
    assert_eq!((s, cache_header(&h)), (200, Some("skip")));
    assert_eq!(mock.count(), 2);
    let sent = mock.hits().last().unwrap().json();
    assert!(sent.get("cache").is_none(), "{sent}");
    assert_eq!(sent["temperature"], 0.7);
    // The header says the same.
    let r = client()
        .post(format!("{}/v1/chat/completions", server.url()))
        .header("content-type", "application/json")
        .header("cache-control", "no-cache")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(cache_header(r.headers()), Some("skip"));
    assert_eq!(mock.count(), 3);
    // Without controls: a hit.
    let (_, h, _) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(cache_header(&h), Some("hit"));
    assert_eq!(mock.count(), 3);

    // no-store: answered, not kept.
    let mut nostore = chat("not kept");
    nostore["cache"] = json!({"no-store": true});
    for _ in 0..2 {
        let (_, h, _) = post(&server, "/v1/chat/completions", &nostore).await;
        assert_eq!(cache_header(&h), Some("miss"));
    }
    assert_eq!(mock.count(), 5);

    // ttl: kept that long only.
    let mut short = chat("short-lived");
    short["cache"] = json!({"ttl": 0.3});
    post(&server, "/v1/chat/completions", &short).await;
    wait_stored(&server, &short).await;
    let (_, h, _) = post(&server, "/v1/chat/completions", &short).await;
    assert_eq!(cache_header(&h), Some("hit"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, h, _) = post(&server, "/v1/chat/completions", &short).await;
    assert_eq!(cache_header(&h), Some("miss"), "expired");

    // A `cache` field the proxy cannot read is the client's error.
    let mut bad = chat("bad");
    bad["cache"] = json!({"no-cache": "yes"});
    let (s, _, text) = post(&server, "/v1/chat/completions", &bad).await;
    assert_eq!(s, 400);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], "invalid_cache_control");
    server.shutdown().await;
}

#[tokio::test]
async fn invalidation_all_or_by_model() {
    let mock = Mock::start(Reply::Echo).await;
    let server = proxy(&yaml(&mock.url, "{enabled: true}")).await;
    let a = chat("a");
    let mut b = chat("a");
    b["model"] = json!("m2");
    for body in [&a, &b] {
        post(&server, "/v1/chat/completions", body).await;
        wait_stored(&server, body).await;
    }
    let del = |q: &'static str| {
        let url = format!("{}/admin/cache{q}", server.url());
        async move {
            let r = client().delete(url).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (s, v) = del("?model=m").await;
    assert_eq!(s, 200);
    assert_eq!(v["removed"], 1, "{v}");
    assert_eq!(v["model"], "m");
    let (_, h, _) = post(&server, "/v1/chat/completions", &b).await;
    assert_eq!(
        cache_header(&h),
        Some("hit"),
        "the other model's entry stays"
    );
    let (_, h, _) = post(&server, "/v1/chat/completions", &a).await;
    assert_eq!(cache_header(&h), Some("miss"));
    wait_stored(&server, &a).await;
    let (s, v) = del("").await;
    assert_eq!((s, v["removed"].clone()), (200, json!(2)), "{v}");
    for body in [&a, &b] {
        let (_, h, _) = post(&server, "/v1/chat/completions", body).await;
        assert_eq!(cache_header(&h), Some("miss"));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn off_by_default_field_still_stripped() {
    let mock = Mock::start(Reply::Echo).await;
    let server = proxy(&format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\n",
        mock.url
    ))
    .await;
    assert!(server.state().cache.is_none());
    let mut body = chat("x");
    body["cache"] = json!({"no-store": true});
    for _ in 0..2 {
        let (s, h, _) = post(&server, "/v1/chat/completions", &body).await;
        assert_eq!(s, 200);
        assert_eq!(cache_header(&h), None);
    }
    assert_eq!(mock.count(), 2);
    assert!(mock.hits()[0].json().get("cache").is_none());
    let r = client()
        .delete(format!("{}/admin/cache", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "cache_disabled");
    server.shutdown().await;
}

#[tokio::test]
async fn endpoints_not_listed_are_not_cached() {
    let mock = Mock::start(Reply::Json(
        200,
        json!({"object": "list", "data": [{"embedding": [0.1]}]}),
    ))
    .await;
    let server = proxy(&yaml(
        &mock.url,
        "{enabled: true, endpoints: [chat_completions]}",
    ))
    .await;
    let body = json!({"model": "m", "input": "x"});
    for _ in 0..2 {
        let (s, h, _) = post(&server, "/v1/embeddings", &body).await;
        assert_eq!((s, cache_header(&h)), (200, None));
    }
    assert_eq!(mock.count(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn responses_streams_and_embeddings_are_cached() {
    let server = proxy(
        "model_list:\n  - {model_name: s, model_params: {api_type: stub}}\nproxy_settings:\n  enable_responses_endpoint: true\n  cache: {enabled: true}\n",
    )
    .await;
    let responses = json!({"model": "s", "input": "hi there", "stream": true});
    let (s, h, first) = post(&server, "/v1/responses", &responses).await;
    assert_eq!((s, cache_header(&h)), (200, Some("miss")));
    assert!(first.contains("event: response.completed"), "{first}");
    wait_stored_at(&server, Endpoint::Responses, &responses).await;
    let (_, h, second) = post(&server, "/v1/responses", &responses).await;
    assert_eq!(cache_header(&h), Some("hit"));
    assert_eq!(h["content-type"], "text/event-stream");
    assert_eq!(second, first);

    let embeddings = json!({"model": "s", "input": ["a", "b"]});
    let (_, h, first) = post(&server, "/v1/embeddings", &embeddings).await;
    assert_eq!(cache_header(&h), Some("miss"));
    wait_stored_at(&server, Endpoint::Embeddings, &embeddings).await;
    let (_, h, second) = post(&server, "/embeddings", &embeddings).await;
    assert_eq!(cache_header(&h), Some("hit"));
    assert_eq!(second, first);
    server.shutdown().await;
}

#[tokio::test]
async fn what_is_stored_is_what_the_client_got_after_the_parsers() {
    let mock = Mock::start(Reply::Json(
        200,
        json!({"id": "c", "object": "chat.completion", "model": "m",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "<think>why</think>answer"}, "finish_reason": "stop"}]}),
    ))
    .await;
    let server = proxy(&format!(
        "model_list:\n  - model_name: m\n    model_params: {{api_base: '{}'}}\n    parsers: {{response: [parse_tags]}}\nproxy_settings:\n  cache: {{enabled: true}}\n",
        mock.url
    ))
    .await;
    let body = chat("think");
    let (_, _, first) = post(&server, "/v1/chat/completions", &body).await;
    let v: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["choices"][0]["message"]["reasoning_content"], "why");
    wait_stored(&server, &body).await;
    let (_, h, second) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(cache_header(&h), Some("hit"));
    assert_eq!(second, first);

    let mut stream = chat("think, streaming");
    stream["stream"] = json!(true);
    mock.push(Reply::Sse {
        frames: vec![
            chunk("<think>wh"),
            chunk("y</think>ans"),
            chunk("wer"),
            DONE.into(),
        ],
        gap: Duration::ZERO,
    });
    let (_, _, first) = post(&server, "/v1/chat/completions", &stream).await;
    assert!(first.contains("reasoning_content"), "{first}");
    assert!(!first.contains("<think>"), "{first}");
    wait_stored(&server, &stream).await;
    let (_, h, second) = post(&server, "/v1/chat/completions", &stream).await;
    assert_eq!(cache_header(&h), Some("hit"));
    assert_eq!(second, first);
    server.shutdown().await;
}

#[tokio::test]
async fn the_record_says_hit_or_miss() {
    let mock = Mock::start(Reply::Echo).await;
    let mut config = config(&yaml(&mock.url, "{enabled: true}"));
    let dir = isolate_logs(&mut config);
    let server = yallmp::serve(config).await.unwrap();
    let mut body = chat("logged");
    body["echo"] = json!("first");
    post(&server, "/v1/chat/completions", &body).await;
    wait_stored(&server, &body).await;
    post(&server, "/v1/chat/completions", &body).await;
    server.shutdown().await;

    let db = yallmp::reqlog::db::Db::connect(&yallmp::config::DatabaseTarget::Sqlite {
        path: dir.join("yallmp.db"),
    })
    .await
    .unwrap();
    let yallmp::reqlog::db::Db::Sqlite(pool) = &db else {
        unreachable!()
    };
    let rows: Vec<(Option<String>, Option<String>)> =
        sqlx::query_as("SELECT cache, backend FROM requests ORDER BY cache")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        vec![
            (Some("hit".into()), None),
            (Some("miss".into()), Some("m#1".into()))
        ]
    );
    let mut outcomes: Vec<Value> = std::fs::read_dir(dir.join("requests"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .map(|t| serde_json::from_str(t.lines().last().unwrap()).unwrap())
        .collect();
    outcomes.sort_by_key(|v| v["cache"].as_str().map(str::to_string));
    assert_eq!(outcomes[0]["cache"], "hit");
    assert_eq!(outcomes[0]["outcome"], "ok");
    assert_eq!(outcomes[1]["cache"], "miss");
}

fn redis_yaml(api_base: &str, url: &str, prefix: &str) -> String {
    format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_base: '{api_base}'}}}}\nproxy_settings:\n  redis_url: {url}\n  redis_key_prefix: \"{prefix}\"\n  cache: {{enabled: true, backend: redis}}\n"
    )
}

async fn redis_keys(url: &str, prefix: &str) -> Vec<String> {
    let client = ::redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    ::redis::cmd("KEYS")
        .arg(format!("{prefix}cache:*"))
        .query_async(&mut c)
        .await
        .unwrap()
}

async fn wait_redis_keys(url: &str, prefix: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while redis_keys(url, prefix).await.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never stored in redis"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn redis_cache_is_shared_by_two_instances() {
    let Some(url) = redis_url().await else {
        return;
    };
    let prefix = unique_prefix();
    let mock = Mock::start(Reply::Echo).await;
    let one = proxy(&redis_yaml(&mock.url, &url, &prefix)).await;
    let two = proxy(&redis_yaml(&mock.url, &url, &prefix)).await;
    let body = chat("shared");
    let (_, h, first) = post(&one, "/v1/chat/completions", &body).await;
    assert_eq!(cache_header(&h), Some("miss"));
    wait_redis_keys(&url, &prefix, 1).await;
    let keys = redis_keys(&url, &prefix).await;
    assert!(
        keys[0].starts_with(&format!("{prefix}cache:m:")),
        "{keys:?}"
    );
    let (_, h, second) = post(&two, "/v1/chat/completions", &body).await;
    assert_eq!(
        cache_header(&h),
        Some("hit"),
        "the other instance stored it"
    );
    assert_eq!(second, first);
    assert_eq!(mock.count(), 1);
    // A stream, too.
    let mut stream = chat("shared stream");
    stream["stream"] = json!(true);
    mock.push(Reply::Sse {
        frames: vec![chunk("s"), DONE.into()],
        gap: Duration::ZERO,
    });
    let (_, _, first) = post(&two, "/v1/chat/completions", &stream).await;
    wait_redis_keys(&url, &prefix, 2).await;
    let (_, h, second) = post(&one, "/v1/chat/completions", &stream).await;
    assert_eq!(cache_header(&h), Some("hit"));
    assert_eq!(second, first);
    // Invalidation on one instance empties the shared cache.
    let r = client()
        .delete(format!("{}/admin/cache?model=m", two.url()))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["removed"], 2, "{v}");
    assert_eq!(v["backend"], "redis");
    assert!(redis_keys(&url, &prefix).await.is_empty());
    let (_, h, _) = post(&one, "/v1/chat/completions", &body).await;
    assert_eq!(cache_header(&h), Some("miss"));
    one.shutdown().await;
    two.shutdown().await;
}

#[tokio::test]
async fn redis_cut_mid_run_does_not_break_requests() {
    let Some(url) = redis_url().await else {
        return;
    };
    let gate = Gate::start(&url).await;
    let prefix = unique_prefix();
    let mock = Mock::start(Reply::Echo).await;
    let server = proxy(&redis_yaml(&mock.url, &gate.url, &prefix)).await;
    let body = chat("before the cut");
    post(&server, "/v1/chat/completions", &body).await;
    wait_redis_keys(&url, &prefix, 1).await;

    gate.cut();
    // Requests go on: answered upstream, then from the local stand-in.
    let during = chat("during the cut");
    let (s, h, _) = post(&server, "/v1/chat/completions", &during).await;
    assert_eq!((s, cache_header(&h)), (200, Some("miss")));
    wait_stored(&server, &during).await;
    let (s, h, _) = post(&server, "/v1/chat/completions", &during).await;
    assert_eq!((s, cache_header(&h)), (200, Some("hit")));
    let r = client()
        .delete(format!("{}/admin/cache", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["warning"].is_string(), "{v}");

    gate.restore();
    let redis = server.state().redis.clone().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !redis.is_up() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "redis never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Shared again: the entry stored in Redis before the cut answers.
    let (s, h, _) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!((s, cache_header(&h)), (200, Some("hit")));
    server.shutdown().await;
}
