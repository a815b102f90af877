//! The real binary as a child process: started with a config file, its
//! listening line read for the URL, its stderr forwarded line by line to a
//! channel, killed if the test fails midway.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Far more than anything here takes.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A running `yallmp`.
pub struct Running {
    pub child: Option<Child>,
    /// The listening line's URL (`http://…` or `https://…`).
    pub url: String,
    /// The lines of its stderr, as they come.
    pub stderr: mpsc::Receiver<String>,
}

impl Running {
    /// Starts `yallmp ARGS` in `dir` with `envs` (and no `RUST_LOG`, no
    /// admin password from the test's environment), and waits for its
    /// listening line.
    pub fn start(dir: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> Running {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_yallmp"));
        cmd.args(args)
            .current_dir(dir)
            .env_remove("YALLMP_ADMIN_PASSWORD")
            .env_remove("YALLMP_LOG_FORMAT")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (err_tx, err_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = err_tx.send(line);
            }
        });
        let (out_tx, out_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = out_tx.send(lines.next().and_then(Result::ok));
            for _ in lines {}
        });
        let mut running = Running {
            child: Some(child),
            url: String::new(),
            stderr: err_rx,
        };
        let first = out_rx.recv_timeout(DEADLINE).ok().flatten();
        let Some(first) = first else {
            let log: Vec<String> = running.stderr.try_iter().collect();
            panic!("no listening line; stderr: {log:#?}");
        };
        running.url = first
            .split_whitespace()
            .last()
            .unwrap_or_else(|| panic!("{first}"))
            .to_string();
        running
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends `kill -SIG` (`-HUP`, `-TERM`).
    pub fn signal(&self, which: &str) {
        let status = Command::new("kill")
            .args([which, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {which}");
    }

    /// Stderr lines until one satisfies `want` (returned with those
    /// before it); panics with what was seen after [`DEADLINE`].
    pub fn wait_for_line(&self, want: impl Fn(&str) -> bool) -> (String, Vec<String>) {
        let started = Instant::now();
        let mut seen = Vec::new();
        loop {
            let left = DEADLINE.saturating_sub(started.elapsed());
            match self.stderr.recv_timeout(left) {
                Ok(line) if want(&line) => return (line, seen),
                Ok(line) => seen.push(line),
                Err(_) => panic!("no such line; stderr: {seen:#?}"),
            }
        }
    }

    /// SIGTERM, then waits for the exit; the rest of stderr.
    pub fn stop(mut self) -> (std::process::ExitStatus, Vec<String>) {
        self.signal("-TERM");
        let mut child = self.child.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status = rx.recv_timeout(DEADLINE).unwrap().unwrap();
        // The pipe closes with the process: the reader thread ends.
        let rest = self.stderr.iter().collect();
        (status, rest)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
