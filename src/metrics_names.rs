//! The names of the process's Prometheus metrics: a leaf, so that the
//! layers that count (the rate limiter, the proxy's usage accounting) and
//! the HTTP layer that describes and serves them agree on one spelling
//! without importing each other.

pub const REQUESTS: &str = "yallmp_requests_total";
pub const REQUEST_DURATION: &str = "yallmp_request_duration_seconds";
pub const IN_FLIGHT: &str = "yallmp_in_flight_requests";
pub const TOKENS: &str = "yallmp_tokens_total";
pub const RATE_LIMITED: &str = "yallmp_rate_limited_total";
