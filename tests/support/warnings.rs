//! The warnings a test binary's proxies log, kept in memory so a test can
//! check that a fault was reported. One subscriber per process: tests of one
//! binary run side by side, so look for text only your test produces.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn sink() -> &'static Sink {
    static SINK: OnceLock<Sink> = OnceLock::new();
    SINK.get_or_init(|| {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        // Another subscriber may be installed already: then nothing is kept.
        let _ = tracing::subscriber::set_global_default(subscriber);
        sink
    })
}

/// Starts keeping warnings (call before starting the proxy).
pub fn capture() {
    sink();
}

/// Every warning (and error) logged since [`capture`], one per line.
pub fn logged() -> String {
    let bytes = sink().0.lock().map(|b| b.clone()).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Waits (at most 10 s) until a logged warning line contains every one of
/// `parts`; returns the line.
pub async fn wait_for(parts: &[&str]) -> String {
    for _ in 0..200 {
        if let Some(line) = logged()
            .lines()
            .find(|l| parts.iter().all(|p| l.contains(p)))
        {
            return line.to_string();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no warning containing {parts:?}; logged:\n{}", logged());
}
