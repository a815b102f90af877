//! LiteLLM's proxy management API (docs/migrating-from-litellm.md), called
//! as LiteLLM's docs show it (`curl -X POST /key/generate -H
//! 'Authorization: Bearer sk-1234' -H 'Content-Type: application/json'`):
//! keys made there hold requests to their models and budgets, show their
//! spend, change, go; teams, spend logs, runtime models; who may call.

use std::time::Duration;

use serde_json::{Value, json};
use yallmp::config::{Config, Env};

use crate::support::{self, *};

const MASTER: &str = "sk-master-1234567890";

/// Two priced models (0.7 USD per mock answer: 3 input, 2 output tokens)
/// and the master key.
fn yaml(mock: &Mock, extra: &str) -> String {
    format!(
        "model_list:\n\
         - {{model_name: m1, model_params: {{api_base: '{url}', pricing: {{input: 100000, output: 200000}}}}}}\n\
         - {{model_name: m2, model_params: {{api_base: '{url}', pricing: {{input: 100000, output: 200000}}}}}}\n\
         general_settings:\n  master_key: {MASTER}\n{extra}",
        url = mock.url
    )
}

async fn call_with(
    server: &yallmp::Server,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut r = client().request(method.parse().unwrap(), format!("{}{path}", server.url()));
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    if let Some(b) = body {
        r = r
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn call(
    server: &yallmp::Server,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    call_with(server, method, path, key, body, &[]).await
}

/// As the master key.
async fn manage(
    server: &yallmp::Server,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    call(server, method, path, Some(MASTER), body).await
}

async fn chat(server: &yallmp::Server, key: &str, model: &str) -> (u16, Value) {
    call(
        server,
        "POST",
        "/v1/chat/completions",
        Some(key),
        Some(json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})),
    )
    .await
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 1e-9)
}

/// LiteLLM's error shape, with the status as `code`.
fn litellm_error(v: &Value, status: u16) {
    let e = &v["error"];
    assert!(e["message"].is_string(), "{v}");
    assert!(e["type"].is_string(), "{v}");
    assert!(e.get("param").is_some(), "{v}");
    assert_eq!(e["code"], status.to_string(), "{v}");
}

#[tokio::test]
async fn litellm_key_scripts_run_over_virtual_keys() {
    let mock = Mock::start(Reply::Echo).await;
    let logged = support::logged::logged_proxy(&yaml(&mock, ""), None).await;
    let server = &logged.server;

    // As virtual_keys.md: models, budget, period, rate limit, alias, expiry.
    let (s, made) = manage(
        server,
        "POST",
        "/key/generate",
        Some(
            json!({"models": ["m1"], "max_budget": 1.0, "budget_duration": "30d",
            "rpm_limit": 100, "tpm_limit": 100000, "key_alias": "ci-key", "duration": "1h",
            "metadata": {"user": "ana@example.com"}, "max_parallel_requests": 5}),
        ),
    )
    .await;
    assert_eq!(s, 200, "{made}");
    let key = made["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("yk-"), "{made}");
    let token = yallmp::keys::secret::hash(&key);
    assert_eq!(made["token"], json!(token));
    assert_eq!(made["key_alias"], "ci-key");
    assert_eq!(made["models"], json!(["m1"]));
    assert!(close(&made["max_budget"], 1.0), "{made}");
    assert_eq!(made["budget_duration"], "30d");
    assert_eq!(made["rpm_limit"], 100);
    assert_eq!(made["metadata"]["user"], "ana@example.com");
    assert_eq!(made["yallmp_ignored"], json!(["max_parallel_requests"]));
    let expires = chrono::DateTime::parse_from_rfc3339(made["expires"].as_str().unwrap()).unwrap();
    let left = expires.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(
        left > chrono::Duration::minutes(55) && left <= chrono::Duration::hours(1),
        "{made}"
    );

    // Its model answers; another is refused.
    let (s, body) = chat(server, &key, "m1").await;
    assert_eq!(s, 200, "{body}");
    let (s, e) = chat(server, &key, "m2").await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (403, Some("model_not_allowed")),
        "{e}"
    );

    // /key/update adds m2.
    let (s, updated) = manage(
        server,
        "POST",
        "/key/update",
        Some(json!({"key": key, "models": ["m1", "m2"], "metadata": null})),
    )
    .await;
    assert_eq!(s, 200, "{updated}");
    assert_eq!(updated["models"], json!(["m1", "m2"]));
    assert_eq!(
        updated["metadata"]["user"], "ana@example.com",
        "null leaves a field"
    );
    let (s, body) = chat(server, &key, "m2").await;
    assert_eq!(s, 200, "{body}");
    // 1.4 spent of 1.0: refused.
    let (s, e) = chat(server, &key, "m1").await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (429, Some("budget_exceeded")),
        "{e}"
    );

    // /key/info by the key and by its token.
    for given in [key.as_str(), token.as_str()] {
        let (s, info) = manage(server, "GET", &format!("/key/info?key={given}"), None).await;
        assert_eq!(s, 200, "{info}");
        assert_eq!(info["key"], given);
        assert!(close(&info["info"]["spend"], 1.4), "{info}");
        assert!(close(&info["info"]["max_budget"], 1.0), "{info}");
        assert_eq!(info["info"]["models"], json!(["m1", "m2"]));
        assert_eq!(info["info"]["key_alias"], "ci-key");
        assert!(info["info"]["budget_reset_at"].is_string(), "{info}");
        assert!(info["info"].get("token").is_none(), "{info}");
    }

    // /key/list: tokens, paged.
    let (s, list) = manage(server, "GET", "/key/list", None).await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["keys"], json!([token]));
    assert_eq!(
        (list["total_count"].as_u64(), list["total_pages"].as_u64()),
        (Some(1), Some(1))
    );

    // A team, and a key in it: the team's models bind the key.
    let (s, team) = manage(
        server,
        "POST",
        "/team/new",
        Some(
            json!({"team_alias": "ml-team", "team_id": "team-ml", "models": ["m1"],
            "max_budget": 10.0, "budget_duration": "1mo", "rpm_limit": 50}),
        ),
    )
    .await;
    assert_eq!(s, 200, "{team}");
    assert_eq!(
        (team["team_id"].as_str(), team["team_alias"].as_str()),
        (Some("team-ml"), Some("ml-team"))
    );
    assert_eq!(team["models"], json!(["m1"]));
    assert_eq!(team["budget_duration"], "1mo");
    let (s, again) = manage(
        server,
        "POST",
        "/team/new",
        Some(json!({"team_id": "team-ml"})),
    )
    .await;
    assert_eq!(s, 409, "{again}");
    litellm_error(&again, 409);
    let (s, member) = manage(
        server,
        "POST",
        "/key/generate",
        Some(json!({"team_id": "team-ml"})),
    )
    .await;
    assert_eq!(s, 200, "{member}");
    assert_eq!(member["team_id"], "team-ml");
    assert!(member["key_alias"].is_null(), "{member}");
    assert!(
        member["key_name"].as_str().unwrap().starts_with("yk-…"),
        "{member}"
    );
    let member_key = member["key"].as_str().unwrap().to_string();
    assert_eq!(chat(server, &member_key, "m1").await.0, 200);
    assert_eq!(chat(server, &member_key, "m2").await.0, 403);
    let (s, info) = manage(server, "GET", "/team/info?team_id=team-ml", None).await;
    assert_eq!(s, 200, "{info}");
    assert_eq!(info["team_info"]["team_alias"], "ml-team");
    assert_eq!(
        info["keys"][0]["token"],
        json!(yallmp::keys::secret::hash(&member_key))
    );
    assert!(close(&info["team_info"]["spend"], 0.7), "{info}");
    let (s, e) = manage(server, "GET", "/team/info?team_id=nope", None).await;
    assert_eq!(s, 404);
    litellm_error(&e, 404);

    // A caller's own key (LiteLLM's `key`).
    let own = "sk-my-own-chosen-key-0001";
    let (s, mine) = manage(
        server,
        "POST",
        "/key/generate",
        Some(json!({"key": own, "models": ["m2"]})),
    )
    .await;
    assert_eq!(s, 200, "{mine}");
    assert_eq!(mine["key"], own);
    assert_eq!(chat(server, own, "m2").await.0, 200);
    let (s, e) = manage(server, "POST", "/key/generate", Some(json!({"key": own}))).await;
    assert_eq!(s, 400, "the same key twice: {e}");
    assert_eq!(e["error"]["param"], "key");

    // /spend/logs: the requests, by key, within dates.
    let rows = eventually(|| async {
        let (_, v) = manage(server, "GET", &format!("/spend/logs?api_key={key}"), None).await;
        let rows = v.as_array()?.clone();
        (rows.len() == 4).then_some(rows)
    })
    .await;
    let answered: Vec<&Value> = rows.iter().filter(|r| r["status"] == "success").collect();
    assert_eq!(answered.len(), 2, "{rows:?}");
    for r in &answered {
        assert_eq!(r["api_key"], json!(token));
        assert!(close(&r["spend"], 0.7), "{r}");
        assert_eq!(
            (
                r["prompt_tokens"].as_i64(),
                r["completion_tokens"].as_i64(),
                r["total_tokens"].as_i64()
            ),
            (Some(3), Some(2), Some(5))
        );
        assert!(
            r["startTime"].is_string() && r["endTime"].is_string(),
            "{r}"
        );
        assert!(r["request_id"].is_string(), "{r}");
        assert_eq!(r["metadata"]["user_api_key_alias"], "ci-key");
    }
    let models: Vec<&str> = answered
        .iter()
        .map(|r| r["model"].as_str().unwrap())
        .collect();
    assert_eq!(models, ["m2", "m1"], "newest first");
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    // Every request of today (the member's and the own key's too).
    eventually(|| async {
        let path = format!("/spend/logs?start_date={today}&end_date={today}");
        let (_, v) = manage(server, "GET", &path, None).await;
        (v.as_array()?.len() == 7).then_some(())
    })
    .await;
    let (s, v) = manage(
        server,
        "GET",
        "/spend/logs?start_date=2020-01-01&end_date=2020-01-02",
        None,
    )
    .await;
    assert_eq!((s, v), (200, json!([])));
    let (s, e) = manage(server, "GET", "/spend/logs?start_date=yesterday", None).await;
    assert_eq!(s, 400);
    assert_eq!(e["error"]["param"], "start_date");

    // /key/delete: then the key is refused and unknown.
    let (s, gone) = manage(server, "POST", "/key/delete", Some(json!({"keys": [key]}))).await;
    assert_eq!(s, 200, "{gone}");
    assert_eq!(gone, json!({"deleted_keys": [key]}));
    let (s, e) = chat(server, &key, "m1").await;
    assert_eq!(s, 401, "{e}");
    let (s, e) = manage(server, "GET", &format!("/key/info?key={key}"), None).await;
    assert_eq!(s, 404, "{e}");
    litellm_error(&e, 404);
    let (s, e) = manage(server, "POST", "/key/delete", Some(json!({"keys": [key]}))).await;
    assert_eq!(s, 404, "{e}");
    let (s, e) = manage(
        server,
        "POST",
        "/key/update",
        Some(json!({"key": key, "models": []})),
    )
    .await;
    assert_eq!(s, 404, "{e}");
    // A deleted key's logs stay readable by its token.
    let (_, v) = manage(server, "GET", &format!("/spend/logs?api_key={token}"), None).await;
    assert_eq!(v.as_array().unwrap().len(), 4, "{v}");
    // By alias.
    let (s, _) = manage(
        server,
        "POST",
        "/key/generate",
        Some(json!({"key_alias": "tmp"})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, gone) = manage(
        server,
        "POST",
        "/key/delete",
        Some(json!({"key_aliases": ["tmp"]})),
    )
    .await;
    assert_eq!((s, gone), (200, json!({"deleted_keys": ["tmp"]})));

    // Bad bodies: 400 in LiteLLM's shape.
    for bad in [
        json!({"max_budget": "lots"}),
        json!({"budget_duration": "fortnight", "max_budget": 1}),
        json!({"duration": "forever"}),
        json!({"rpm_limit": 0}),
        json!({"team_id": "no-such-team"}),
    ] {
        let (s, e) = manage(server, "POST", "/key/generate", Some(bad.clone())).await;
        assert_eq!(s, 400, "{bad}: {e}");
        litellm_error(&e, 400);
    }
    let (s, e) = manage(server, "GET", "/key/info", None).await;
    assert_eq!(s, 400, "{e}");
    assert_eq!(e["error"]["param"], "key");
}

#[tokio::test]
async fn model_new_serves_a_runtime_model_and_model_info_masks_its_key() {
    let mock = Mock::start(Reply::Echo).await;
    let logged = support::logged::logged_proxy(&yaml(&mock, ""), None).await;
    let server = &logged.server;
    let secret = "sk-upstream-secret-never-shown";
    let (s, made) = manage(
        server,
        "POST",
        "/model/new",
        Some(
            json!({"model_name": "m-new", "litellm_params": {"model": "openai/upstream-x",
            "api_base": mock.url, "api_key": secret}, "model_info": {"id": "mine"}}),
        ),
    )
    .await;
    assert_eq!(s, 200, "{made}");
    assert_eq!(made["model_name"], "m-new");
    assert_eq!(made["litellm_params"]["model"], "openai/upstream-x");
    assert_eq!(made["litellm_params"]["api_key"], "***");
    // model_info.id names the backend.
    assert_eq!(made["model_id"], "mine", "{made}");
    assert!(made.get("yallmp_ignored").is_none(), "{made}");
    assert!(!made.to_string().contains(secret));

    // Served at once (the master key is a client key too).
    let (s, body) = chat(server, MASTER, "m-new").await;
    assert_eq!(s, 200, "{body}");
    let hit = mock.hits().last().cloned().unwrap();
    assert_eq!(hit.json()["model"], "upstream-x");
    assert_eq!(hit.headers["authorization"], format!("Bearer {secret}"));

    // A second deployment of the same name: two backends.
    let (s, _) = manage(
        server,
        "POST",
        "/model/new",
        Some(json!({"model_name": "m-new", "litellm_params": {"model": "openai/upstream-y", "api_base": mock.url}})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, info) = manage(server, "GET", "/model/info", None).await;
    assert_eq!(s, 200, "{info}");
    assert!(!info.to_string().contains(secret), "{info}");
    let new: Vec<&Value> = info["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["model_name"] == "m-new")
        .collect();
    assert_eq!(new.len(), 2, "{info}");
    assert_eq!(new[0]["litellm_params"]["api_key"], "***");
    assert_eq!(new[1]["litellm_params"]["model"], "openai/upstream-y");
    assert_eq!(new[0]["model_info"]["db_model"], true);
    assert_eq!(new[0]["model_info"]["id"], "mine");
    assert_eq!(new[1]["model_info"]["id"], "m-new#2");
    assert!(
        info["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["model_name"] == "m2" && d["model_info"]["db_model"] == false)
    );
    // A deployment of a model of the file: one more backend of it.
    let (s, v) = manage(
        server,
        "POST",
        "/model/new",
        Some(json!({"model_name": "m1", "litellm_params": {"model": "openai/upstream-z", "api_base": mock.url}})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (_, info) = manage(server, "GET", "/model/info", None).await;
    let m1: Vec<&Value> = info["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["model_name"] == "m1")
        .collect();
    assert_eq!(m1.len(), 2, "{info}");
    assert_eq!(m1[1]["litellm_params"]["model"], "openai/upstream-z");
    assert_eq!(m1[0]["model_info"]["db_model"], true, "now a runtime model");
    // The admin API sees the same runtime model.
    let (s, admin) = call(server, "GET", "/admin/models/m-new", Some(MASTER), None).await;
    assert_eq!(s, 200, "{admin}");
    assert_eq!(admin["backends"].as_array().unwrap().len(), 2);

    // A bad deployment: 400, nothing changed.
    for bad in [
        json!({"model_name": "m-bad", "litellm_params": {"model": "openai/x", "api_base": "not a url"}}),
        json!({"model_name": "m-bad", "litellm_params": {"model": "openai/x", "no_such_param": 1}}),
        json!({"model_name": "m-bad"}),
        json!({"model_name": "", "litellm_params": {"model": "openai/x"}}),
    ] {
        let (s, e) = manage(server, "POST", "/model/new", Some(bad.clone())).await;
        assert_eq!(s, 400, "{bad}: {e}");
        litellm_error(&e, 400);
    }
    let (_, info) = manage(server, "GET", "/model/info", None).await;
    assert!(!info.to_string().contains("m-bad"));
}

#[tokio::test]
async fn only_the_master_key_or_admin_password_reach_the_management_endpoints() {
    let mock = Mock::start(Reply::Echo).await;
    let logged = support::logged::logged_proxy(&yaml(&mock, ""), None).await;
    let server = &logged.server;
    let (s, made) = manage(server, "POST", "/key/generate", Some(json!({}))).await;
    assert_eq!(s, 200, "{made}");
    let virtual_key = made["key"].as_str().unwrap().to_string();
    assert_eq!(chat(server, &virtual_key, "m1").await.0, 200);

    for (who, key) in [
        ("nobody", None),
        ("a virtual key", Some(virtual_key.as_str())),
        ("a wrong key", Some("sk-master-1234567899")),
    ] {
        // Three paths each: wrong keys count against the address (ten
        // and it waits a minute).
        for (method, path, body) in [
            ("POST", "/key/generate", Some(json!({}))),
            ("GET", &*format!("/key/info?key={virtual_key}"), None),
            ("GET", "/spend/logs", None),
        ] {
            let (s, e) = call(server, method, path, key, body).await;
            assert_eq!(s, 401, "{who} on {path}: {e}");
            litellm_error(&e, 401);
            assert_eq!(e["error"]["type"], "auth_error");
        }
    }
    // The master key is the admin password (none is set): /admin too.
    let (s, v) = call(server, "GET", "/admin/keys", Some(MASTER), None).await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = call(server, "GET", "/admin/keys", Some(&virtual_key), None).await;
    assert_eq!(s, 401);

    // Cross-site requests are refused as on /admin, even with the key.
    let (s, e) = call_with(
        server,
        "POST",
        "/key/generate",
        Some(MASTER),
        Some(json!({})),
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (403, Some("cross_site_request")),
        "{e}"
    );
    let (s, e) = call_with(
        server,
        "GET",
        "/spend/logs",
        Some(MASTER),
        None,
        &[("sec-fetch-site", "cross-site")],
    )
    .await;
    assert_eq!(s, 403, "{e}");
    let (s, _) = call_with(
        server,
        "GET",
        "/key/list",
        Some(MASTER),
        None,
        &[("origin", &server.url())],
    )
    .await;
    assert_eq!(s, 200, "its own origin is fine");

    // With an admin password set, both it and the master key reach these;
    // the master key no longer opens /admin.
    let mock2 = Mock::start(Reply::Echo).await;
    let logged2 = support::logged::logged_proxy(
        &yaml(
            &mock2,
            "proxy_settings:\n  auth:\n    admin_password: pw-admin-0987654321\n",
        ),
        None,
    )
    .await;
    let server2 = &logged2.server;
    for key in [MASTER, "pw-admin-0987654321"] {
        let (s, v) = call(server2, "GET", "/key/list", Some(key), None).await;
        assert_eq!(s, 200, "{v}");
    }
    let (s, _) = call(server2, "GET", "/admin/keys", Some(MASTER), None).await;
    assert_eq!(s, 401);
    let (s, _) = call(
        server2,
        "GET",
        "/admin/keys",
        Some("pw-admin-0987654321"),
        None,
    )
    .await;
    assert_eq!(s, 200);
}

/// `/spend/logs` and `/key/*` on PostgreSQL (times as TIMESTAMPTZ).
#[tokio::test]
async fn spend_logs_from_postgresql() {
    support::pg::with_fresh_database(|url| async move {
        let mock = Mock::start(Reply::Echo).await;
        let logged = support::logged::logged_proxy(&yaml(&mock, ""), Some(&url)).await;
        let server = &logged.server;
        let (s, made) = manage(
            server,
            "POST",
            "/key/generate",
            Some(json!({"key_alias": "pg"})),
        )
        .await;
        assert_eq!(s, 200, "{made}");
        let key = made["key"].as_str().unwrap().to_string();
        assert_eq!(chat(server, &key, "m1").await.0, 200);
        let rows = eventually(|| async {
            let (_, v) = manage(server, "GET", &format!("/spend/logs?api_key={key}"), None).await;
            let rows = v.as_array()?.clone();
            (rows.len() == 1).then_some(rows)
        })
        .await;
        assert!(close(&rows[0]["spend"], 0.7), "{rows:?}");
        assert_eq!(rows[0]["total_tokens"], 5);
        assert_eq!(rows[0]["model"], "m1");
        let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let (s, v) = manage(
            server,
            "GET",
            &format!("/spend/logs?start_date={today}&end_date={today}"),
            None,
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
        let (_, info) = manage(server, "GET", &format!("/key/info?key={key}"), None).await;
        assert!(close(&info["info"]["spend"], 0.7), "{info}");
        logged.server.shutdown().await;
    })
    .await;
}

#[test]
fn master_key_is_the_admin_password_unless_one_is_set() {
    let env = Env::isolated::<[(&str, &str); 0], _, _>([]);
    let c = Config::from_yaml("general_settings: {master_key: sk-1234}\n", None, &env).unwrap();
    assert_eq!(c.auth.admin_password.as_ref().unwrap().expose(), "sk-1234");
    assert_eq!(c.auth.master_key.as_ref().unwrap().expose(), "sk-1234");
    assert_eq!(c.auth.api_keys[0].expose(), "sk-1234", "still a client key");
    let c = Config::from_yaml(
        "general_settings: {master_key: sk-1234}\nproxy_settings: {auth: {admin_password: pw}}\n",
        None,
        &env,
    )
    .unwrap();
    assert_eq!(c.auth.admin_password.as_ref().unwrap().expose(), "pw");
    let c = Config::from_yaml(
        "general_settings: {master_key: sk-1234}\n",
        None,
        &Env::isolated([("YALLMP_ADMIN_PASSWORD", "from-env")]),
    )
    .unwrap();
    assert_eq!(c.auth.admin_password.as_ref().unwrap().expose(), "from-env");
    let c = Config::from_yaml("general_settings: {master_key: ''}\n", None, &env).unwrap();
    assert!(c.auth.admin_password.is_none() && c.auth.master_key.is_none());
}

/// Polls `f` until it gives `Some` (the log's writer runs in the
/// background), for up to 10 s.
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
