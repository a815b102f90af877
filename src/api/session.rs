//! Admin UI sessions: after a login with the admin password, a random
//! token in an HttpOnly, SameSite=Strict cookie stands for the password
//! until it expires or the user logs out. Tokens live only in this
//! process's memory (a restart logs everyone out).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::HeaderMap;

/// The cookie's name.
pub const COOKIE: &str = "yallmp_admin";
/// How long a session lasts.
pub const TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most (the oldest go first).
const MAX_SESSIONS: usize = 1024;

/// The live sessions: token → expiry.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Instant>>,
}

impl Sessions {
    /// A new session; returns its token (256 random bits from the OS).
    pub fn create(&self) -> String {
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let now = Instant::now();
        if let Ok(mut map) = self.map.lock() {
            map.retain(|_, exp| *exp > now);
            if map.len() >= MAX_SESSIONS
                && let Some(oldest) = map.iter().min_by_key(|(_, e)| **e).map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
            map.insert(token.clone(), now + TTL);
        }
        token
    }

    /// Whether `token` is a live session.
    pub fn valid(&self, token: &str) -> bool {
        let now = Instant::now();
        self.map
            .lock()
            .map(|map| map.get(token).is_some_and(|exp| *exp > now))
            .unwrap_or(false)
    }

    pub fn remove(&self, token: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(token);
        }
    }

    /// Forgets every session (the admin password changed).
    pub fn clear(&self) {
        if let Ok(mut map) = self.map.lock() {
            map.clear();
        }
    }
}

/// The session token a request's `Cookie` header carries, if any.
pub fn token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The `Set-Cookie` value for a session (`None`: clear it).
pub fn set_cookie(token: Option<&str>) -> String {
    match token {
        Some(t) => format!(
            "{COOKIE}={t}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={}",
            TTL.as_secs()
        ),
        None => format!("{COOKIE}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn create_check_remove() {
        let s = Sessions::default();
        let t = s.create();
        assert_eq!(t.len(), 64);
        assert!(s.valid(&t));
        assert!(!s.valid("nope"));
        assert_ne!(t, s.create());
        s.remove(&t);
        assert!(!s.valid(&t));
    }

    #[test]
    fn reads_the_cookie() {
        let mut h = HeaderMap::new();
        assert_eq!(token(&h), None);
        h.insert(
            http::header::COOKIE,
            HeaderValue::from_static("a=1; yallmp_admin=abc ; b=2"),
        );
        assert_eq!(token(&h), Some("abc"));
        assert!(set_cookie(Some("abc")).contains("HttpOnly; SameSite=Strict"));
    }
}
