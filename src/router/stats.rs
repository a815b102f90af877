//! The counters `/stats` shows for one backend: attempts, successes,
//! failures by class, tokens, and the last [`WINDOW`] latency and
//! time-to-first-token samples.
//!
//! Percentiles come from a bounded window of recent samples, sorted when
//! `/stats` is read: recording is O(1) with no allocation once the window
//! is full, the numbers describe recent traffic (what an operator looking
//! at a live instance wants), and no histogram crate is needed. The
//! Prometheus histograms (`yallmp_upstream_latency_seconds`, ...) keep the
//! long-run distribution.

/// Samples kept for the percentiles.
pub const WINDOW: usize = 1024;

/// Counters for `/stats`.
#[derive(Default)]
pub struct Stats {
    pub requests: u64,
    pub successes: u64,
    pub failures_4xx: u64,
    pub failures_5xx: u64,
    pub failures_network: u64,
    pub failures_error_event: u64,
    /// Streams that broke after their first event.
    pub failures_stream_broken: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub latency: Window,
    pub ttft: Window,
}

/// The last [`WINDOW`] samples, in seconds.
#[derive(Default)]
pub struct Window {
    samples: Vec<f64>,
    next: usize,
}

impl Window {
    pub fn push(&mut self, v: f64) {
        if self.samples.len() < WINDOW {
            self.samples.push(v);
        } else {
            self.samples[self.next] = v;
        }
        self.next = (self.next + 1) % WINDOW;
    }

    /// Percentiles (0..=100) in milliseconds; `None` without samples.
    pub fn percentiles<const N: usize>(&self, ps: [f64; N]) -> Option<[f64; N]> {
        if self.samples.is_empty() {
            return None;
        }
        let mut sorted = self.samples.clone();
        sorted.sort_by(f64::total_cmp);
        Some(ps.map(|p| {
            let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
            let v = sorted[rank.clamp(1, sorted.len()) - 1];
            (v * 1000.0 * 100.0).round() / 100.0
        }))
    }
}

impl Stats {
    /// The `/stats` entry (without name, model and state).
    pub fn to_json(&self, in_flight: u64) -> serde_json::Value {
        let lat = self.latency.percentiles([50.0, 95.0, 99.0]);
        let ttft = self.ttft.percentiles([50.0, 95.0]);
        serde_json::json!({
            "requests": self.requests,
            "successes": self.successes,
            "failures": {
                "4xx": self.failures_4xx,
                "5xx": self.failures_5xx,
                "network": self.failures_network,
                "error_event": self.failures_error_event,
                "stream_broken": self.failures_stream_broken,
            },
            "in_flight": in_flight,
            "latency_ms": lat.map(|[p50, p95, p99]| serde_json::json!({"p50": p50, "p95": p95, "p99": p99})),
            "ttft_ms": ttft.map(|[p50, p95]| serde_json::json!({"p50": p50, "p95": p95})),
            "tokens": {"input": self.tokens_in, "output": self.tokens_out},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_percentiles_and_bound() {
        let mut w = Window::default();
        assert_eq!(w.percentiles([50.0]), None);
        for i in 1..=100 {
            w.push(f64::from(i) / 1000.0);
        }
        assert_eq!(w.percentiles([50.0, 95.0, 99.0]), Some([50.0, 95.0, 99.0]));
        for i in 0..(WINDOW + 10) {
            w.push(i as f64);
        }
        assert_eq!(w.samples.len(), WINDOW);
        // Only the newest WINDOW samples remain: the smallest is 10 s.
        assert_eq!(w.percentiles([0.0]), Some([10_000.0]));
    }
}
