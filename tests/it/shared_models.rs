//! Runtime models shared through PostgreSQL: two proxy instances on one
//! database see each other's registrations and deletions, the key of a
//! runtime model is stored encrypted, and without a secret to encrypt it
//! with, registering a keyed model is refused.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

const KEY: &str = "sk-shared-SECRET-51c9e";
const PASSWORD: &str = "admin-pw-shared-test";

fn yaml(db: &str) -> String {
    format!(
        "model_list:\n  - {{model_name: base, model_params: {{api_type: stub}}}}\n\
         proxy_settings:\n  auth: {{admin_password: {PASSWORD}}}\n\
         database:\n  url: {db}\n"
    )
}

async fn admin(
    server: &yallmp::Server,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client()
        .request(method.parse().unwrap(), format!("{}{path}", server.url()))
        .bearer_auth(PASSWORD);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert!(!text.contains(KEY), "the key leaked: {text}");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn model_ids(server: &yallmp::Server) -> Vec<String> {
    get_json(server, "/v1/models").await["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until `server` lists (or no longer lists) `model`.
async fn wait_for(server: &yallmp::Server, model: &str, present: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if model_ids(server).await.iter().any(|m| m == model) == present {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{model} never became {}",
            if present { "visible" } else { "gone" }
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn two_instances_share_runtime_models() {
    let Some(base) = pg::base_url() else {
        return;
    };
    let db = pg::fresh_database(&base).await;
    let mock = Mock::start(Reply::Echo).await;
    let a = proxy(&yaml(&db)).await;
    let b = proxy(&yaml(&db)).await;

    // Registered on A, served by B with its key.
    let (status, _) = admin(
        &a,
        "POST",
        "/admin/models",
        Some(json!({"model_name": "shared", "api_base": mock.url, "api_key": KEY})),
    )
    .await;
    assert_eq!(status, 201);
    wait_for(&b, "shared", true).await;
    let (status, _, _) = post(
        &b,
        "/v1/chat/completions",
        &json!({"model": "shared", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let hit = mock.hits().pop().unwrap();
    assert_eq!(
        hit.headers["authorization"].to_str().unwrap(),
        format!("Bearer {KEY}")
    );

    // The database never holds the key in the clear.
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db).await.unwrap();
        let stored: String =
            sqlx::query_scalar("SELECT overlay FROM yallmp_runtime_models WHERE id = 1")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert!(stored.contains("\"shared\""), "{stored}");
        assert!(!stored.contains(KEY), "key stored in the clear: {stored}");
    }

    // Deleted on B, gone from A; a third instance starts with the result.
    let (status, _) = admin(&b, "DELETE", "/admin/models/shared", None).await;
    assert_eq!(status, 200);
    wait_for(&a, "shared", false).await;
    let (status, _) = admin(
        &b,
        "POST",
        "/admin/models",
        Some(json!({"model_name": "later", "api_base": mock.url})),
    )
    .await;
    assert_eq!(status, 201);
    let c = proxy(&yaml(&db)).await;
    let ids = model_ids(&c).await;
    assert!(ids.contains(&"later".to_string()) && !ids.contains(&"shared".to_string()));

    for s in [a, b, c] {
        s.shutdown().await;
    }
    pg::drop_database(&base, &db).await;
}

#[tokio::test]
async fn a_keyed_model_needs_a_secret_to_be_shared() {
    let Some(base) = pg::base_url() else {
        return;
    };
    let db = pg::fresh_database(&base).await;
    let yaml = format!(
        "model_list:\n  - {{model_name: base, model_params: {{api_type: stub}}}}\ndatabase:\n  url: {db}\n"
    );
    let server = proxy(&yaml).await;
    let r = client()
        .post(format!("{}/admin/models", server.url()))
        .json(&json!({"model_name": "k", "api_base": "http://127.0.0.1:9/v1", "api_key": KEY}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "secret_key_required", "{v}");
    assert!(!model_ids(&server).await.contains(&"k".to_string()));
    // Without a key it is shared as usual.
    let r = client()
        .post(format!("{}/admin/models", server.url()))
        .json(&json!({"model_name": "nokey", "api_base": "http://127.0.0.1:9/v1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    server.shutdown().await;
    pg::drop_database(&base, &db).await;
}
