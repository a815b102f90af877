//! `api_type: azure`: the deployment URL, the `api-version` query and the
//! `api-key` header, streamed or not; Azure's content-filter refusals reach
//! the client as they are, never retried nor sent to a fallback.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support;
use crate::support::{DONE, Mock, Reply, chunk, post, proxy, sse_data};

/// The mock's origin: Azure's `api_base` has no `/v1`.
fn origin(mock: &Mock) -> &str {
    mock.url.strip_suffix("/v1").unwrap_or(&mock.url)
}

#[tokio::test]
async fn chat_goes_to_the_deployment_with_api_version_and_api_key() {
    let azure = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:
  - model_name: gpt4o
    model_params: {{api_type: azure, api_base: '{}', api_key: az-secret, api_version: 2024-10-21, deployment: my-gpt4o, model: gpt-4o}}
proxy_settings: {{logging: {{files: {{enabled: false}}, database: {{enabled: false}}}}}}
",
        origin(&azure)
    );
    let server = proxy(&yaml).await;
    let r = support::client()
        .post(format!("{}/v1/chat/completions", server.url()))
        .header("authorization", "Bearer client-key")
        .header("content-type", "application/json")
        .body(json!({"model": "gpt4o", "messages": [{"role": "user", "content": "hi"}], "x_extra": 1}).to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "model=gpt-4o");
    let hits = azure.hits();
    assert_eq!(hits.len(), 1);
    let hit = &hits[0];
    assert_eq!(hit.path, "/openai/deployments/my-gpt4o/chat/completions");
    assert_eq!(hit.query, "api-version=2024-10-21");
    assert_eq!(hit.headers["api-key"], "az-secret");
    assert!(
        hit.headers.get("authorization").is_none(),
        "no Bearer goes to Azure: {:?}",
        hit.headers
    );
    // Unknown fields pass through.
    assert_eq!(hit.json()["x_extra"], 1);
}

#[tokio::test]
async fn litellm_azure_prefix_names_the_deployment_and_embeddings_follow() {
    let azure = Mock::start(Reply::Json(
        200,
        json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}], "model": "e"}),
    ))
    .await;
    let yaml = format!(
        "model_list:
  - model_name: emb
    litellm_params: {{model: azure/my-embed, api_base: '{}/', api_key: k2, api_version: 2024-06-01}}
proxy_settings: {{logging: {{files: {{enabled: false}}, database: {{enabled: false}}}}}}
",
        origin(&azure)
    );
    let server = proxy(&yaml).await;
    let (status, _, body) = post(
        &server,
        "/v1/embeddings",
        &json!({"model": "emb", "input": "a"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let hit = &azure.hits()[0];
    assert_eq!(hit.path, "/openai/deployments/my-embed/embeddings");
    assert_eq!(hit.query, "api-version=2024-06-01");
    assert_eq!(hit.headers["api-key"], "k2");
    assert_eq!(hit.json()["model"], "my-embed");
}

#[tokio::test]
async fn streams_relay_frame_by_frame() {
    let azure = Mock::start(Reply::Sse {
        frames: vec![chunk("Hel"), chunk("lo"), DONE.to_string()],
        gap: Duration::from_millis(5),
    })
    .await;
    let yaml = format!(
        "model_list:
  - model_name: gpt4o
    model_params: {{api_type: azure, api_base: '{}', api_key: az-secret, deployment: dep1}}
proxy_settings: {{logging: {{files: {{enabled: false}}, database: {{enabled: false}}}}}}
",
        origin(&azure)
    );
    let server = proxy(&yaml).await;
    let (status, headers, body) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "gpt4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .contains("event-stream")
    );
    let data = sse_data(&body);
    let text: String = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert_eq!(text, "Hello");
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let hit = &azure.hits()[0];
    assert_eq!(hit.path, "/openai/deployments/dep1/chat/completions");
    // No api_version given: the documented default.
    assert_eq!(hit.query, "api-version=2024-10-21");
    assert_eq!(hit.headers["api-key"], "az-secret");
}

fn content_filter_error() -> Value {
    json!({"error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
        "type": null, "param": "prompt", "code": "content_filter", "status": 400,
        "innererror": {"code": "ResponsibleAIPolicyViolation",
                       "content_filter_result": {"hate": {"filtered": true, "severity": "high"}}}
    }})
}

#[tokio::test]
async fn content_filter_400_reaches_the_client_as_is_and_is_never_retried() {
    let azure = Mock::start(Reply::Json(400, content_filter_error())).await;
    let second = Mock::start(Reply::Echo).await;
    let fallback = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:
  - model_name: gpt4o
    model_params: {{api_type: azure, api_base: '{}', api_key: k, deployment: d}}
    fallbacks: [backup]
  - model_name: gpt4o
    model_params: {{api_base: '{}', api_key: k}}
  - model_name: backup
    model_params: {{api_base: '{}', api_key: k}}
router_settings: {{routing_strategy: ordered, num_retries: 3}}
proxy_settings: {{logging: {{files: {{enabled: false}}, database: {{enabled: false}}}}}}
",
        origin(&azure),
        second.url,
        fallback.url
    );
    let server = proxy(&yaml).await;
    for stream in [false, true] {
        let (status, _, body) = post(
            &server,
            "/v1/chat/completions",
            &json!({"model": "gpt4o", "stream": stream, "messages": [{"role": "user", "content": "bad"}]}),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v, content_filter_error(), "passed on unchanged");
    }
    assert_eq!(azure.count(), 2, "one attempt per request, no retry");
    assert_eq!(second.count(), 0, "no other backend tried");
    assert_eq!(fallback.count(), 0, "no fallback tried");
}

#[tokio::test]
async fn content_filter_is_final_even_under_a_retryable_status() {
    // Some gateways in front of Azure turn the refusal into a 5xx or 429:
    // the content-filter body still marks it final.
    let mut refusal = content_filter_error();
    refusal["error"]["code"] = Value::Null;
    let azure = Mock::start(Reply::Json(429, refusal.clone())).await;
    let fallback = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:
  - model_name: gpt4o
    model_params: {{api_type: azure, api_base: '{}', api_key: k, deployment: d}}
    fallbacks: [backup]
  - model_name: backup
    model_params: {{api_base: '{}', api_key: k}}
router_settings: {{num_retries: 3, retry_backoff_ms: 1}}
proxy_settings: {{logging: {{files: {{enabled: false}}, database: {{enabled: false}}}}}}
",
        origin(&azure),
        fallback.url
    );
    let server = proxy(&yaml).await;
    let (status, _, body) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "gpt4o", "messages": [{"role": "user", "content": "bad"}]}),
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), refusal);
    assert_eq!(azure.count(), 1);
    assert_eq!(fallback.count(), 0);
}

#[test]
fn azure_config_errors_name_the_key() {
    let env = yallmp::config::Env::isolated::<[(&str, &str); 0], _, _>([]);
    let err = yallmp::Config::from_yaml(
        "model_list:\n  - {model_name: a, model_params: {api_type: azure, api_base: 'https://x.openai.azure.com'}}\n  - {model_name: b, model_params: {api_type: azure, api_base: 'https://x.openai.azure.com', deployment: 'a/b'}}\n",
        None,
        &env,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("model_list[0].model_params.deployment: required for api_type azure"),
        "{err}"
    );
    assert!(
        err.contains("model_list[1].model_params.deployment: `a/b`"),
        "{err}"
    );
}

#[tokio::test]
async fn admin_registration_takes_an_azure_backend() {
    let azure = Mock::start(Reply::Echo).await;
    let server = proxy(
        "model_list: []\nproxy_settings: {logging: {files: {enabled: false}, database: {enabled: false}}}\n",
    )
    .await;
    let r = support::client()
        .post(format!("{}/admin/models", server.url()))
        .json(&json!({"model_name": "rt", "api_type": "azure", "api_base": origin(&azure),
                      "api_key": "az-runtime-SECRET", "deployment": "rt-dep", "api_version": "2025-01-01-preview"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let text = r.text().await.unwrap();
    assert!(!text.contains("az-runtime-SECRET"), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let b = &v["model"]["backends"][0];
    assert_eq!(
        (
            b["api_type"].as_str(),
            b["deployment"].as_str(),
            b["api_version"].as_str()
        ),
        (Some("azure"), Some("rt-dep"), Some("2025-01-01-preview"))
    );
    let (status, _, body) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "rt", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let hit = &azure.hits()[0];
    assert_eq!(hit.path, "/openai/deployments/rt-dep/chat/completions");
    assert_eq!(hit.query, "api-version=2025-01-01-preview");
    assert_eq!(hit.headers["api-key"], "az-runtime-SECRET");
}
