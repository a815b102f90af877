//! One try at one backend, as the router made it and the request log (and
//! the client's error message) tell it. Here, beside the record that lists
//! them, so that the log needs nothing of the router.

use std::time::{Duration, Instant};

use http::HeaderMap;

/// One try at one backend, for the error message and the request log.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub backend: String,
    pub url: String,
    pub upstream_model: Option<String>,
    /// 1-based, per backend.
    pub attempt: u32,
    pub status: Option<u16>,
    pub latency: Duration,
    pub error: Option<String>,
    /// The upstream's response headers, when it answered.
    pub headers: Option<HeaderMap>,
    /// When it started, while it is in progress: an attempt is listed as
    /// it starts, so a request cut while waiting on a backend (the client
    /// gone, the proxy stopping) still says which backend it was waiting
    /// for ([`Attempt::abandon`] fills in how it ended).
    pub pending: Option<Instant>,
    /// The client's fields the request sent to this backend did not carry
    /// (a translation to its dialect drops what that dialect does not
    /// define; thinking blocks it cannot verify), for the record.
    pub dropped: Vec<String>,
    /// Its span when the request is traced (OpenTelemetry): the id its
    /// `traceparent` carried upstream, when it started, the provider.
    pub span: Option<AttemptSpan>,
}

/// What the telemetry needs of an attempt to make its span once the
/// request ends (see `telemetry`); `None` on every attempt when it is off.
#[derive(Debug, Clone, Copy)]
pub struct AttemptSpan {
    pub id: opentelemetry::trace::SpanId,
    pub start: std::time::SystemTime,
    /// `gen_ai.provider.name`.
    pub provider: &'static str,
    /// A hash of the backend's configured model: attempts at another model
    /// are fallbacks (backend names need not say their model: `id`).
    pub model: u64,
}

impl Attempt {
    /// Closes an attempt still in progress when its request ends without
    /// it: its latency so far and `why` (`cancelled: ...`) as its error.
    pub fn abandon(&mut self, why: &str) {
        if let Some(started) = self.pending.take() {
            self.latency = started.elapsed();
            self.error = Some(why.to_string());
        }
    }
}
