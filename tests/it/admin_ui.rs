//! The admin UI in a real browser: headless Chromium driven through
//! chromedriver (WebDriver, with fantoccini) against the real proxy and a
//! mock upstream. It logs in, sees stream and non-stream requests, filters
//! by model, opens a detail with the assembled stream and replays it,
//! registers a model through the UI and uses it, reloads the config, and
//! draws the overview.
//!
//! Without `/usr/bin/chromedriver` the test says so and returns, unless
//! `YALLMP_E2E_BROWSER=1` (CI), where a missing browser is a failure.
//! `YALLMP_SCREENSHOTS=1` also saves the pages to `docs/images/admin-*.png`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use yallmp::config::Config;

use crate::support::browser::*;
use crate::support::*;

const ADMIN_PW: &str = "pw-ui-DISTINCTIVE-5511";
const BACKEND_KEY: &str = "sk-ui-DISTINCTIVE-9090";

fn config_text(mock: &str, extra_model: bool) -> String {
    let mut s = format!(
        r#"model_list:
  - {{model_name: chat-fast, model_params: {{api_base: '{mock}', api_key: {BACKEND_KEY}}}}}
  - {{model_name: reasoner, model_params: {{api_base: '{mock}', api_key: {BACKEND_KEY}}}}}
  - {{model_name: embedder, model_params: {{api_base: '{mock}'}}, protected: true}}
proxy_settings:
  auth:
    admin_password: '{ADMIN_PW}'
"#
    );
    if extra_model {
        s = s.replace(
            "proxy_settings:",
            &format!("  - {{model_name: added-by-reload, model_params: {{api_base: '{mock}'}}}}\nproxy_settings:"),
        );
    }
    s
}

/// The proxy's own id (the log record's key, the rows' `data-id`) of the
/// request sent with `x-request-id: client`, once it is logged.
async fn own_id(server: &yallmp::Server, sent_as: &str) -> String {
    for _ in 0..400 {
        let v: Value = client()
            .get(format!(
                "{}/admin/api/logs?client_request_id={sent_as}",
                server.url()
            ))
            .header("authorization", format!("Bearer {ADMIN_PW}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(id) = v["data"][0]["id"].as_str() {
            return id.to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("request {sent_as} was not logged");
}

async fn chat(server: &yallmp::Server, id: &str, body: Value) -> u16 {
    post_with(
        server,
        "/v1/chat/completions",
        &body,
        &[("x-request-id", id)],
    )
    .await
    .0
}

/// An hour of earlier requests, four a minute, for the overview's charts:
/// latency waves, every 13th an error.
async fn add_history(db: &Path) {
    let target = yallmp::config::DatabaseTarget::Sqlite {
        path: db.to_path_buf(),
    };
    let yallmp::reqlog::db::Db::Sqlite(pool) =
        yallmp::reqlog::db::Db::connect(&target).await.unwrap()
    else {
        unreachable!()
    };
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 236) \
         INSERT INTO requests (id, started_at, method, path, model, backend, status, outcome, stream, attempts_count, \
           ttfb_ms, latency_ms, request_headers, request_body, attempts) \
         SELECT printf('hist-%04d', i), strftime('%Y-%m-%dT%H:%M:%fZ', 'now', printf('-%d seconds', 60 + i * 15)), \
           'POST', '/v1/chat/completions', CASE WHEN i % 3 = 0 THEN 'reasoner' ELSE 'chat-fast' END, \
           CASE WHEN i % 3 = 0 THEN 'reasoner#1' ELSE 'chat-fast#1' END, CASE WHEN i % 13 = 0 THEN 502 ELSE 200 END, \
           CASE WHEN i % 13 = 0 THEN 'all_failed' ELSE 'ok' END, i % 2, 1, 40.0, \
           120.0 + 90.0 * ((i / 4) % 10) + CASE WHEN i % 3 = 0 THEN 600.0 ELSE 0.0 END, '{}', '{}', '[]' FROM n",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}

#[tokio::test]
async fn admin_ui_in_chromium() {
    let required = std::env::var("YALLMP_E2E_BROWSER").as_deref() == Ok("1");
    if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
        assert!(
            !required,
            "YALLMP_E2E_BROWSER=1 but {CHROMEDRIVER} or {CHROMIUM} is missing (apt-get install chromium chromium-driver)"
        );
        eprintln!(
            "NOTICE: {CHROMEDRIVER} or {CHROMIUM} not found: browser test of the admin UI not run (apt-get install chromium chromium-driver)"
        );
        return;
    }

    // A mock upstream, and the proxy started from a config file (so Reload
    // config has a file to read again).
    let mock = Mock::start(Reply::Echo).await;
    let dir: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("admin-ui")
        .join(uuid::Uuid::new_v4().simple().to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.yaml");
    std::fs::write(&path, config_text(&mock.url, false)).unwrap();
    let mut config = Config::load(&path).unwrap();
    config.server.host = "127.0.0.1".into();
    config.server.port = 0;
    let logs = isolate_logs(&mut config);
    let server = yallmp::serve(config).await.unwrap();
    let base = server.url();

    // Stream and non-stream requests.
    assert_eq!(
        chat(
            &server,
            "ui-plain",
            json!({"model": "chat-fast", "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is the capital of France?"}]})
        )
        .await,
        200
    );
    mock.push(Reply::Sse {
        frames: vec![
            "data: {\"id\":\"c1\",\"model\":\"reasoner\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"reasoning_content\":\"The user wants the weather; call the tool.\"}}]}\n\n".into(),
            chunk("Let me check "),
            chunk("the weather."),
            "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_7\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n".into(),
            "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":21,\"completion_tokens\":12,\"total_tokens\":33}}\n\n".into(),
            DONE.into(),
        ],
        gap: Duration::from_millis(15),
    });
    assert_eq!(
        chat(&server, "ui-stream", json!({"model": "reasoner", "stream": true, "messages": [
            {"role": "user", "content": "Weather in Paris?"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]})).await,
        200
    );
    assert_eq!(
        chat(
            &server,
            "ui-other",
            json!({"model": "chat-fast", "messages": [{"role": "user", "content": "Hello"}]})
        )
        .await,
        200
    );
    assert_eq!(
        chat(&server, "ui-missing", json!({"model": "no-such-model"})).await,
        404
    );

    let plain_id = own_id(&server, "ui-plain").await;
    let stream_id = own_id(&server, "ui-stream").await;
    let other_id = own_id(&server, "ui-other").await;
    let missing_id = own_id(&server, "ui-missing").await;

    let driver = start_driver().await;
    let c = browser(&driver).await;

    // The login form, then the logs.
    c.goto(&format!("{base}/admin/")).await.unwrap();
    until(
        &c,
        "the login form",
        "return !!document.querySelector('#password')",
    )
    .await;
    type_into(&c, "#password", "wrong").await;
    click(&c, "form.login button[type=submit]").await;
    until(
        &c,
        "the refusal",
        "return !!document.querySelector('form.login .error:not([hidden])')",
    )
    .await;
    type_into(&c, "#password", ADMIN_PW).await;
    click(&c, "form.login button[type=submit]").await;
    until(
        &c,
        "four rows",
        "return document.querySelectorAll('table.logs tbody tr').length === 4",
    )
    .await;
    let row = text(&c, &format!("tr[data-id='{stream_id}']")).await;
    assert!(
        row.contains("reasoner") && row.contains("stream") && row.contains("200"),
        "{row}"
    );
    let row = text(&c, &format!("tr[data-id='{missing_id}']")).await;
    assert!(row.contains("404") && row.contains("client error"), "{row}");
    screenshot(&c, "logs").await;

    // Live: a new request appears without a reload.
    assert_eq!(
        chat(
            &server,
            "ui-live",
            json!({"model": "reasoner", "messages": [{"role": "user", "content": "Live?"}]})
        )
        .await,
        200
    );
    let live_id = own_id(&server, "ui-live").await;
    until(
        &c,
        "the live row",
        &format!("return !!document.querySelector(\"tr[data-id='{live_id}']\")"),
    )
    .await;

    // Filter by model: the URL keeps it.
    c.execute(
        "const s = document.querySelector('#model'); s.value = 'chat-fast'; s.dispatchEvent(new Event('change'));",
        vec![],
    )
    .await
    .unwrap();
    until(
        &c,
        "the chat-fast rows only",
        "return location.hash.includes('model=chat-fast') && document.querySelectorAll('table.logs tbody tr').length === 2",
    )
    .await;
    let ids: Value = c
        .execute(
            "return [...document.querySelectorAll('table.logs tbody tr')].map(r => r.dataset.id)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(ids, json!([other_id, plain_id]));
    // A shared URL opens the same view.
    let url = c.current_url().await.unwrap();
    c.goto("about:blank").await.unwrap();
    c.goto(url.as_str()).await.unwrap();
    until(
        &c,
        "the filtered view again",
        "return document.querySelectorAll('table.logs tbody tr').length === 2 && document.querySelector('#model').value === 'chat-fast'",
    )
    .await;
    // Text search.
    c.goto(&format!("{base}/admin/#/logs?q=capital"))
        .await
        .unwrap();
    until(
        &c,
        "the search result",
        &format!("return document.querySelectorAll('table.logs tbody tr').length === 1 && !!document.querySelector(\"tr[data-id='{plain_id}']\")"),
    )
    .await;

    // The stream's detail: assembled message, reasoning, tool call, timeline.
    c.goto(&format!("{base}/admin/#/logs")).await.unwrap();
    until(
        &c,
        "the rows",
        &format!("return !!document.querySelector(\"tr[data-id='{stream_id}'] a\")"),
    )
    .await;
    click(&c, &format!("tr[data-id='{stream_id}'] a")).await;
    until(
        &c,
        "the detail",
        "return !!document.querySelector('.assembled')",
    )
    .await;
    let assembled = text(&c, ".assembled").await;
    assert!(
        assembled.contains("Let me check the weather."),
        "{assembled}"
    );
    assert!(
        assembled.contains("get_weather") && assembled.contains("Paris"),
        "{assembled}"
    );
    assert!(assembled.contains("tool_calls"), "{assembled}");
    let chat_text = text(&c, ".chat").await;
    assert!(
        chat_text.contains("Weather in Paris?") && chat_text.contains("get_weather"),
        "{chat_text}"
    );
    // Reasoning is collapsed until opened.
    let open: Value = c
        .execute(
            "return document.querySelector('.chat details.reasoning').open",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(open, json!(false));
    let frames = text(&c, "details.frames summary").await;
    assert!(frames.contains("6 frames"), "{frames}");
    let headers = text(&c, "section[aria-labelledby='sec-request']").await;
    assert!(!headers.contains(BACKEND_KEY));
    // Open the timeline for the picture, the whole page in view.
    click(&c, "details.frames summary").await;
    if std::env::var("YALLMP_SCREENSHOTS").as_deref() == Ok("1") {
        c.set_window_size(1400, 2300).await.unwrap();
        c.execute("window.scrollTo(0, 0)", vec![]).await.unwrap();
        screenshot(&c, "detail").await;
        c.set_window_size(1400, 1000).await.unwrap();
    }

    // Copy as curl: the command reaches the clipboard (or the fallback copy)
    // and says so.
    click(&c, "#copy-curl").await;
    until(
        &c,
        "the copy notice",
        "return document.getElementById('toast').textContent === 'curl command copied'",
    )
    .await;

    // Replay it: the new result is shown and logged.
    let hits = mock.count();
    mock.push(Reply::Sse {
        frames: vec![chunk("Replayed "), chunk("answer."), DONE.into()],
        gap: Duration::from_millis(5),
    });
    click(&c, "#replay").await;
    until(
        &c,
        "the replay result",
        "return !!document.querySelector('#replay-title')",
    )
    .await;
    let replay = text(&c, "section.replay").await;
    assert!(
        replay.contains("200") && replay.contains("Replayed answer."),
        "{replay}"
    );
    assert_eq!(mock.count(), hits + 1);

    // A plain request's chat view: system, user, answer; reached with the
    // keyboard (the row's link, then Enter).
    c.goto(&format!("{base}/admin/#/logs")).await.unwrap();
    until(
        &c,
        "the plain row",
        &format!("return !!document.querySelector(\"tr[data-id='{plain_id}'] a\")"),
    )
    .await;
    c.execute(
        &format!("document.querySelector(\"tr[data-id='{plain_id}'] a\").focus()"),
        vec![],
    )
    .await
    .unwrap();
    c.active_element()
        .await
        .unwrap()
        .send_keys(&fantoccini::key::Key::Enter.to_string())
        .await
        .unwrap();
    until(
        &c,
        "the plain request's page",
        &format!("return location.hash === '#/logs/{plain_id}'"),
    )
    .await;
    until(
        &c,
        "the chat",
        "return !!document.querySelector('.chat .msg.answer')",
    )
    .await;
    let chat_text = text(&c, ".chat").await;
    assert!(
        chat_text.contains("You are terse.")
            && chat_text.contains("capital of France")
            && chat_text.contains("model=chat-fast"),
        "{chat_text}"
    );

    // Models: health shown, keys never; register one through the UI, use it.
    c.goto(&format!("{base}/admin/#/models")).await.unwrap();
    until(
        &c,
        "the models",
        "return !!document.querySelector(\"tr[data-model='chat-fast']\")",
    )
    .await;
    let models = text(&c, "table.models").await;
    assert!(
        models.contains("healthy") && models.contains("protected"),
        "{models}"
    );
    assert!(!models.contains(BACKEND_KEY));
    click(&c, "#register").await;
    until(
        &c,
        "the form",
        "return !!document.querySelector('#f-model_name')",
    )
    .await;
    type_into(&c, "#f-model_name", "made-in-ui").await;
    type_into(&c, "#f-api_base", &mock.url).await;
    type_into(&c, "#f-target_model", "upstream-x").await;
    click(&c, ".model-form button[type=submit]").await;
    until(
        &c,
        "the new model",
        "return !!document.querySelector(\"tr[data-model='made-in-ui']\")",
    )
    .await;
    assert_eq!(
        chat(
            &server,
            "ui-new-model",
            json!({"model": "made-in-ui", "messages": []})
        )
        .await,
        200
    );
    assert_eq!(mock.hits().last().unwrap().json()["model"], "upstream-x");
    screenshot(&c, "models").await;

    // Edit it (a new upstream model), then copy it under a new name.
    click(
        &c,
        "tr[data-model='made-in-ui'] button[aria-label='Edit made-in-ui']",
    )
    .await;
    until(
        &c,
        "the edit form",
        "return document.querySelector('#f-api_base')?.value.length > 0",
    )
    .await;
    type_into(&c, "#f-target_model", "upstream-y").await;
    click(&c, ".model-form button[type=submit]").await;
    until(
        &c,
        "the edited model",
        "return document.querySelector(\"tr[data-model='made-in-ui']\")?.innerText.includes('upstream-y')",
    )
    .await;
    c.execute("window.prompt = () => 'made-in-ui-copy';", vec![])
        .await
        .unwrap();
    click(
        &c,
        "tr[data-model='made-in-ui'] button[aria-label='Copy made-in-ui']",
    )
    .await;
    until(
        &c,
        "the copy",
        "return !!document.querySelector(\"tr[data-model='made-in-ui-copy']\")",
    )
    .await;
    assert_eq!(
        chat(
            &server,
            "ui-copied",
            json!({"model": "made-in-ui-copy", "messages": []})
        )
        .await,
        200
    );
    assert_eq!(mock.hits().last().unwrap().json()["model"], "upstream-y");

    // A protected model asks for the password.
    c.execute("window.confirm = () => true;", vec![])
        .await
        .unwrap();
    click(&c, "tr[data-model='embedder'] button.danger").await;
    until(
        &c,
        "the password dialog",
        "return !!document.querySelector('dialog[open] #protected-password')",
    )
    .await;
    type_into(&c, "#protected-password", ADMIN_PW).await;
    click(&c, "dialog[open] button[value=ok]").await;
    until(
        &c,
        "the deletion",
        "return !document.querySelector(\"tr[data-model='embedder']\")",
    )
    .await;

    // Reload config: what changed.
    std::fs::write(&path, config_text(&mock.url, true)).unwrap();
    click(&c, "#reload").await;
    until(
        &c,
        "the reload result",
        "return !!document.querySelector('#reload-result')",
    )
    .await;
    let reload = text(&c, "#reload-result").await;
    assert!(
        reload.contains("Config reloaded") && reload.contains("added-by-reload"),
        "{reload}"
    );
    until(
        &c,
        "the reloaded model",
        "return !!document.querySelector(\"tr[data-model='added-by-reload']\")",
    )
    .await;
    // A broken file: the errors, nothing changed.
    std::fs::write(
        &path,
        "model_list: [{model_name: x, model_params: {api_base: 'not a url'}}]\n",
    )
    .unwrap();
    click(&c, "#reload").await;
    until(
        &c,
        "the reload error",
        "return document.querySelector('#reload-result')?.innerText.includes('Reload failed')",
    )
    .await;

    // Overview charts, over an hour of history added to the log.
    add_history(&logs.join("yallmp.db")).await;
    c.goto(&format!("{base}/admin/#/overview")).await.unwrap();
    until(
        &c,
        "the charts",
        "return document.querySelectorAll('svg.chart').length === 3",
    )
    .await;
    until(
        &c,
        "a bar per minute",
        "return document.querySelectorAll('svg.chart rect.bar').length >= 55",
    )
    .await;
    let overview = text(&c, "main").await;
    assert!(
        overview.contains("reasoner") && overview.contains("chat-fast"),
        "{overview}"
    );
    screenshot(&c, "overview").await;

    // Log out: back to the login form.
    click(&c, "#logout").await;
    until(
        &c,
        "the login form again",
        "return !!document.querySelector('#password')",
    )
    .await;

    c.close().await.unwrap();
    server.shutdown().await;
}
