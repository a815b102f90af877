//! Checks more than one section uses: durations in seconds.

use super::errors::{Errors, KeyPath};
use std::time::Duration;

/// Seconds > 0 (and below a billion); the default when absent.
pub(super) fn seconds(
    v: Option<f64>,
    default: Duration,
    at: &KeyPath,
    errors: &mut Errors,
) -> Duration {
    match v {
        None => default,
        Some(s) if s.is_finite() && s > 0.0 && s < 1e9 => Duration::from_secs_f64(s),
        Some(s) => {
            errors.at(at, format!("must be a positive number of seconds, got {s}"));
            default
        }
    }
}
