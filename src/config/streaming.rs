//! `proxy_settings.streaming`: bounds on what the proxy accepts from an
//! upstream event stream, as written (serde, with defaults) and resolved.

use std::time::Duration;

use super::errors::Errors;
use serde::Deserialize;

/// `proxy_settings.streaming` as written.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawStreaming {
    /// The largest upstream event (or line), in bytes; a longer one ends
    /// the stream with an error event (default 16 MiB).
    pub max_event_bytes: Option<u64>,
    /// Seconds an upstream stream may take to send its first event with
    /// data (comments and keep-alives do not count); default 120.
    pub first_event_timeout: Option<f64>,
}

/// The default of `first_event_timeout`.
pub const DEFAULT_FIRST_EVENT_TIMEOUT: Duration = Duration::from_secs(120);

/// The resolved settings. Reloadable: a new stream uses the ones live
/// when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    pub max_event_bytes: usize,
    pub first_event_timeout: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            max_event_bytes: crate::sse::DEFAULT_MAX_EVENT_BYTES,
            first_event_timeout: DEFAULT_FIRST_EVENT_TIMEOUT,
        }
    }
}

/// Checks and resolves the block.
pub fn resolve(raw: RawStreaming, errors: &mut Errors) -> StreamSettings {
    const AT: &str = "proxy_settings.streaming";
    let mut s = StreamSettings::default();
    match raw.max_event_bytes {
        None => {}
        Some(n) if n >= 1024 => s.max_event_bytes = usize::try_from(n).unwrap_or(usize::MAX),
        Some(n) => errors.at(
            format!("{AT}.max_event_bytes"),
            format!("must be at least 1024 bytes, got {n}"),
        ),
    }
    match raw.first_event_timeout {
        None => {}
        Some(t) if t.is_finite() && t > 0.0 && t < 1e9 => {
            s.first_event_timeout = Duration::from_secs_f64(t);
        }
        Some(t) => errors.at(
            format!("{AT}.first_event_timeout"),
            format!("must be a positive number of seconds, got {t}"),
        ),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_checks() {
        let mut errors = Errors::default();
        let s = resolve(RawStreaming::default(), &mut errors);
        assert_eq!(s, StreamSettings::default());
        assert_eq!(s.max_event_bytes, 16 * 1024 * 1024);
        assert!(errors.is_empty());
        let raw = RawStreaming {
            max_event_bytes: Some(10),
            first_event_timeout: Some(f64::NAN),
        };
        resolve(raw, &mut errors);
        assert_eq!(errors.len(), 2);
        assert!(errors[0].contains("proxy_settings.streaming.max_event_bytes"));
        assert!(errors[1].contains("proxy_settings.streaming.first_event_timeout"));
    }
}
