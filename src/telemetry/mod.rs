//! OpenTelemetry traces (docs/observability.md): one SERVER span per client
//! request and a CLIENT span per upstream attempt, after the GenAI semantic
//! conventions, exported over OTLP HTTP/protobuf in the background.
//!
//! It rides on the request log's record ([`crate::reqlog::Tap`]): the record
//! already gathers what a span says (model, attempts, status, usage, cost,
//! key, cache), and it is finished exactly once, when the answer or the
//! stream ends. So the request path gains no span objects: at the start a
//! trace context (the client's `traceparent` continued), at each attempt a
//! span id and its `traceparent` header ([`attempt`]), and at the end the
//! spans built from the record, queued without waiting ([`export`]).
//! Off, the proxy holds no [`Telemetry`] and each of those is one branch on
//! an `Option`.

mod export;
mod spans;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, SpanKind, TraceContextExt, TraceFlags};
use opentelemetry::{Context, InstrumentationScope};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample, SpanData,
};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::config::telemetry::{ParentlessRule, SamplerSetting};
use crate::reqlog::redact::Scrubber;
use crate::reqlog::{AttemptSpan, Record, Tap, Trace};

pub use export::Exporter;

/// Counter: spans not exported, by `reason` (`queue_full`: the export
/// queue held `max_queue_size` spans; `export_failed`: the collector
/// refused them, did not answer within the export timeout, or was down).
pub const SPANS_DROPPED: &str = "yallmp_telemetry_spans_dropped_total";
/// Counter: spans the collector took.
pub const SPANS_EXPORTED: &str = "yallmp_telemetry_spans_exported_total";

/// The largest prompt or completion a span event carries, in bytes (the
/// rest is cut at a character boundary).
pub const MAX_CONTENT_BYTES: usize = 64 << 10;

/// The running telemetry: what requests use (the exporter task is apart,
/// [`Exporter`]).
pub struct Telemetry {
    tx: mpsc::Sender<SpanData>,
    /// Wakes the exporter when a full batch waits.
    wake: Arc<tokio::sync::Notify>,
    batch: usize,
    sampler: Box<dyn ShouldSample>,
    propagator: TraceContextPropagator,
    capture_content: bool,
    scope: InstrumentationScope,
    /// Spans dropped because the queue was full (also in [`SPANS_DROPPED`]).
    dropped: AtomicU64,
}

/// Why the telemetry could not start.
#[derive(Debug, thiserror::Error)]
#[error("telemetry: {0}")]
pub struct StartError(String);

/// The sampler the settings name.
fn sampler(s: &SamplerSetting) -> Box<dyn ShouldSample> {
    let rule = |r: &ParentlessRule| match r {
        ParentlessRule::AlwaysOn => Sampler::AlwaysOn,
        ParentlessRule::AlwaysOff => Sampler::AlwaysOff,
        ParentlessRule::Ratio(x) => Sampler::TraceIdRatioBased(*x),
    };
    Box::new(match s {
        SamplerSetting::AlwaysOn => Sampler::AlwaysOn,
        SamplerSetting::AlwaysOff => Sampler::AlwaysOff,
        SamplerSetting::Ratio(x) => Sampler::TraceIdRatioBased(*x),
        SamplerSetting::ParentBased(r) => Sampler::ParentBased(Box::new(rule(r))),
    })
}

/// Starts the telemetry when `config` turns it on: the exporter task on
/// this runtime, and the handle requests use.
pub fn start(config: &Config) -> Result<Option<(Arc<Telemetry>, Exporter)>, StartError> {
    let s = &config.telemetry;
    if !s.enabled {
        return Ok(None);
    }
    let (tx, rx) = mpsc::channel(s.max_queue_size);
    let wake = Arc::new(tokio::sync::Notify::new());
    let exporter = export::start(s, rx, wake.clone())?;
    let telemetry = Telemetry {
        tx,
        wake,
        batch: s.max_export_batch_size,
        sampler: sampler(&s.sampler),
        propagator: TraceContextPropagator::new(),
        capture_content: s.capture_content,
        scope: InstrumentationScope::builder("yallmp")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
        dropped: AtomicU64::new(0),
    };
    tracing::info!(
        endpoint = %crate::config::mask_url_secret(&s.endpoint),
        service = %s.service_name,
        capture_content = s.capture_content,
        "telemetry: exporting traces over OTLP http/protobuf"
    );
    Ok(Some((Arc::new(telemetry), exporter)))
}

impl Telemetry {
    /// Spans dropped so far because the export queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queues a span; never waits.
    fn queue(&self, span: SpanData) {
        match self.tx.try_send(span) {
            Ok(()) => {
                if self.tx.max_capacity() - self.tx.capacity() >= self.batch {
                    self.wake.notify_one();
                }
            }
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(SPANS_DROPPED, "reason" => "queue_full").increment(1);
            }
        }
    }
}

/// `headers` as the propagator reads them.
struct Extract<'a>(&'a HeaderMap);

impl opentelemetry::propagation::Extractor for Extract<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// `headers` as the propagator writes them.
struct Inject<'a>(&'a mut HeaderMap);

impl opentelemetry::propagation::Injector for Inject<'_> {
    fn set(&mut self, key: &str, value: String) {
        let Ok(name) = http::HeaderName::from_bytes(key.as_bytes()) else {
            return;
        };
        // An empty `tracestate` is no header at all.
        if value.is_empty() {
            self.0.remove(name);
        } else if let Ok(value) = http::HeaderValue::from_str(&value) {
            self.0.insert(name, value);
        }
    }
}

impl Tap for Telemetry {
    fn begin(&self, headers: &HeaderMap) -> Trace {
        let cx = self.propagator.extract(&Extract(headers));
        let parent = cx.span().span_context().clone();
        let ids = RandomIdGenerator::default();
        let (trace_id, from_client) = if parent.is_valid() {
            (parent.trace_id(), true)
        } else {
            (ids.new_trace_id(), false)
        };
        let result = self.sampler.should_sample(
            from_client.then_some(&cx),
            trace_id,
            "",
            &SpanKind::Server,
            &[],
            &[],
        );
        let flags = match result.decision {
            SamplingDecision::RecordAndSample => TraceFlags::SAMPLED,
            _ => TraceFlags::default(),
        };
        Trace {
            context: SpanContext::new(
                trace_id,
                ids.new_span_id(),
                flags,
                false,
                result.trace_state,
            ),
            parent: from_client.then(|| parent.span_id()),
        }
    }

    fn end(&self, record: &Record, scrubber: &Scrubber) {
        let Some(trace) = &record.trace else { return };
        if !trace.context.is_sampled() {
            return;
        }
        let content = self.capture_content.then_some(scrubber);
        for span in spans::spans(record, trace, content, scrubber, &self.scope) {
            self.queue(span);
        }
    }
}

/// The telemetry hook at an attempt: a span id for it, and its
/// `traceparent` (and `tracestate`) on the request it sends upstream.
pub fn attempt(
    trace: &Trace,
    headers: &mut HeaderMap,
    backend: &crate::config::Backend,
) -> AttemptSpan {
    let id = RandomIdGenerator::default().new_span_id();
    let own = SpanContext::new(
        trace.context.trace_id(),
        id,
        trace.context.trace_flags(),
        true,
        trace.context.trace_state().clone(),
    );
    let cx = Context::new().with_remote_span_context(own);
    TraceContextPropagator::new().inject_context(&cx, &mut Inject(headers));
    AttemptSpan {
        id,
        start: SystemTime::now(),
        provider: spans::provider(backend.api_type),
        model: model_key(&backend.model_name),
    }
}

/// FNV-1a of a model name: equal names, equal keys (no allocation per
/// attempt to carry the name).
fn model_key(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_traceparent_is_continued() {
        let t = Telemetry {
            tx: mpsc::channel(1).0,
            wake: Arc::default(),
            batch: 1,
            sampler: Box::new(Sampler::ParentBased(Box::new(Sampler::AlwaysOn))),
            propagator: TraceContextPropagator::new(),
            capture_content: false,
            scope: InstrumentationScope::builder("t").build(),
            dropped: AtomicU64::new(0),
        };
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                .parse()
                .unwrap(),
        );
        h.insert("tracestate", "congo=t61rcWkgMzE".parse().unwrap());
        let trace = t.begin(&h);
        assert_eq!(
            trace.context.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(trace.parent.unwrap().to_string(), "b7ad6b7169203331");
        assert!(trace.context.is_sampled());
        assert_eq!(trace.context.trace_state().header(), "congo=t61rcWkgMzE");
        // Not sampled by the client: not sampled here either.
        h.insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
                .parse()
                .unwrap(),
        );
        assert!(!t.begin(&h).context.is_sampled());
        // None: a new trace, sampled.
        let fresh = t.begin(&HeaderMap::new());
        assert!(fresh.parent.is_none() && fresh.context.is_sampled());
    }
}
