//! Wildcard model names: exact > longest literal prefix > `*`, the prefix
//! stripped or kept upstream, and `/v1/models` listing what wildcard
//! backends offer without waiting for a slow one.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support;
use crate::support::{Mock, Reply, config_error, get_json, post, proxy};

const QUIET: &str =
    "proxy_settings: {logging: {files: {enabled: false}, database: {enabled: false}}}\n";

async fn chat(server: &yallmp::Server, model: &str) -> (u16, Value) {
    let (status, _, body) = post(
        server,
        "/v1/chat/completions",
        &json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn exact_beats_longest_prefix_beats_star() {
    let exact = Mock::start(Reply::Echo).await;
    let short = Mock::start(Reply::Echo).await;
    let long = Mock::start(Reply::Echo).await;
    let star = Mock::start(Reply::Echo).await;
    // `*` first in the file: precedence is by prefix, not file order.
    let yaml = format!(
        "model_list:
  - {{model_name: '*', model_params: {{api_base: '{}'}}}}
  - {{model_name: 'local-*', model_params: {{api_base: '{}'}}}}
  - {{model_name: 'local-q*', model_params: {{api_base: '{}'}}}}
  - {{model_name: local-special, model_params: {{api_base: '{}'}}}}
{QUIET}",
        star.url, short.url, long.url, exact.url
    );
    let server = proxy(&yaml).await;
    for (model, mock) in [
        ("local-special", &exact),
        ("local-llama", &short),
        ("local-qwen3", &long),
        ("gpt-4o", &star),
        ("local-", &short),
    ] {
        let before = mock.count();
        let (status, v) = chat(&server, model).await;
        assert_eq!(status, 200, "{model}: {v}");
        assert_eq!(mock.count(), before + 1, "{model} went elsewhere");
        // Without strip_prefix the requested name goes upstream unchanged.
        assert_eq!(v["model"], model);
    }
    assert_eq!(
        (exact.count(), short.count(), long.count(), star.count()),
        (1, 2, 1, 1)
    );
}

#[tokio::test]
async fn no_match_is_model_not_found() {
    let m = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n  - {{model_name: 'local-*', model_params: {{api_base: '{}'}}}}\n{QUIET}",
        m.url
    );
    let server = proxy(&yaml).await;
    let (status, v) = chat(&server, "remote-x").await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["error"]["code"], "model_not_found");
    let r = support::client()
        .get(format!("{}/v1/models/local-anything", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = support::client()
        .get(format!("{}/v1/models/remote-x", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(m.count(), 0);
}

#[tokio::test]
async fn strip_prefix_forwards_the_rest_and_a_set_model_wins() {
    let openai = Mock::start(Reply::Echo).await;
    let kept = Mock::start(Reply::Echo).await;
    let fixed = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:
  - {{model_name: 'openai/*', model_params: {{api_base: '{}', strip_prefix: true}}}}
  - {{model_name: 'raw/*', model_params: {{api_base: '{}'}}}}
  - {{model_name: 'fixed-*', model_params: {{api_base: '{}', strip_prefix: true, model: always-this}}}}
{QUIET}",
        openai.url, kept.url, fixed.url
    );
    let server = proxy(&yaml).await;
    let (status, v) = chat(&server, "openai/gpt-4o-mini").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(openai.hits()[0].json()["model"], "gpt-4o-mini");
    // The answer is the backend's, unchanged.
    assert_eq!(v["model"], "gpt-4o-mini");
    let (_, _) = chat(&server, "raw/org/model").await;
    assert_eq!(kept.hits()[0].json()["model"], "raw/org/model");
    let (_, _) = chat(&server, "fixed-x").await;
    assert_eq!(fixed.hits()[0].json()["model"], "always-this");
}

#[test]
fn strip_prefix_needs_a_wildcard() {
    let err = config_error(
        "model_list:\n  - {model_name: plain, model_params: {api_base: 'http://x', strip_prefix: true}}\n",
    )
    .to_string();
    assert!(
        err.contains("model_list[0].model_params.strip_prefix: only for a wildcard model_name"),
        "{err}"
    );
}

fn ids(listing: &Value) -> Vec<String> {
    listing["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn listing_shows_wildcard_offers_and_never_waits_for_a_slow_backend() {
    let list = |ids: &[&str]| {
        Reply::Json(
            200,
            json!({"object": "list", "data": ids.iter().map(|i| json!({"id": i, "object": "model"})).collect::<Vec<_>>()}),
        )
    };
    let fast = Mock::start(list(&["gpt-4o", "gpt-4o-mini"])).await;
    // Answers only after 20 s: far beyond any listing's patience.
    let slow = Mock::start(Reply::Delay(
        Duration::from_secs(20),
        Box::new(list(&["slow-1"])),
    ))
    .await;
    let filtered = Mock::start(list(&["local-a", "other-b"])).await;
    let yaml = format!(
        "model_list:
  - {{model_name: exact-one, model_params: {{api_type: stub}}}}
  - {{model_name: 'openai/*', model_params: {{api_base: '{}', api_key: sk-fast, strip_prefix: true}}}}
  - {{model_name: 'slow-*', model_params: {{api_base: '{}'}}}}
  - {{model_name: 'local-*', model_params: {{api_base: '{}'}}}}
{QUIET}",
        fast.url, slow.url, filtered.url
    );
    let server = proxy(&yaml).await;

    let started = Instant::now();
    let first = get_json(&server, "/v1/models").await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the listing waited {:?}",
        started.elapsed()
    );
    let first_ids = ids(&first);
    assert_eq!(first_ids[0], "exact-one");
    assert!(
        first_ids.iter().all(|i| !i.contains('*')),
        "patterns are not listed: {first_ids:?}"
    );

    // The fast backends' lists arrive in the background.
    let deadline = Instant::now() + Duration::from_secs(10);
    let listed = loop {
        let started = Instant::now();
        let v = get_json(&server, "/v1/models").await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a listing waited {:?} while the slow fetch runs",
            started.elapsed()
        );
        let now = ids(&v);
        if now.contains(&"openai/gpt-4o-mini".to_string()) && now.contains(&"local-a".to_string()) {
            break now;
        }
        assert!(Instant::now() < deadline, "offers never listed: {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        listed,
        [
            "exact-one",
            "openai/gpt-4o",
            "openai/gpt-4o-mini",
            "local-a"
        ],
        "prefix put back, names the pattern does not cover left out, the slow one absent"
    );
    // Each backend was asked once (cached), with its own key.
    let hits = fast.hits();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].path, "/v1/models");
    assert_eq!(hits[0].headers["authorization"], "Bearer sk-fast");
    assert_eq!(slow.count(), 1, "one fetch at a time per backend");
    assert_eq!(filtered.count(), 1);
}
