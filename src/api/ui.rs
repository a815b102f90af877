//! The admin web UI: the files of `static/admin/`, embedded in the binary,
//! served at `/admin/` with their content type, an ETag, revalidation and a
//! strict Content-Security-Policy; and the login that turns the admin
//! password into a session cookie. The files hold no data: everything the
//! UI shows comes from the admin API, behind its authentication.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::json;

use super::Shared;
use super::auth::matches;
use super::error::json_error;
use super::session;

#[derive(rust_embed::RustEmbed)]
#[folder = "static/admin/"]
struct Assets;

/// Scripts, styles, images and requests from this origin only; no inline
/// code, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// One embedded file, or 404.
fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(file) = Assets::get(path) else {
        return json_error(
            StatusCode::NOT_FOUND,
            &json!({"error": {"message": format!("no admin UI file `{path}`"), "type": "invalid_request_error", "code": "not_found"}}),
        );
    };
    let hash = file.metadata.sha256_hash();
    let etag = format!(
        "\"{}\"",
        hash[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    // The files change with the binary: always revalidate (cheap, by ETag).
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if fresh {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    (StatusCode::OK, h, file.data.into_owned()).into_response()
}

/// `GET /admin` → `/admin/`.
pub async fn redirect() -> Redirect {
    Redirect::permanent("/admin/")
}

/// `GET /admin/`: the page.
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /admin/assets/{*path}`: scripts, styles, icons.
pub async fn asset(
    axum::extract::Path(path): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    if path.split('/').any(|seg| seg == ".." || seg.is_empty()) {
        return serve("", &headers);
    }
    serve(&format!("assets/{path}"), &headers)
}

/// How long a wrong password waits for its answer.
const FAILED_LOGIN_DELAY: std::time::Duration = std::time::Duration::from_millis(500);

#[derive(serde::Deserialize)]
pub struct Login {
    password: String,
}

/// The largest login body read.
const LOGIN_MAX_BYTES: usize = 64 * 1024;

/// `POST /admin/login` with `{"password": "..."}`: a session cookie when it
/// is the admin password. Wrong passwords count against the client's
/// address with the Bearer path's ([`super::throttle`]).
pub async fn login(State(state): State<Shared>, req: axum::extract::Request) -> Response {
    let pw = state.live.load().config.auth.admin_password.clone();
    let Some(pw) = pw else {
        return json_error(
            StatusCode::BAD_REQUEST,
            &json!({"error": {"message": "No admin password is set: the admin UI needs no login (loopback clients only).", "type": "invalid_request_error", "code": "no_admin_password"}}),
        );
    };
    let ip = super::auth::client_ip(&req);
    let body = axum::body::to_bytes(req.into_body(), LOGIN_MAX_BYTES)
        .await
        .unwrap_or_default();
    let given: Option<Login> = serde_json::from_slice(&body).ok();
    let ok = match &given {
        Some(l) => state
            .auth_throttle
            .check(ip, || matches(&l.password, std::slice::from_ref(&pw))),
        None => Ok(false),
    };
    match ok {
        Ok(true) => {
            let token = state.sessions.create();
            tracing::info!("admin UI login");
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&session::set_cookie(Some(&token))) {
                h.insert(header::SET_COOKIE, v);
            }
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            (StatusCode::OK, h, axum::Json(json!({"logged_in": true}))).into_response()
        }
        Err(wait) => {
            tracing::warn!("admin UI login refused: too many wrong passwords from this address");
            super::throttle::throttled(wait)
        }
        Ok(false) => {
            // Slows guessing down (this request only; nothing else waits).
            tokio::time::sleep(FAILED_LOGIN_DELAY).await;
            tracing::warn!("admin UI login refused: wrong password");
            json_error(
                StatusCode::UNAUTHORIZED,
                &json!({"error": {"message": "Wrong admin password.", "type": "invalid_request_error", "code": "admin_auth_required"}}),
            )
        }
    }
}

/// `POST /admin/logout`: ends the session and clears the cookie.
pub async fn logout(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(t) = session::token(&headers) {
        state.sessions.remove(t);
    }
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(None)) {
        h.insert(header::SET_COOKIE, v);
    }
    (StatusCode::OK, h, axum::Json(json!({"logged_in": false}))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_files() {
        assert_eq!(content_type("a/b.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("x.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("noext"), "application/octet-stream");
        assert!(Assets::get("index.html").is_some());
        let r = serve("index.html", &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::OK);
        let etag = r.headers()[header::ETAG].clone();
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(serve("index.html", &h).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(serve("nope.js", &h).status(), StatusCode::NOT_FOUND);
    }
}
