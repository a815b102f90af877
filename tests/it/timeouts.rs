//! Client limits over real sockets: the header read, body read and idle
//! keep-alive timeouts, and the cap on open connections, of the proxy and
//! of the forwarders. The limits are set small (a second) and each case
//! has a generous deadline: it only has to end, not end fast.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support;
use crate::support::forward::{PATIENCE, settings};
use crate::support::*;

/// Far more than any limit here; the old server kept all of these open
/// for minutes.
const DEADLINE: Duration = Duration::from_secs(20);

fn config(server: &str) -> String {
    format!(
        "proxy_settings:\n  server: {{{server}}}\n  logging: {{files: {{enabled: false}}, database: {{enabled: false}}}}\n\
         model_list:\n  - {{model_name: s, model_params: {{api_type: stub}}}}\n"
    )
}

/// Reads until the peer closes (or resets) the connection; `None` when it
/// is still open at the deadline.
async fn read_until_closed(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(DEADLINE, read).await.ok()?;
    Some(all)
}

/// Reads one answer with a `Content-Length` body from a kept-alive
/// connection.
async fn read_answer(s: &mut TcpStream) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(
            n > 0,
            "closed mid-answer: {}",
            String::from_utf8_lossy(&all)
        );
        all.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&all).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if body.len() >= len {
                return text;
            }
        }
    }
}

fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"))
}

/// The JSON object in an answer's body (plain or in one chunk).
fn json_body(answer: &str) -> Value {
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let json = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) => &body[a..=b],
        _ => body,
    };
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
}

fn healthz(host: &str) -> String {
    format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n")
}

/// A connection to `server` that has had one `/healthz` answered (200),
/// and the `Host` to send on it.
async fn served_once(server: &yallmp::Server) -> (TcpStream, String) {
    let host = server.addr().to_string();
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    s.write_all(healthz(&host).as_bytes()).await.unwrap();
    assert_eq!(status_of(&read_answer(&mut s).await), 200);
    (s, host)
}

#[tokio::test]
async fn a_partial_or_trickled_head_and_a_silent_socket_are_closed() {
    let server = proxy(&config(
        "header_read_timeout: 1, idle_timeout: 60, body_read_timeout: 60",
    ))
    .await;
    let addr = server.addr();

    // Half a head, then nothing.
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Connected, never a byte.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // A header a byte at a time, for ever.
    let mut trickled = TcpStream::connect(addr).await.unwrap();
    trickled
        .write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        .await
        .unwrap();
    let (mut reader, mut writer) = trickled.into_split();
    let trickle = tokio::spawn(async move {
        while writer.write_all(b"a").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let trickled_closed = async {
        let mut buf = [0u8; 1024];
        tokio::time::timeout(DEADLINE, async {
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    };
    let (p, s, t) = tokio::join!(
        read_until_closed(&mut partial),
        read_until_closed(&mut silent),
        trickled_closed
    );
    trickle.abort();
    assert!(p.is_some(), "a partial head was still open");
    assert!(s.is_some(), "a silent connection was still open");
    assert!(t, "a trickled header was still open");

    let metrics = metrics_text(&server).await;
    let header_timeouts = metric_value(
        &metrics,
        "yallmp_client_timeouts_total",
        &[("kind", "header")],
    );
    assert!(header_timeouts.unwrap_or(0.0) >= 3.0, "{metrics}");
    server.shutdown().await;
}

#[tokio::test]
async fn the_header_timeout_does_not_count_the_idle_time_before_a_request() {
    let server = proxy(&config("header_read_timeout: 1, idle_timeout: 60")).await;
    let (mut s, host) = served_once(&server).await;
    // Idle past the header timeout, well within the idle one: the
    // connection still takes the next request.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    s.write_all(healthz(&host).as_bytes()).await.unwrap();
    assert_eq!(status_of(&read_answer(&mut s).await), 200);
    server.shutdown().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = proxy(&config("header_read_timeout: 60, idle_timeout: 1")).await;
    let (mut s, _) = served_once(&server).await;
    let rest = read_until_closed(&mut s).await;
    assert_eq!(rest.as_deref(), Some(&b""[..]), "still open, or more sent");
    server.shutdown().await;
}

#[tokio::test]
async fn a_stalled_body_ends_the_request_with_408() {
    let server = proxy(&config(
        "header_read_timeout: 60, idle_timeout: 60, body_read_timeout: 1",
    ))
    .await;
    let host = server.addr().to_string();
    let cases = [
        // Content-Length says 100; 10 come.
        (
            "/v1/chat/completions",
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"model\":"
            ),
        ),
        // A chunk, then nothing.
        (
            "/v1/chat/completions",
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n{{\"model\":\r\n"
            ),
        ),
        // An admin route (its own body reading): the same 408.
        (
            "/admin/models",
            format!(
                "POST /admin/models HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"model_name\":"
            ),
        ),
    ];
    for (path, request) in cases {
        let mut s = TcpStream::connect(server.addr()).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let answer = read_until_closed(&mut s)
            .await
            .unwrap_or_else(|| panic!("{path}: still open"));
        let answer = String::from_utf8_lossy(&answer).to_string();
        assert_eq!(status_of(&answer), 408, "{path}: {answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
        assert!(
            answer.to_ascii_lowercase().contains("x-request-id:"),
            "{answer}"
        );
        let body = json_body(&answer);
        assert_eq!(body["error"]["code"], "request_timeout", "{path}: {body}");
    }
    // The Anthropic route answers in its own shape.
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    s.write_all(
        format!(
            "POST /v1/messages HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let answer = String::from_utf8_lossy(&read_until_closed(&mut s).await.unwrap()).to_string();
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert_eq!(json_body(&answer)["type"], "error", "{answer}");
    server.shutdown().await;
}

#[tokio::test]
async fn past_max_connections_a_new_connection_gets_503_and_is_counted() {
    let server = proxy(&config("max_connections: 2, header_read_timeout: 60")).await;
    let host = server.addr().to_string();
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(served_once(&server).await.0);
    }
    let mut third = TcpStream::connect(server.addr()).await.unwrap();
    let answer = read_until_closed(&mut third).await.expect("closed");
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert_eq!(status_of(&answer), 503, "{answer}");
    assert_eq!(json_body(&answer)["error"]["code"], "too_many_connections");
    // The held ones still work.
    held[0].write_all(healthz(&host).as_bytes()).await.unwrap();
    assert_eq!(status_of(&read_answer(&mut held[0]).await), 200);
    // One goes: its place is free again (once the server has seen it go).
    held.pop();
    let metrics = tokio::time::timeout(DEADLINE, async {
        loop {
            let mut s = TcpStream::connect(server.addr()).await.unwrap();
            s.write_all(
                format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
            let mut all = Vec::new();
            let _ = s.read_to_end(&mut all).await;
            let text = String::from_utf8_lossy(&all).to_string();
            if text.starts_with("HTTP/1.1 200") {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a free place after a connection closed");
    let refused = metric_value(
        &metrics,
        "yallmp_connections_refused_total",
        &[("listener", "proxy")],
    );
    assert!(refused.unwrap_or(0.0) >= 1.0, "{metrics}");
    server.shutdown().await;
}

/// A target that reads each request and never answers.
async fn silent_target() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn the_http_forwarder_times_out_heads_bodies_and_a_silent_target() {
    let mock = Mock::start(Reply::Echo).await;
    let proxy = proxy(&support::forward::one_model(&mock.url)).await;
    let port = proxy.addr().port();
    let http = |extra: &str| {
        settings(
            &format!(
                "http_forwarder_settings:\n  listen: {{host: 127.0.0.1, port: 0}}\n  target: {{host: 127.0.0.1, port: {port}}}\n{extra}"
            ),
            &[],
        )
        .http
    };
    let f =
        yallmp::forward::http::start(&http("  header_read_timeout: 1\n  body_read_timeout: 1\n"))
            .await
            .unwrap();
    let host = f.addr().to_string();
    // A partial head: closed.
    let mut s = TcpStream::connect(f.addr()).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(
        read_until_closed(&mut s).await.is_some(),
        "partial head still open"
    );
    // A stalled body: 408 (whichever of the forwarder and the proxy
    // behind it notices first).
    let mut s = TcpStream::connect(f.addr()).await.unwrap();
    s.write_all(
        format!("POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{").as_bytes(),
    )
    .await
    .unwrap();
    let answer =
        String::from_utf8_lossy(&read_until_closed(&mut s).await.expect("closed")).to_string();
    assert_eq!(status_of(&answer), 408, "{answer}");
    f.shutdown().await;

    // A target that never answers: 504 JSON.
    let silent = silent_target().await;
    let f = yallmp::forward::http::start(
        &settings(
            &format!(
                "http_forwarder_settings:\n  listen: {{host: 127.0.0.1, port: 0}}\n  target: {{host: 127.0.0.1, port: {silent}}}\n  response_timeout: 1\n"
            ),
            &[],
        )
        .http,
    )
    .await
    .unwrap();
    let r = client()
        .get(format!("http://{}/healthz", f.addr()))
        .timeout(DEADLINE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 504);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "target_timeout", "{body}");
    f.shutdown().await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn the_forwarders_cap_their_connections() {
    let mock = Mock::start(Reply::Echo).await;
    let proxy = proxy(&support::forward::one_model(&mock.url)).await;
    let port = proxy.addr().port();
    let s = settings(
        &format!(
            "forwarder_settings:\n  listen: {{host: 127.0.0.1, port: 0}}\n  target: {{host: 127.0.0.1, port: {port}}}\n  max_connections: 1\n\
             http_forwarder_settings:\n  listen: {{host: 127.0.0.1, port: 0}}\n  target: {{host: 127.0.0.1, port: {port}}}\n  max_connections: 1\n"
        ),
        &[],
    );
    let tcp = yallmp::forward::tcp::start(&s.tcp).await.unwrap();
    let http = yallmp::forward::http::start(&s.http).await.unwrap();
    for (f, answers_503) in [(&tcp, false), (&http, true)] {
        let host = f.addr().to_string();
        let mut first = TcpStream::connect(f.addr()).await.unwrap();
        first.write_all(healthz(&host).as_bytes()).await.unwrap();
        assert_eq!(
            status_of(&read_answer(&mut first).await),
            200,
            "{}",
            f.name()
        );
        let mut second = TcpStream::connect(f.addr()).await.unwrap();
        let answer = tokio::time::timeout(PATIENCE, read_until_closed(&mut second))
            .await
            .unwrap()
            .expect("closed");
        let answer = String::from_utf8_lossy(&answer).to_string();
        if answers_503 {
            assert_eq!(status_of(&answer), 503, "{answer}");
        } else {
            assert_eq!(answer, "", "{}", f.name());
        }
        // The first still works.
        first.write_all(healthz(&host).as_bytes()).await.unwrap();
        assert_eq!(
            status_of(&read_answer(&mut first).await),
            200,
            "{}",
            f.name()
        );
    }
    tcp.shutdown().await;
    http.shutdown().await;
    proxy.shutdown().await;
}
