//! The forwarders end to end: client → forwarder → real proxy → mock
//! upstream, all on port 0 (or a port the test holds), over real sockets.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use yallmp::config::forward::{ForwardSettings, HttpForwardSettings, TcpForwardSettings};
use yallmp::config::{Config, Env};
use yallmp::forward::{self, Forwarder};

/// Longest a test waits for anything that should be prompt.
const PATIENCE: Duration = Duration::from_secs(10);

fn one_model(url: &str) -> String {
    format!(
        "model_list:\n  - model_name: m\n    model_params: {{api_base: '{url}', api_key: sk-k}}\n"
    )
}

/// The forwarder settings this YAML and these variables give.
fn settings(yaml: &str, vars: &[(&str, &str)]) -> ForwardSettings {
    let env = Env::isolated(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_yaml(yaml, None, &env)
        .unwrap_or_else(|e| panic!("config: {e}"))
        .forward
}

/// TCP forwarder settings: listen on 127.0.0.1:0, target `port`.
fn tcp_to(port: u16, extra: &str) -> TcpForwardSettings {
    settings(
        &format!(
            "forwarder_settings:\n  listen: {{host: 127.0.0.1, port: 0}}\n  target: {{host: 127.0.0.1, port: {port}}}\n{extra}"
        ),
        &[],
    )
    .tcp
}

/// HTTP forwarder settings: listen on 127.0.0.1:0, target `port`.
fn http_to(port: u16, preserve_host: bool) -> HttpForwardSettings {
    settings(
        &format!(
            "http_forwarder_settings:\n  preserve_host: {preserve_host}\n  listen: {{host: 127.0.0.1, port: 0}}\n  target: {{scheme: http, host: 127.0.0.1, port: {port}}}\n"
        ),
        &[],
    )
    .http
}

fn url(f: &Forwarder) -> String {
    format!("http://{}", f.addr())
}

/// A client that opens a new connection for every request.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

async fn chat(base: &str, body: &Value) -> (u16, String) {
    let r = client()
        .post(format!("{base}/v1/chat/completions"))
        .json(body)
        .timeout(PATIENCE)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A large non-stream request and a stream, through `base`.
async fn carries_both_kinds(base: &str, mock: &Mock) {
    // Two megabytes each way: the forwarder streams it, never whole.
    let big = "x".repeat(2 * 1024 * 1024);
    let (status, text) = chat(base, &json!({"model": "m", "messages": [], "echo": big})).await;
    assert_eq!(status, 200, "{}", &text[..text.len().min(300)]);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "model=m");
    assert_eq!(v["echo"].as_str().map(str::len), Some(big.len()));

    let frames = vec![chunk("Hel"), chunk("lo"), DONE.to_string()];
    mock.push(Reply::Sse {
        frames: frames.clone(),
        gap: Duration::from_millis(5),
    });
    let (status, text) = chat(base, &json!({"model": "m", "stream": true, "messages": []})).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(text, frames.concat());
}

#[tokio::test]
async fn tcp_forwarder_carries_json_and_streams_to_the_proxy() {
    let mock = Mock::start(Reply::Echo).await;
    let proxy = proxy(&one_model(&mock.url)).await;
    let fwd = forward::tcp::start(&tcp_to(proxy.addr().port(), ""))
        .await
        .unwrap();
    carries_both_kinds(&url(&fwd), &mock).await;
    fwd.shutdown().await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn http_forwarder_carries_json_and_streams_to_the_proxy() {
    let mock = Mock::start(Reply::Echo).await;
    let proxy = proxy(&one_model(&mock.url)).await;
    let fwd = forward::http::start(&http_to(proxy.addr().port(), true))
        .await
        .unwrap();
    carries_both_kinds(&url(&fwd), &mock).await;
    fwd.shutdown().await;
    proxy.shutdown().await;
}

/// Streams through `base` a reply whose every frame after the first is
/// held back until the client has seen the one before: a forwarder that
/// buffered would never show the client frame 1, and the test would fail.
async fn frames_arrive_one_by_one(base: &str, mock: &Mock) {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let parts: Vec<String> = (0..5).map(|i| format!("part{i}")).collect();
    let mut frames: Vec<String> = parts.iter().map(|p| chunk(p)).collect();
    frames.push(DONE.to_string());
    mock.push(Reply::SseGated {
        frames,
        gate: gate.clone(),
    });
    let resp = client()
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": "m", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    for part in &parts {
        let arrived = tokio::time::timeout(PATIENCE, async {
            while !seen.contains(part.as_str()) {
                match body.next().await {
                    Some(Ok(b)) => seen.push_str(&String::from_utf8_lossy(&b)),
                    other => panic!("stream ended before {part}: {other:?}"),
                }
            }
        })
        .await;
        assert!(arrived.is_ok(), "{part} never arrived; got so far: {seen}");
        // Only now may the mock send the next frame.
        gate.add_permits(1);
    }
    while let Some(b) = body.next().await {
        seen.push_str(&String::from_utf8_lossy(&b.unwrap()));
    }
    assert!(seen.ends_with(DONE), "{seen}");
}

#[tokio::test]
async fn sse_frames_pass_both_forwarders_one_by_one() {
    let mock = Mock::start(Reply::Echo).await;
    let proxy = proxy(&one_model(&mock.url)).await;
    let tcp = forward::tcp::start(&tcp_to(proxy.addr().port(), ""))
        .await
        .unwrap();
    let http = forward::http::start(&http_to(proxy.addr().port(), true))
        .await
        .unwrap();
    frames_arrive_one_by_one(&url(&tcp), &mock).await;
    frames_arrive_one_by_one(&url(&http), &mock).await;
    tcp.shutdown().await;
    http.shutdown().await;
    proxy.shutdown().await;
}

/// The mock's port (its URL ends in `/v1`).
fn mock_port(mock: &Mock) -> u16 {
    let authority = mock
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/v1");
    authority.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn http_forwarder_keeps_or_replaces_host_and_adds_forwarded_headers() {
    let mock = Mock::start(Reply::Json(200, json!({"ok": true}))).await;
    let port = mock_port(&mock);
    for preserve in [true, false] {
        let fwd = forward::http::start(&http_to(port, preserve))
            .await
            .unwrap();
        let r = client()
            .post(format!("{}/v1/anything?q=1", url(&fwd)))
            .header("content-type", "application/json")
            .header("connection", "x-hop-only")
            .header("x-hop-only", "dropped")
            .header("x-forwarded-for", "10.1.2.3")
            .header("authorization", "Bearer sk-client")
            .body("{\"a\":1}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // A body of known length keeps its length (no chunking on the way).
        assert_eq!(r.headers()["content-length"], "11");
        assert_eq!(r.text().await.unwrap(), "{\"ok\":true}");
        let hit = mock.hits().pop().unwrap();
        let h = |name: &str| {
            hit.headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let forwarder_authority = fwd.addr().to_string();
        let expected_host = if preserve {
            forwarder_authority.clone()
        } else {
            format!("127.0.0.1:{port}")
        };
        assert_eq!(
            h("host").as_deref(),
            Some(expected_host.as_str()),
            "preserve_host: {preserve}"
        );
        assert_eq!(hit.path, "/v1/anything");
        assert_eq!(hit.raw.as_ref(), b"{\"a\":1}");
        assert_eq!(h("x-forwarded-for").as_deref(), Some("10.1.2.3, 127.0.0.1"));
        assert_eq!(h("x-forwarded-proto").as_deref(), Some("http"));
        assert_eq!(
            h("x-forwarded-host").as_deref(),
            Some(forwarder_authority.as_str())
        );
        assert_eq!(h("authorization").as_deref(), Some("Bearer sk-client"));
        assert_eq!(
            h("x-hop-only"),
            None,
            "a header named by Connection is hop-by-hop"
        );
        fwd.shutdown().await;
    }
}

/// The proxy on exactly `addr` (to bring it back on the same port).
async fn proxy_on(yaml: &str, addr: std::net::SocketAddr) -> yallmp::Server {
    let mut config =
        Config::from_yaml(yaml, None, &Env::isolated(Vec::<(String, String)>::new())).unwrap();
    isolate_logs(&mut config);
    let listener = TcpListener::bind(addr).await.unwrap();
    yallmp::serve_on(listener, config).await.unwrap()
}

#[tokio::test]
async fn both_forwarders_survive_the_target_restarting() {
    let mock = Mock::start(Reply::Echo).await;
    let yaml = one_model(&mock.url);
    let proxy = proxy(&yaml).await;
    let addr = proxy.addr();
    let tcp = forward::tcp::start(&tcp_to(addr.port(), "")).await.unwrap();
    let http = forward::http::start(&http_to(addr.port(), true))
        .await
        .unwrap();
    let ask = json!({"model": "m", "messages": []});
    let send = |base: String, c: reqwest::Client| {
        let ask = ask.clone();
        async move {
            c.post(format!("{base}/v1/chat/completions"))
                .json(&ask)
                .timeout(PATIENCE)
                .send()
                .await
        }
    };
    // Kept-alive connections through both, before the restart.
    let keep = client();
    for base in [url(&tcp), url(&http)] {
        assert_eq!(send(base, keep.clone()).await.unwrap().status(), 200);
    }

    proxy.shutdown().await;
    // Target down: the TCP forwarder closes the connection; the HTTP one
    // answers 502 in the OpenAI shape.
    assert!(send(url(&tcp), fresh_client()).await.is_err());
    let r = send(url(&http), fresh_client()).await.unwrap();
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "target_unreachable");
    assert_eq!(v["error"]["type"], "upstream_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("http://127.0.0.1:{}", addr.port())),
        "{v}"
    );

    let proxy = proxy_on(&yaml, addr).await;
    for base in [url(&tcp), url(&http)] {
        // A new connection, and the client that kept its old one.
        assert_eq!(
            send(base.clone(), fresh_client()).await.unwrap().status(),
            200
        );
        let mut ok = false;
        // A kept-alive connection the restart closed may fail once (the
        // client learns it is gone); the next request must work.
        for _ in 0..2 {
            if let Ok(r) = send(base.clone(), keep.clone()).await {
                ok = r.status() == 200;
                break;
            }
        }
        assert!(
            ok,
            "the client that kept a connection recovered through {base}"
        );
    }
    // Its kept-alive connection would hold the TCP forwarder's shutdown
    // for the whole grace period.
    drop(keep);
    tcp.shutdown().await;
    http.shutdown().await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn environment_overrides_win_over_the_config() {
    let mock = Mock::start(Reply::Echo).await;
    let proxy = proxy(&one_model(&mock.url)).await;
    // The config's listen port is taken (held here) and its target port
    // is dead: only the variables make either forwarder work.
    let held = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let taken = held.local_addr().unwrap().port();
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let yaml = format!(
        "forwarder_settings:\n  listen: {{host: 127.0.0.1, port: {taken}}}\n  target: {{host: 127.0.0.1, port: {dead}}}\n\
         http_forwarder_settings:\n  preserve_host: true\n  listen: {{host: 127.0.0.1, port: {taken}}}\n  target: {{scheme: https, host: 127.0.0.1, port: {dead}}}\n"
    );
    let p = proxy.addr().port().to_string();
    let from_file = settings(&yaml, &[]);
    assert!(
        forward::tcp::start(&from_file.tcp).await.is_err(),
        "the file's port is taken"
    );
    let s = settings(
        &yaml,
        &[
            ("FORWARD_LISTEN_PORT", "0"),
            ("FORWARD_TARGET_PORT", &p),
            ("HTTP_FORWARD_LISTEN_HOST", "127.0.0.1"),
            ("HTTP_FORWARD_LISTEN_PORT", "0"),
            ("HTTP_FORWARD_TARGET_SCHEME", "http"),
            ("HTTP_FORWARD_TARGET_HOST", "127.0.0.1"),
            ("HTTP_FORWARD_TARGET_PORT", &p),
            ("HTTP_FORWARD_PRESERVE_HOST", "false"),
        ],
    );
    assert!(!s.http.preserve_host);
    let tcp = forward::tcp::start(&s.tcp).await.unwrap();
    let http = forward::http::start(&s.http).await.unwrap();
    for base in [url(&tcp), url(&http)] {
        let (status, text) = chat(&base, &json!({"model": "m", "messages": []})).await;
        assert_eq!(status, 200, "{base}: {text}");
    }
    tcp.shutdown().await;
    http.shutdown().await;
    proxy.shutdown().await;
    drop(held);
}

#[tokio::test]
async fn both_forwarders_on_one_port_fail_with_a_clear_message() {
    let s = settings(
        "forwarder_settings: {listen: {host: 127.0.0.1, port: 16969}}\nhttp_forwarder_settings: {listen: {host: 127.0.0.1, port: 16969}}",
        &[],
    );
    let e = forward::start_both(&s).await.err().unwrap().to_string();
    assert!(
        e.contains("both forwarders would listen on port 16969"),
        "{e}"
    );
    assert!(e.contains("HTTP_FORWARD_LISTEN_PORT"), "{e}");

    // The same through the command line, which exits with the message.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "forwarder_settings: {listen: {host: 127.0.0.1, port: 16969}}\nhttp_forwarder_settings: {listen: {host: 127.0.0.1}}\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_yallmp"))
        .args(["--config", config.to_str().unwrap(), "forward", "both"])
        .env("HTTP_FORWARD_LISTEN_PORT", "16969")
        .env_remove("FORWARD_LISTEN_PORT")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("both forwarders would listen on port 16969"),
        "{stderr}"
    );
}

/// A target that reads until the client's end of stream, then answers
/// with the byte count and closes: it only answers if the half-close
/// reached it.
async fn count_then_answer_target() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut all = Vec::new();
                let _ = s.read_to_end(&mut all).await;
                let _ = s
                    .write_all(format!("got {} bytes", all.len()).as_bytes())
                    .await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test]
async fn tcp_half_close_reaches_the_target_and_the_answer_comes_back() {
    let port = count_then_answer_target().await;
    let fwd = forward::tcp::start(&tcp_to(port, "")).await.unwrap();
    let mut s = TcpStream::connect(fwd.addr()).await.unwrap();
    s.write_all(&vec![7u8; 300_000]).await.unwrap();
    s.shutdown().await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(PATIENCE, s.read_to_string(&mut answer))
        .await
        .expect("the answer after the half-close")
        .unwrap();
    assert_eq!(answer, "got 300000 bytes");
    fwd.shutdown().await;
}

/// A target that accepts and keeps connections open, saying nothing.
async fn silent_target() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            kept.push(s);
        }
    });
    port
}

/// A target that says `hi` on every connection, then keeps it open.
async fn greeting_target() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"hi").await;
            kept.push(s);
        }
    });
    port
}

#[tokio::test]
async fn tcp_idle_connections_close_and_busy_ones_stay() {
    let port = silent_target().await;
    let fwd = forward::tcp::start(&tcp_to(port, "  idle_timeout: 0.4\n"))
        .await
        .unwrap();
    let mut s = TcpStream::connect(fwd.addr()).await.unwrap();
    // Traffic every 100 ms keeps it open past the timeout...
    let started = std::time::Instant::now();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(b"ping").await.unwrap();
    }
    // ...then silence closes it.
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(PATIENCE, s.read(&mut buf))
        .await
        .expect("closed after the idle timeout")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        started.elapsed() >= Duration::from_millis(1100),
        "{:?}",
        started.elapsed()
    );
    fwd.shutdown().await;
}

#[tokio::test]
async fn tcp_shutdown_stops_accepting_and_bounds_the_wait_for_open_connections() {
    let port = greeting_target().await;
    let fwd = forward::tcp::start(&tcp_to(port, "  shutdown_grace_period: 0.3\n"))
        .await
        .unwrap();
    let addr = fwd.addr();
    let mut open = TcpStream::connect(addr).await.unwrap();
    // The greeting proves the forwarder accepted and reached the target
    // (a connection still in the listen backlog is not open yet).
    let mut hi = [0u8; 2];
    tokio::time::timeout(PATIENCE, open.read_exact(&mut hi))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&hi, b"hi");
    let started = std::time::Instant::now();
    tokio::time::timeout(PATIENCE, fwd.shutdown())
        .await
        .expect("shutdown ends after the grace period");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The connection still open was cut, and nobody listens any more.
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(PATIENCE, open.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn http_shutdown_lets_a_stream_in_flight_finish() {
    let mock = Mock::start(Reply::Echo).await;
    let proxy = proxy(&one_model(&mock.url)).await;
    let fwd = forward::http::start(&http_to(proxy.addr().port(), true))
        .await
        .unwrap();
    let frames = vec![chunk("a"), chunk("b"), chunk("c"), DONE.to_string()];
    mock.push(Reply::Sse {
        frames: frames.clone(),
        gap: Duration::from_millis(150),
    });
    let resp = client()
        .post(format!("{}/v1/chat/completions", url(&fwd)))
        .json(&json!({"model": "m", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let addr = fwd.addr();
    let stopping = tokio::spawn(fwd.shutdown());
    let text = tokio::time::timeout(PATIENCE, resp.text())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(text, frames.concat());
    tokio::time::timeout(PATIENCE, stopping)
        .await
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err());
    proxy.shutdown().await;
}

/// The binary: `yallmp forward both` starts from a config file, prints
/// where each forwarder listens, carries a request, and exits cleanly on
/// SIGTERM.
#[tokio::test(flavor = "multi_thread")]
async fn the_forward_command_runs_both_and_stops_on_sigterm() {
    use std::io::BufRead;
    let mock = Mock::start(Reply::Echo).await;
    let proxy = proxy(&one_model(&mock.url)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let p = proxy.addr().port();
    std::fs::write(
        &config,
        format!(
            "forwarder_settings: {{listen: {{host: 127.0.0.1, port: 0}}, target: {{port: {p}}}}}\n\
             http_forwarder_settings: {{listen: {{host: 127.0.0.1, port: 0}}, target: {{port: {p}}}}}\n"
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_yallmp"))
        .args(["--config", config.to_str().unwrap(), "forward", "both"])
        .env_remove("FORWARD_LISTEN_PORT")
        .env_remove("HTTP_FORWARD_LISTEN_PORT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // "yallmp tcp forwarder listening on 127.0.0.1:PORT -> ...", one per forwarder.
    let lines = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .take(2)
            .map(Result::unwrap)
            .collect::<Vec<_>>()
    });
    let lines = tokio::time::timeout(PATIENCE, lines)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (line, kind) in lines.iter().zip(["tcp", "http"]) {
        assert!(
            line.starts_with(&format!("yallmp {kind} forwarder listening on 127.0.0.1:")),
            "{line}"
        );
        let addr = line
            .split_whitespace()
            .nth(5)
            .unwrap_or_else(|| panic!("{line}"));
        let (status, text) = chat(
            &format!("http://{addr}"),
            &json!({"model": "m", "messages": []}),
        )
        .await;
        assert_eq!(status, 200, "{kind}: {text}");
    }
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = tokio::task::spawn_blocking(move || child.wait());
    let status = tokio::time::timeout(PATIENCE, status)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    proxy.shutdown().await;
}

/// An HTTP target that reads a request body frame by frame, says (once)
/// when the first bytes arrived, and answers with the byte count.
async fn body_counting_target() -> (u16, tokio::sync::mpsc::UnboundedReceiver<()>) {
    use axum::extract::{Request, State};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    async fn count(
        State(tx): State<tokio::sync::mpsc::UnboundedSender<()>>,
        req: Request,
    ) -> String {
        let mut body = req.into_body().into_data_stream();
        let mut total = 0;
        while let Some(Ok(chunk)) = body.next().await {
            if total == 0 && !chunk.is_empty() {
                let _ = tx.send(());
            }
            total += chunk.len();
        }
        format!("got {total} bytes")
    }
    let app = axum::Router::new().fallback(count).with_state(tx);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (port, rx)
}

/// Sends a body in two parts, the second only once the target has seen
/// the first: a forwarder that held the request body back would stall.
async fn request_body_streams_through(
    base: &str,
    arrived: &mut tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    let (second_tx, second_rx) = tokio::sync::oneshot::channel::<()>();
    let first = bytes::Bytes::from(vec![b'a'; 1000]);
    let second = bytes::Bytes::from(vec![b'b'; 500]);
    let parts = futures::stream::iter([Some(first)])
        .chain(futures::stream::once(async move {
            let _ = second_rx.await;
            Some(second)
        }))
        .filter_map(|p| async move { p.map(Ok::<_, std::io::Error>) });
    let request = client()
        .post(format!("{base}/upload"))
        .body(reqwest::Body::wrap_stream(parts))
        .timeout(PATIENCE)
        .send();
    let request = tokio::spawn(request);
    tokio::time::timeout(PATIENCE, arrived.recv())
        .await
        .expect("the first part reached the target before the second was sent")
        .unwrap();
    let _ = second_tx.send(());
    let r = request.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "got 1500 bytes");
}

#[tokio::test]
async fn request_bodies_stream_through_both_forwarders() {
    let (port, mut arrived) = body_counting_target().await;
    let tcp = forward::tcp::start(&tcp_to(port, "")).await.unwrap();
    let http = forward::http::start(&http_to(port, true)).await.unwrap();
    request_body_streams_through(&url(&tcp), &mut arrived).await;
    request_body_streams_through(&url(&http), &mut arrived).await;
    tcp.shutdown().await;
    http.shutdown().await;
}
