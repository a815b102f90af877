//! The exporter task: spans wait in a bounded queue (requests never wait:
//! past `max_queue_size` a span is dropped and counted) and leave in batches
//! of up to `max_export_batch_size`, every `schedule_delay` or as soon as a
//! full batch waits, each export bounded by `export_timeout`. One export at
//! a time: a slow or dead collector fills the queue, never memory.
//!
//! The OTLP HTTP/protobuf exporter is opentelemetry-otlp's, over the
//! reqwest 0.12 client the proxy already uses ([`Http`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{SPANS_DROPPED, SPANS_EXPORTED, StartError};
use crate::config::telemetry::TelemetrySettings;

/// The largest answer read from a collector.
const MAX_ANSWER_BYTES: usize = 64 << 10;

/// The HTTP client the OTLP exporter sends with: reqwest 0.12, on the
/// runtime the exporter task runs on.
#[derive(Debug)]
struct Http(reqwest::Client);

#[async_trait::async_trait]
impl HttpClient for Http {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let mut answer = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await?;
        let status = answer.status();
        let headers = std::mem::take(answer.headers_mut());
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = answer.chunk().await? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                break;
            }
            body.extend_from_slice(&chunk);
        }
        let mut out = http::Response::new(body.freeze());
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

/// The running exporter task; [`Exporter::shutdown`] flushes it.
pub struct Exporter {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

pub(super) fn start(
    r: &TelemetrySettings,
    rx: mpsc::Receiver<SpanData>,
    wake: Arc<Notify>,
) -> Result<Exporter, StartError> {
    let client = reqwest::Client::builder()
        .timeout(r.export_timeout)
        .connect_timeout(r.export_timeout.min(Duration::from_secs(5)))
        .build()
        .map_err(|e| StartError(format!("cannot build the HTTP client: {e}")))?;
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(Http(client))
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(r.export_timeout);
    builder = builder.with_endpoint(r.endpoint.clone());
    if !r.headers.is_empty() {
        builder = builder.with_headers(r.headers.iter().cloned().collect::<HashMap<_, _>>());
    }
    let mut exporter = builder
        .build()
        .map_err(|e| StartError(format!("the OTLP exporter: {e}")))?;
    exporter.set_resource(
        &Resource::builder()
            .with_service_name(r.service_name.clone())
            .with_attribute(opentelemetry::KeyValue::new(
                "service.version",
                env!("CARGO_PKG_VERSION"),
            ))
            .build(),
    );
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(run(
        exporter,
        rx,
        wake,
        stopped,
        r.max_export_batch_size,
        r.schedule_delay,
        r.export_timeout,
    ));
    Ok(Exporter {
        stop: Some(stop),
        task,
    })
}

async fn run(
    exporter: opentelemetry_otlp::SpanExporter,
    mut rx: mpsc::Receiver<SpanData>,
    wake: Arc<Notify>,
    mut stopped: oneshot::Receiver<()>,
    batch: usize,
    delay: Duration,
    timeout: Duration,
) {
    let mut tick = tokio::time::interval(delay);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut spans = Vec::with_capacity(batch);
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = wake.notified() => {}
            _ = &mut stopped, if !stopping => stopping = true,
        }
        // What waits now goes, batch by batch (spans queued meanwhile wait
        // for the next round, so a flood cannot hold the task here).
        let mut waiting = rx.len();
        while waiting > 0 {
            let n = rx.recv_many(&mut spans, batch.min(waiting)).await;
            if n == 0 {
                break;
            }
            waiting -= n;
            export(&exporter, &mut spans, timeout).await;
        }
        if stopping {
            let _ = opentelemetry_sdk::trace::SpanExporter::shutdown(&exporter);
            return;
        }
    }
}

async fn export(
    exporter: &opentelemetry_otlp::SpanExporter,
    spans: &mut Vec<SpanData>,
    timeout: Duration,
) {
    let n = spans.len() as u64;
    let batch = std::mem::replace(spans, Vec::with_capacity(spans.capacity()));
    let why = match tokio::time::timeout(timeout, exporter.export(batch)).await {
        Ok(Ok(())) => {
            metrics::counter!(SPANS_EXPORTED).increment(n);
            return;
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {timeout:?}"),
    };
    metrics::counter!(SPANS_DROPPED, "reason" => "export_failed").increment(n);
    warn_at_most_every_10s(&why, n);
}

fn warn_at_most_every_10s(why: &str, n: u64) {
    use std::sync::Mutex;
    use std::time::Instant;
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    let Ok(mut last) = LAST.lock() else { return };
    if last.is_some_and(|t| t.elapsed() < Duration::from_secs(10)) {
        return;
    }
    *last = Some(Instant::now());
    tracing::warn!(spans = n, "telemetry: spans not exported: {why}");
}

impl Exporter {
    /// Exports what waits and stops, within `bound` (spans still waiting
    /// then are lost; the collector's answer is not waited for past it).
    pub async fn shutdown(mut self, bound: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(bound, &mut self.task).await.is_err() {
            self.task.abort();
            tracing::warn!("telemetry: spans not exported within the shutdown bound");
        }
    }
}
