//! What the command line prints matches what the proxy serves.

use crate::support::*;

/// Every `GET` path the start-up banner names answers (not 404), at the
/// path it is named by.
#[tokio::test]
async fn the_banner_names_only_routes_that_exist() {
    let mock = Mock::start(Reply::Echo).await;
    let yaml = format!(
        "model_list:\n  - model_name: m\n    model_params: {{api_base: '{}', api_key: k}}\n",
        mock.url
    );
    let server = proxy(&yaml).await;
    let config = server.state().live.load().config.clone();
    let banner = yallmp::cli::banner(&config, std::path::Path::new("c.yaml"));
    let line = banner
        .lines()
        .find(|l| l.starts_with("endpoints:"))
        .expect("an endpoints line");
    assert!(!line.contains("/v1/healthz"), "{line}");
    let mut paths: Vec<String> = vec![
        "/v1/models".into(),
        "/models".into(),
        "/v1/models/m".into(),
        "/models/m".into(),
    ];
    for p in ["/healthz", "/health", "/stats", "/metrics"] {
        assert!(line.contains(p), "{line} lacks {p}");
        paths.push(p.into());
    }
    for p in &paths {
        let status = client()
            .get(format!("{}{p}", server.url()))
            .send()
            .await
            .unwrap()
            .status();
        assert_ne!(status, 404, "{p}");
    }
    // And the one the old banner claimed is not served.
    let status = client()
        .get(format!("{}/v1/healthz", server.url()))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
    server.shutdown().await;
}
