//! The request log: one [`Record`] per client request, built while the
//! request runs and handed over a queue to one writer task that batches it
//! to files and the database. The queue is bounded (`queue_size` records,
//! `queue_max_bytes` bytes); what a full queue does is `on_full`:
//! - `wait` (default): a new request waits at admission ([`RequestLog::admit`])
//!   until the writer makes room, at most its timeout (then it is answered
//!   503); a finished record is never refused, so nothing is lost and the
//!   queue overshoots its bounds by at most the records of requests already
//!   in flight;
//! - `drop`: a finished record that finds the queue full is dropped,
//!   counted, and a warning says so; nothing on the request path waits.

pub mod assemble;
mod attempt;
pub mod db;
pub mod file;
mod json;
pub mod private;
pub mod query;
pub mod redact;
pub mod segments;
mod sql;
pub mod stats;
mod supervise;
mod writer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::config::{Config, OnFull};
pub use attempt::{Attempt, AttemptSpan};

pub(crate) use supervise::TASK_RESTARTS;
pub(crate) use writer::MIN_FINISH;
pub use writer::{StartError, Writer};

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A success answer reached the client whole.
    Ok,
    /// The request was refused: by the proxy (bad input, unknown model) or by
    /// the backend (a 4xx passed through).
    ClientError,
    /// The upstream failed after the first byte reached the client.
    UpstreamError,
    /// Every attempt failed.
    AllFailed,
    /// The client went away before the answer was complete.
    ClientDisconnected,
    /// The proxy stopped (shutdown) before the answer was complete.
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ClientError => "client_error",
            Outcome::UpstreamError => "upstream_error",
            Outcome::AllFailed => "all_failed",
            Outcome::ClientDisconnected => "client_disconnected",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// Where a translated Responses answer's turn is put once it is whole
/// (written with the record; see `proxy::previous`).
pub type TurnSlot = Arc<std::sync::OnceLock<String>>;

/// One stream frame as sent to the client, with its offset from the start
/// of the request.
#[derive(Debug, Clone)]
pub struct Frame {
    pub offset: Duration,
    pub bytes: Bytes,
}

/// Everything recorded about one request. Fields hold the bytes as they
/// were; redaction and serialization happen in the writer, off the request
/// path.
#[derive(Debug, Clone)]
pub struct Record {
    /// The proxy's own id for the request (a UUIDv7): the record's key.
    pub id: String,
    /// The client's `x-request-id`, when it sent one: kept, searchable,
    /// never a key.
    pub client_request_id: Option<String>,
    /// The id yallmp gave a Responses answer it made itself (translated
    /// from chat completions or Anthropic Messages).
    pub response_id: Option<String>,
    /// That answer's turn as JSON (see `proxy::previous`): set for a JSON
    /// answer at once, for a stream when its `response.completed` passes.
    pub response_turn: Option<TurnSlot>,
    pub started_at: DateTime<Utc>,
    pub method: String,
    pub path: String,
    pub client_addr: Option<SocketAddr>,
    pub request_headers: HeaderMap,
    pub request_body: Bytes,
    pub model: Option<String>,
    pub stream: bool,
    pub attempts: Vec<Attempt>,
    /// The backend that answered.
    pub backend: Option<String>,
    /// What the response cache did (`hit`, `miss`, `skip`); `None` when
    /// it was not involved.
    pub cache: Option<&'static str>,
    pub status: Option<u16>,
    pub response_headers: Option<HeaderMap>,
    /// The whole body of a non-stream answer (or of an error).
    pub response_body: Option<Bytes>,
    /// A stream's frames, in order.
    pub frames: Vec<Frame>,
    /// Bytes of frames kept so far (for the body limit).
    frames_bytes: usize,
    pub frames_truncated: bool,
    pub parsed: Option<Value>,
    pub outcome: Outcome,
    /// What went wrong, in a sentence, when something did.
    pub error: Option<String>,
    pub ttfb: Option<Duration>,
    pub total: Duration,
    /// The price of the backend that answered, when known: the writer
    /// turns the record's usage into `cost_usd` with it.
    pub price: Option<crate::price::Price>,
    /// The usage the proxy already read from the answer (a whole body's, a
    /// finished stream's), so that neither the writer nor the telemetry
    /// parses the answer again; `None`: read from the body or frames.
    pub usage: Option<Usage>,
    /// The virtual key that made the request: its id and name, and its
    /// team's name (docs/keys-and-spend.md).
    pub key: Option<(String, String)>,
    pub team: Option<String>,
    /// Its trace, when the telemetry is on ([`Tap`]).
    pub trace: Option<Trace>,
    /// The response parsers that ran, when the telemetry is on.
    pub parsers: Option<Arc<[&'static str]>>,
    /// When the request started, for offsets.
    clock: Instant,
    limit: usize,
    /// What it counts for in the queue's byte bound, once submitted.
    pub(crate) queued_bytes: usize,
}

impl Record {
    pub fn new(
        id: String,
        method: String,
        path: String,
        client_addr: Option<SocketAddr>,
        request_headers: HeaderMap,
        limit: usize,
    ) -> Record {
        Record {
            id,
            client_request_id: None,
            response_id: None,
            response_turn: None,
            started_at: Utc::now(),
            method,
            path,
            client_addr,
            request_headers,
            request_body: Bytes::new(),
            model: None,
            stream: false,
            attempts: Vec::new(),
            backend: None,
            cache: None,
            status: None,
            response_headers: None,
            response_body: None,
            frames: Vec::new(),
            frames_bytes: 0,
            frames_truncated: false,
            parsed: None,
            outcome: Outcome::ClientDisconnected,
            error: None,
            ttfb: None,
            total: Duration::ZERO,
            price: None,
            usage: None,
            key: None,
            team: None,
            trace: None,
            parsers: None,
            clock: Instant::now(),
            limit,
            queued_bytes: 0,
        }
    }

    /// Lets go of the connections' read buffers the record's bodies and
    /// headers are slices of (see [`own`]): done once, when it is queued.
    fn compact(&mut self) {
        self.request_headers = own_headers(&self.request_headers);
        self.request_body = own(&self.request_body);
        if let Some(h) = &self.response_headers {
            self.response_headers = Some(own_headers(h));
        }
        if let Some(b) = &self.response_body {
            self.response_body = Some(own(b));
        }
        for a in &mut self.attempts {
            if let Some(h) = &a.headers {
                a.headers = Some(own_headers(h));
            }
        }
    }

    /// About what the record holds in memory while it waits for the
    /// writer: its bodies and frames (which dominate), a little for each
    /// frame, header and attempt, and a fixed part.
    pub fn weight(&self) -> usize {
        let headers = |h: &HeaderMap| {
            h.iter()
                .map(|(k, v)| k.as_str().len() + v.len() + 16)
                .sum::<usize>()
        };
        512 + self.request_body.len()
            + self.response_body.as_ref().map_or(0, Bytes::len)
            + self.frames_bytes
            + 48 * self.frames.len()
            + headers(&self.request_headers)
            + self.response_headers.as_ref().map_or(0, headers)
            + 256 * self.attempts.len()
    }

    /// Time since the request started.
    pub fn elapsed(&self) -> Duration {
        self.clock.elapsed()
    }

    /// The largest body the log keeps whole.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Notes a frame sent to the client (and the first byte's time).
    pub fn push_frame(&mut self, bytes: &Bytes) {
        let offset = self.clock.elapsed();
        if self.ttfb.is_none() {
            self.ttfb = Some(offset);
        }
        if self.frames_bytes + bytes.len() > self.limit {
            self.frames_truncated = true;
            return;
        }
        self.frames_bytes += bytes.len();
        self.frames.push(Frame {
            offset,
            bytes: own(bytes),
        });
    }

    /// Closes the record.
    pub fn finish(&mut self, outcome: Outcome) {
        self.outcome = outcome;
        self.total = self.clock.elapsed();
        if self.ttfb.is_none()
            && matches!(
                outcome,
                Outcome::Ok | Outcome::ClientError | Outcome::AllFailed
            )
        {
            self.ttfb = Some(self.total);
        }
    }
}

pub use crate::usage::Usage;

impl Usage {
    /// What a record's response says: the body's `usage`, or for a stream
    /// what its frames reported (merged, later frames winning).
    pub fn of(record: &Record) -> Option<Usage> {
        if record.usage.is_some() {
            return record.usage;
        }
        if let Some(body) = &record.response_body {
            return Usage::from_body(body);
        }
        let mut s = crate::usage::StreamUsage::default();
        for f in &record.frames {
            s.on_frame(&f.bytes);
        }
        s.get()
    }
}

/// Bodies up to this size are copied into the record ([`own`]).
const OWN_UP_TO: usize = 64 << 10;

/// `bytes` for keeping in a record: a copy of its own when it is small.
///
/// A small body, frame or header value is usually a slice of a connection's
/// read buffer (hyper's, or the SSE decoder's), and holding the slice keeps
/// that whole buffer alive while the record waits for the writer: measured,
/// a queued non-stream record held about 16 KB for 2 KB of content. A copy
/// of a few hundred bytes costs far less than that. Larger bodies were
/// gathered into an allocation of their own and are kept as they are.
fn own(bytes: &Bytes) -> Bytes {
    if bytes.len() <= OWN_UP_TO {
        Bytes::copy_from_slice(bytes)
    } else {
        bytes.clone()
    }
}

/// `headers` with every value copied out of the buffer it was parsed from
/// (see [`own`]).
fn own_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        out.append(name.clone(), copy);
    }
    out
}

/// Gauge: records waiting for the writer (set by the writer at each batch,
/// so submitting a record costs no metrics lookup).
pub(crate) const QUEUE_DEPTH: &str = "yallmp_log_queue_depth";
/// Gauge: about what those records hold, in bytes (set with the depth).
pub(crate) const QUEUE_BYTES: &str = "yallmp_log_queue_bytes";
/// Counter: records the log could not keep (queue full, writer stopped,
/// database backlog full).
pub(crate) const DROPPED: &str = "yallmp_log_dropped_total";
/// Counter, by `sink` (`file`, `database`): records one sink could not
/// write (a full disk, a row the database refused); the other sink may
/// still have them.
pub(crate) const WRITE_FAILURES: &str = "yallmp_log_write_failures_total";
/// Counter: writes to the log's database that failed because it could not
/// take them (unreachable, disk full, locked); the rows wait and are tried
/// again, so each retry that fails counts.
pub(crate) const DATABASE_ERRORS: &str = "yallmp_log_database_errors_total";

/// Counter: requests that found the log's queue full at admission and
/// waited for room (`on_full: wait`).
pub(crate) const WAITS: &str = "yallmp_log_waits_total";
/// Counter: requests that waited for room in the log's queue longer than
/// their timeout and were answered 503 `log_saturated`.
pub(crate) const WAIT_TIMEOUTS: &str = "yallmp_log_wait_timeouts_total";

/// A traced request's span context (OpenTelemetry; see `telemetry`).
#[derive(Debug, Clone)]
pub struct Trace {
    /// The request span's own context: trace id, span id, sampled or not.
    pub context: opentelemetry::trace::SpanContext,
    /// The client's span (its `traceparent`), when it sent one.
    pub parent: Option<opentelemetry::trace::SpanId>,
}

/// Who else sees every record: the telemetry (`telemetry`, a layer up)
/// plugs in here, so a record is made and finished once for both. Called
/// on the request path: implementations hand work off, never wait.
pub trait Tap: Send + Sync {
    /// A request begins: its trace context (the client's `traceparent`
    /// continued, or a new trace).
    fn begin(&self, headers: &HeaderMap) -> Trace;
    /// A record is finished (before the log queues it).
    fn end(&self, record: &Record, scrubber: &redact::Scrubber);
}

/// The handle request handlers submit records through.
#[derive(Clone)]
pub struct RequestLog {
    /// Unbounded as a channel: the bounds are kept by counting
    /// ([`LogStats::queued`], [`LogStats::queued_bytes`]), so that `wait`
    /// mode can always take a finished record.
    tx: Option<mpsc::UnboundedSender<Record>>,
    /// The telemetry, when it is on.
    tap: Option<Arc<dyn Tap>>,
    /// The secrets the writer scrubs, kept current with the config.
    scrubber: Arc<arc_swap::ArcSwap<redact::Scrubber>>,
    stats: Arc<LogStats>,
    limit: usize,
    /// The queued records' bytes past which the queue is full.
    max_queued_bytes: usize,
    /// The queued records past which the queue is full.
    max_queued: usize,
    on_full: OnFull,
}

/// A request waited longer than its timeout for room in the log's queue.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error(
    "the request log is saturated: its writer did not make room within {0:?}; try again later (proxy_settings.logging.on_full: wait)"
)]
pub struct Saturated(pub Duration);

/// Counters for the request log.
#[derive(Debug, Default)]
pub struct LogStats {
    pub submitted: AtomicU64,
    pub dropped: AtomicU64,
    pub written_files: AtomicU64,
    pub written_rows: AtomicU64,
    pub failed_writes: AtomicU64,
    /// About what the records waiting for the writer hold ([`Record::weight`]).
    pub queued_bytes: std::sync::atomic::AtomicUsize,
    /// Records waiting for the writer (given back when it takes them).
    pub queued: std::sync::atomic::AtomicUsize,
    /// Requests that waited at admission, and those that gave up.
    pub waits: AtomicU64,
    pub wait_timeouts: AtomicU64,
    /// Woken (all waiters) whenever the writer gives records or bytes back.
    room: tokio::sync::Notify,
    /// The database sink: 0 none, 1 took the last write, 2 unreachable.
    pub db_state: std::sync::atomic::AtomicU8,
    /// When each kind of [`Trouble`] was last warned about.
    last_warning: std::sync::Mutex<[Option<Instant>; 3]>,
    /// Why the database sink's last write failed, while it is failing.
    db_error: std::sync::Mutex<Option<String>>,
    /// The file sink: 0 fine, 2 its last write failed.
    pub file_state: std::sync::atomic::AtomicU8,
    /// Whether the file sink is on.
    pub files_on: std::sync::atomic::AtomicBool,
    /// Why the file sink's last write failed, while it is failing.
    file_error: std::sync::Mutex<Option<String>>,
}

/// What went wrong, for rate-limiting warnings per kind (a database that is
/// away must not silence a full disk).
#[derive(Debug, Clone, Copy)]
enum Trouble {
    /// The queue is full or the writer stopped.
    Queue = 0,
    /// A record's file could not be written.
    File = 1,
    /// The database is unreachable.
    Database = 2,
}

impl LogStats {
    /// The writer took `n` records off the queue.
    pub(crate) fn took(&self, n: usize) {
        if n > 0 {
            self.queued.fetch_sub(n, Ordering::Relaxed);
            self.room.notify_waiters();
        }
    }

    /// The writer is done with records holding `bytes`.
    pub(crate) fn released(&self, bytes: usize) {
        self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.room.notify_waiters();
    }

    pub(crate) fn set_db_error(&self, e: Option<String>) {
        if let Ok(mut slot) = self.db_error.lock() {
            *slot = e;
        }
    }

    pub(crate) fn set_file_error(&self, e: Option<String>) {
        self.file_state
            .store(if e.is_some() { 2 } else { 0 }, Ordering::Relaxed);
        if let Ok(mut slot) = self.file_error.lock() {
            *slot = e;
        }
    }

    /// Why the database sink is failing, when it is.
    pub fn db_error(&self) -> Option<String> {
        self.db_error.lock().ok().and_then(|e| e.clone())
    }

    /// Why the file sink is failing, when it is.
    pub fn file_error(&self) -> Option<String> {
        self.file_error.lock().ok().and_then(|e| e.clone())
    }

    /// At most one warning per 10 s for the same kind of trouble.
    fn should_warn(&self, kind: Trouble) -> bool {
        let Ok(mut last) = self.last_warning.lock() else {
            return true;
        };
        let now = Instant::now();
        let last = &mut last[kind as usize];
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(10)) {
            return false;
        }
        *last = Some(now);
        true
    }
}

impl RequestLog {
    /// A log that records nothing (both sinks off).
    pub fn disabled() -> RequestLog {
        RequestLog {
            tx: None,
            tap: None,
            scrubber: Arc::default(),
            stats: Arc::default(),
            limit: 0,
            max_queued_bytes: 0,
            max_queued: 0,
            on_full: OnFull::Drop,
        }
    }

    /// Whether the queue holds `queue_size` records or `queue_max_bytes`.
    fn full(&self) -> bool {
        self.stats.queued.load(Ordering::Relaxed) >= self.max_queued
            || self.stats.queued_bytes.load(Ordering::Relaxed) >= self.max_queued_bytes
    }

    /// Admission (`on_full: wait`): while the queue is full, waits for the
    /// writer to make room, at most `bound()` (the request's timeout; only
    /// worked out when there is a wait). Holds no lock while it waits.
    /// Never waits in `drop` mode or with logging off.
    pub async fn admit(&self, bound: impl FnOnce() -> Duration) -> Result<(), Saturated> {
        if self.on_full != OnFull::Wait || self.tx.is_none() || !self.full() {
            return Ok(());
        }
        self.stats.waits.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(WAITS).increment(1);
        let bound = bound();
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let notified = self.stats.room.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check: a wake between the two is kept.
            notified.as_mut().enable();
            if !self.full() {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                if !self.full() {
                    return Ok(());
                }
                self.stats.wait_timeouts.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(WAIT_TIMEOUTS).increment(1);
                if self.stats.should_warn(Trouble::Queue) {
                    tracing::warn!(
                        waited = ?bound,
                        "request refused: the request log's writer did not make room in time (on_full: wait)"
                    );
                }
                return Err(Saturated(bound));
            }
        }
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Hands every record to `tap` too (the telemetry). Records are then
    /// made even with both sinks off, keeping up to `max_body_bytes` of a
    /// stream's frames (its usage and finish reason are read from them).
    pub fn with_tap(mut self, tap: Arc<dyn Tap>, config: &Config) -> RequestLog {
        if self.tx.is_none() {
            self.limit = config.logging.max_body_bytes;
            self.update_secrets(config);
        }
        self.tap = Some(tap);
        self
    }

    /// A new record for a request, when logging or the telemetry is on.
    pub fn start(
        &self,
        id: String,
        method: String,
        path: String,
        client_addr: Option<SocketAddr>,
        headers: &HeaderMap,
    ) -> Option<Record> {
        if self.tx.is_none() && self.tap.is_none() {
            return None;
        }
        let mut record = Record::new(id, method, path, client_addr, headers.clone(), self.limit);
        if let Some(tap) = &self.tap {
            record.trace = Some(tap.begin(headers));
        }
        Some(record)
    }

    /// Queues a finished record; never waits. In `wait` mode it is always
    /// taken (admission kept the queue in bounds). In `drop` mode, past
    /// `queue_size` records, or past `queue_max_bytes` of them (a record
    /// alone in the queue is always taken, however large), the record is
    /// dropped and counted.
    pub fn submit(&self, mut record: Record) {
        if let Some(tap) = &self.tap {
            tap.end(&record, &self.scrubber.load());
        }
        let Some(tx) = &self.tx else { return };
        self.stats.submitted.fetch_add(1, Ordering::Relaxed);
        let weight = record.weight();
        let before = self.stats.queued_bytes.fetch_add(weight, Ordering::Relaxed);
        let queued = self.stats.queued.fetch_add(1, Ordering::Relaxed);
        let drop_mode = self.on_full == OnFull::Drop;
        let why =
            if drop_mode && before > 0 && before.saturating_add(weight) > self.max_queued_bytes {
                "the log queue holds queue_max_bytes"
            } else if drop_mode && queued >= self.max_queued {
                "the log queue is full"
            } else {
                // Only a record that is kept is worth the copies.
                record.compact();
                record.queued_bytes = weight;
                match tx.send(record) {
                    Ok(()) => return,
                    Err(_) => "the log writer has stopped",
                }
            };
        self.stats.queued.fetch_sub(1, Ordering::Relaxed);
        self.stats.queued_bytes.fetch_sub(weight, Ordering::Relaxed);
        let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::counter!(DROPPED).increment(1);
        if self.stats.should_warn(Trouble::Queue) {
            tracing::warn!(dropped_total = n, "request record dropped: {why}");
        }
    }

    /// Scrubs the secrets of `config` from now on (after a reload or an
    /// admin change that may have added keys).
    pub fn update_secrets(&self, config: &Config) {
        self.scrubber
            .store(Arc::new(redact::Scrubber::from_config(config)));
    }

    pub fn stats(&self) -> &Arc<LogStats> {
        &self.stats
    }

    /// Whether the database sink took its last write (`None`: no database).
    pub fn database_reachable(&self) -> Option<bool> {
        match self.stats.db_state.load(Ordering::Relaxed) {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        }
    }
}

/// Starts the writer for `config` (opening the log directory and the
/// database first, so a bad setting fails at start-up), and returns the
/// handle and the writer.
pub async fn start(config: &Config) -> Result<(RequestLog, Option<Writer>), StartError> {
    let logging = &config.logging;
    if logging.files_dir.is_none() && !logging.database {
        return Ok((RequestLog::disabled(), None));
    }
    let stats: Arc<LogStats> = Arc::default();
    let (tx, rx) = mpsc::unbounded_channel();
    let scrubber = Arc::new(arc_swap::ArcSwap::from_pointee(
        redact::Scrubber::from_config(config),
    ));
    let writer = Writer::start(config, rx, stats.clone(), scrubber.clone()).await?;
    Ok((
        RequestLog {
            tx: Some(tx),
            tap: None,
            scrubber,
            stats,
            limit: logging.max_body_bytes,
            max_queued_bytes: logging.queue_max_bytes,
            max_queued: logging.queue_size,
            on_full: logging.on_full,
        },
        Some(writer),
    ))
}

/// How long a request may wait for room in the log's queue: its timeout.
/// Its model (and so its backend's `request_timeout`) is not known yet when
/// it is admitted, before its body is read, so this is the longest
/// `request_timeout` of any configured backend (the default, 30 s, when
/// there are none).
pub fn wait_bound(config: &Config) -> Duration {
    config
        .models
        .iter()
        .flat_map(|m| m.backends.iter())
        .map(|b| b.request_timeout)
        .max()
        .unwrap_or(crate::config::DEFAULT_REQUEST_TIMEOUT)
}

/// Owns a request's record while the request runs. Dropped before the
/// record was finished (the client went away, or the proxy stopped), it
/// still submits what it has, marked so.
pub struct RecordGuard {
    record: Option<Record>,
    log: RequestLog,
    /// Attempts when there is no record (logging off).
    scratch: Vec<Attempt>,
    shutting_down: Arc<std::sync::atomic::AtomicBool>,
}

impl RecordGuard {
    pub fn new(
        record: Option<Record>,
        log: RequestLog,
        shutting_down: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        RecordGuard {
            record,
            log,
            scratch: Vec::new(),
            shutting_down,
        }
    }

    /// The record, when logging or the telemetry is on.
    pub fn record(&mut self) -> Option<&mut Record> {
        self.record.as_mut()
    }

    /// Where the router puts its attempts.
    pub fn attempts(&mut self) -> &mut Vec<Attempt> {
        match &mut self.record {
            Some(r) => &mut r.attempts,
            None => &mut self.scratch,
        }
    }

    /// Finishes and submits the record.
    pub fn finish(&mut self, outcome: Outcome) {
        if let Some(mut r) = self.record.take() {
            for a in &mut r.attempts {
                a.abandon("cancelled: the request ended while waiting for the backend");
            }
            r.finish(outcome);
            self.log.submit(r);
        }
    }
}

impl Drop for RecordGuard {
    fn drop(&mut self) {
        if self.record.is_some() {
            let outcome = if self.shutting_down.load(Ordering::Relaxed) {
                Outcome::Cancelled
            } else {
                Outcome::ClientDisconnected
            };
            if let Some(r) = self.record.as_mut() {
                r.error.get_or_insert_with(|| match outcome {
                    Outcome::Cancelled => "the proxy stopped before the answer was complete".into(),
                    _ => "the client disconnected before the answer was complete".into(),
                });
                // The attempt it was waiting on: named, with how it ended.
                let why = match outcome {
                    Outcome::Cancelled => {
                        "cancelled: the proxy stopped while waiting for the backend"
                    }
                    _ => "cancelled: the client went away while waiting for the backend",
                };
                for a in r.attempts.iter_mut().filter(|a| a.pending.is_some()) {
                    a.abandon(why);
                    r.backend.get_or_insert_with(|| a.backend.clone());
                }
            }
            self.finish(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(body_bytes: usize) -> Record {
        let mut r = Record::new(
            "id".into(),
            "POST".into(),
            "/v1/chat/completions".into(),
            None,
            HeaderMap::new(),
            usize::MAX,
        );
        r.request_body = Bytes::from(vec![b'x'; body_bytes]);
        r
    }

    fn log(max_queued_bytes: usize) -> (RequestLog, mpsc::UnboundedReceiver<Record>) {
        log_with(max_queued_bytes, 100, OnFull::Drop)
    }

    fn log_with(
        max_queued_bytes: usize,
        max_queued: usize,
        on_full: OnFull,
    ) -> (RequestLog, mpsc::UnboundedReceiver<Record>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let log = RequestLog {
            tx: Some(tx),
            tap: None,
            scrubber: Arc::default(),
            stats: Arc::default(),
            limit: usize::MAX,
            max_queued_bytes,
            max_queued,
            on_full,
        };
        (log, rx)
    }

    #[test]
    fn the_queue_is_bounded_in_bytes() {
        let (log, mut rx) = log(10_000);
        let w = record(4_000).weight();
        assert!((4_000..5_000).contains(&w), "{w}");
        log.submit(record(4_000));
        log.submit(record(4_000));
        // A third would pass 10,000 bytes: dropped and counted.
        log.submit(record(4_000));
        let stats = log.stats();
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(stats.queued_bytes.load(Ordering::Relaxed), 2 * w);
        // The writer takes one and gives its bytes back: room again.
        let taken = rx.try_recv().unwrap();
        assert_eq!(taken.queued_bytes, w);
        stats
            .queued_bytes
            .fetch_sub(taken.queued_bytes, Ordering::Relaxed);
        log.submit(record(4_000));
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(stats.submitted.load(Ordering::Relaxed), 4);
        assert_eq!(rx.len(), 2);
    }

    #[test]
    fn a_record_alone_is_taken_however_large() {
        let (log, mut rx) = log(1_000);
        log.submit(record(50_000));
        assert_eq!(log.stats().dropped.load(Ordering::Relaxed), 0);
        assert!(rx.try_recv().unwrap().queued_bytes > 50_000);
        // The next one waits for the writer to give those bytes back.
        log.submit(record(10));
        assert_eq!(log.stats().dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_queued_record_holds_no_slice_of_a_read_buffer() {
        let (log, mut rx) = log(1_000_000);
        // A connection's read buffer, the body and a header value slices of it.
        let buffer = Bytes::from(vec![b'a'; 8192]);
        let mut r = record(0);
        r.request_body = buffer.slice(100..400);
        r.request_headers.insert(
            "x-thing",
            HeaderValue::from_maybe_shared(buffer.slice(10..20)).unwrap(),
        );
        let mut sensitive = HeaderValue::from_static("Bearer sk-1");
        sensitive.set_sensitive(true);
        r.request_headers.insert("authorization", sensitive);
        r.push_frame(&buffer.slice(400..500));
        log.submit(r);
        // Only the test's own handle is left on the buffer.
        assert!(buffer.is_unique());
        let queued = rx.try_recv().unwrap();
        assert_eq!(&queued.request_body[..], &[b'a'; 300][..]);
        assert_eq!(queued.request_headers["x-thing"], "aaaaaaaaaa");
        assert!(queued.request_headers["authorization"].is_sensitive());
        assert_eq!(queued.frames[0].bytes.len(), 100);
    }

    /// A request cut while an attempt waits on a backend: the attempt is
    /// closed as cancelled (why, latency so far) and names the backend.
    #[test]
    fn an_attempt_in_progress_is_closed_when_the_request_is_cut() {
        for (stopping, why) in [
            (
                false,
                "cancelled: the client went away while waiting for the backend",
            ),
            (
                true,
                "cancelled: the proxy stopped while waiting for the backend",
            ),
        ] {
            let (log, mut rx) = log(1_000_000);
            let flag = Arc::new(std::sync::atomic::AtomicBool::new(stopping));
            let mut guard = RecordGuard::new(Some(record(10)), log, flag);
            guard.attempts().push(Attempt {
                backend: "m#1".into(),
                url: "http://b/v1/chat/completions".into(),
                upstream_model: None,
                attempt: 1,
                status: None,
                latency: Duration::ZERO,
                error: None,
                headers: None,
                pending: Some(Instant::now()),
                dropped: Vec::new(),
                span: None,
            });
            std::thread::sleep(Duration::from_millis(5));
            drop(guard);
            let r = rx.try_recv().unwrap();
            assert_eq!(
                r.outcome,
                if stopping {
                    Outcome::Cancelled
                } else {
                    Outcome::ClientDisconnected
                }
            );
            assert_eq!(r.backend.as_deref(), Some("m#1"));
            let a = &r.attempts[0];
            assert!(a.pending.is_none());
            assert_eq!(a.error.as_deref(), Some(why));
            assert!(a.latency >= Duration::from_millis(5));
        }
    }

    /// `wait`: a finished record is never refused, however full the queue;
    /// a new request waits at admission until the writer gives room back,
    /// and is woken when it does.
    #[tokio::test]
    async fn admission_waits_for_room_and_is_woken() {
        let (log, mut rx) = log_with(usize::MAX, 2, OnFull::Wait);
        // Room: no wait, and the bound is not even worked out.
        log.admit(|| unreachable!()).await.unwrap();
        for _ in 0..3 {
            log.submit(record(10));
        }
        assert_eq!(log.stats().dropped.load(Ordering::Relaxed), 0);
        assert_eq!(rx.len(), 3);
        let waiting = tokio::spawn({
            let log = log.clone();
            async move { log.admit(|| Duration::from_secs(3600)).await }
        });
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished());
        // The writer takes one: still 2 queued, still full.
        rx.try_recv().unwrap();
        log.stats().took(1);
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished());
        // Another: room, and the waiter is woken.
        rx.try_recv().unwrap();
        log.stats().took(1);
        waiting.await.unwrap().unwrap();
        assert_eq!(log.stats().waits.load(Ordering::Relaxed), 1);
        assert_eq!(log.stats().wait_timeouts.load(Ordering::Relaxed), 0);
    }

    /// `wait`: a full byte bound makes admission wait too, and a wait
    /// longer than the bound ends in `Saturated`, counted.
    #[tokio::test]
    async fn admission_gives_up_after_its_bound() {
        let (log, _rx) = log_with(1_000, 100, OnFull::Wait);
        log.submit(record(5_000));
        let e = log.admit(|| Duration::from_millis(30)).await.unwrap_err();
        assert_eq!(e.0, Duration::from_millis(30));
        assert_eq!(log.stats().waits.load(Ordering::Relaxed), 1);
        assert_eq!(log.stats().wait_timeouts.load(Ordering::Relaxed), 1);
        // The bytes given back: room at once.
        log.stats()
            .released(log.stats().queued_bytes.load(Ordering::Relaxed));
        log.admit(|| unreachable!()).await.unwrap();
    }

    /// `drop`: admission never waits; the record past the bound is dropped.
    #[tokio::test]
    async fn drop_mode_never_waits_and_drops_past_the_bound() {
        let (log, rx) = log_with(usize::MAX, 1, OnFull::Drop);
        log.submit(record(10));
        log.admit(|| unreachable!()).await.unwrap();
        log.submit(record(10));
        assert_eq!(log.stats().dropped.load(Ordering::Relaxed), 1);
        assert_eq!(log.stats().queued.load(Ordering::Relaxed), 1);
        assert_eq!(rx.len(), 1);
    }

    #[test]
    fn a_refused_record_gives_its_bytes_back() {
        let (log, rx) = log(1_000_000);
        drop(rx);
        log.submit(record(100));
        assert_eq!(log.stats().dropped.load(Ordering::Relaxed), 1);
        assert_eq!(log.stats().queued_bytes.load(Ordering::Relaxed), 0);
    }
}
