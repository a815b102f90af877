//! Wrong admin passwords per client address, across the Bearer path
//! (`/admin/*`, `/metrics`) and the UI login: after [`MAX_FAILURES`] within
//! [`WINDOW`], the address gets 429 with `Retry-After` (whatever it sends,
//! the right password included, so the answer tells a guesser nothing)
//! until [`WINDOW`] has passed since the last counted failure.
//!
//! The check and the count happen under one lock, so parallel guesses are
//! counted like serial ones. The table is bounded ([`MAX_CLIENTS`]); IPv6
//! clients count by their /64.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong passwords an address may send within [`WINDOW`].
pub const MAX_FAILURES: u32 = 10;
/// How long failures count, and how long an address is refused after
/// reaching [`MAX_FAILURES`].
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at most; when full, the entry whose window ends first
/// goes.
const MAX_CLIENTS: usize = 10_000;

struct Entry {
    failures: u32,
    /// When the failures stop counting.
    until: Instant,
}

/// The table of failures (one per proxy, kept across reloads).
#[derive(Default)]
pub struct Throttle {
    map: Mutex<HashMap<IpAddr, Entry>>,
}

/// The key an address counts under: IPv6 by its /64 (one host has many).
fn key(ip: Option<IpAddr>) -> IpAddr {
    match ip {
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let seg = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(
                    seg[0], seg[1], seg[2], seg[3], 0, 0, 0, 0,
                ))
            }
        },
        Some(ip) => ip,
        None => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    }
}

impl Throttle {
    /// Runs `verify` (does the request carry the admin password?) for
    /// client `ip`, unless the address is throttled: `Err(retry_after)`.
    /// A `false` is counted before the lock is released.
    pub fn check(
        &self,
        ip: Option<IpAddr>,
        verify: impl FnOnce() -> bool,
    ) -> Result<bool, Duration> {
        let k = key(ip);
        let now = Instant::now();
        let Ok(mut map) = self.map.lock() else {
            // A poisoned lock: fail closed for this request.
            return Err(WINDOW);
        };
        if let Some(e) = map.get(&k) {
            if e.until <= now {
                map.remove(&k);
            } else if e.failures >= MAX_FAILURES {
                return Err(e.until - now);
            }
        }
        if verify() {
            return Ok(true);
        }
        if !map.contains_key(&k) && map.len() >= MAX_CLIENTS {
            map.retain(|_, e| e.until > now);
            if map.len() >= MAX_CLIENTS
                && let Some(first) = map.iter().min_by_key(|(_, e)| e.until).map(|(k, _)| *k)
            {
                map.remove(&first);
            }
        }
        let e = map.entry(k).or_insert(Entry {
            failures: 0,
            until: now + WINDOW,
        });
        e.failures += 1;
        e.until = now + WINDOW;
        Ok(false)
    }
}

/// The 429 for a throttled address, with `Retry-After`.
pub fn throttled(retry_after: Duration) -> axum::response::Response {
    use axum::response::IntoResponse;
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let mut r = super::error::json_error(
        http::StatusCode::TOO_MANY_REQUESTS,
        &serde_json::json!({"error": {
            "message": format!("Too many wrong admin passwords from this address: retry in {secs} s."),
            "type": "rate_limit_error",
            "code": "admin_auth_throttled",
        }}),
    )
    .into_response();
    if let Ok(v) = http::HeaderValue::from_str(&secs.max(1).to_string()) {
        r.headers_mut().insert(http::header::RETRY_AFTER, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_failures_per_address_and_bounds_the_table() {
        let t = Throttle::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            assert_eq!(t.check(Some(a), || false), Ok(false));
        }
        // Throttled: the password is not even checked.
        assert!(
            t.check(Some(a), || panic!("checked while throttled"))
                .is_err()
        );
        assert_eq!(t.check(Some(b), || true), Ok(true));
        // One /64 counts as one client.
        let v6 = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        for i in 0..MAX_FAILURES {
            let addr = format!("2001:db8::{i:x}");
            assert_eq!(t.check(v6(&addr), || false), Ok(false));
        }
        assert!(t.check(v6("2001:db8::ffff"), || true).is_err());
        for i in 0..(MAX_CLIENTS as u32 + 10) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + i));
            let _ = t.check(Some(ip), || false);
        }
        assert!(t.map.lock().unwrap().len() <= MAX_CLIENTS);
    }
}
