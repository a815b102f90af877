//! The admin UI's Keys and Spend pages in headless Chromium against the
//! real proxy: a team and a key made through the forms (the secret shown
//! once), the key used, its spend shown against its budget, the key
//! revoked from its row, and the Spend page's tables. Skips, or fails under
//! `YALLMP_E2E_BROWSER=1`, as `admin_ui` does.

use std::path::Path;

use serde_json::json;

use crate::support::browser::*;
use crate::support::*;

#[tokio::test]
async fn keys_and_spend_pages_in_chromium() {
    let required = std::env::var("YALLMP_E2E_BROWSER").as_deref() == Ok("1");
    if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
        assert!(
            !required,
            "YALLMP_E2E_BROWSER=1 but {CHROMEDRIVER} or {CHROMIUM} is missing"
        );
        eprintln!("NOTICE: chromedriver or chromium not found: Keys page browser test not run");
        return;
    }
    let mock = Mock::start(Reply::Echo).await;
    // 0.7 USD an answer (3 input, 2 output tokens); no admin password:
    // the browser is a loopback client.
    let logged = crate::support::logged::logged_proxy(
        &format!(
            "model_list:\n  - {{model_name: priced, model_params: {{api_base: '{}', pricing: {{input: 100000, output: 200000}}}}}}\n",
            mock.url
        ),
        None,
    )
    .await;
    let base = logged.server.url();
    let driver = start_driver().await;
    let c = browser(&driver).await;
    c.goto(&format!("{base}/admin/#/keys")).await.unwrap();
    until(
        &c,
        "the Keys page",
        "return !!document.querySelector('#new-key')",
    )
    .await;
    // Confirmation dialogs answer yes.
    c.execute("window.confirm = () => true", vec![])
        .await
        .unwrap();

    // A team, then a key in it with a budget.
    click(&c, "#new-team").await;
    type_into(&c, "#k-name", "ml").await;
    click(&c, "form.model-form button[type=submit]").await;
    until(
        &c,
        "the team listed",
        "return document.querySelector('#teams-table')?.innerText.includes('ml')",
    )
    .await;
    click(&c, "#new-key").await;
    type_into(&c, "#k-name", "ci-bot").await;
    type_into(&c, "#k-max_budget", "1").await;
    c.execute(
        "const s = document.querySelector('#k-team'); s.value = [...s.options].find(o => o.text === 'ml').value;",
        vec![],
    )
    .await
    .unwrap();
    click(&c, "form.model-form button[type=submit]").await;
    until(
        &c,
        "the new secret",
        "return !!document.querySelector('#secret-value')",
    )
    .await;
    let secret = text(&c, "#secret-value").await;
    assert!(secret.starts_with("yk-"), "{secret}");
    until(
        &c,
        "the key listed with its team",
        "return document.querySelector('#keys-table')?.innerText.includes('ci-bot')",
    )
    .await;

    // The key works, and its spend shows against its budget.
    let (status, headers, _) = post_with(
        &logged.server,
        "/v1/chat/completions",
        &json!({"model": "priced", "messages": [{"role": "user", "content": "hi"}]}),
        &[("authorization", &format!("Bearer {secret}"))],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-yallmp-cost"], "0.700000");
    c.goto(&format!("{base}/admin/#/spend")).await.unwrap();
    c.goto(&format!("{base}/admin/#/keys")).await.unwrap();
    until(
        &c,
        "the spend against the budget",
        "return document.querySelector('#keys-table')?.innerText.includes('$0.7000 of $1.00')",
    )
    .await;
    assert_eq!(
        c.execute(
            "return document.querySelector('#keys-table meter')?.value",
            vec![]
        )
        .await
        .unwrap(),
        json!(0.7)
    );
    screenshot(&c, "admin-keys").await;

    // The logs show the key, the team and the cost, and filter by key.
    c.goto(&format!("{base}/admin/#/logs?key=ci-bot"))
        .await
        .unwrap();
    until(
        &c,
        "the request with its key, team and cost",
        "const t = document.querySelector('table.logs')?.innerText || ''; \
         return t.includes('ci-bot') && t.includes('ml') && t.includes('$0.7000')",
    )
    .await;
    c.goto(&format!("{base}/admin/#/logs?key=nobody"))
        .await
        .unwrap();
    until(
        &c,
        "no request for another key",
        "return !!document.querySelector('p.empty') && !document.querySelector('p.empty').hidden",
    )
    .await;
    c.goto(&format!("{base}/admin/#/keys")).await.unwrap();
    until(
        &c,
        "the Keys page again",
        "return !!document.querySelector('#keys-table')",
    )
    .await;

    // Revoked from its row: the row says so, and the key is refused.
    c.execute("window.confirm = () => true", vec![])
        .await
        .unwrap();
    click(&c, "button[aria-label='Revoke ci-bot']").await;
    until(
        &c,
        "the revoked badge",
        "return document.querySelector('#keys-table')?.innerText.includes('revoked')",
    )
    .await;
    let (status, _, _) = post_with(
        &logged.server,
        "/v1/chat/completions",
        &json!({"model": "priced", "messages": []}),
        &[("authorization", &format!("Bearer {secret}"))],
    )
    .await;
    assert_eq!(status, 401);

    // The Spend page: by key, team and model, from the log's database.
    c.goto(&format!("{base}/admin/#/spend")).await.unwrap();
    for (table, what) in [
        ("#spend-by-key", "ci-bot"),
        ("#spend-by-team", "ml"),
        ("#spend-by-model", "priced"),
    ] {
        for _ in 0..40 {
            let found = c
                .execute(
                    "return document.querySelector(arguments[0])?.innerText.includes(arguments[1])",
                    vec![json!(table), json!(what)],
                )
                .await
                .unwrap();
            if found == json!(true) {
                break;
            }
            // The log's writer stores in the background: look again.
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            c.refresh().await.unwrap();
        }
        until(
            &c,
            table,
            &format!("return document.querySelector('{table}')?.innerText.includes('{what}')"),
        )
        .await;
    }
    assert!(text(&c, "#spend-total").await.starts_with('$'));
    screenshot(&c, "admin-spend").await;
    c.close().await.unwrap();
    logged.server.shutdown().await;
}
