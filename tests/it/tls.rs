//! TLS on the listener (`proxy_settings.server.tls`): HTTPS with HTTP/1.1
//! and HTTP/2 chosen by ALPN (reqwest over rustls, and curl over OpenSSL),
//! the admin UI and API and the Responses WebSocket (`wss://`) over it, the certificate reloaded when its files
//! change (and a broken one refused, the old kept), and the HTTP
//! forwarder in front of an https target.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use yallmp::Server;

use crate::support::forward::{PATIENCE, settings};
use crate::support::tls::{TestCa, replace};
use crate::support::*;

/// Far more than a poll of the certificate files takes.
const DEADLINE: Duration = Duration::from_secs(30);

struct Files {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    Files {
        cert: path.join("cert.pem"),
        key: path.join("key.pem"),
        dir: path,
        _dir: dir,
    }
}

fn yaml(mock: &Mock, f: &Files, logging: &str) -> String {
    format!(
        "proxy_settings:\n  server:\n    tls: {{cert: '{}', key: '{}'}}\n{logging}\
         model_list:\n  - model_name: m\n    model_params: {{api_base: '{}', api_key: sk-k}}\n",
        f.cert.display(),
        f.key.display(),
        mock.url
    )
}

async fn tls_proxy(ca: &TestCa, f: &Files, mock: &Mock, logging: &str) -> Server {
    ca.issue(&f.cert, &f.key);
    let server = proxy(&yaml(mock, f, logging)).await;
    assert!(
        server.url().starts_with("https://127.0.0.1:"),
        "{}",
        server.url()
    );
    server
}

fn chat_body() -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn https_speaks_http1_and_http2_by_alpn() {
    let mock = Mock::start(Reply::Echo).await;
    let f = files();
    let ca = TestCa::new(&f.dir, "one");
    let server = tls_proxy(&ca, &f, &mock, "").await;

    // reqwest (rustls) offers h2 and http/1.1: the proxy picks h2.
    let r = ca
        .client()
        .post(format!("{}/v1/chat/completions", server.url()))
        .json(&chat_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), http::Version::HTTP_2);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "model=m");

    // HTTP/1.1 only.
    let h1 = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&ca.pem).unwrap()).unwrap(),
        )
        .http1_only()
        .build()
        .unwrap();
    let r = h1
        .get(format!("{}/v1/models", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), http::Version::HTTP_11);

    // Plain HTTP on the TLS port is no request.
    let plain = client()
        .get(format!("http://{}/v1/models", server.addr()))
        .timeout(PATIENCE)
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    server.shutdown().await;
}

/// curl (OpenSSL, a different TLS stack), trusting only the test CA, with
/// `--http1.1` and `--http2`.
#[tokio::test]
async fn curl_over_https_http1_and_http2() {
    let version = Command::new("curl").arg("-V").output();
    let version = match version {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        other => panic!("this test needs curl: {other:?}"),
    };
    assert!(version.contains("HTTP2"), "curl without HTTP/2: {version}");
    let mock = Mock::start(Reply::Echo).await;
    let f = files();
    let ca = TestCa::new(&f.dir, "one");
    let server = tls_proxy(&ca, &f, &mock, "").await;
    let body = chat_body().to_string();
    for (flag, want) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let url = format!("{}/v1/chat/completions", server.url());
        let ca_path = ca.pem.clone();
        let body = body.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new("curl")
                .args(["-sS", "--max-time", "20", flag, "--cacert"])
                .arg(&ca_path)
                .args(["-H", "content-type: application/json", "-d", &body])
                .args(["-w", "\n%{http_version} %{http_code}", &url])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{flag}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (answer, last) = stdout.rsplit_once('\n').unwrap();
        assert_eq!(last, format!("{want} 200"), "{flag}: {stdout}");
        let v: Value = serde_json::from_str(answer).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "model=m", "{flag}");
    }
    // Without the CA, curl refuses the certificate.
    let url = format!("{}/v1/models", server.url());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "--max-time", "20", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    server.shutdown().await;
}

/// The admin UI's page and its API over https, a replay (the proxy
/// sending to itself over TLS) included.
#[tokio::test]
async fn the_admin_ui_and_a_replay_work_over_https() {
    let mock = Mock::start(Reply::Echo).await;
    let f = files();
    let ca = TestCa::new(&f.dir, "one");
    let server = tls_proxy(
        &ca,
        &f,
        &mock,
        "  logging: {files: {enabled: false}, database: {enabled: true}}\n",
    )
    .await;
    let c = ca.client();
    let page = c
        .get(format!("{}/admin/", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<html"));
    let r = c
        .post(format!("{}/v1/chat/completions", server.url()))
        .json(&chat_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let started = Instant::now();
    loop {
        let r = c
            .get(format!("{}/admin/api/logs/{id}", server.url()))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            let v: Value = r.json().await.unwrap();
            assert!(
                v["curl"].as_str().unwrap().contains("https://127.0.0.1:"),
                "{v}"
            );
            break;
        }
        assert!(started.elapsed() < DEADLINE, "not logged: {}", r.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = c
        .post(format!("{}/admin/api/logs/{id}/replay", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["body"]["choices"][0]["message"]["content"], "model=m");
    assert_eq!(mock.count(), 2);
    // The effective config names the files, and a reload keeps them.
    let reload = c
        .post(format!("{}/admin/config/reload", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200);
    let v: Value = c
        .get(format!("{}/admin/config", server.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["server"]["tls"]["cert"],
        f.cert.display().to_string(),
        "{v}"
    );
    assert_eq!(v["log_format"], "plain", "{v}");
    server.shutdown().await;
}

/// Whether a new connection from a client trusting only `ca` completes.
async fn trusted_by(ca: &TestCa, server: &Server) -> bool {
    ca.client()
        .get(format!("{}/v1/models", server.url()))
        .timeout(PATIENCE)
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

/// New certificate files are picked up by the background poll without a
/// restart; a broken one is refused and the one in use kept; a forced
/// reload (what SIGHUP does) reads the files again.
#[tokio::test]
async fn the_certificate_is_reloaded_when_its_files_change() {
    let mock = Mock::start(Reply::Echo).await;
    let f = files();
    let one = TestCa::new(&f.dir, "one");
    let two = TestCa::new(&f.dir, "two");
    let server = tls_proxy(&one, &f, &mock, "").await;
    assert!(trusted_by(&one, &server).await);
    assert!(!trusted_by(&two, &server).await);

    // A connection opened before the change keeps working after it.
    let kept = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&one.pem).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let models = format!("{}/v1/models", server.url());
    assert_eq!(kept.get(&models).send().await.unwrap().status(), 200);

    two.issue(&f.cert, &f.key);
    let started = Instant::now();
    while !trusted_by(&two, &server).await {
        assert!(
            started.elapsed() < DEADLINE,
            "the new certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!trusted_by(&one, &server).await);
    assert_eq!(kept.get(&models).send().await.unwrap().status(), 200);

    // A broken certificate: refused, the one in use kept.
    replace(
        &f.cert,
        "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n",
    );
    assert!(!server.reload_tls(true).await);
    assert!(trusted_by(&two, &server).await);
    // A key from another certificate: refused too.
    let other = files();
    one.issue(&other.cert, &other.key);
    std::fs::copy(&other.cert, &f.cert).unwrap();
    assert!(!server.reload_tls(true).await);
    assert!(trusted_by(&two, &server).await);
    // The matching key as well: the forced reload takes it at once.
    std::fs::copy(&other.key, &f.key).unwrap();
    assert!(server.reload_tls(true).await);
    assert!(trusted_by(&one, &server).await);
    server.shutdown().await;
}

/// A certificate that does not load stops the start with a clear error.
#[tokio::test]
async fn a_missing_certificate_stops_the_start() {
    let mock = Mock::start(Reply::Echo).await;
    let f = files();
    let config = config(&yaml(&mock, &f, ""));
    let err = match yallmp::serve(config).await {
        Ok(_) => panic!("served without a certificate"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.starts_with("proxy_settings.server.tls: cannot read the certificate"),
        "{err}"
    );
    assert!(err.contains("cert.pem"), "{err}");
}

#[test]
fn tls_needs_both_files() {
    let e = config_error("proxy_settings:\n  server:\n    tls: {cert: c.pem}\n");
    assert!(
        e.errors
            .iter()
            .any(|l| l.starts_with("proxy_settings.server.tls.key:")),
        "{e}"
    );
    let e = config_error("proxy_settings:\n  server:\n    tls: {cert: c.pem, key: k.pem, ca: x}\n");
    assert!(e.to_string().contains("unknown key `ca`"), "{e}");
}

/// Relative paths are read from the config file's directory.
#[test]
fn relative_paths_are_the_config_files_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        "proxy_settings:\n  server:\n    tls: {cert: tls/cert.pem, key: /etc/k.pem}\n",
    )
    .unwrap();
    let c = yallmp::Config::load(&path).unwrap();
    let tls = c.server.tls.unwrap();
    assert_eq!(tls.cert, dir.path().join("tls/cert.pem"));
    assert_eq!(tls.key, Path::new("/etc/k.pem"));
}

/// The HTTP forwarder in front of an https target (here the proxy's TLS
/// listener), trusting its CA through `target.ca_file`; without it the
/// target's certificate is refused (502).
#[tokio::test]
async fn the_http_forwarder_reaches_an_https_target() {
    let mock = Mock::start(Reply::Echo).await;
    let f = files();
    let ca = TestCa::new(&f.dir, "one");
    let server = tls_proxy(&ca, &f, &mock, "").await;
    let port = server.addr().port();
    let forwarder = |ca_file: &str| {
        settings(
            &format!(
                "http_forwarder_settings:\n  listen: {{host: 127.0.0.1, port: 0}}\n  target: {{scheme: https, host: 127.0.0.1, port: {port}{ca_file}}}\n"
            ),
            &[],
        )
        .http
    };
    let with_ca = forwarder(&format!(", ca_file: '{}'", ca.pem.display()));
    let fwd = yallmp::forward::http::start(&with_ca).await.unwrap();
    let (status, body) =
        crate::support::forward::chat(&format!("http://{}", fwd.addr()), &chat_body()).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "model=m");
    assert_eq!(mock.count(), 1);
    fwd.shutdown().await;

    let without = yallmp::forward::http::start(&forwarder("")).await.unwrap();
    let (status, body) =
        crate::support::forward::chat(&format!("http://{}", without.addr()), &chat_body()).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(mock.count(), 1);
    without.shutdown().await;
    server.shutdown().await;
}

/// The binary: relative paths in the config file, an `https://` listening
/// line, and SIGHUP reading the certificate again (the files unchanged, so
/// the poll would not: only the signal logs the reload).
#[tokio::test(flavor = "multi_thread")]
async fn the_binary_serves_https_and_sighup_reloads_the_certificate() {
    let f = files();
    let ca = TestCa::new(&f.dir, "one");
    ca.issue(&f.cert, &f.key);
    let config = f.dir.join("config.yaml");
    std::fs::write(
        &config,
        "proxy_settings:\n  server: {host: 127.0.0.1, port: 0, tls: {cert: cert.pem, key: key.pem}}\n  logging: {files: {enabled: false}, database: {enabled: false}}\nmodel_list:\n  - {model_name: a, model_params: {api_type: stub}}\n",
    )
    .unwrap();
    let run = crate::support::child::Running::start(
        Path::new("/"),
        &["--config", config.to_str().unwrap()],
        &[],
    );
    assert!(run.url.starts_with("https://127.0.0.1:"), "{}", run.url);
    let r = ca
        .client()
        .get(format!("{}/v1/models", run.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    run.signal("-HUP");
    let (_, before) = run.wait_for_line(|l| l.contains("TLS certificate reloaded"));
    assert!(
        before.iter().any(|l| l.contains("SIGHUP: reloading")),
        "{before:#?}"
    );
    let (status, _) = run.stop();
    assert!(status.success(), "{status:?}");
}

/// The Responses WebSocket mode over `wss://` (an HTTP/1.1 upgrade on a
/// TLS connection): one turn with the stub backend.
#[tokio::test]
async fn the_responses_websocket_works_over_wss() {
    use futures::{SinkExt, StreamExt};
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    use tokio_tungstenite::tungstenite::Message;

    let f = files();
    let ca = TestCa::new(&f.dir, "one");
    ca.issue(&f.cert, &f.key);
    let server = proxy(&format!(
        "proxy_settings:\n  enable_responses_endpoint: true\n  server:\n    tls: {{cert: '{}', key: '{}'}}\n\
         model_list:\n  - {{model_name: s, model_params: {{api_type: stub}}}}\n",
        f.cert.display(),
        f.key.display()
    ))
    .await;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&ca.pem).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let url = format!(
        "{}/v1/responses",
        server.url().replacen("https://", "wss://", 1)
    );
    let (mut socket, response) = tokio_tungstenite::connect_async_tls_with_config(
        url,
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(std::sync::Arc::new(
            tls,
        ))),
    )
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 101);
    socket
        .send(Message::Text(
            json!({"type": "response.create", "model": "s", "input": "hello over wss"})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let completed = loop {
        let m = tokio::time::timeout(DEADLINE, socket.next())
            .await
            .expect("no message in time")
            .expect("the socket closed")
            .unwrap();
        let Message::Text(t) = m else { continue };
        let v: Value = serde_json::from_str(&t).unwrap();
        assert_ne!(v["type"], "error", "{v}");
        if v["type"] == "response.completed" {
            break v;
        }
    };
    let text = completed["response"]["output"][0]["content"][0]["text"].clone();
    assert_eq!(text, "hello over wss", "{completed}");
    server.shutdown().await;
}
