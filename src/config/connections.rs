//! Client connection limits: the timeouts and the cap on open connections
//! of `proxy_settings.server` (and the forwarders' share of them). Read at
//! start-up; a reload leaves them as they are.

use super::errors::{Errors, KeyPath};
use std::time::Duration;

/// `proxy_settings.server.header_read_timeout`: 30 s.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// `proxy_settings.server.body_read_timeout`: 60 s.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// `proxy_settings.server.idle_timeout`: 75 s, nginx's `keepalive_timeout`;
/// longer than load balancers keep an idle connection to a backend (nginx's
/// upstream keep-alive and cloud balancers: 60 s), so they close first.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// The most connections the default cap allows.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// The largest `max_connections` accepted.
pub const MAX_MAX_CONNECTIONS: u64 = 1_000_000;

/// How long a client may take, and how many may be connected at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From a connection's first byte of a request (or from its opening)
    /// to the end of the request's head. `None`: no limit.
    pub header_read_timeout: Option<Duration>,
    /// How long a request body may go without a byte while it is read.
    pub body_read_timeout: Option<Duration>,
    /// How long a keep-alive connection may sit between requests.
    pub idle_timeout: Option<Duration>,
    /// Client connections open at once; past it a new one is answered 503
    /// and closed.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Some(DEFAULT_HEADER_READ_TIMEOUT),
            body_read_timeout: Some(DEFAULT_BODY_READ_TIMEOUT),
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            max_connections: default_max_connections(),
        }
    }
}

/// The four keys of `proxy_settings.server`, as written.
#[derive(Debug, Default, Clone, Copy)]
pub struct RawConnectionLimits {
    pub header_read_timeout: Option<f64>,
    pub body_read_timeout: Option<f64>,
    pub idle_timeout: Option<f64>,
    pub max_connections: Option<u64>,
}

/// Defaults filled in and values checked; problems go to `errors` with
/// their key path under `at` (`proxy_settings.server`).
pub fn resolve(raw: RawConnectionLimits, at: &KeyPath, errors: &mut Errors) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: optional_seconds(
            raw.header_read_timeout,
            DEFAULT_HEADER_READ_TIMEOUT,
            &at.key("header_read_timeout"),
            errors,
        ),
        body_read_timeout: optional_seconds(
            raw.body_read_timeout,
            DEFAULT_BODY_READ_TIMEOUT,
            &at.key("body_read_timeout"),
            errors,
        ),
        idle_timeout: optional_seconds(
            raw.idle_timeout,
            DEFAULT_IDLE_TIMEOUT,
            &at.key("idle_timeout"),
            errors,
        ),
        max_connections: max_connections(raw.max_connections, &at.key("max_connections"), errors),
    }
}

/// A cap on open connections: at least 1.
pub fn max_connections(v: Option<u64>, at: &KeyPath, errors: &mut Errors) -> usize {
    match v {
        None => default_max_connections(),
        Some(n) if (1..=MAX_MAX_CONNECTIONS).contains(&n) => n as usize,
        Some(n) => {
            errors.at(
                at,
                format!("{n} is out of range (1 to {MAX_MAX_CONNECTIONS})"),
            );
            default_max_connections()
        }
    }
}

/// Seconds where 0 turns the limit off; the default when absent.
pub fn optional_seconds(
    v: Option<f64>,
    default: Duration,
    at: &KeyPath,
    errors: &mut Errors,
) -> Option<Duration> {
    match v {
        None => Some(default),
        Some(0.0) => None,
        Some(s) if s.is_finite() && s > 0.0 && s < 1e9 => Some(Duration::from_secs_f64(s)),
        Some(s) => {
            errors.at(
                at,
                format!("must be a number of seconds >= 0 (0 turns it off), got {s}"),
            );
            Some(default)
        }
    }
}

/// 4096, or half the process's open-files limit when that is lower (every
/// client connection may need an upstream one too, and the request log
/// and the database want theirs): past the cap a client gets a clear 503
/// instead of the proxy running out of descriptors.
pub fn default_max_connections() -> usize {
    match open_files_limit() {
        Some(n) => usize::try_from(n / 2)
            .unwrap_or(usize::MAX)
            .clamp(16, DEFAULT_MAX_CONNECTIONS),
        None => DEFAULT_MAX_CONNECTIONS,
    }
}

#[cfg(target_os = "linux")]
fn open_files_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

#[cfg(not(target_os = "linux"))]
fn open_files_limit() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_zero_and_bad_values() {
        let mut errors = Errors::default();
        let l = resolve(RawConnectionLimits::default(), &"s".into(), &mut errors);
        assert!(errors.is_empty());
        assert_eq!(l.header_read_timeout, Some(DEFAULT_HEADER_READ_TIMEOUT));
        assert_eq!(l.body_read_timeout, Some(DEFAULT_BODY_READ_TIMEOUT));
        assert_eq!(l.idle_timeout, Some(DEFAULT_IDLE_TIMEOUT));
        assert!((16..=DEFAULT_MAX_CONNECTIONS).contains(&l.max_connections));

        let l = resolve(
            RawConnectionLimits {
                header_read_timeout: Some(0.0),
                body_read_timeout: Some(2.5),
                idle_timeout: Some(0.0),
                max_connections: Some(7),
            },
            &"s".into(),
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(l.header_read_timeout, None);
        assert_eq!(l.body_read_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(l.idle_timeout, None);
        assert_eq!(l.max_connections, 7);

        resolve(
            RawConnectionLimits {
                header_read_timeout: Some(-1.0),
                body_read_timeout: Some(f64::NAN),
                idle_timeout: Some(1e300),
                max_connections: Some(0),
            },
            &"s".into(),
            &mut errors,
        );
        let all = errors.join("\n");
        // Through the loader (what `yallmp check` runs): key paths.
        let env = crate::config::Env::isolated(std::iter::empty::<(String, String)>());
        let e = crate::config::Config::from_yaml(
            "proxy_settings: {server: {max_connections: 0, idle_timeout: -2}}",
            None,
            &env,
        )
        .unwrap_err()
        .errors
        .join("\n");
        assert!(e.contains("proxy_settings.server.max_connections"), "{e}");
        assert!(e.contains("proxy_settings.server.idle_timeout"), "{e}");
        let c = crate::config::Config::from_yaml(
            "proxy_settings: {server: {header_read_timeout: 5, max_connections: 9}}",
            None,
            &env,
        )
        .unwrap();
        assert_eq!(
            c.server.connections.header_read_timeout,
            Some(Duration::from_secs(5))
        );
        assert_eq!(c.server.connections.max_connections, 9);
        for key in [
            "s.header_read_timeout",
            "s.body_read_timeout",
            "s.idle_timeout",
            "s.max_connections",
        ] {
            assert!(all.contains(key), "{key}: {all}");
        }
    }
}
