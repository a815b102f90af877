//! The admin API's edge rules, before any password is checked (see
//! docs/api.md, "Admin access rules"):
//!
//! - **Host.** Every `/admin` request (UI files, login and the API) must
//!   name this proxy in `Host`: a loopback address, `localhost`, the listen
//!   address, or a name in `proxy_settings.server.allowed_hosts`. A page on
//!   another name that resolves to this machine (DNS rebinding) is refused
//!   with 403 `host_not_allowed`. A request without `Host` (HTTP/1.0, or one
//!   built in-process) is not refused: browsers always send one.
//! - **Cross-site.** A request whose `Origin` is neither this `Host` nor an
//!   allowed name, or without `Origin` one a browser marks as cross-site
//!   (`Sec-Fetch-Site: cross-site`), is refused with 403 `cross_site_request`:
//!   every change, and every API read. Plain navigations to the UI's pages
//!   are not (they carry no data).
//! - **JSON.** A change (POST, PUT, PATCH, DELETE) that carries a body must
//!   say `Content-Type: application/json`, else 415 `json_required`: an HTML
//!   form or a "simple" cross-site `fetch` cannot send it without a CORS
//!   preflight.

use std::net::{IpAddr, SocketAddr};

use axum::extract::Request;
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode, header};
use serde_json::json;

use super::Shared;
use super::error::json_error;

/// Whether `path` is under `/admin`, or one of the LiteLLM-shaped
/// management endpoints (the same rules hold for them).
fn is_admin(path: &str) -> bool {
    path == "/admin" || path.starts_with("/admin/") || super::litellm_compat::is_management(path)
}

/// The admin UI's own files: pages a link may open from anywhere.
fn is_ui_file(path: &str) -> bool {
    path == "/admin" || path == "/admin/" || path.starts_with("/admin/assets/")
}

/// The rules above for `/admin` paths: the refusal, when the request
/// breaks one (called by the router's edge layer, [`super::edge`]).
pub fn admin_refusal(state: &Shared, req: &Request) -> Option<Response> {
    if !is_admin(req.uri().path()) {
        return None;
    }
    let host = request_host(req);
    let live = state.live.load();
    let allowed = &live.config.server.allowed_hosts;
    if let Some(h) = &host
        && !host_allowed(h, state.listen, allowed)
    {
        tracing::warn!(host = %h.chars().take(100).collect::<String>(), "admin request refused: Host is not this proxy");
        return Some(refuse(
            StatusCode::FORBIDDEN,
            "host_not_allowed",
            "The admin API answers only requests addressed to this proxy: a loopback address, localhost, \
             the listen address or a name in proxy_settings.server.allowed_hosts.",
        ));
    }
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if (changes || !is_ui_file(req.uri().path()))
        && let Some(why) = cross_site(req.headers(), host.as_deref(), allowed)
    {
        tracing::warn!(reason = why, method = %req.method(), path = %req.uri().path(), "admin request refused: cross-site");
        return Some(refuse(
            StatusCode::FORBIDDEN,
            "cross_site_request",
            &format!("Cross-site requests to the admin API are refused ({why})."),
        ));
    }
    if changes && has_body(req.headers()) && !is_json(req.headers()) {
        return Some(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "json_required",
            "Admin changes take a JSON body: send `Content-Type: application/json`.",
        ));
    }
    None
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    json_error(
        status,
        &json!({"error": {"message": message, "type": "invalid_request_error", "code": code}}),
    )
}

/// The authority the request was sent to: `Host`, else the URI's (HTTP/2).
fn request_host(req: &Request) -> Option<String> {
    req.headers()
        .get(header::HOST)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_string()))
        .map(|h| h.trim().to_ascii_lowercase())
}

/// `host[:port]` split; IPv6 literals keep no brackets.
fn split_host(authority: &str) -> (&str, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((ip, tail)) => (ip, tail.strip_prefix(':')),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (authority, None),
    }
}

/// Whether `authority` (a `Host` value, lowercase) names this proxy.
pub fn host_allowed(authority: &str, listen: SocketAddr, allowed: &[String]) -> bool {
    let (host, port) = split_host(authority);
    if host == "localhost" {
        return true;
    }
    if let Ok(ip) = host.parse::<IpAddr>()
        && (ip.is_loopback() || (!listen.ip().is_unspecified() && ip == listen.ip()))
    {
        return true;
    }
    in_list(host, port, allowed)
}

/// Whether `host[:port]` is in `allowed_hosts` (`name` any port,
/// `name:port` that port, `*` anything).
fn in_list(host: &str, port: Option<&str>, allowed: &[String]) -> bool {
    allowed.iter().any(|a| {
        if a == "*" {
            return true;
        }
        let (ah, ap) = split_host(a);
        ah == host && (ap.is_none() || ap == port)
    })
}

/// Why the request is cross-site, if it is. `Origin`, when sent, decides
/// (its own `Host`, or a name in `allowed_hosts`, is fine); without one,
/// `Sec-Fetch-Site: cross-site` is refused.
fn cross_site(headers: &HeaderMap, host: Option<&str>, allowed: &[String]) -> Option<&'static str> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        let site = headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase());
        return (site.as_deref() == Some("cross-site")).then_some("Sec-Fetch-Site: cross-site");
    };
    let origin = String::from_utf8_lossy(origin.as_bytes())
        .trim()
        .to_ascii_lowercase();
    let Some(authority) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .filter(|a| !a.is_empty() && !a.contains('/'))
    else {
        return Some("an opaque or unknown Origin");
    };
    if host == Some(authority) {
        return None;
    }
    let (h, p) = split_host(authority);
    if in_list(h, p, allowed) {
        return None;
    }
    Some("Origin is not this proxy")
}

/// Whether the request carries a body (a length above 0, or chunked).
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// `application/json` or `application/<something>+json`, any parameters.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|t| {
            t == "application/json" || (t.starts_with("application/") && t.ends_with("+json"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn listen(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn hosts() {
        let any = listen("0.0.0.0:7979");
        let lan = listen("192.168.1.5:7979");
        let none: Vec<String> = vec![];
        for h in [
            "localhost",
            "localhost:7979",
            "127.0.0.1:7979",
            "127.1.2.3",
            "[::1]:7979",
            "[::1]",
        ] {
            assert!(host_allowed(h, any, &none), "{h}");
        }
        assert!(!host_allowed("evil.example:7979", any, &none));
        assert!(!host_allowed("192.168.1.5:7979", any, &none));
        assert!(host_allowed("192.168.1.5:7979", lan, &none));
        assert!(!host_allowed("localhost.evil.example", any, &none));
        let list = vec![
            "proxy.example".to_string(),
            "other.example:8443".to_string(),
        ];
        assert!(host_allowed("proxy.example", any, &list));
        assert!(host_allowed("proxy.example:1234", any, &list));
        assert!(host_allowed("other.example:8443", any, &list));
        assert!(!host_allowed("other.example:80", any, &list));
        assert!(!host_allowed("other.example", any, &list));
        assert!(host_allowed("whatever", any, &["*".to_string()]));
    }

    #[test]
    fn origins_and_types() {
        let none: Vec<String> = vec![];
        let mut h = HeaderMap::new();
        assert_eq!(cross_site(&h, Some("127.0.0.1:1"), &none), None);
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:1"),
        );
        assert_eq!(cross_site(&h, Some("127.0.0.1:1"), &none), None);
        assert!(cross_site(&h, Some("127.0.0.1:2"), &none).is_some());
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(cross_site(&h, Some("127.0.0.1:1"), &none).is_some());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://admin.example"),
        );
        assert!(cross_site(&h, Some("127.0.0.1:1"), &none).is_some());
        assert_eq!(
            cross_site(&h, Some("127.0.0.1:1"), &["admin.example".to_string()]),
            None
        );
        let mut h = HeaderMap::new();
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&h, Some("127.0.0.1:1"), &none).is_some());
        // An allowed Origin decides over Sec-Fetch-Site.
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://app.example"),
        );
        assert!(cross_site(&h, Some("127.0.0.1:1"), &none).is_some());
        assert_eq!(
            cross_site(&h, Some("127.0.0.1:1"), &["app.example".to_string()]),
            None
        );
        let mut h = HeaderMap::new();
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert_eq!(cross_site(&h, Some("127.0.0.1:1"), &none), None);

        let mut h = HeaderMap::new();
        assert!(!has_body(&h));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        assert!(!has_body(&h));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert!(has_body(&h));
        assert!(!is_json(&h));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert!(is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/merge-patch+json"),
        );
        assert!(is_json(&h));
    }
}
