//! Helpers for the forwarder tests: settings from YAML, forwarders on
//! port 0 in front of a given port, and a chat request through them.

use std::time::Duration;

use serde_json::Value;
use yallmp::config::forward::{ForwardSettings, HttpForwardSettings, TcpForwardSettings};
use yallmp::config::{Config, Env};
use yallmp::forward::Forwarder;

use super::client;

/// Longest a test waits for anything that should be prompt.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub fn one_model(url: &str) -> String {
    format!(
        "model_list:\n  - model_name: m\n    model_params: {{api_base: '{url}', api_key: sk-k}}\n"
    )
}

/// The forwarder settings this YAML and these variables give.
pub fn settings(yaml: &str, vars: &[(&str, &str)]) -> ForwardSettings {
    let env = Env::isolated(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_yaml(yaml, None, &env)
        .unwrap_or_else(|e| panic!("config: {e}"))
        .forward
}

/// TCP forwarder settings: listen on 127.0.0.1:0, target `port`.
pub fn tcp_to(port: u16, extra: &str) -> TcpForwardSettings {
    settings(
        &format!(
            "forwarder_settings:\n  listen: {{host: 127.0.0.1, port: 0}}\n  target: {{host: 127.0.0.1, port: {port}}}\n{extra}"
        ),
        &[],
    )
    .tcp
}

/// HTTP forwarder settings: listen on 127.0.0.1:0, target `port`.
pub fn http_to(port: u16, preserve_host: bool) -> HttpForwardSettings {
    settings(
        &format!(
            "http_forwarder_settings:\n  preserve_host: {preserve_host}\n  listen: {{host: 127.0.0.1, port: 0}}\n  target: {{scheme: http, host: 127.0.0.1, port: {port}}}\n"
        ),
        &[],
    )
    .http
}

pub fn url(f: &Forwarder) -> String {
    format!("http://{}", f.addr())
}

/// A client that opens a new connection for every request.
pub fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

pub async fn chat(base: &str, body: &Value) -> (u16, String) {
    let r = client()
        .post(format!("{base}/v1/chat/completions"))
        .json(body)
        .timeout(PATIENCE)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}
