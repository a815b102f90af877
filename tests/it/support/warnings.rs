//! The warnings the test binary's proxies log, kept in memory so a test can
//! check that a fault was reported. One subscriber per process, and all the
//! integration tests share one process: each kept line is tagged with the
//! thread that logged it, and a test reads only the lines of its own thread
//! (libtest runs each test on a thread named after it; a `#[tokio::test]`
//! runs its proxy's tasks there) and the lines of threads that belong to
//! no test (serving threads, the blocking pool). Still, look for text only
//! your test produces.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// A kept line: the name of the thread that logged it, and the text.
type Line = (String, Vec<u8>);

/// Every kept line.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<Line>>>);

/// One event's writer, made on the thread that logs the event.
struct Tagged {
    sink: Sink,
    thread: String,
}

impl Write for Tagged {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut lines) = self.sink.0.lock() {
            lines.push((self.thread.clone(), buf.to_vec()));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn thread_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or_default()
        .to_string()
}

/// A test's thread is named after the test's path, `module::test`.
fn is_a_test_thread(name: &str) -> bool {
    name.contains("::")
}

fn sink() -> &'static Sink {
    static SINK: OnceLock<Sink> = OnceLock::new();
    SINK.get_or_init(|| {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || Tagged {
                sink: writer.clone(),
                thread: thread_name(),
            })
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

/// Every warning (and error) logged since [`capture`] by this test or by
/// no test in particular, one per line.
pub fn logged() -> String {
    let me = thread_name();
    let lines = sink().0.lock().map(|l| l.clone()).unwrap_or_default();
    let mine: Vec<u8> = lines
        .into_iter()
        .filter(|(thread, _)| *thread == me || !is_a_test_thread(thread))
        .flat_map(|(_, bytes)| bytes)
        .collect();
    String::from_utf8_lossy(&mine).into_owned()
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
