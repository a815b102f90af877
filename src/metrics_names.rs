//! The names of the process's Prometheus metrics and the request's model
//! label: a leaf, so that the
//! layers that count (the rate limiter, the proxy's usage accounting) and
//! the HTTP layer that describes and serves them agree on one spelling
//! without importing each other.

pub const REQUESTS: &str = "yallmp_requests_total";
pub const REQUEST_DURATION: &str = "yallmp_request_duration_seconds";
pub const IN_FLIGHT: &str = "yallmp_in_flight_requests";
pub const TOKENS: &str = "yallmp_tokens_total";
pub const RATE_LIMITED: &str = "yallmp_rate_limited_total";
/// Attempts passed over because their backend was at its own limit
/// (`rpm`, `tpm`, `max_parallel_requests`).
pub const BACKEND_LIMITED: &str = "yallmp_backend_limited_total";
/// Cost of answers with a known price, in millionths of a USD (Prometheus
/// counters here are integers), by model and virtual key name.
pub const SPEND: &str = "yallmp_spend_micro_usd_total";
/// Tokens by model, virtual key name and kind (input, output).
pub const KEY_TOKENS: &str = "yallmp_key_tokens_total";

use std::sync::{Arc, OnceLock};

/// Where a handler writes the configured model a request is for (the
/// request's `model` label), once it knows it.
#[derive(Clone, Default)]
pub struct ModelSlot(Arc<OnceLock<Arc<str>>>);

impl ModelSlot {
    pub fn set(&self, model: &str) {
        let _ = self.0.set(Arc::from(model));
    }

    /// The model, once the proxy has resolved it.
    pub fn get(&self) -> Option<Arc<str>> {
        self.0.get().cloned()
    }

    /// The label: the model, or `unknown` before (or without) one.
    pub fn label(&self) -> Arc<str> {
        self.0
            .get()
            .cloned()
            .unwrap_or_else(|| Arc::from("unknown"))
    }
}
