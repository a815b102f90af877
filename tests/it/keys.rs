//! Virtual keys, teams, prices and spend (docs/keys-and-spend.md) through
//! the real proxy: the admin API makes keys and teams in the log's
//! database, requests with them are held to their models, budgets and
//! limits, each answer's cost lands in its record and the spend report,
//! and two instances sharing PostgreSQL and Redis hold one budget and see
//! one revocation.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{self, *};

/// The mock's answers (3 input, 2 output tokens) cost 0.7 USD each at
/// these prices (USD per million tokens).
fn models(mock: &Mock) -> String {
    format!(
        "model_list:\n\
         - {{model_name: m1, model_params: {{api_base: '{url}', pricing: {{input: 100000, output: 200000}}}}}}\n\
         - {{model_name: m2, model_params: {{api_base: '{url}', pricing: {{input: 100000, output: 200000}}}}}}\n\
         - {{model_name: free, model_params: {{api_base: '{url}', target_model: my-local-model}}}}\n",
        url = mock.url
    )
}

async fn call(
    server: &yallmp::Server,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, http::HeaderMap, Value) {
    let mut r = client().request(method.parse().unwrap(), format!("{}{path}", server.url()));
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    if let Some(b) = body {
        r = r
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn admin(
    server: &yallmp::Server,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let (s, _, v) = call(server, method, path, None, body).await;
    (s, v)
}

async fn chat(server: &yallmp::Server, key: &str, model: &str) -> (u16, http::HeaderMap, Value) {
    call(
        server,
        "POST",
        "/v1/chat/completions",
        Some(key),
        Some(json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})),
    )
    .await
}

/// Polls `f` until it gives `Some` (the log's writer and the key reload run
/// in the background), for up to 10 s.
async fn eventually<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..200 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 10 s");
}

#[tokio::test]
async fn keys_hold_requests_to_their_models_and_budgets_and_costs_are_logged() {
    let mock = Mock::start(Reply::Echo).await;
    let logged = support::logged::logged_proxy(&models(&mock), None).await;
    let server = &logged.server;
    // Open until the first key exists.
    assert_eq!(chat(server, "anything", "m1").await.0, 200);

    let (s, team) = admin(
        server,
        "POST",
        "/admin/teams",
        Some(json!({"name": "ml", "models": ["m1", "free"]})),
    )
    .await;
    assert_eq!(s, 201, "{team}");
    let (s, key) = admin(
        server,
        "POST",
        "/admin/keys",
        Some(json!({"name": "ci", "team": "ml", "models": ["m*"], "max_budget": 1.0, "budget_duration": "1d",
            "metadata": {"owner": "ana"}})),
    )
    .await;
    assert_eq!(s, 201, "{key}");
    let secret = key["key"].as_str().unwrap().to_string();
    let id = key["id"].as_str().unwrap().to_string();
    assert!(secret.starts_with("yk-"));
    assert_eq!(key["team"], "ml");
    assert_eq!(
        key["hint"].as_str().unwrap(),
        format!("yk-…{}", &secret[secret.len() - 4..])
    );
    assert!(key.get("hash").is_none(), "{key}");

    // Now every request needs a key.
    let (s, _, e) = call(
        server,
        "POST",
        "/v1/chat/completions",
        None,
        Some(json!({"model": "m1", "messages": []})),
    )
    .await;
    assert_eq!(s, 401, "{e}");
    assert_eq!(chat(server, "yk-not-a-key", "m1").await.0, 401);

    // Its models: the key's and its team's.
    let (s, h, body) = chat(server, &secret, "m1").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(h["x-yallmp-cost"], "0.700000");
    let own_id = h["x-request-id"].to_str().unwrap().to_string();
    let (s, _, e) = chat(server, &secret, "m2").await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (403, Some("model_not_allowed")),
        "{e}"
    );
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("team `ml`"),
        "{e}"
    );
    let (s, _, e) = chat(server, &secret, "free").await;
    assert_eq!(s, 403, "{e}");
    let (_, _, listing) = call(server, "GET", "/v1/models", Some(&secret), None).await;
    let ids: Vec<&str> = listing["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["m1"]);

    // Its budget: 0.7 spent < 1.0, so one more; then refused.
    assert_eq!(chat(server, &secret, "m1").await.0, 200);
    let (s, _, e) = chat(server, &secret, "m1").await;
    assert_eq!(s, 429, "{e}");
    assert_eq!(e["error"]["type"], "insufficient_quota");
    assert_eq!(e["error"]["code"], "budget_exceeded");
    let (_, listed) = admin(server, "GET", "/admin/keys", None).await;
    let k = &listed["data"][0];
    assert!((k["spend"].as_f64().unwrap() - 1.4).abs() < 1e-9, "{k}");
    assert!(k["budget_resets_at"].is_string(), "{k}");

    // The record says who and what it cost.
    let ev = support::logged::record(&logged.dir, &own_id).await;
    let outcome = support::logged::outcome(&ev);
    assert_eq!(outcome["key_name"], "ci", "{outcome}");
    assert_eq!(outcome["key_id"], json!(id));
    assert_eq!(outcome["team"], "ml");
    assert!(
        (outcome["cost_usd"].as_f64().unwrap() - 0.7).abs() < 1e-9,
        "{outcome}"
    );

    // The report, from the database.
    let rows = eventually(|| async {
        let (_, r) = admin(server, "GET", "/admin/api/spend?group_by=key", None).await;
        let row = r["data"]
            .as_array()?
            .iter()
            .find(|x| x["group"] == "ci")?
            .clone();
        ((row["cost_usd"].as_f64()? - 1.4).abs() < 1e-9 && row["requests"] == 5).then_some(r)
    })
    .await;
    let ci = rows["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["group"] == "ci")
        .unwrap();
    assert_eq!(ci["key_id"], json!(id));
    assert_eq!(
        ci["requests"], 5,
        "two answered, two refused models, one spent budget: {ci}"
    );
    assert_eq!(ci["prompt_tokens"], 6);
    let (_, by_model) = admin(server, "GET", "/admin/api/spend?group_by=model", None).await;
    let m1 = by_model["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["group"] == "m1")
        .unwrap();
    assert!(
        (m1["cost_usd"].as_f64().unwrap() - 2.1).abs() < 1e-9,
        "every answer is priced, with a key or without (the first call): {m1}"
    );
    let (_, by_day) = admin(server, "GET", "/admin/api/spend?group_by=day", None).await;
    assert_eq!(
        by_day["data"][0]["group"].as_str().unwrap(),
        chrono::Utc::now().format("%Y-%m-%d").to_string()
    );
    let (s, _) = admin(server, "GET", "/admin/api/spend?group_by=week", None).await;
    assert_eq!(s, 400);
    // Metrics: spend (micro-USD) and tokens by model and key name.
    let text = metrics_text(server).await;
    assert_eq!(
        metric_value(
            &text,
            "yallmp_spend_micro_usd_total",
            &[("model", "m1"), ("key", "ci")]
        ),
        Some(1_400_000.0),
        "{text}"
    );
    assert_eq!(
        metric_value(
            &text,
            "yallmp_key_tokens_total",
            &[("model", "m1"), ("key", "ci"), ("kind", "input")]
        ),
        Some(6.0)
    );
    // The log's list says who and what it cost, and filters by key and team.
    let (_, logs) = admin(server, "GET", "/admin/api/logs?key=ci&team=ml", None).await;
    let rows = logs["data"].as_array().unwrap();
    assert_eq!(rows.len(), 5, "{logs}");
    assert!(
        rows.iter()
            .all(|r| r["key_name"] == "ci" && r["team"] == "ml"),
        "{logs}"
    );
    let costs: Vec<f64> = rows.iter().filter_map(|r| r["cost_usd"].as_f64()).collect();
    assert_eq!(costs.len(), 2, "only the two answers have a cost: {logs}");
    let (_, detail) = admin(server, "GET", &format!("/admin/api/logs/{own_id}"), None).await;
    assert!(
        (detail["cost_usd"].as_f64().unwrap() - 0.7).abs() < 1e-9,
        "{detail}"
    );
    assert_eq!(detail["key_name"], "ci");

    // Rotation: the old secret stops, the spend stays with the key.
    let (s, rotated) = admin(server, "POST", &format!("/admin/keys/{id}/rotate"), None).await;
    assert_eq!(s, 200, "{rotated}");
    let new_secret = rotated["key"].as_str().unwrap().to_string();
    assert_eq!(chat(server, &secret, "m1").await.0, 401);
    assert_eq!(chat(server, &new_secret, "m1").await.0, 429);
    // A larger budget lets it through again.
    let (s, patched) = admin(
        server,
        "PATCH",
        &format!("/admin/keys/{id}"),
        Some(json!({"max_budget": 10})),
    )
    .await;
    assert_eq!(s, 200, "{patched}");
    assert_eq!(chat(server, &new_secret, "m1").await.0, 200);
    // Revoked at once.
    let (s, _) = admin(server, "DELETE", &format!("/admin/keys/{id}"), None).await;
    assert_eq!(s, 200);
    let (s, _, e) = chat(server, &new_secret, "m1").await;
    assert_eq!(s, 401);
    assert!(
        e["error"]["message"].as_str().unwrap().contains("revoked"),
        "{e}"
    );
    let (s, e) = admin(server, "PATCH", "/admin/keys/key_nope", Some(json!({}))).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (404, Some("key_not_found"))
    );
    let (s, e) = admin(server, "POST", "/admin/teams", Some(json!({"name": "ml"}))).await;
    assert_eq!((s, e["error"]["code"].as_str()), (409, Some("conflict")));
    logged.server.shutdown().await;
}

#[tokio::test]
async fn a_stream_is_charged_at_its_end_and_a_key_has_its_own_rate_limit() {
    let mock = Mock::start(Reply::Echo).await;
    mock.push(Reply::Sse {
        frames: vec![
            chunk("Hel"),
            "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n".to_string(),
            DONE.to_string(),
        ],
        gap: Duration::ZERO,
    });
    let logged = support::logged::logged_proxy(&models(&mock), None).await;
    let server = &logged.server;
    let (_, key) = admin(
        server,
        "POST",
        "/admin/keys",
        Some(json!({"name": "s", "max_budget": 0.5})),
    )
    .await;
    let secret = key["key"].as_str().unwrap().to_string();
    let r = client()
        .post(format!("{}/v1/chat/completions", server.url()))
        .bearer_auth(&secret)
        .json(&json!({"model": "m1", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("x-yallmp-cost").is_none(),
        "a stream's cost is known at its end"
    );
    let body = r.text().await.unwrap();
    assert!(body.contains("Hel"));
    // Charged when the stream ended: the next request is over budget.
    let (s, _, e) = eventually(|| async {
        let r = chat(server, &secret, "m1").await;
        (r.0 == 429).then_some(r)
    })
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (429, Some("budget_exceeded"))
    );

    // An expired key is refused as such.
    let (s, old) = admin(
        server,
        "POST",
        "/admin/keys",
        Some(json!({"name": "old", "expires_at": "2020-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!(s, 201, "{old}");
    let (s, _, e) = chat(server, old["key"].as_str().unwrap(), "m1").await;
    assert_eq!(s, 401);
    assert!(
        e["error"]["message"].as_str().unwrap().contains("expired"),
        "{e}"
    );

    // Its own requests per minute replace the (absent) global ones.
    let (_, key) = admin(
        server,
        "POST",
        "/admin/keys",
        Some(json!({"name": "slow", "rpm_limit": 1})),
    )
    .await;
    let slow = key["key"].as_str().unwrap().to_string();
    assert_eq!(chat(server, &slow, "m1").await.0, 200);
    let (s, _, e) = chat(server, &slow, "m1").await;
    assert_eq!(s, 429, "{e}");
    assert_eq!(e["error"]["code"], "rate_limit_exceeded");
    logged.server.shutdown().await;
}

#[tokio::test]
async fn declared_keys_work_without_a_database_and_cannot_change() {
    let mock = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "{}proxy_settings:\n  logging: {{database: {{enabled: false}}}}\n  auth:\n    \
         teams: [{{name: ops, max_budget: 100}}]\n    \
         keys: [{{name: deploy, key: yk-declared-0123456789abcdef, team: ops, models: [m1]}}]\n",
        models(&mock)
    );
    let server = proxy(&yaml).await;
    assert_eq!(
        chat(&server, "yk-declared-0123456789abcdef", "m1").await.0,
        200
    );
    assert_eq!(
        chat(&server, "yk-declared-0123456789abcdef", "m2").await.0,
        403
    );
    let (_, listed) = admin(&server, "GET", "/admin/keys", None).await;
    assert_eq!(listed["data"][0]["source"], "config");
    assert_eq!(listed["data"][0]["team"], "ops");
    assert!((listed["data"][0]["spend"].as_f64().unwrap() - 0.7).abs() < 1e-9);
    let id = listed["data"][0]["id"].as_str().unwrap().to_string();
    let (s, e) = admin(&server, "DELETE", &format!("/admin/keys/{id}"), None).await;
    assert_eq!((s, e["error"]["code"].as_str()), (409, Some("read_only")));
    let (s, e) = admin(&server, "POST", "/admin/keys", Some(json!({"name": "x"}))).await;
    assert_eq!((s, e["error"]["code"].as_str()), (503, Some("no_database")));
    let (s, e) = admin(&server, "GET", "/admin/api/spend", None).await;
    assert_eq!((s, e["error"]["code"].as_str()), (503, Some("no_database")));
    server.shutdown().await;
}

/// Two instances on one PostgreSQL database and one Redis: a key made on
/// one is known to the other within seconds, a budget spent through one
/// is spent for both, and a revocation on one is refused by the other.
#[tokio::test]
async fn two_instances_share_keys_budgets_and_revocations() {
    let Some(redis) = support::redis::redis_url().await else {
        return;
    };
    support::pg::with_fresh_database(|url| async move {
        let mock = Mock::start(Reply::Echo).await;
        let prefix = support::redis::unique_prefix();
        let yaml = format!(
            "{}proxy_settings: {{redis_url: '{redis}', redis_key_prefix: '{prefix}'}}\n",
            models(&mock)
        );
        let a = proxy_logging_to(&yaml, Some(support::pg::target(&url))).await;
        let b = proxy_logging_to(&yaml, Some(support::pg::target(&url))).await;
        let (s, key) = admin(
            &a,
            "POST",
            "/admin/keys",
            Some(json!({"name": "shared", "max_budget": 1.0})),
        )
        .await;
        assert_eq!(s, 201, "{key}");
        let secret = key["key"].as_str().unwrap().to_string();
        let id = key["id"].as_str().unwrap().to_string();
        // B learns of the key from the database.
        eventually(|| async { (chat(&b, &secret, "m1").await.0 == 200).then_some(()) }).await;
        // 0.7 spent through B, 0.7 through A: A's next one is refused, and B's.
        assert_eq!(chat(&a, &secret, "m1").await.0, 200);
        eventually(|| async { (chat(&b, &secret, "m1").await.0 == 429).then_some(()) }).await;
        assert_eq!(chat(&a, &secret, "m1").await.0, 429);
        // Revoked on A: B refuses it within seconds.
        let (s, _) = admin(&a, "DELETE", &format!("/admin/keys/{id}"), None).await;
        assert_eq!(s, 200);
        eventually(|| async { (chat(&b, &secret, "m1").await.0 == 401).then_some(()) }).await;
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}
