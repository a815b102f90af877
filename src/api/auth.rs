//! Who may call: client keys for the OpenAI-compatible routes, the admin
//! password (or loopback only, without one) for `/admin`; the admin UI's
//! session cookie stands for the password after a login. Keys are compared
//! in constant time and never echoed or logged.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::Shared;
use super::error::json_error;
use crate::config::Secret;
use crate::identity::presented;

/// Whether `given` equals one of `keys`, in time independent of where they
/// differ.
pub fn matches(given: &str, keys: &[Secret]) -> bool {
    keys.iter().fold(0u8, |hit, k| {
        hit | given.as_bytes().ct_eq(k.expose().as_bytes()).unwrap_u8()
    }) == 1
}

/// Layer on `/v1/*`: when client keys are configured, one must be presented.
pub async fn client_key(State(state): State<Shared>, mut req: Request, next: Next) -> Response {
    let live = state.live.load();
    let keys = &live.config.auth.api_keys;
    // Once any virtual key exists, every request needs a key: a flat
    // client key, or a virtual key (which then rides along as the
    // request's identity: docs/keys-and-spend.md).
    if !keys.is_empty() || state.keys.any() {
        match presented(req.headers()) {
            Some(k) if matches(k, keys) => {}
            Some(k) => match state.keys.identify(k) {
                Some(who) if who.key.usable(chrono::Utc::now()) => {
                    req.extensions_mut().insert(who);
                }
                Some(who) if who.key.revoked_at.is_some() => {
                    return unauthorized("This API key has been revoked.");
                }
                Some(_) => return unauthorized("This API key has expired."),
                None => return unauthorized("Incorrect API key provided."),
            },
            None => {
                return unauthorized(
                    "Missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`.",
                );
            }
        }
    }
    drop(live);
    next.run(req).await
}

fn unauthorized(message: &str) -> Response {
    json_error(
        StatusCode::UNAUTHORIZED,
        &json!({"error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}}),
    )
}

/// Layer on `/admin/*`: the admin password (or a UI session) when one is
/// set, else loopback clients only. Wrong passwords are throttled per
/// client address ([`super::throttle`]).
pub async fn admin(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let password = state.live.load().config.auth.admin_password.clone();
    match password {
        Some(_) => {
            if ui_session(&state, &req) {
                return next.run(req).await;
            }
            match presented_password(&state, &req) {
                Ok(true) => next.run(req).await,
                Ok(false) => json_error(
                    StatusCode::UNAUTHORIZED,
                    &json!({"error": {"message": "The admin API needs the admin password: `Authorization: Bearer <password>`.", "type": "invalid_request_error", "code": "admin_auth_required"}}),
                ),
                Err(wait) => super::throttle::throttled(wait),
            }
        }
        None => {
            let loopback = client_ip(&req).is_some_and(|ip| ip.is_loopback());
            if loopback {
                next.run(req).await
            } else {
                json_error(
                    StatusCode::FORBIDDEN,
                    &json!({"error": {"message": "No admin password is set (YALLMP_ADMIN_PASSWORD), so the admin API answers loopback clients only.", "type": "invalid_request_error", "code": "admin_loopback_only"}}),
                )
                .into_response()
            }
        }
    }
}

/// The client's address, when the connection is known.
pub fn client_ip(req: &Request) -> Option<std::net::IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Whether the request presents the admin password (`Authorization:
/// Bearer` or `x-api-key`); `Ok(false)` without one set or presented. A
/// wrong one counts against the client's address; `Err` is how long an
/// address that sent too many must wait ([`super::throttle::throttled`]).
pub fn presented_password(state: &Shared, req: &Request) -> Result<bool, std::time::Duration> {
    let live = state.live.load();
    let (Some(pw), Some(given)) = (&live.config.auth.admin_password, presented(req.headers()))
    else {
        return Ok(false);
    };
    state
        .auth_throttle
        .check(client_ip(req), || matches(given, std::slice::from_ref(pw)))
}

/// Header the admin UI sends on changes: a cross-site form cannot set it,
/// so a session cookie alone never authorizes a change.
pub const UI_HEADER: &str = "x-yallmp-ui";

/// Whether the request carries a live admin UI session (a login with the
/// admin password); changes also need [`UI_HEADER`].
pub(super) fn ui_session(state: &Shared, req: &Request) -> bool {
    let Some(token) = super::session::token(req.headers()) else {
        return false;
    };
    let safe = matches!(*req.method(), http::Method::GET | http::Method::HEAD);
    (safe || req.headers().contains_key(UI_HEADER)) && state.sessions.valid(token)
}

/// Whether the request carries the admin password (for protected models).
pub fn has_admin_password(state: &Shared, headers: &HeaderMap) -> bool {
    let live = state.live.load();
    match (&live.config.auth.admin_password, presented(headers)) {
        (Some(pw), Some(k)) => matches(k, std::slice::from_ref(pw)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, header};

    #[test]
    fn presented_forms_and_matching() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h), None);
        h.insert("x-api-key", HeaderValue::from_static("k2"));
        assert_eq!(presented(&h), Some("k2"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer k1"));
        assert_eq!(presented(&h), Some("k1"));
        let keys = [Secret::new("k1"), Secret::new("other")];
        assert!(matches("k1", &keys));
        assert!(!matches("k", &keys));
        assert!(!matches("k1x", &keys));
    }
}
