//! A small load client for `scripts/bench.sh` (streams, open streams, large
//! prompts) and `scripts/soak.sh` (mixed requests): sends `--requests` chat
//! completions to `URL/v1/chat/completions` over `--concurrency`
//! connections and prints one JSON object with what it measured.
//!
//! ```text
//! cargo run --release --example stream_load -- --url http://127.0.0.1:4000 \
//!     --requests 50 --concurrency 1 --stream-share 1
//! ```
//!
//! Per streamed answer it times each server-sent event by the arrival of the
//! read that completed it (`\n\n`): time to first chunk (`ttfc_us`, from the
//! request's start, or its scheduled start with `--rate`) and the gaps between
//! consecutive events (`gap_us`). `latency_us` is the time to the whole
//! answer. `peak_open_streams` is the most streams that had their headers and
//! were not finished at one time. A stream counts as complete when it ends
//! with `data: [DONE]`.
//!
//! Each request's kind is drawn (seeded, so runs repeat) from the shares:
//! `--error-share` go to `--error-model` (all its backends down: a 5xx is the
//! expected answer), `--failover-share` to `--failover-model`, the rest to
//! `--model`; independently, `--stream-share` of them stream.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(about = "Load client for yallmp's bench and soak scripts")]
struct Args {
    /// Base URL, e.g. http://127.0.0.1:4000 (the path is /v1/chat/completions).
    #[arg(long)]
    url: String,
    /// Requests to send in all (default: 100, or no limit with --duration-secs).
    #[arg(long)]
    requests: Option<u64>,
    /// Stop sending new requests after this many seconds (0: no limit); the
    /// ones in flight finish.
    #[arg(long, default_value_t = 0.0)]
    duration_secs: f64,
    /// Requests in flight at once (one connection each).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Share of requests with `"stream": true`, 0 to 1.
    #[arg(long, default_value_t = 1.0)]
    stream_share: f64,
    /// Model of the ordinary requests.
    #[arg(long, default_value = "bench")]
    model: String,
    /// Share of requests to `--failover-model`, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    failover_share: f64,
    #[arg(long, default_value = "flaky")]
    failover_model: String,
    /// Share of requests to `--error-model` (expected to fail with a 5xx).
    #[arg(long, default_value_t = 0.0)]
    error_share: f64,
    #[arg(long, default_value = "down")]
    error_model: String,
    /// The user message's content, read from this file (e.g. a 1 MB prompt).
    #[arg(long)]
    prompt_file: Option<PathBuf>,
    /// Total requests per second (0: as fast as the concurrency allows). Each
    /// request is timed from its scheduled start, so a late start counts.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Client runtime threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// A progress line on stderr every N seconds (0: none).
    #[arg(long, default_value_t = 0)]
    progress_secs: u64,
    /// Per-request timeout in seconds (to the end of the answer).
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Seed for drawing each request's kind.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Normal,
    Failover,
    Error,
}

/// What one worker saw; merged at the end.
#[derive(Default)]
struct Tally {
    ok: u64,
    expected_errors: u64,
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
    timeouts: u64,
    incomplete_streams: u64,
    kinds: [u64; 4],
    events: u64,
    latency: Vec<u32>,
    ttfc: Vec<u32>,
    gaps: Vec<u32>,
    first_error: Option<String>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.ok += o.ok;
        self.expected_errors += o.expected_errors;
        for (k, v) in o.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        self.transport_errors += o.transport_errors;
        self.timeouts += o.timeouts;
        self.incomplete_streams += o.incomplete_streams;
        for (a, b) in self.kinds.iter_mut().zip(o.kinds) {
            *a += b;
        }
        self.events += o.events;
        self.latency.extend(o.latency);
        self.ttfc.extend(o.ttfc);
        self.gaps.extend(o.gaps);
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }

    /// Requests that neither succeeded nor failed as expected.
    fn failed(&self, requests: u64) -> u64 {
        requests.saturating_sub(self.ok + self.expected_errors)
    }
}

struct Shared {
    args: Args,
    /// Requests to send at most.
    limit: u64,
    /// When to stop sending new requests.
    deadline: Option<Instant>,
    /// Requests sent.
    sent: AtomicU64,
    uri: hyper::Uri,
    /// Bodies by [target][stream].
    bodies: [[Bytes; 2]; 3],
    next: AtomicU64,
    done: AtomicU64,
    open: AtomicUsize,
    peak_open: AtomicUsize,
    start: Instant,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn body(model: &str, prompt: &str, stream: bool) -> Bytes {
    let mut v = json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": prompt}
        ],
        "temperature": 0.2,
        "max_tokens": 64
    });
    if stream {
        v["stream"] = json!(true);
        v["stream_options"] = json!({"include_usage": true});
    }
    Bytes::from(v.to_string())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    for (name, share) in [
        ("--stream-share", args.stream_share),
        ("--failover-share", args.failover_share),
        ("--error-share", args.error_share),
    ] {
        if !(0.0..=1.0).contains(&share) {
            return Err(format!("{name} must be within 0 and 1").into());
        }
    }
    if args.failover_share + args.error_share > 1.0 {
        return Err("--failover-share + --error-share must be at most 1".into());
    }
    let prompt = match &args.prompt_file {
        Some(p) => std::fs::read_to_string(p)?,
        None => "Say hello and describe a benchmark in one sentence.".to_string(),
    };
    let uri: hyper::Uri =
        format!("{}/v1/chat/completions", args.url.trim_end_matches('/')).parse()?;
    let bodies = [&args.model, &args.failover_model, &args.error_model]
        .map(|m| [body(m, &prompt, false), body(m, &prompt, true)]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let concurrency = args.concurrency.max(1);
    let limit = match (args.requests, args.duration_secs > 0.0) {
        (Some(n), _) => n,
        (None, true) => u64::MAX,
        (None, false) => 100,
    };
    let start = Instant::now();
    let deadline =
        (args.duration_secs > 0.0).then(|| start + Duration::from_secs_f64(args.duration_secs));
    let shared = Arc::new(Shared {
        args,
        limit,
        deadline,
        sent: AtomicU64::new(0),
        uri,
        bodies,
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
        open: AtomicUsize::new(0),
        peak_open: AtomicUsize::new(0),
        start,
    });
    let (tally, elapsed) = runtime.block_on(run(shared.clone(), concurrency));
    println!("{}", report(&shared, tally, elapsed));
    Ok(())
}

async fn run(shared: Arc<Shared>, concurrency: usize) -> (Tally, Duration) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(usize::MAX)
        .build(connector);
    let progress = (shared.args.progress_secs > 0).then(|| {
        let s = shared.clone();
        tokio::spawn(async move {
            let every = Duration::from_secs(s.args.progress_secs);
            let mut last = 0;
            loop {
                tokio::time::sleep(every).await;
                let done = s.done.load(Ordering::Relaxed);
                eprintln!(
                    "stream_load: {done} done ({:.0} req/s), {} streams open",
                    (done - last) as f64 / every.as_secs_f64(),
                    s.open.load(Ordering::Relaxed)
                );
                last = done;
            }
        })
    });
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let s = shared.clone();
            let c = client.clone();
            tokio::spawn(worker(s, c, w as u64))
        })
        .collect();
    let mut tally = Tally::default();
    for w in workers {
        match w.await {
            Ok(t) => tally.merge(t),
            Err(e) => {
                tally.transport_errors += 1;
                tally.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    if let Some(p) = progress {
        p.abort();
    }
    (tally, start.elapsed())
}

async fn worker(s: Arc<Shared>, client: Client<HttpConnector, Full<Bytes>>, w: u64) -> Tally {
    let mut t = Tally::default();
    let mut rng = fastrand::Rng::with_seed(s.args.seed.wrapping_mul(0x9E37_79B9).wrapping_add(w));
    let timeout = Duration::from_secs(s.args.timeout_secs.max(1));
    loop {
        let i = s.next.fetch_add(1, Ordering::Relaxed);
        if i >= s.limit {
            break;
        }
        let begin = if s.args.rate > 0.0 {
            let at = s.start + Duration::from_secs_f64(i as f64 / s.args.rate);
            tokio::time::sleep_until(at.into()).await;
            at
        } else {
            Instant::now()
        };
        if s.deadline.is_some_and(|d| begin >= d) {
            break;
        }
        s.sent.fetch_add(1, Ordering::Relaxed);
        let draw = rng.f64();
        let target = if draw < s.args.error_share {
            Target::Error
        } else if draw < s.args.error_share + s.args.failover_share {
            Target::Failover
        } else {
            Target::Normal
        };
        let stream = rng.f64() < s.args.stream_share;
        t.kinds[usize::from(stream)] += 1;
        match target {
            Target::Failover => t.kinds[2] += 1,
            Target::Error => t.kinds[3] += 1,
            Target::Normal => {}
        }
        let body = s.bodies[target as usize][usize::from(stream)].clone();
        match tokio::time::timeout(
            timeout,
            one(&s, &client, body, stream, begin, target, &mut t),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                t.transport_errors += 1;
                t.first_error.get_or_insert(e);
            }
            Err(_) => {
                t.timeouts += 1;
                t.first_error.get_or_insert_with(|| "timeout".into());
            }
        }
        s.done.fetch_add(1, Ordering::Relaxed);
    }
    t
}

/// Decrements the open-stream count however the stream ends.
struct OpenGuard<'a>(&'a AtomicUsize);
impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn one(
    s: &Shared,
    client: &Client<HttpConnector, Full<Bytes>>,
    body: Bytes,
    stream: bool,
    begin: Instant,
    target: Target,
    t: &mut Tally,
) -> Result<(), String> {
    let req = hyper::Request::post(s.uri.clone())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status();
    *t.statuses.entry(status.as_u16()).or_default() += 1;
    let mut body = resp.into_body();
    if !status.is_success() {
        // Read it all: the connection goes back to the pool.
        let text = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        if target == Target::Error && status.is_server_error() {
            t.expected_errors += 1;
        } else {
            t.first_error.get_or_insert_with(|| {
                format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&text[..text.len().min(300)])
                )
            });
        }
        return Ok(());
    }
    if !stream {
        body.collect().await.map_err(|e| e.to_string())?;
        t.latency.push(micros(begin.elapsed()));
        t.ok += 1;
        return Ok(());
    }
    let open = s.open.fetch_add(1, Ordering::Relaxed) + 1;
    s.peak_open.fetch_max(open, Ordering::Relaxed);
    let _guard = OpenGuard(&s.open);
    let mut last_event: Option<Instant> = None;
    // Whether the previous read ended with `\n` (an event's `\n\n` may be
    // split across reads), and its last bytes (so may `[DONE]`).
    let mut newline_before = false;
    let mut tail: Vec<u8> = Vec::with_capacity(2 * TAIL);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        let now = Instant::now();
        let events = count_events(&data, newline_before);
        newline_before = data.ends_with(b"\n");
        tail.extend_from_slice(&data[data.len().saturating_sub(TAIL)..]);
        tail.drain(..tail.len().saturating_sub(TAIL));
        for _ in 0..events {
            match last_event {
                None => t.ttfc.push(micros(now - begin)),
                Some(prev) => t.gaps.push(micros(now - prev)),
            }
            last_event = Some(now);
        }
        t.events += events;
    }
    let done = tail.ends_with(b"data: [DONE]\n\n");
    t.latency.push(micros(begin.elapsed()));
    if done {
        t.ok += 1;
    } else {
        t.incomplete_streams += 1;
        t.first_error
            .get_or_insert_with(|| "a stream ended without data: [DONE]".into());
    }
    Ok(())
}

/// Bytes kept from the end of a stream, to find its `data: [DONE]`.
const TAIL: usize = 16;

/// Events completed by this read: its `\n\n`s, and one more when the
/// previous read ended with `\n` and this one starts with it.
fn count_events(data: &[u8], newline_before: bool) -> u64 {
    let split = u64::from(newline_before && data.first() == Some(&b'\n'));
    split + memchr::memmem::find_iter(data, b"\n\n").count() as u64
}

fn percentiles(v: &mut [u32]) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    v.sort_unstable();
    let at = |q: f64| {
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    };
    let mean = v.iter().map(|&x| u64::from(x)).sum::<u64>() as f64 / v.len() as f64;
    json!({
        "count": v.len(),
        "p50": at(0.50),
        "p90": at(0.90),
        "p99": at(0.99),
        "p999": at(0.999),
        "max": v[v.len() - 1],
        "mean": mean.round(),
    })
}

fn report(s: &Shared, mut t: Tally, elapsed: Duration) -> Value {
    let sent = s.sent.load(Ordering::Relaxed);
    let failed = t.failed(sent);
    let answered: u64 = t.statuses.values().sum();
    json!({
        "requests": sent,
        "answered": answered,
        "ok": t.ok,
        "expected_errors": t.expected_errors,
        "failed": failed,
        "transport_errors": t.transport_errors,
        "timeouts": t.timeouts,
        "incomplete_streams": t.incomplete_streams,
        "statuses": t.statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "kinds": {"plain": t.kinds[0], "stream": t.kinds[1], "failover": t.kinds[2], "error": t.kinds[3]},
        "first_error": t.first_error,
        "elapsed_s": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        "rps": ((answered as f64 / elapsed.as_secs_f64()) * 10.0).round() / 10.0,
        "peak_open_streams": s.peak_open.load(Ordering::Relaxed),
        "events": t.events,
        "latency_us": percentiles(&mut t.latency),
        "ttfc_us": percentiles(&mut t.ttfc),
        "gap_us": percentiles(&mut t.gaps),
    })
}

#[cfg(test)]
mod tests {
    use super::count_events;

    #[test]
    fn events_split_across_reads_count_once() {
        assert_eq!(count_events(b"data: 1\n\ndata: 2\n\n", false), 2);
        // "\n" ended the previous read, "\n" starts this one.
        assert_eq!(count_events(b"\ndata: 2", true), 1);
        assert_eq!(count_events(b"\ndata: 2", false), 0);
        assert_eq!(count_events(b"data: 2\n", true), 0);
    }
}
