//! `GET /metrics`: Prometheus text, counting requests, durations and
//! tokens with bounded labels, and guarded by the admin password when one
//! is set. The recorder is process-wide, so each test uses model names of
//! its own and reads only its own series.

use std::time::Duration;

use serde_json::json;

use crate::support::metric_value as value;
use crate::support::*;

async fn scrape(server: &yallmp::Server, password: Option<&str>) -> (u16, String, String) {
    let mut req = client().get(format!("{}/metrics", server.url()));
    if let Some(pw) = password {
        req = req.bearer_auth(pw);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, r.text().await.unwrap())
}

/// Scrapes until `check` holds (a request is counted when its last byte
/// has gone, a moment after the client has it), at most 5 s.
async fn scrape_until(server: &yallmp::Server, check: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, _, text) = scrape(server, None).await;
        if check(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics never matched:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn metrics_are_exposed_and_count_requests_and_tokens() {
    let mock = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n  - {{model_name: metrics-a, model_params: {{api_base: '{}'}}}}\n",
        mock.url
    );
    let server = proxy(&yaml).await;
    let body = json!({"model": "metrics-a", "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..2 {
        let (status, _, _) = post(&server, "/v1/chat/completions", &body).await;
        assert_eq!(status, 200);
    }
    // A stream that reports its usage in its last chunk.
    mock.push(Reply::Sse {
        frames: vec![
            chunk("hi"),
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":11,\"total_tokens\":18}}\n\n".into(),
            DONE.into(),
        ],
        gap: Duration::from_millis(1),
    });
    let mut stream = body.clone();
    stream["stream"] = json!(true);
    let (status, _, text) = post(&server, "/chat/completions", &stream).await;
    assert_eq!(status, 200);
    assert!(text.contains("[DONE]"));
    // A model nobody configured is `unknown`, never the client's string.
    let (status, _, _) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "invented-model-xyz", "messages": []}),
    )
    .await;
    assert_eq!(status, 404);
    let _ = client()
        .get(format!("{}/v1/models/raw-id-12345", server.url()))
        .send()
        .await
        .unwrap();
    let _ = client()
        .get(format!("{}/no/such/path-987", server.url()))
        .send()
        .await
        .unwrap();

    let text = scrape_until(&server, |t| {
        value(
            t,
            "yallmp_tokens_total",
            &[("model", "metrics-a"), ("direction", "out")],
        ) == Some(15.0)
            && value(
                t,
                "yallmp_requests_total",
                &[("route", "/no/such/path-987")],
            )
            .is_none()
            && value(t, "yallmp_requests_total", &[("route", "unmatched")]).is_some()
    })
    .await;
    let (status, ct, _) = scrape(&server, None).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/plain"), "{ct}");

    let count = |route: &str, status: &str| {
        value(
            &text,
            "yallmp_requests_total",
            &[("route", route), ("model", "metrics-a"), ("status", status)],
        )
    };
    assert_eq!(count("/v1/chat/completions", "200"), Some(2.0), "{text}");
    assert_eq!(count("/chat/completions", "200"), Some(1.0), "{text}");
    assert!(
        value(
            &text,
            "yallmp_requests_total",
            &[
                ("route", "/v1/chat/completions"),
                ("model", "unknown"),
                ("status", "404")
            ]
        )
        .is_some(),
        "{text}"
    );
    assert!(!text.contains("invented-model-xyz"), "{text}");
    assert!(!text.contains("raw-id-12345"), "{text}");
    assert!(text.contains("route=\"/v1/models/{*id}\""), "{text}");
    // Tokens: 3 + 3 in the JSON answers, 7 in the stream; 2 + 2 + 11 out.
    assert_eq!(
        value(
            &text,
            "yallmp_tokens_total",
            &[("model", "metrics-a"), ("direction", "in")]
        ),
        Some(13.0)
    );
    // Durations are histograms with LLM-sized buckets.
    assert_eq!(
        value(
            &text,
            "yallmp_request_duration_seconds_count",
            &[("route", "/v1/chat/completions"), ("model", "metrics-a")]
        ),
        Some(2.0),
        "{text}"
    );
    assert!(
        value(
            &text,
            "yallmp_request_duration_seconds_bucket",
            &[("model", "metrics-a"), ("le", "600")]
        )
        .is_some(),
        "{text}"
    );
    assert!(
        text.contains("# TYPE yallmp_in_flight_requests gauge"),
        "{text}"
    );
    // The request log's queue (logging is on in tests).
    assert!(
        value(&text, "yallmp_log_queue_depth", &[]).is_some(),
        "{text}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_need_the_admin_password_when_one_is_set() {
    let server = proxy_with_env(
        "model_list:\n  - {model_name: metrics-b, model_params: {api_type: stub}}\nproxy_settings: {auth: {api_keys: [ck-1]}}\n",
        &[("YALLMP_ADMIN_PASSWORD", "pw-metrics")],
    )
    .await;
    let (status, _, body) = scrape(&server, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("admin_auth_required"));
    // A client key is not enough.
    let (status, _, _) = scrape(&server, Some("ck-1")).await;
    assert_eq!(status, 401);
    let (status, _, body) = scrape(&server, Some("pw-metrics")).await;
    assert_eq!(status, 200);
    assert!(body.contains("yallmp_"), "{body}");
    assert!(!body.contains("pw-metrics") && !body.contains("ck-1"));
    server.shutdown().await;
}

#[tokio::test]
async fn names_clients_choose_under_a_wildcard_never_become_labels() {
    // Cache hits and misses, requests and tokens are counted by the
    // configured model (the pattern), whatever name each request sent.
    let mock = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n  - {{model_name: 'wildlabel-*', model_params: {{api_base: '{}'}}}}\nproxy_settings:\n  cache: {{enabled: true}}\n",
        mock.url
    );
    let server = proxy(&yaml).await;
    let n = 200;
    for i in 0..n {
        let body = json!({"model": format!("wildlabel-{i}"), "messages": [{"role": "user", "content": "hi"}]});
        for _ in 0..2 {
            let (status, _, _) = post(&server, "/v1/chat/completions", &body).await;
            assert_eq!(status, 200);
        }
    }
    // (An answer is stored in the background: a repeat may still miss.)
    let counted = |t: &str| {
        let of = |name| value(t, name, &[("model", "wildlabel-*")]).unwrap_or(0.0);
        of("yallmp_cache_hits_total") + of("yallmp_cache_misses_total")
    };
    let text = scrape_until(&server, |t| counted(t) == (2 * n) as f64).await;
    assert!(
        value(
            &text,
            "yallmp_cache_misses_total",
            &[("model", "wildlabel-*")]
        )
        .is_some()
    );
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("wildlabel-"))
        .collect();
    assert!(
        ours.iter().all(|l| l.contains("model=\"wildlabel-*\"")),
        "a client's name became a label: {ours:?}"
    );
    // A fixed set of series (cache, requests, tokens, histogram buckets),
    // not one or more per name.
    assert!(ours.len() < 100, "{} series: {ours:?}", ours.len());
    server.shutdown().await;
}
