//! `GET /openapi.json`: every route the proxy serves is in it, every route
//! in the table is really served, the document is valid OpenAPI 3, and
//! `/docs` renders it without anything from the network.

use serde_json::Value;

use crate::support::{client, proxy};

const YAML: &str = "model_list:\n  - {model_name: m, model_params: {api_type: stub}}\nproxy_settings: {logging: {files: {enabled: false}, database: {enabled: false}}}\n";

async fn document(server: &yallmp::Server) -> (String, Value) {
    let r = client()
        .get(format!("{}/openapi.json", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap();
    (text, v)
}

/// axum's path syntax to OpenAPI's.
fn openapi_path(path: &str) -> String {
    path.replace("{*", "{")
}

#[tokio::test]
async fn every_served_route_is_in_the_document() {
    let server = proxy(YAML).await;
    let (text, _) = document(&server).await;
    let spec = oas3::from_json(&text).unwrap();
    let served = yallmp::api::routes::served();
    // The table has every group: OpenAI, Anthropic, admin, health, metrics.
    for must in [
        "/v1/chat/completions",
        "/chat/completions",
        "/v1/messages",
        "/admin/models",
        "/healthz",
        "/health",
        "/metrics",
        "/openapi.json",
        "/docs",
    ] {
        assert!(
            served.iter().any(|(_, p)| p == must),
            "{must} missing from the route table"
        );
    }
    let mut missing = Vec::new();
    for (method, path) in &served {
        let path = openapi_path(path);
        if spec.operation(method, &path).is_none() {
            missing.push(format!("{method} {path}"));
        }
    }
    assert!(missing.is_empty(), "not in /openapi.json: {missing:?}");
    // And nothing in the document that is not served.
    let documented = spec.operations().count();
    assert_eq!(documented, served.len());
}

#[tokio::test]
async fn every_route_in_the_table_is_served() {
    let server = proxy(YAML).await;
    // A route the router does not have answers 404 `not_found` (or 405):
    // each table entry, called with placeholder parameters, must not.
    for (method, path) in yallmp::api::routes::served() {
        let concrete = path
            .replace("{*id}", "x")
            .replace("{*path}", "app.js")
            .replace("{id}", "1")
            .replace("{name}", "nope");
        let r = client()
            .request(method.clone(), format!("{}{concrete}", server.url()))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        let code = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(String::from));
        assert_ne!(status, 405, "{method} {concrete}: {body}");
        assert!(
            code.as_deref() != Some("not_found"),
            "{method} {concrete} is not routed: {body}"
        );
    }
    // The check above can fail: an unknown route is `not_found`.
    let r = client()
        .get(format!("{}/v1/not-a-route", server.url()))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_found");
}

#[tokio::test]
async fn the_document_is_valid_openapi_3() {
    let server = proxy(YAML).await;
    let (text, v) = document(&server).await;
    let spec = oas3::from_json(&text).unwrap();
    let version = spec.validate_version().unwrap();
    assert_eq!(version.major, 3);
    assert!(spec.info.title.contains("yallmp"));
    // Every reference resolves to a schema in the components.
    let schemas = v["components"]["schemas"].as_object().unwrap();
    let mut refs = Vec::new();
    collect_refs(&v, &mut refs);
    assert!(refs.len() > 20, "{refs:?}");
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(schemas.contains_key(name), "dangling $ref {r}");
    }
    // Request bodies are pass-through: known fields, anything else allowed.
    let chat = &schemas["ChatCompletionRequest"];
    assert_eq!(chat["additionalProperties"], true);
    assert_eq!(chat["required"], serde_json::json!(["model", "messages"]));
    // Path parameters are declared; operation ids are unique.
    let op = &v["paths"]["/admin/models/{name}"]["delete"];
    assert_eq!(op["parameters"][0]["name"], "name");
    assert_eq!(op["parameters"][0]["in"], "path");
    let ids: Vec<&str> = spec
        .operations()
        .filter_map(|(_, _, o)| o.operation_id.as_deref())
        .collect();
    let unique: std::collections::HashSet<&&str> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
    // Anthropic routes document Anthropic's error shape.
    assert_eq!(
        v["paths"]["/v1/messages"]["post"]["responses"]["default"]["content"]["application/json"]["schema"]
            ["$ref"],
        "#/components/schemas/AnthropicError"
    );
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", Value::String(s)) => out.push(s.clone()),
                    _ => collect_refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn docs_page_is_embedded_and_fetches_nothing_from_the_network() {
    let server = proxy(YAML).await;
    let r = client()
        .get(format!("{}/docs", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = r.text().await.unwrap();
    assert!(
        html.contains("fetch(\"/openapi.json\")"),
        "renders the document"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://") && !html.contains("//cdn"),
        "no external resource"
    );
    assert!(!html.contains("<script src") && !html.contains("<link"));
}
