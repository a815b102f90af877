//! Admin API and runtime management, over HTTP: register, replace, copy,
//! delete, inheritance, parameter defaults, protection, reload, persistence,
//! and authentication.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use serde_json::{Value, json};
use tower::ServiceExt;

use yallmp::config::{Config, Env};

use crate::support::*;

const KEY: &str = "sk-admin-test-SECRET-9d1";

async fn admin(
    server: &yallmp::Server,
    method: &str,
    path: &str,
    body: Option<Value>,
    password: Option<&str>,
) -> (u16, Value) {
    let mut req = client().request(method.parse().unwrap(), format!("{}{path}", server.url()));
    if let Some(b) = body {
        req = req.json(&b);
    }
    if let Some(p) = password {
        req = req.bearer_auth(p);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert!(
        !text.contains(KEY),
        "a key leaked from {method} {path}: {text}"
    );
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn chat(server: &yallmp::Server, model: &str) -> (u16, Value) {
    let (s, _, text) = post(
        server,
        "/v1/chat/completions",
        &json!({"model": model, "messages": []}),
    )
    .await;
    (s, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn register_use_replace_copy_delete() {
    let a = Mock::start(Reply::Echo).await;
    let b = Mock::start(Reply::Echo).await;
    let server = proxy("model_list:\n  - {model_name: s, model_params: {api_type: stub}}\n").await;

    let (s, v) = admin(
        &server,
        "POST",
        "/admin/models",
        Some(
            json!({"model_name": "new", "api_base": a.url, "api_key": KEY, "target_model": "up-1"}),
        ),
        None,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["model"]["source"], "runtime");
    assert_eq!(v["model"]["backends"][0]["api_key"], "***");
    let (s, v) = chat(&server, "new").await;
    assert_eq!((s, v["model"].as_str()), (200, Some("up-1")));
    assert_eq!(
        a.hits()[0].headers["authorization"],
        format!("Bearer {KEY}")
    );

    // Replace: the next request goes to the new backend.
    let (s, _) = admin(
        &server,
        "POST",
        "/admin/models",
        Some(json!({"model_name": "new", "api_base": b.url, "target_model": "up-2"})),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (_, v) = chat(&server, "new").await;
    assert_eq!(v["model"], "up-2");
    assert_eq!((a.count(), b.count()), (1, 1));

    // Copy with an override.
    let (s, v) = admin(
        &server,
        "POST",
        "/admin/models/new/copy",
        Some(json!({"new_name": "new2", "target_model": "up-3"})),
        None,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (_, v) = chat(&server, "new2").await;
    assert_eq!(v["model"], "up-3");
    let (s, _) = admin(
        &server,
        "POST",
        "/admin/models/new/copy",
        Some(json!({"new_name": "s"})),
        None,
    )
    .await;
    assert_eq!(s, 409);

    // Listing and one model.
    let (_, v) = admin(&server, "GET", "/admin/models", None, None).await;
    let names: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["s", "new", "new2"]);
    assert_eq!(v["data"][0]["source"], "config");
    let (s, _) = admin(&server, "GET", "/admin/models/new2", None, None).await;
    assert_eq!(s, 200);

    // Delete: gone for the next request, and from /v1/models.
    let (s, _) = admin(&server, "DELETE", "/admin/models/new", None, None).await;
    assert_eq!(s, 200);
    assert_eq!(chat(&server, "new").await.0, 404);
    assert_eq!(chat(&server, "new2").await.0, 200);
    let (s, _) = admin(&server, "DELETE", "/admin/models/new", None, None).await;
    assert_eq!(s, 404);

    // Validation errors name the field.
    let (s, v) = admin(
        &server,
        "POST",
        "/admin/models",
        Some(json!({"model_name": "x", "api_bse": "http://a"})),
        None,
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("api_bse"),
        "{v}"
    );
    let (s, v) = admin(
        &server,
        "POST",
        "/admin/models",
        Some(json!({"model_name": "x", "api_base": "ftp://a"})),
        None,
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("api_base"),
        "{v}"
    );
    let (_, v) = admin(&server, "GET", "/admin/config", None, None).await;
    assert_eq!(v["auth"]["admin_password_set"], false);
    let logs = server
        .state()
        .live
        .load()
        .config
        .logging
        .files_dir
        .clone()
        .unwrap();
    server.shutdown().await;
    // A key registered at runtime is scrubbed from the request log too.
    for e in std::fs::read_dir(&logs).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        assert!(!text.contains(KEY));
    }
}

#[tokio::test]
async fn copies_keep_variables_and_implicit_bases() {
    let mock = Mock::start(Reply::Echo).await;
    let yaml = "model_list:\n  - {model_name: base, model_params: {api_base: '${BASE_URL}', api_key: '${THE_KEY}', target_model: t}}\n  - {model_name: 'base:v', parameters: {max_tokens: 5}}\n";

    let server = proxy_with_env(
        yaml,
        &[("BASE_URL", &mock.url), ("THE_KEY", "sk-from-env-var")],
    )
    .await;
    let (s, v) = admin(
        &server,
        "POST",
        "/admin/models/base/copy",
        Some(json!({"new_name": "base2"})),
        None,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(chat(&server, "base2").await.0, 200);
    assert_eq!(
        mock.hits()[0].headers["authorization"],
        "Bearer sk-from-env-var"
    );
    let (s, v) = admin(
        &server,
        "POST",
        "/admin/models/base:v/copy",
        Some(json!({"new_name": "other"})),
        None,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(chat(&server, "other").await.0, 200);
    assert_eq!(mock.hits()[1].json()["max_tokens"], 5);
    // A literal `$` in a registered value stays literal.
    let (s, v) = admin(
        &server,
        "POST",
        "/admin/models",
        Some(json!({"model_name": " spaced ", "api_base": mock.url, "api_key": "sk-$dollar"})),
        None,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["model"]["model_name"], "spaced");
    assert_eq!(chat(&server, "spaced").await.0, 200);
    assert_eq!(mock.hits()[2].headers["authorization"], "Bearer sk-$dollar");
    server.shutdown().await;
}

#[tokio::test]
async fn derived_models_follow_their_base_and_parameters_apply() {
    let mock = Mock::start(Reply::Echo).await;
    let yaml = format!(
        r#"
model_list:
  - model_name: GLM
    model_params: {{api_base: '{}', target_model: glm-4.6}}
    parameters:
      temperature: {{default: 1.0, allow_override: false}}
      max_tokens: {{default: 4096}}
  - model_name: "GLM:Cursor"
    parameters:
      max_tokens: {{default: 100}}
"#,
        mock.url
    );
    let server = proxy(&yaml).await;
    let (s, _, _) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "GLM:Cursor", "temperature": 0.1}),
    )
    .await;
    assert_eq!(s, 200);
    let sent = mock.hits()[0].json();
    assert_eq!(sent["model"], "glm-4.6");
    assert_eq!(sent["temperature"], 1.0);
    assert_eq!(sent["max_tokens"], 100);
    post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "GLM", "max_tokens": 7}),
    )
    .await;
    assert_eq!(mock.hits()[1].json()["max_tokens"], 7);

    // Change the base at runtime: the derived model follows.
    let (s, v) = admin(
        &server,
        "POST",
        "/admin/models",
        Some(json!({"model_name": "GLM", "api_base": mock.url, "target_model": "glm-4.7"})),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "GLM:Cursor"}),
    )
    .await;
    let sent = mock.hits()[2].json();
    assert_eq!(sent["model"], "glm-4.7");
    assert_eq!(sent["max_tokens"], 100);
    assert!(
        sent.get("temperature").is_none(),
        "the new base has no parameters: {sent}"
    );
    let (_, v) = admin(&server, "GET", "/admin/models/GLM:Cursor", None, None).await;
    assert_eq!(v["source"], "derived");
    server.shutdown().await;
}

#[tokio::test]
async fn protected_models_need_the_password() {
    let yaml = "model_list:\n  - {model_name: p, model_params: {api_type: stub}, protected: true}\n  - {model_name: q, model_params: {api_type: stub}}\n";
    // No password set: protected models cannot change at all.
    let server = proxy(yaml).await;
    let (s, v) = admin(&server, "DELETE", "/admin/models/p", None, None).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "model_protected");
    let (s, _) = admin(&server, "DELETE", "/admin/models/q", None, None).await;
    assert_eq!(s, 200);
    server.shutdown().await;

    let server = proxy_with_env(yaml, &[("YALLMP_ADMIN_PASSWORD", "pw-123456")]).await;
    let (s, _) = admin(&server, "GET", "/admin/models", None, None).await;
    assert_eq!(s, 401);
    let (s, _) = admin(&server, "GET", "/admin/models", None, Some("wrong")).await;
    assert_eq!(s, 401);
    let (s, _) = admin(
        &server,
        "POST",
        "/admin/models",
        Some(json!({"model_name": "p", "api_type": "stub", "target_model": "x"})),
        Some("pw-123456"),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = admin(
        &server,
        "DELETE",
        "/admin/models/p",
        None,
        Some("pw-123456"),
    )
    .await;
    assert_eq!(s, 200);
    let (_, v) = admin(&server, "GET", "/admin/config", None, Some("pw-123456")).await;
    assert!(!v.to_string().contains("pw-123456"));
    server.shutdown().await;
}

#[tokio::test]
async fn admin_refuses_non_loopback_clients_without_a_password() {
    let config = Config::from_yaml("model_list: []\nproxy_settings: {logging: {files: {enabled: false}, database: {enabled: false}}}\n", None, &Env::default()).unwrap();
    let server = yallmp::serve_on(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        config,
    )
    .await
    .unwrap();
    let app = yallmp::api::router(server.state().clone());
    let call = |addr: &str| {
        let mut req = http::Request::get("/admin/models")
            .body(axum::body::Body::empty())
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(addr.parse::<SocketAddr>().unwrap()));
        app.clone().oneshot(req)
    };
    assert_eq!(call("10.1.2.3:5000").await.unwrap().status(), 403);
    assert_eq!(call("127.0.0.1:5000").await.unwrap().status(), 200);
    assert_eq!(call("[::1]:5000").await.unwrap().status(), 200);
    server.shutdown().await;
}

#[tokio::test]
async fn client_keys_guard_the_api() {
    let mock = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\nproxy_settings: {{auth: {{api_keys: ['ck-one', '${{SECOND_KEY}}']}}}}\n",
        mock.url
    );
    let server = proxy_with_env(&yaml, &[("SECOND_KEY", "ck-two")]).await;
    let url = format!("{}/v1/chat/completions", server.url());
    let body = json!({"model": "m"});
    let r = client().post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key");
    let r = client()
        .post(&url)
        .bearer_auth("ck-wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(!r.text().await.unwrap().contains("ck-wrong"));
    let r = client()
        .post(&url)
        .bearer_auth("ck-one")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .post(&url)
        .header("x-api-key", "ck-two")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The proxy's own key never reaches a backend.
    assert!(
        mock.hits()
            .iter()
            .all(|h| !h.headers.contains_key("authorization")
                && !h.headers.contains_key("x-api-key"))
    );
    let r = client()
        .get(format!("{}/v1/models", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .get(format!("{}/healthz", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.shutdown().await;
}

/// A config file in a temp dir, served from it.
async fn from_file(dir: &std::path::Path, yaml: &str) -> yallmp::Server {
    std::fs::write(dir.join("config.yaml"), yaml).unwrap();
    let mut config = Config::load(&dir.join("config.yaml")).unwrap();
    config.server.port = 0;
    isolate_logs(&mut config);
    yallmp::serve(config).await.unwrap()
}

#[tokio::test]
async fn reload_swaps_atomically_keeps_streams_and_runtime_models_persist() {
    let frames: Vec<String> = (0..5)
        .map(|i| chunk(&i.to_string()))
        .chain([DONE.to_string()])
        .collect();
    let slow = Mock::start(Reply::Sse {
        frames: frames.clone(),
        gap: Duration::from_millis(80),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let v1 = format!(
        "model_list:\n  - {{model_name: keep, model_params: {{api_base: '{}'}}}}\n  - {{model_name: gone, model_params: {{api_type: stub}}}}\n",
        slow.url
    );
    let server = from_file(dir.path(), &v1).await;
    let (s, _) = admin(
        &server,
        "POST",
        "/admin/models",
        Some(json!({"model_name": "rt", "api_type": "stub", "api_key": KEY})),
        None,
    )
    .await;
    assert_eq!(s, 201);
    assert!(dir.path().join("config.runtime.yaml").exists());

    // A stream in flight across the reload.
    let mut r = client()
        .post(format!("{}/v1/chat/completions", server.url()))
        .json(&json!({"model": "keep", "stream": true}))
        .send()
        .await
        .unwrap();
    let mut got = String::from_utf8(r.chunk().await.unwrap().unwrap().to_vec()).unwrap();

    let v2 = format!(
        "model_list:\n  - {{model_name: keep, model_params: {{api_base: '{}', target_model: changed}}}}\n  - {{model_name: added, model_params: {{api_type: stub}}}}\n",
        slow.url
    );
    std::fs::write(dir.path().join("config.yaml"), &v2).unwrap();
    let (s, v) = admin(&server, "POST", "/admin/config/reload", None, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["changes"],
        json!({"added": ["added"], "removed": ["gone"], "changed": ["keep"]})
    );
    while let Some(c) = r.chunk().await.unwrap() {
        got.push_str(std::str::from_utf8(&c).unwrap());
    }
    assert_eq!(
        got,
        frames.concat(),
        "the in-flight stream finished on its snapshot"
    );
    assert_eq!(chat(&server, "gone").await.0, 404);
    assert_eq!(chat(&server, "added").await.0, 200);
    assert_eq!(
        chat(&server, "rt").await.0,
        200,
        "runtime model survives the reload"
    );

    // An invalid file changes nothing and says why.
    std::fs::write(
        dir.path().join("config.yaml"),
        "model_list:\n  - {model_name: x, model_parms: {}}\n",
    )
    .unwrap();
    let (s, v) = admin(&server, "POST", "/admin/config/reload", None, None).await;
    assert_eq!(s, 400);
    assert!(
        v["error"]["errors"][0]
            .as_str()
            .unwrap()
            .contains("model_parms"),
        "{v}"
    );
    assert_eq!(chat(&server, "added").await.0, 200);
    server.shutdown().await;

    // And a restart.
    std::fs::write(dir.path().join("config.yaml"), &v2).unwrap();
    let server = from_file(dir.path(), &v2).await;
    assert_eq!(
        chat(&server, "rt").await.0,
        200,
        "runtime model survives a restart"
    );
    let (_, v) = admin(&server, "GET", "/admin/models/rt", None, None).await;
    assert_eq!(v["source"], "runtime");
    server.shutdown().await;
}

#[tokio::test]
async fn concurrent_registrations_both_land() {
    let server = proxy("model_list: []\n").await;
    let regs: Vec<_> = (0..8)
        .map(|i| {
            let url = format!("{}/admin/models", server.url());
            tokio::spawn(async move {
                client()
                    .post(url)
                    .json(&json!({"model_name": format!("m{i}"), "api_type": "stub"}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for r in regs {
        assert_eq!(r.await.unwrap(), 201);
    }
    for i in 0..8 {
        assert_eq!(chat(&server, &format!("m{i}")).await.0, 200);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_registered_model_can_bring_its_own_parsers() {
    let server = proxy("model_list:\n  - {model_name: s, model_params: {api_type: stub}}\n").await;
    let (s, v) = admin(
        &server,
        "POST",
        "/admin/models",
        Some(json!({"model_name": "p", "api_type": "stub",
                    "parsers": {"response": ["parse_tags"], "parse_tags": {"tool_format": "hermes"}}})),
        None,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["model"]["parsers"]["enabled"], true);
    assert_eq!(v["model"]["parsers"]["parse_tags"]["tool_format"], "hermes");
    let body =
        json!({"model": "p", "messages": [{"role": "user", "content": "<think>r</think>ok"}]});
    let (status, _, text) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200);
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(m["choices"][0]["message"]["reasoning_content"], "r");
    assert_eq!(m["choices"][0]["message"]["content"], "ok");
    // A bad block is refused with the key path, and nothing changes.
    let (s, v) = admin(
        &server,
        "POST",
        "/admin/models",
        Some(json!({"model_name": "p", "api_type": "stub", "parsers": {"tool_fromat": "x"}})),
        None,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains("tool_fromat"), "{v}");
    server.shutdown().await;
}

/// A request to the admin API with extra headers and a raw body.
async fn raw_admin(
    server: &yallmp::Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, String)>,
) -> (u16, Value) {
    let mut req = client().request(method.parse().unwrap(), format!("{}{path}", server.url()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some((ty, b)) = body {
        req = req.header("content-type", ty).body(b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn admin_refuses_cross_site_requests_foreign_hosts_and_non_json_changes() {
    // No admin password: the shipped default, where the browser on the
    // same machine is the only thing between a web page and the API.
    let server = proxy("model_list:\n  - {model_name: m, model_params: {api_type: stub}}\n").await;
    let port = server.addr().port();
    let model = json!({"model_name": "evil", "api_type": "stub"}).to_string();

    // A "simple" cross-site POST (text/plain needs no preflight).
    let (s, v) = raw_admin(
        &server,
        "POST",
        "/admin/models",
        &[],
        Some(("text/plain", model.clone())),
    )
    .await;
    assert_eq!(s, 415, "{v}");
    assert_eq!(v["error"]["code"], "json_required");
    // JSON, but from another origin.
    let (s, v) = raw_admin(
        &server,
        "POST",
        "/admin/models",
        &[("origin", "http://evil.example")],
        Some(("application/json", model.clone())),
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "cross_site_request");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    // Another port of localhost is another origin, too.
    let (s, _) = raw_admin(
        &server,
        "POST",
        "/admin/config/reload",
        &[("origin", "http://127.0.0.1:1")],
        None,
    )
    .await;
    assert_eq!(s, 403);
    let (s, v) = raw_admin(
        &server,
        "POST",
        "/admin/config/reload",
        &[("sec-fetch-site", "cross-site")],
        None,
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "cross_site_request");
    let (s, _) = raw_admin(
        &server,
        "DELETE",
        "/admin/models/m",
        &[("origin", "null")],
        None,
    )
    .await;
    assert_eq!(s, 403);
    // A cross-site read of the API is refused as well.
    let (s, _) = raw_admin(
        &server,
        "GET",
        "/admin/config",
        &[("origin", "http://evil.example")],
        None,
    )
    .await;
    assert_eq!(s, 403);
    // DNS rebinding: a name that resolves here but is not this proxy.
    let evil_host = format!("evil.example:{port}");
    for path in [
        "/admin/models",
        "/admin/api/logs",
        "/admin/",
        "/admin/assets/app.js",
    ] {
        let (s, v) = raw_admin(&server, "GET", path, &[("host", &evil_host)], None).await;
        assert_eq!(s, 403, "{path}: {v}");
        assert_eq!(v["error"]["code"], "host_not_allowed", "{path}");
    }
    // Nothing above changed anything.
    let (_, v) = admin(&server, "GET", "/admin/models", None, None).await;
    let names: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["m"]);

    // What the UI sends: same origin, JSON, through localhost or 127.0.0.1.
    let same = format!("http://127.0.0.1:{port}");
    let (s, v) = raw_admin(
        &server,
        "POST",
        "/admin/models",
        &[("origin", &same), ("sec-fetch-site", "same-origin")],
        Some(("application/json", model.clone())),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let local = format!("localhost:{port}");
    let (s, _) = raw_admin(
        &server,
        "POST",
        "/admin/config/reload",
        &[("host", &local), ("origin", &format!("http://{local}"))],
        None,
    )
    .await;
    assert_eq!(s, 200);
    // A plain navigation to the UI from another site opens it.
    let (s, _) = raw_admin(
        &server,
        "GET",
        "/admin/",
        &[
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "navigate"),
        ],
        None,
    )
    .await;
    assert_eq!(s, 200);
    // Other routes are not affected by the admin rules.
    let (s, _) = raw_admin(&server, "GET", "/healthz", &[("host", &evil_host)], None).await;
    assert_eq!(s, 200);
    server.shutdown().await;

    // Names the operator allows (a reverse proxy's), as Host and as Origin.
    let server = proxy(
        "model_list: []\nproxy_settings:\n  server:\n    allowed_hosts: [admin.example.com]\n",
    )
    .await;
    let (s, _) = raw_admin(
        &server,
        "POST",
        "/admin/config/reload",
        &[
            ("host", "admin.example.com"),
            ("origin", "https://admin.example.com"),
        ],
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = raw_admin(
        &server,
        "GET",
        "/admin/models",
        &[("host", "other.example.com")],
        None,
    )
    .await;
    assert_eq!(s, 403);
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_admin_passwords_are_throttled_per_address_across_bearer_and_login() {
    let yaml = "model_list:\n  - {model_name: m, model_params: {api_type: stub}}\n";
    let pw = "pw-throttle-0a9b8c";
    let server = proxy_with_env(yaml, &[("YALLMP_ADMIN_PASSWORD", pw)]).await;
    // Parallel guesses: counted one by one, so exactly the allowance gets
    // an answer and the rest wait.
    let url = format!("{}/admin/models", server.url());
    let guesses = (0..40).map(|i| {
        let url = url.clone();
        async move {
            let r = client()
                .get(url)
                .bearer_auth(format!("guess-{i}"))
                .send()
                .await
                .unwrap();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            (r.status().as_u16(), retry, r.text().await.unwrap())
        }
    });
    let answers = futures::future::join_all(guesses).await;
    let refused = answers.iter().filter(|a| a.0 == 401).count();
    let throttled: Vec<_> = answers.iter().filter(|a| a.0 == 429).collect();
    assert_eq!(refused, 10, "{answers:?}");
    assert_eq!(throttled.len(), 30, "{answers:?}");
    for (_, retry, text) in &throttled {
        assert!(matches!(retry, Some(1..=60)), "{retry:?}");
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["error"]["code"], "admin_auth_throttled");
    }
    // The right password now waits too (the answer tells a guesser
    // nothing), on the Bearer path, the login and /metrics alike.
    let (s, _) = admin(&server, "GET", "/admin/models", None, Some(pw)).await;
    assert_eq!(s, 429);
    let r = client()
        .post(format!("{}/admin/login", server.url()))
        .json(&json!({"password": pw}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("set-cookie").is_none());
    let r = client()
        .get(format!("{}/metrics", server.url()))
        .bearer_auth(pw)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    // Client routes are not affected.
    let (s, _, _) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(s, 200);
    server.shutdown().await;

    // Failed logins count for the Bearer path as well.
    let server = proxy_with_env(yaml, &[("YALLMP_ADMIN_PASSWORD", pw)]).await;
    let logins = (0..10).map(|i| {
        let url = format!("{}/admin/login", server.url());
        async move {
            client()
                .post(url)
                .json(&json!({"password": format!("guess-{i}")}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = futures::future::join_all(logins).await;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    let (s, _) = admin(&server, "GET", "/admin/models", None, Some(pw)).await;
    assert_eq!(s, 429);
    server.shutdown().await;
}

#[tokio::test]
async fn registration_refuses_control_characters_and_masks_url_passwords() {
    let server = proxy("model_list: []\n").await;
    for (field, value) in [
        ("api_base", "http://127.0.0.1:9/v1\r\nX-Injected: 1"),
        ("api_key", "sk-abc\ndef"),
        ("model_name", "bell\u{7}model"),
        ("target_model", "tm\u{0}"),
    ] {
        let mut body = json!({"model_name": "ok", "api_base": "http://127.0.0.1:9/v1"});
        body[field] = json!(value);
        let (s, v) = admin(&server, "POST", "/admin/models", Some(body), None).await;
        assert_eq!(s, 400, "{field}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.starts_with(&format!("{field}:")), "{msg}");
    }
    let (s, v) = admin(
        &server,
        "POST",
        "/admin/models/x/copy",
        Some(json!({"new_name": "a\r\nb"})),
        None,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let (_, v) = admin(&server, "GET", "/admin/models", None, None).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 0, "{v}");

    // A password in the URL's userinfo is never shown.
    let secret = "urlpw-SECRET-77a1";
    let (s, v) = admin(
        &server,
        "POST",
        "/admin/models",
        Some(
            json!({"model_name": "u", "api_base": format!("http://user:{secret}@127.0.0.1:9/v1")}),
        ),
        None,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert!(!v.to_string().contains(secret), "{v}");
    for path in [
        "/admin/models",
        "/admin/models/u",
        "/admin/config",
        "/admin/api/models",
    ] {
        let (s, v) = admin(&server, "GET", path, None, None).await;
        assert_eq!(s, 200, "{path}");
        let text = v.to_string();
        assert!(!text.contains(secret), "{path}: {text}");
        assert!(
            text.contains("http://user:***@127.0.0.1:9/v1"),
            "{path}: {text}"
        );
    }
    // Nor in the error a failed attempt gives the client.
    let (s, v) = chat(&server, "u").await;
    assert!(s >= 500, "{s} {v}");
    assert!(!v.to_string().contains(secret), "{v}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_reload_with_an_empty_admin_password_variable_is_refused() {
    let dir = std::env::temp_dir().join(format!("yallmp-pw-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".env"), "PW_FOR_TEST=pw-reload-1234\n").unwrap();
    let server = from_file(
        &dir,
        "model_list: []\nproxy_settings: {auth: {admin_password: '${PW_FOR_TEST}'}}\n",
    )
    .await;
    let (s, _) = admin(&server, "GET", "/admin/models", None, None).await;
    assert_eq!(s, 401);
    // The variable goes empty: the reload is refused and the password stays.
    std::fs::write(dir.join(".env"), "PW_FOR_TEST=\n").unwrap();
    let (s, v) = admin(
        &server,
        "POST",
        "/admin/config/reload",
        None,
        Some("pw-reload-1234"),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("proxy_settings.auth.admin_password"),
        "{v}"
    );
    let (s, _) = admin(&server, "GET", "/admin/models", None, None).await;
    assert_eq!(s, 401);
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// `GET /admin/config` shows every server setting added with the client
/// limits and the admin access rules (`allowed_hosts` was missing), and the
/// streaming limits, as configured.
#[tokio::test]
async fn effective_config_shows_the_server_limits_allowed_hosts_and_streaming() {
    let server = proxy(
        "proxy_settings:\n  server:\n    allowed_hosts: [Admin.Example.com:8443, lan.example]\n    max_response_bytes: 2000000\n    header_read_timeout: 12\n    body_read_timeout: 34\n    idle_timeout: 56\n    max_connections: 789\n  streaming: {max_event_bytes: 4096, first_event_timeout: 7}\nmodel_list:\n  - {model_name: s, model_params: {api_type: stub}}\n",
    )
    .await;
    let (status, v) = admin(&server, "GET", "/admin/config", None, None).await;
    assert_eq!(status, 200, "{v}");
    let s = &v["server"];
    assert_eq!(
        s["allowed_hosts"],
        json!(["admin.example.com:8443", "lan.example"]),
        "{v}"
    );
    assert_eq!(s["max_response_bytes"], 2_000_000, "{v}");
    assert_eq!(s["header_read_timeout"], 12.0, "{v}");
    assert_eq!(s["body_read_timeout"], 34.0, "{v}");
    assert_eq!(s["idle_timeout"], 56.0, "{v}");
    assert_eq!(s["max_connections"], 789, "{v}");
    assert_eq!(v["streaming"]["max_event_bytes"], 4096, "{v}");
    assert_eq!(v["streaming"]["first_event_timeout"], 7.0, "{v}");
    server.shutdown().await;

    // None configured: an empty list (only the built-in names answer).
    let server = proxy("model_list:\n  - {model_name: s, model_params: {api_type: stub}}\n").await;
    let (_, v) = admin(&server, "GET", "/admin/config", None, None).await;
    assert_eq!(v["server"]["allowed_hosts"], json!([]), "{v}");
    server.shutdown().await;
}

/// An `os.environ/NAME` reference has no escape in the loader: through the
/// admin API it would read the proxy's environment into a key sent to any
/// `api_base`. Refused, on both the admin API and LiteLLM's /model/new.
#[tokio::test]
async fn environment_references_are_refused_through_the_api() {
    let a = Mock::start(Reply::Echo).await;
    let server = proxy("model_list:\n  - {model_name: s, model_params: {api_type: stub}}\n").await;
    for body in [
        json!({"model_name": "evil", "api_base": a.url, "api_key": "os.environ/HOME"}),
        json!({"model_name": "evil", "api_base": a.url, "parameters": {"user": "os.environ/PATH"}}),
    ] {
        let (s, v) = admin(&server, "POST", "/admin/models", Some(body), None).await;
        assert_eq!(s, 400, "{v}");
        assert!(v.to_string().contains("os.environ"), "{v}");
    }
    let (s, v) = admin(
        &server,
        "POST",
        "/model/new",
        Some(json!({"model_name": "evil", "litellm_params": {"model": "openai/x", "api_base": a.url, "api_key": "os.environ/HOME"}})),
        None,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    // Nothing was registered, nothing was sent.
    let (s, _) = chat(&server, "evil").await;
    assert_eq!(s, 404);
    assert_eq!(a.count(), 0);
    server.shutdown().await;
}
