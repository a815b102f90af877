//! Vertex AI access tokens from a service-account key: a JWT signed with
//! the key (RS256, `jsonwebtoken` over ring, the crypto rustls already
//! uses) exchanged at the key's `token_uri` (OAuth 2.0 JWT bearer grant),
//! kept until shortly before it expires, and fetched once at a time per
//! key however many requests wait for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderValue;
use serde_json::Value;

use super::{Http, UpstreamError};
use crate::config::google::{ServiceAccount, VertexTarget};

/// The scope Vertex AI needs.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// A token is fetched again this long before it expires.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);
/// The JWT's lifetime (Google allows at most an hour).
const ASSERTION_LIFETIME: u64 = 3600;

/// A token and when it stops being used.
#[derive(Clone)]
struct Cached {
    value: HeaderValue,
    until: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// One slot per key (client email, token URI): shared by every backend and
/// every reload that uses the same key.
fn slot(sa: &ServiceAccount) -> Slot {
    static SLOTS: OnceLock<Mutex<HashMap<(String, String), Slot>>> = OnceLock::new();
    let slots = SLOTS.get_or_init(Default::default);
    let mut map = slots
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    map.entry((sa.client_email.clone(), sa.token_uri.clone()))
        .or_default()
        .clone()
}

/// `Authorization: Bearer …` for a Vertex backend with a service account:
/// the cached token, else a new one (one exchange at a time per key).
pub async fn token(
    client: &Http,
    vertex: &VertexTarget,
    timeout: Duration,
) -> Result<HeaderValue, UpstreamError> {
    let Some(sa) = vertex.credentials.as_deref() else {
        return Err(UpstreamError::Credentials("no service account".into()));
    };
    let slot = slot(sa);
    let mut held = slot.lock().await;
    if let Some(c) = held.as_ref()
        && c.until > Instant::now()
    {
        return Ok(c.value.clone());
    }
    let fresh = fetch(client, sa, timeout).await?;
    *held = Some(fresh.clone());
    Ok(fresh.value)
}

/// The signed assertion for `sa` (RS256; `iss`, `scope`, `aud`, `iat`, `exp`).
pub fn assertion(sa: &ServiceAccount, now: u64) -> Result<String, UpstreamError> {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = sa.private_key_id.clone();
    let claims = serde_json::json!({
        "iss": sa.client_email,
        "scope": SCOPE,
        "aud": sa.token_uri,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME,
    });
    jsonwebtoken::encode(&header, &claims, &sa.key)
        .map_err(|e| UpstreamError::Credentials(format!("signing the assertion: {e}")))
}

async fn fetch(
    client: &Http,
    sa: &ServiceAccount,
    timeout: Duration,
) -> Result<Cached, UpstreamError> {
    use futures::StreamExt;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let jwt = assertion(sa, now)?;
    let form = format!(
        "grant_type={}&assertion={}",
        percent_encoding::utf8_percent_encode(
            "urn:ietf:params:oauth:grant-type:jwt-bearer",
            percent_encoding::NON_ALPHANUMERIC
        ),
        jwt
    );
    let uri: http::Uri = sa
        .token_uri
        .parse()
        .map_err(|e| UpstreamError::Credentials(format!("token_uri: {e}")))?;
    let mut req = http::Request::new(http_body_util::Full::new(Bytes::from(form)));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = uri;
    req.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    let started = Instant::now();
    let response = match tokio::time::timeout(
        timeout,
        client.0.request(req.map(http_body_util::Either::Left)),
    )
    .await
    {
        Err(_) => {
            return Err(UpstreamError::Credentials(format!(
                "the token endpoint did not answer within {timeout:?}"
            )));
        }
        Ok(Err(e)) => {
            return Err(UpstreamError::Credentials(format!(
                "the token endpoint: {}",
                super::error_chain(&e)
            )));
        }
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    let mut body: super::BodyStream = http_body_util::BodyDataStream::new(response.into_body())
        .map(|r| r.map_err(|e| UpstreamError::Body(super::error_chain(&e))))
        .boxed();
    let text = super::read_error_body(&mut body, timeout)
        .await
        .map_err(|e| UpstreamError::Credentials(format!("the token endpoint's answer: {e}")))?;
    let v: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
    if !status.is_success() {
        let why = v["error_description"]
            .as_str()
            .or(v["error"].as_str())
            .map_or_else(
                || String::from_utf8_lossy(&text).trim().to_string(),
                str::to_string,
            );
        return Err(UpstreamError::Credentials(format!(
            "the token endpoint answered {status}: {why}"
        )));
    }
    let Some(token) = v["access_token"].as_str().filter(|t| !t.is_empty()) else {
        return Err(UpstreamError::Credentials(
            "the token endpoint's answer has no access_token".into(),
        ));
    };
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| UpstreamError::Credentials("the access token is not a header value".into()))?;
    value.set_sensitive(true);
    let lifetime = Duration::from_secs(v["expires_in"].as_u64().unwrap_or(3600));
    Ok(Cached {
        value,
        until: started + lifetime.saturating_sub(REFRESH_BEFORE),
    })
}
