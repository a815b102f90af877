//! systemd's readiness protocol, for real: the test binds the datagram
//! socket `NOTIFY_SOCKET` names, as systemd does for a `Type=notify`
//! service, and reads what the binary sends: `READY=1` once the port
//! answers, `RELOADING=1` (with `MONOTONIC_USEC`) then `READY=1` around a
//! SIGHUP reload, `STOPPING=1` on SIGTERM.

use std::os::unix::net::UnixDatagram;

use crate::support::child::{DEADLINE, Running};

const CONFIG: &str = "proxy_settings:\n  server: {host: 127.0.0.1, port: 0}\n  logging: {files: {enabled: false}, database: {enabled: false}}\nmodel_list:\n  - {model_name: a, model_params: {api_type: stub}}\n";

fn next(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no notification within {DEADLINE:?}: {e}"));
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_reloading_and_stopping_reach_the_notify_socket() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    let run = Running::start(
        dir.path(),
        &["--config", config.to_str().unwrap()],
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    let socket = tokio::task::spawn_blocking(move || {
        let first = next(&socket);
        (socket, first)
    });
    let (socket, first) = tokio::time::timeout(DEADLINE, socket)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, "READY=1\n");
    // Ready means serving.
    let health = reqwest::get(format!("{}/health", run.url)).await.unwrap();
    assert_eq!(health.status(), 200);

    run.signal("-HUP");
    let reloading = next(&socket);
    let mut lines = reloading.lines();
    assert_eq!(lines.next(), Some("RELOADING=1"), "{reloading}");
    let usec = lines
        .next()
        .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("{reloading}"));
    assert!(usec.parse::<u64>().is_ok_and(|u| u > 0), "{reloading}");
    assert_eq!(next(&socket), "READY=1\n");
    // The reload was a real one.
    run.wait_for_line(|l| l.contains("config reloaded"));

    let (status, _) = run.stop();
    assert!(status.success(), "{status:?}");
    assert_eq!(next(&socket), "STOPPING=1\n");
}

/// Without `NOTIFY_SOCKET` nothing is sent and nothing fails (the other
/// tests run the binary so); a socket nobody listens on is no error either.
#[tokio::test(flavor = "multi_thread")]
async fn a_notify_socket_nobody_reads_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let gone = dir.path().join("nobody.sock");
    let run = Running::start(
        dir.path(),
        &["--config", config.to_str().unwrap()],
        &[("NOTIFY_SOCKET", gone.to_str().unwrap())],
    );
    let health = reqwest::get(format!("{}/health", run.url)).await.unwrap();
    assert_eq!(health.status(), 200);
    let (status, _) = run.stop();
    assert!(status.success(), "{status:?}");
}

/// `deploy/yallmp.service` passes `systemd-analyze verify` (Debian's
/// `systemd` package), with its binary path pointed at the built one.
#[test]
fn the_unit_file_verifies() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/yallmp.service"
    ))
    .unwrap();
    assert!(unit.contains("Type=notify"), "{unit}");
    assert!(
        unit.contains("ExecReload=/bin/kill -HUP $MAINPID"),
        "{unit}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("yallmp.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/yallmp", env!("CARGO_BIN_EXE_yallmp")),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("systemd-analyze (Debian: apt-get install systemd): {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "{stderr}");
}
