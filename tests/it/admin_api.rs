//! The admin API over the request log (`/admin/api/...`), over HTTP against
//! the real proxy and mock upstreams: every filter alone and combined,
//! cursor paging without gaps or duplicates, one record in full with the
//! assembled stream, stats, replay, models, authentication, and no secret
//! in any answer; the UI's files and the login session. On SQLite and,
//! when `DATABASE_URL_POSTGRES` is set, on PostgreSQL (the 100,000-row log
//! is in `admin_api_large.rs`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use yallmp::config::DatabaseTarget;

use crate::support::*;

const BACKEND_KEY: &str = "sk-DISTINCTIVE-backend-a1b2c3";
const CLIENT_KEY: &str = "cl-DISTINCTIVE-client-d4e5f6";
const ADMIN_PW: &str = "pw-DISTINCTIVE-admin-0918";
const BODY_SECRET: &str = "bd-DISTINCTIVE-field-7c7c";

fn yaml(ok: &str, slow: &str, failing: &str) -> String {
    format!(
        r#"
model_list:
  - {{model_name: alpha, model_params: {{api_base: '{ok}', api_key: {BACKEND_KEY}}}}}
  - {{model_name: beta, model_params: {{api_base: '{slow}', api_key: {BACKEND_KEY}}}}}
  - {{model_name: flaky, model_params: {{api_base: '{failing}', api_key: {BACKEND_KEY}}}}}
  - {{model_name: dead, model_params: {{api_base: '{failing}', api_key: {BACKEND_KEY}}}}}
router_settings:
  num_retries: 0
  retry_backoff_ms: 1
  fallbacks: {{flaky: [alpha]}}
proxy_settings:
  auth:
    api_keys: ['{CLIENT_KEY}']
    admin_password: '{ADMIN_PW}'
"#
    )
}

/// An admin API caller that keeps every answer, to check none holds a secret.
struct Admin {
    base: String,
    seen: std::sync::Mutex<String>,
}

impl Admin {
    fn new(server: &yallmp::Server) -> Admin {
        Admin {
            base: server.url(),
            seen: Default::default(),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = client()
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {ADMIN_PW}"));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        self.seen.lock().unwrap().push_str(&text);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        let (s, v) = self.call("GET", path, None).await;
        assert_eq!(s, 200, "{path}: {v}");
        v
    }

    /// The ids a list query returns (one page of up to 500).
    async fn ids(&self, query: &str) -> Vec<String> {
        let v = self
            .get(&format!("/admin/api/logs?limit=500&{query}"))
            .await;
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(client_id)
            .collect()
    }

    /// The proxy's own id (the record's key) of the request the client
    /// sent with `x-request-id: client`.
    async fn own(&self, client: &str) -> String {
        let v = self
            .get(&format!("/admin/api/logs?client_request_id={client}"))
            .await;
        let rows = v["data"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{client}: {v}");
        rows[0]["id"].as_str().unwrap().to_string()
    }

    /// Waits until the log holds `n` rows (the writer batches off the
    /// request path), polling the API itself.
    async fn wait_rows(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.ids("").await.len();
            if got >= n {
                return;
            }
            assert!(Instant::now() < deadline, "only {got} of {n} rows logged");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

async fn send(server: &yallmp::Server, id: &str, body: Value) -> (u16, String) {
    let r = client()
        .post(format!("{}/v1/chat/completions", server.url()))
        .header("authorization", format!("Bearer {CLIENT_KEY}"))
        .header("x-request-id", id)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A list row's client `x-request-id`, or its own id when the client sent
/// none (a replay).
fn client_id(r: &Value) -> String {
    r["client_request_id"]
        .as_str()
        .or_else(|| r["id"].as_str())
        .unwrap()
        .to_string()
}

fn set(ids: &[&str]) -> HashSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn as_set(ids: Vec<String>) -> HashSet<String> {
    ids.into_iter().collect()
}

/// Every endpoint against one database.
async fn every_endpoint(target: Option<DatabaseTarget>) {
    let ok = Mock::start(Reply::Echo).await;
    let slow = Mock::start(Reply::Echo).await;
    let failing = Mock::start(Reply::Json(500, json!({"error": {"message": "kaput"}}))).await;
    let server = proxy_logging_to(&yaml(&ok.url, &slow.url, &failing.url), target).await;
    let admin = Admin::new(&server);

    // Seven requests of every kind, in this order.
    let (s, _) = send(&server, "r-plain", json!({"model": "alpha", "messages": [{"role": "user", "content": "find the needle-xyz here"}], "metadata": {"api_key": BODY_SECRET}})).await;
    assert_eq!(s, 200);
    ok.push(Reply::Sse {
        frames: vec![
            "data: {\"id\":\"c1\",\"model\":\"alpha\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"reasoning_content\":\"pondering\"}}]}\n\n".into(),
            chunk("streamed-"),
            chunk("answer"),
            "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2,\"total_tokens\":9}}\n\n".into(),
            DONE.into(),
        ],
        gap: Duration::from_millis(2),
    });
    let (s, _) = send(
        &server,
        "r-stream",
        json!({"model": "alpha", "stream": true, "messages": [{"role": "user", "content": "stream please"}]}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = send(&server, "r-fallback", json!({"model": "flaky"})).await;
    assert_eq!(s, 200);
    let (s, _) = send(&server, "r-dead", json!({"model": "dead"})).await;
    assert_eq!(s, 500);
    let (s, _) = send(&server, "r-unknown", json!({"model": "nope"})).await;
    assert_eq!(s, 404);
    slow.push(Reply::Delay(
        Duration::from_millis(400),
        Box::new(Reply::Echo),
    ));
    let (s, _) = send(&server, "r-slow", json!({"model": "beta"})).await;
    assert_eq!(s, 200);
    let (s, _) = send(&server, "r-beta", json!({"model": "beta", "messages": []})).await;
    assert_eq!(s, 200);
    admin.wait_rows(7).await;

    // The list: newest first, every column.
    let all = admin.get("/admin/api/logs").await;
    let rows = all["data"].as_array().unwrap();
    let order: Vec<String> = rows.iter().map(client_id).collect();
    assert_eq!(
        order,
        [
            "r-beta",
            "r-slow",
            "r-unknown",
            "r-dead",
            "r-fallback",
            "r-stream",
            "r-plain"
        ]
    );
    assert!(all["next_cursor"].is_null());
    let stream_row = &rows[5];
    assert_eq!(stream_row["model"], "alpha");
    assert_eq!(stream_row["backend"], "alpha#1");
    assert_eq!(stream_row["status"], 200);
    assert_eq!(stream_row["outcome"], "ok");
    assert_eq!(stream_row["stream"], true);
    assert_eq!(stream_row["attempts"], 1);
    assert_eq!(stream_row["prompt_tokens"], 7);
    assert_eq!(stream_row["completion_tokens"], 2);
    assert!(stream_row["ttfb_ms"].as_f64().unwrap() > 0.0);
    assert!(stream_row["latency_ms"].as_f64().unwrap() >= stream_row["ttfb_ms"].as_f64().unwrap());
    let fallback_row = &rows[4];
    assert_eq!(fallback_row["attempts"], 2);
    assert_eq!(fallback_row["failed_over"], true);
    assert_eq!(fallback_row["backend"], "alpha#1");

    // Each filter alone.
    assert_eq!(
        as_set(admin.ids("model=alpha").await),
        set(&["r-plain", "r-stream"])
    );
    assert_eq!(
        as_set(admin.ids("backend=alpha%231").await),
        set(&["r-plain", "r-stream", "r-fallback"])
    );
    assert_eq!(as_set(admin.ids("status=5xx").await), set(&["r-dead"]));
    assert_eq!(as_set(admin.ids("status=404").await), set(&["r-unknown"]));
    assert_eq!(admin.ids("status=2xx").await.len(), 5);
    assert_eq!(as_set(admin.ids("status=4xx").await), set(&["r-unknown"]));
    assert_eq!(
        as_set(admin.ids("outcome=failed_over").await),
        set(&["r-fallback"])
    );
    assert_eq!(
        as_set(admin.ids("outcome=all_failed").await),
        set(&["r-dead"])
    );
    assert_eq!(
        as_set(admin.ids("outcome=client_error").await),
        set(&["r-unknown"])
    );
    assert_eq!(admin.ids("outcome=ok").await.len(), 5);
    assert_eq!(as_set(admin.ids("stream=true").await), set(&["r-stream"]));
    assert_eq!(admin.ids("stream=false").await.len(), 6);
    assert_eq!(
        as_set(admin.ids("min_latency_ms=350").await),
        set(&["r-slow"])
    );
    assert_eq!(as_set(admin.ids("q=needle-xyz").await), set(&["r-plain"]));
    assert_eq!(as_set(admin.ids("q=NEEDLE-XYZ").await), set(&["r-plain"]));
    // In a streamed answer's frames, and LIKE wildcards taken literally.
    assert_eq!(as_set(admin.ids("q=streamed-").await), set(&["r-stream"]));
    assert!(admin.ids("q=%25").await.is_empty());
    // Time range: from the fallback's start (RFC 3339) to the slow one's
    // (epoch ms, exclusive).
    let t = |i: usize| rows[i]["started_at"].as_str().unwrap().to_string();
    let until_ms = chrono::DateTime::parse_from_rfc3339(&t(1))
        .unwrap()
        .timestamp_millis();
    let ranged = admin
        .ids(&format!(
            "since={}&until={until_ms}",
            t(4).replace('+', "%2B")
        ))
        .await;
    assert!(ranged.contains(&"r-fallback".to_string()), "{ranged:?}");
    assert!(!ranged.contains(&"r-plain".to_string()) || t(6) == t(4));
    assert!(!ranged.contains(&"r-slow".to_string()) || t(1) == t(0));
    // Combined.
    assert_eq!(
        as_set(
            admin
                .ids("model=alpha&stream=false&outcome=ok&q=needle")
                .await
        ),
        set(&["r-plain"])
    );
    assert!(admin.ids("model=alpha&status=5xx").await.is_empty());
    assert_eq!(
        as_set(
            admin
                .ids("backend=beta%231&min_latency_ms=350&status=200")
                .await
        ),
        set(&["r-slow"])
    );

    // Cursor paging: pages of 2 give every row once, in order.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let q = match &cursor {
            Some(c) => format!("/admin/api/logs?limit=2&cursor={c}"),
            None => "/admin/api/logs?limit=2".to_string(),
        };
        let page = admin.get(&q).await;
        for r in page["data"].as_array().unwrap() {
            paged.push(client_id(r));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(paged, order);
    // Paging with a filter.
    let first = admin.get("/admin/api/logs?limit=1&stream=false").await;
    let c = first["next_cursor"].as_str().unwrap();
    let second = admin
        .get(&format!("/admin/api/logs?limit=1&stream=false&cursor={c}"))
        .await;
    assert_eq!(second["data"][0]["client_request_id"], "r-slow");

    // Bad parameters: 400, OpenAI-shaped, naming the parameter.
    for q in [
        "status=6xx",
        "outcome=great",
        "since=yesterday",
        "limit=0",
        "cursor=%21%21",
        "modell=alpha",
    ] {
        let (s, v) = admin
            .call("GET", &format!("/admin/api/logs?{q}"), None)
            .await;
        assert_eq!(s, 400, "{q}: {v}");
        assert_eq!(v["error"]["code"], "invalid_query");
        assert!(v["error"]["message"].as_str().is_some());
    }

    // One record in full.
    let stream_id = admin.own("r-stream").await;
    let plain_id = admin.own("r-plain").await;
    let d = admin.get(&format!("/admin/api/logs/{stream_id}")).await;
    assert_eq!(d["id"], stream_id.as_str());
    assert_eq!(d["client_request_id"], "r-stream");
    // The client's id is no key.
    let (s, _) = admin.call("GET", "/admin/api/logs/r-stream", None).await;
    assert_eq!(s, 404);
    assert_eq!(d["request"]["headers"]["authorization"], "***");
    assert_eq!(
        d["request"]["body"]["messages"][0]["content"],
        "stream please"
    );
    assert_eq!(d["attempt_list"][0]["backend"], "alpha#1");
    assert_eq!(d["attempt_list"][0]["status"], 200);
    let frames = d["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 5);
    assert!(
        frames
            .windows(2)
            .all(|w| w[0]["t_ms"].as_f64() <= w[1]["t_ms"].as_f64())
    );
    let m = &d["assembled"]["message"];
    assert_eq!(m["content"], "streamed-answer");
    assert_eq!(m["reasoning"], "pondering");
    assert_eq!(d["assembled"]["usage"]["total_tokens"], 9);
    assert_eq!(d["assembled"]["done"], true);
    assert!(d["curl"].as_str().unwrap().starts_with("curl "));
    let plain = admin.get(&format!("/admin/api/logs/{plain_id}")).await;
    assert_eq!(plain["request"]["body"]["metadata"]["api_key"], "***");
    assert_eq!(
        plain["response"]["body"]["choices"][0]["message"]["content"],
        "model=alpha"
    );
    assert!(plain["assembled"].is_null());
    let dead = admin
        .get(&format!("/admin/api/logs/{}", admin.own("r-dead").await))
        .await;
    assert_eq!(dead["attempt_list"][0]["status"], 500);
    assert!(dead["error"].as_str().is_some());
    let (s, v) = admin.call("GET", "/admin/api/logs/no-such-id", None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("log_not_found"))
    );

    // Replay: through this proxy again, a new logged request.
    let hits = ok.count();
    let (s, r) = admin
        .call("POST", &format!("/admin/api/logs/{plain_id}/replay"), None)
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["status"], 200);
    assert_eq!(r["body"]["choices"][0]["message"]["content"], "model=alpha");
    let new_id = r["id"].as_str().unwrap().to_string();
    assert_ne!(new_id, plain_id);
    assert_eq!(ok.count(), hits + 1);
    // The upstream got the logged body, the backend's key, not the masked one.
    let hit = ok.hits().pop().unwrap();
    assert_eq!(
        hit.json()["messages"][0]["content"],
        "find the needle-xyz here"
    );
    assert_eq!(
        hit.headers["authorization"].to_str().unwrap(),
        format!("Bearer {BACKEND_KEY}")
    );
    admin.wait_rows(8).await;
    assert!(admin.ids("model=alpha").await.contains(&new_id));
    // Replay a stream with a model override and streaming off.
    let (s, r) = admin
        .call(
            "POST",
            &format!("/admin/api/logs/{stream_id}/replay"),
            Some(json!({"model": "beta", "stream": false})),
        )
        .await;
    assert_eq!((s, r["status"].as_u64()), (200, Some(200)), "{r}");
    assert_eq!(r["body"]["choices"][0]["message"]["content"], "model=beta");
    let (s, _) = admin
        .call(
            "POST",
            &format!("/admin/api/logs/{stream_id}/replay"),
            Some(json!({"bogus": 1})),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = admin
        .call("POST", "/admin/api/logs/none/replay", None)
        .await;
    assert_eq!(s, 404);

    // Stats: the last hour, per minute, per model.
    admin.wait_rows(9).await;
    let st = admin.get("/admin/api/stats").await;
    assert_eq!(st["bucket_seconds"], 60);
    assert!(st["totals"]["count"].as_u64().unwrap() >= 9);
    assert!(st["series"].as_array().unwrap().len() >= 60);
    let sum: u64 = st["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["count"].as_u64().unwrap())
        .sum();
    assert_eq!(sum, st["totals"]["count"].as_u64().unwrap());
    assert!(st["models"]["alpha"].is_array());
    assert_eq!(st["model_totals"]["alpha"]["count"], 3);
    assert!(st["totals"]["errors"].as_u64().unwrap() >= 2);
    let st = admin.get("/admin/api/stats?model=beta").await;
    assert!(st["totals"]["p95_ms"].as_f64().unwrap() >= 350.0);
    assert_eq!(st["totals"]["errors"], 0);
    let (s, _) = admin.call("GET", "/admin/api/stats?cursor=x", None).await;
    assert_eq!(s, 400);

    // Models with health, keys masked.
    let models = admin.get("/admin/api/models").await;
    let alpha = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model_name"] == "alpha")
        .unwrap();
    assert_eq!(alpha["source"], "config");
    assert_eq!(alpha["backends"][0]["api_key"], "***");
    assert_eq!(alpha["backends"][0]["health"]["state"], "healthy");
    assert_eq!(models["admin_password_set"], true);

    // Authentication: every endpoint refuses without the password.
    for (method, path) in [
        ("GET", "/admin/api/logs"),
        ("GET", "/admin/api/logs/r-plain"),
        ("POST", "/admin/api/logs/r-plain/replay"),
        ("GET", "/admin/api/stats"),
        ("GET", "/admin/api/models"),
    ] {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Bearer cl-DISTINCTIVE-client-d4e5f6"),
        ] {
            let mut r =
                client().request(method.parse().unwrap(), format!("{}{path}", server.url()));
            if let Some(a) = auth {
                r = r.header("authorization", a);
            }
            let r = r.send().await.unwrap();
            assert_eq!(r.status().as_u16(), 401, "{method} {path} with {auth:?}");
        }
    }
    // A forged session cookie is no login.
    let r = client()
        .get(format!("{}/admin/api/logs", server.url()))
        .header("cookie", "yallmp_admin=0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // No secret in anything the admin API said.
    let seen = admin.seen.lock().unwrap().clone();
    for secret in [BACKEND_KEY, CLIENT_KEY, ADMIN_PW, BODY_SECRET] {
        assert!(
            !seen.contains(secret),
            "{secret} leaked through the admin API"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn every_endpoint_on_sqlite() {
    every_endpoint(None).await;
}

#[tokio::test]
async fn every_endpoint_on_postgres() {
    pg::with_fresh_database(|url| async move { every_endpoint(Some(pg::target(&url))).await })
        .await;
}

#[tokio::test]
async fn without_a_database_the_log_endpoints_say_so() {
    let ok = Mock::start(Reply::Echo).await;
    let server = proxy(&format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\nproxy_settings:\n  logging:\n    database: {{enabled: false}}\n",
        ok.url
    ))
    .await;
    let r = client()
        .get(format!("{}/admin/api/logs", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "no_log_database");
    // Models still answer (loopback, no password).
    let v = get_json(&server, "/admin/api/models").await;
    assert_eq!(v["data"][0]["model_name"], "m");
    assert_eq!(v["log_database"], false);
    server.shutdown().await;
}

/// The UI's files (types, caching, CSP) and the login: the session cookie
/// opens the admin API, changes also need the UI's header, logout ends it.
#[tokio::test]
async fn ui_files_and_login_session() {
    let ok = Mock::start(Reply::Echo).await;
    let server = proxy_logging_to(&yaml(&ok.url, &ok.url, &ok.url), None).await;
    let base = server.url();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let r = http.get(format!("{base}/admin")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 308);
    assert_eq!(r.headers()["location"], "/admin/");
    // The page itself holds no data: served without credentials.
    let r = http.get(format!("{base}/admin/")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let etag = r.headers()["etag"].clone();
    assert!(r.text().await.unwrap().contains("assets/app.js"));
    let r = http
        .get(format!("{base}/admin/"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 304);
    for (path, ty) in [
        ("assets/app.js", "text/javascript; charset=utf-8"),
        ("assets/app.css", "text/css; charset=utf-8"),
        ("assets/favicon.svg", "image/svg+xml"),
    ] {
        let r = http
            .get(format!("{base}/admin/{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], ty, "{path}");
    }
    for path in [
        "assets/nope.js",
        "assets/..%2Findex.html",
        "assets/x/../../index.html",
    ] {
        let r = http
            .get(format!("{base}/admin/{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path}");
    }

    // Login.
    let login = |pw: &str| {
        http.post(format!("{base}/admin/login"))
            .json(&json!({"password": pw}))
            .send()
    };
    let r = login("wrong").await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    let r = login(ADMIN_PW).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/admin"),
        "{set}"
    );
    assert!(!set.contains(ADMIN_PW));
    let cookie = set.split(';').next().unwrap().to_string();
    let with_cookie = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{base}{path}"))
            .header("cookie", cookie.clone())
    };
    let r = with_cookie(reqwest::Method::GET, "/admin/api/logs")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = with_cookie(reqwest::Method::GET, "/admin/models")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // A change with the cookie alone (what a cross-site form could send) is refused.
    let r = with_cookie(reqwest::Method::POST, "/admin/config/reload")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = with_cookie(reqwest::Method::POST, "/admin/config/reload")
        .header("x-yallmp-ui", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Logout ends the session.
    let r = with_cookie(reqwest::Method::POST, "/admin/logout")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let r = with_cookie(reqwest::Method::GET, "/admin/api/logs")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    server.shutdown().await;

    // Without an admin password there is nothing to log in with.
    let server = proxy(&format!(
        "model_list:\n  - {{model_name: m, model_params: {{api_base: '{}'}}}}\n",
        ok.url
    ))
    .await;
    let r = client()
        .post(format!("{}/admin/login", server.url()))
        .json(&json!({"password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    server.shutdown().await;
}

#[tokio::test]
async fn every_admin_query_is_bounded() {
    let server = proxy_logging_to(
        &format!(
            "model_list:\n  - {{model_name: m, model_params: {{api_type: stub}}}}\nproxy_settings:\n  auth: {{admin_password: '{ADMIN_PW}'}}\n"
        ),
        None,
    )
    .await;
    let admin = Admin::new(&server);
    // Requests under many model names (unknown ones are logged too).
    for i in 0..60 {
        let r = client()
            .post(format!("{}/v1/chat/completions", server.url()))
            .json(&json!({"model": format!("ghost-{i:02}"), "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    // And one name as long as a client likes: its series is keyed by 200
    // characters of it.
    let r = client()
        .post(format!("{}/v1/chat/completions", server.url()))
        .json(&json!({"model": "a".repeat(5000), "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    admin.wait_rows(61).await;

    // The widest range there is: a bounded series, in whole days.
    let (s, st) = admin
        .call(
            "GET",
            "/admin/api/stats?since=-62135596800000&until=253402300799999",
            None,
        )
        .await;
    assert_eq!(s, 200, "{st}");
    let bucket = st["bucket_seconds"].as_i64().unwrap();
    assert_eq!(bucket % 86_400, 0, "{bucket}");
    let points = st["series"].as_array().unwrap().len();
    assert!((100..=122).contains(&points), "{points}");
    assert_eq!(st["totals"]["count"], 61);
    // At most 50 models have a series of their own; the rest are summed.
    let models = st["models"].as_object().unwrap();
    assert_eq!(models.len(), 51, "{:?}", models.keys());
    assert_eq!(st["model_totals"]["(other)"]["count"], 11);
    assert!(models.contains_key(&"a".repeat(200)));
    assert!(models.keys().all(|k| k.len() <= 200));
    assert!(
        models
            .values()
            .all(|s| s.as_array().unwrap().len() == points)
    );
    assert!(st.to_string().len() < 4 << 20);

    // A range the wrong way round, or out of range, is a bad query.
    for q in [
        "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
        "since=-99999999999999999",
        "until=9999999999999999999",
    ] {
        let (s, v) = admin
            .call("GET", &format!("/admin/api/stats?{q}"), None)
            .await;
        assert_eq!(s, 400, "{q}: {v}");
        assert_eq!(v["error"]["code"], "invalid_query", "{q}");
    }

    // An overlong text filter is a bad query, not a failed read.
    let long = "a".repeat(50_000);
    for path in [
        format!("/admin/api/logs?q={long}"),
        format!("/admin/api/logs?model={long}"),
        format!("/admin/api/stats?q={long}"),
    ] {
        let (s, v) = admin.call("GET", &path, None).await;
        assert_eq!(s, 400, "{v}");
        assert_eq!(v["error"]["code"], "invalid_query");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("at most 1000 characters"),
            "{v}"
        );
    }
    // The longest accepted search still answers.
    let (s, v) = admin
        .call(
            "GET",
            &format!("/admin/api/logs?q={}", "a".repeat(1000)),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // Pages are capped.
    let v = admin.get("/admin/api/logs?limit=100000").await;
    assert_eq!(v["limit"], 500);
    server.shutdown().await;
}
