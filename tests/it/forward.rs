//! The forwarders end to end: client → forwarder → real proxy → mock
//! upstream, all on port 0 (or a port the test holds), over real sockets:
//! JSON and streams carried, frames and request bodies not held back,
//! `Host` and `X-Forwarded-*`, the target restarting, variables winning.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use yallmp::config::{Config, Env};
use yallmp::forward;

use crate::support::forward::*;
use crate::support::*;

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
