//! The forwarders' edges: two on one port, TCP half-close, the idle
//! timeout, bounded shutdowns, and the `yallmp forward` binary itself.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use yallmp::forward;

use crate::support::forward::*;
use crate::support::*;

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
async fn the_forward_command_runs_both_survives_sighup_and_stops_on_sigterm() {
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
    // A reload signal (systemd's ExecReload) leaves them running.
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
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
