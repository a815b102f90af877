//! SIGHUP reloads the config of the real binary (as
//! `POST /admin/config/reload` does); a config that does not load is
//! logged and the running one kept, and the process serves on.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Far more than a reload takes.
const DEADLINE: Duration = Duration::from_secs(20);

const HEAD: &str = "proxy_settings:\n  server: {host: 127.0.0.1, port: 0}\n  logging: {files: {enabled: false}, database: {enabled: false}}\n";

fn models(names: &[&str]) -> String {
    let mut text = String::from(HEAD);
    text.push_str("model_list:\n");
    for n in names {
        text.push_str(&format!(
            "  - {{model_name: {n}, model_params: {{api_type: stub}}}}\n"
        ));
    }
    text
}

fn signal(child: &Child, which: &str) {
    let status = Command::new("kill")
        .args([which, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {which}");
}

async fn model_names(base: &str) -> Vec<String> {
    let body: serde_json::Value = reqwest::get(format!("{base}/v1/models"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect()
}

/// Kills the child if the test fails midway.
struct Reaper(Option<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_config_and_a_broken_one_keeps_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, models(&["a"])).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_yallmp"))
        .args(["--config", config.to_str().unwrap()])
        .current_dir(dir.path())
        .env_remove("YALLMP_ADMIN_PASSWORD")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut reaper = Reaper(Some(child));
    // "yallmp VERSION listening on http://127.0.0.1:PORT"
    let first = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok);
        // Keep draining.
        std::thread::spawn(move || for _ in lines {});
        first
    });
    let first = tokio::time::timeout(DEADLINE, first)
        .await
        .unwrap()
        .unwrap()
        .expect("a listening line");
    let base = first
        .split_whitespace()
        .last()
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{first}");
    let (log_tx, log) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = log_tx.send(line);
        }
    });
    let child = reaper.0.as_ref().unwrap();
    assert_eq!(model_names(&base).await, ["a"]);

    // A new model in the file; SIGHUP applies it.
    std::fs::write(&config, models(&["a", "b"])).unwrap();
    signal(child, "-HUP");
    let started = Instant::now();
    loop {
        let names = model_names(&base).await;
        if names.iter().any(|n| n == "b") {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "not reloaded: {names:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A broken file: the reload fails, is logged, and nothing changes.
    std::fs::write(
        &config,
        format!("{HEAD}model_list:\n  - {{model_name: c, model_params: {{api_type: nope}}}}\n"),
    )
    .unwrap();
    signal(child, "-HUP");
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        let left = DEADLINE.saturating_sub(started.elapsed());
        match log.recv_timeout(left) {
            Ok(line) if line.contains("SIGHUP: the config was not reloaded") => {
                assert!(line.contains("api_type"), "{line}");
                break;
            }
            Ok(line) => seen.push(line),
            Err(_) => panic!("no failed-reload line; the log: {seen:#?}"),
        }
    }
    let child = reaper.0.as_mut().unwrap();
    assert!(child.try_wait().unwrap().is_none(), "the process ended");
    assert_eq!(model_names(&base).await, ["a", "b"]);

    // And it still stops cleanly on SIGTERM.
    signal(child, "-TERM");
    let mut child = reaper.0.take().unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait());
    let status = tokio::time::timeout(DEADLINE, status)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}
