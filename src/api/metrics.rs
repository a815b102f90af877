//! Prometheus metrics: the process-wide recorder, `GET /metrics`, and the
//! layer that counts and times every request.
//!
//! The `metrics` facade has one recorder per process, so it is installed
//! once (the first proxy started installs it) and `/metrics` shows the
//! process's metrics, whichever proxy in it is asked. Labels are bounded:
//! routes are route templates (`MatchedPath`), never raw paths; models are
//! configured model names or `unknown`, never what a client invented.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;

use super::Shared;
use super::error::json_error;

use crate::metrics_names::{
    IN_FLIGHT, ModelSlot, RATE_LIMITED, REQUEST_DURATION, REQUESTS, TOKENS,
};

/// Bucket bounds (seconds) for every `*_seconds` histogram: LLM calls take
/// from milliseconds (cache hits, embeddings) to minutes (long generations).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
    600.0,
];

/// How often histogram samples are folded in when nobody scrapes (it
/// bounds their memory).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process's recorder, installed on first use. `None` when another
/// recorder was installed first (an embedding program's own): then
/// `/metrics` says so.
pub fn install() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => {
                    let h = handle.clone();
                    let spawned = std::thread::Builder::new()
                        .name("yallmp-metrics-upkeep".into())
                        .spawn(move || {
                            loop {
                                std::thread::sleep(UPKEEP_EVERY);
                                h.run_upkeep();
                            }
                        });
                    if let Err(e) = spawned {
                        tracing::warn!(error = %e, "metrics upkeep thread not started; histograms fold in at each scrape");
                    }
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed: /metrics will be empty");
                    None
                }
            }
        })
        .as_ref()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    crate::conn::describe();
    describe_counter!(
        REQUESTS,
        "HTTP requests answered, by route template, model and status"
    );
    describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Time from request to the last byte of the answer (streams included)"
    );
    describe_gauge!(
        IN_FLIGHT,
        "Requests being answered now (streams until their end)"
    );
    describe_counter!(
        TOKENS,
        "Tokens the backends reported, by model and direction (in, out)"
    );
    describe_counter!(
        crate::metrics_names::SPEND,
        "Cost of answers with a known price, in millionths of a USD, by model and key (the virtual key's name, or (none))"
    );
    describe_counter!(
        crate::metrics_names::KEY_TOKENS,
        "Tokens the backends reported, by model, key (the virtual key's name, or (none)) and kind (input, output)"
    );
    describe_counter!(
        RATE_LIMITED,
        "Requests refused by a rate limit, by scope (global, key)"
    );
    describe_counter!(
        crate::metrics_names::BACKEND_LIMITED,
        "Attempts a backend's own limit passed over, by model, backend and limit (rpm, tpm, parallel)"
    );
    describe_gauge!(
        crate::reqlog::QUEUE_DEPTH,
        "Request records waiting for the log writer"
    );
    describe_gauge!(
        crate::reqlog::QUEUE_BYTES,
        "About what the request records waiting for the log writer hold, in bytes"
    );
    describe_counter!(
        crate::reqlog::DROPPED,
        "Request records the log could not keep"
    );
    describe_counter!(
        crate::reqlog::WAITS,
        "Requests that found the request log's queue full at admission and waited for room (on_full: wait)"
    );
    describe_counter!(
        crate::reqlog::WAIT_TIMEOUTS,
        "Requests that waited longer than their timeout for room in the request log's queue and were answered 503 log_saturated"
    );
    describe_counter!(
        crate::reqlog::WRITE_FAILURES,
        "Request records one log sink could not write, by sink (file, database)"
    );
    describe_counter!(
        crate::reqlog::DATABASE_ERRORS,
        "Writes the request log's database could not take (unreachable, disk full, locked); the rows wait and are retried"
    );
    describe_counter!(
        crate::telemetry::SPANS_DROPPED,
        "Trace spans not exported, by reason (queue_full, export_failed)"
    );
    describe_counter!(
        crate::telemetry::SPANS_EXPORTED,
        "Trace spans the OpenTelemetry collector took"
    );
    describe_counter!(
        crate::reqlog::TASK_RESTARTS,
        "Background tasks started again after they failed, by task"
    );
}

/// `GET /metrics`: the Prometheus text format. When an admin password is
/// set it is required (`Authorization: Bearer <password>`), as for
/// `/admin`; without one the endpoint is open, like `/healthz`.
pub async fn render(State(state): State<Shared>, req: Request) -> Response {
    if state.live.load().config.auth.admin_password.is_some() {
        match super::auth::presented_password(&state, &req) {
            Ok(true) => {}
            Ok(false) => {
                return json_error(
                    StatusCode::UNAUTHORIZED,
                    &json!({"error": {"message": "/metrics needs the admin password: `Authorization: Bearer <password>`.", "type": "invalid_request_error", "code": "admin_auth_required"}}),
                );
            }
            Err(wait) => return super::throttle::throttled(wait),
        }
    }
    let Some(handle) = install() else {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": {"message": "another metrics recorder is installed in this process", "type": "server_error", "code": "metrics_unavailable"}}),
        );
    };
    let mut r = handle.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// Counts and times one request until its body has been sent (or dropped).
pub(super) struct Observed {
    route: Arc<str>,
    slot: ModelSlot,
    status: StatusCode,
    started: Instant,
}

impl Drop for Observed {
    fn drop(&mut self) {
        // Shared strings: the labels cost no copies (the route and the
        // model are `Arc<str>`, the status a static string when known).
        let route = metrics::SharedString::from(self.route.clone());
        let model = metrics::SharedString::from(self.slot.label());
        let status = match status_str(self.status) {
            Some(s) => metrics::SharedString::const_str(s),
            None => metrics::SharedString::from(self.status.as_str().to_string()),
        };
        let labels = [("route", route), ("model", model), ("status", status)];
        metrics::counter!(REQUESTS, &labels[..]).increment(1);
        metrics::histogram!(REQUEST_DURATION, &labels[..2]).record(self.started.elapsed());
        in_flight().decrement(1.0);
    }
}

/// The in-flight gauge's handle, registered once (the recorder is
/// installed before anything is served).
fn in_flight() -> &'static metrics::Gauge {
    static GAUGE: OnceLock<metrics::Gauge> = OnceLock::new();
    GAUGE.get_or_init(|| metrics::gauge!(IN_FLIGHT))
}

/// A common status code as a static string (the label's value).
fn status_str(status: StatusCode) -> Option<&'static str> {
    macro_rules! codes {
        ($($n:literal),*) => {
            match status.as_u16() {
                $($n => Some(stringify!($n)),)*
                _ => None,
            }
        };
    }
    codes!(
        100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303,
        304, 305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413,
        414, 415, 416, 417, 418, 421, 422, 423, 424, 426, 428, 429, 431, 451, 500, 501, 502, 503,
        504, 505, 506, 507, 508, 510, 511
    )
}

/// The start of a request's count (the router's edge layer,
/// [`super::edge`]): in-flight gauge, request count and duration, labelled
/// with the route template (`unmatched` for unknown routes).
pub(super) fn begin(req: &mut Request) -> Observed {
    let route: Arc<str> = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| Arc::from("unmatched"), |p| Arc::from(p.as_str()));
    let slot = ModelSlot::default();
    req.extensions_mut().insert(slot.clone());
    in_flight().increment(1.0);
    Observed {
        route,
        slot,
        status: StatusCode::INTERNAL_SERVER_ERROR,
        started: Instant::now(),
    }
}

/// The end of [`begin`]'s count: the response, its body carrying the
/// count until its last byte has gone out (or the client went away).
pub(super) fn end(mut observed: Observed, response: Response) -> Response {
    observed.status = response.status();
    let (parts, body) = response.into_parts();
    let body = body.map_frame(move |frame| {
        let _ = &observed;
        frame
    });
    Response::from_parts(parts, Body::new(body))
}

#[cfg(test)]
mod status_tests {
    #[test]
    fn status_labels_are_the_codes() {
        for code in 100..600u16 {
            let Ok(s) = http::StatusCode::from_u16(code) else {
                continue;
            };
            if let Some(text) = super::status_str(s) {
                assert_eq!(text, s.as_str());
            }
        }
    }
}
