//! Google backends' settings: `api_type: vertex`'s project, location and
//! credentials (a service-account key read and checked at load time), and
//! the default hosts of both Google APIs.

use std::sync::Arc;

use super::errors::{Errors, KeyPath};

/// Google AI Studio's host (`api_type: gemini`).
pub const GEMINI_API_BASE: &str = "https://generativelanguage.googleapis.com";
/// Vertex AI's default location.
pub const DEFAULT_VERTEX_LOCATION: &str = "us-central1";
/// Google's OAuth token endpoint (a key file without `token_uri`).
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// Where a Vertex AI backend's models are, and how it signs in.
#[derive(Debug, Clone)]
pub struct VertexTarget {
    pub project: String,
    pub location: String,
    /// A service account; `None` when the backend's `api_key` is a bearer
    /// token used as is.
    pub credentials: Option<Arc<ServiceAccount>>,
}

/// A service-account key: who it is, where tokens come from, the key.
#[derive(Clone)]
pub struct ServiceAccount {
    pub client_email: String,
    pub token_uri: String,
    pub private_key_id: Option<String>,
    /// The RSA key, parsed (RS256).
    pub key: jsonwebtoken::EncodingKey,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

/// The default `api_base` of a Vertex location: `{location}-aiplatform…`,
/// `aiplatform.googleapis.com` for `global`.
pub fn vertex_base(location: &str) -> String {
    if location == "global" {
        "https://aiplatform.googleapis.com".to_string()
    } else {
        format!("https://{location}-aiplatform.googleapis.com")
    }
}

/// A path segment that needs no escaping (project, location, model).
pub fn url_safe(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
}

/// `vertex_project`, `vertex_location` and the credentials (the
/// `vertex_credentials` key, else `GOOGLE_APPLICATION_CREDENTIALS`; neither
/// is needed with an `api_key`, which is then sent as a bearer token).
pub(super) fn vertex(
    project: Option<&str>,
    location: Option<&str>,
    credentials: Option<&str>,
    has_key: bool,
    at: &KeyPath,
    errors: &mut Errors,
) -> Option<VertexTarget> {
    let project = project.map(str::trim).filter(|p| !p.is_empty());
    let location = location
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .unwrap_or(DEFAULT_VERTEX_LOCATION);
    let mut ok = true;
    let project = match project {
        Some(p) if url_safe(p) => p.to_string(),
        Some(p) => {
            errors.at(
                at.key("vertex_project"),
                format!("`{p}` is not a Google Cloud project id"),
            );
            return None;
        }
        None => {
            errors.at(at.key("vertex_project"), "required for api_type vertex");
            ok = false;
            String::new()
        }
    };
    if !url_safe(location) {
        errors.at(
            at.key("vertex_location"),
            format!("`{location}` is not a location such as us-central1 or global"),
        );
        ok = false;
    }
    let credentials = match credentials.map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) => match service_account(c) {
            Ok(sa) => Some(Arc::new(sa)),
            Err(e) => {
                errors.at(at.key("vertex_credentials"), e);
                return None;
            }
        },
        None if has_key => None,
        None => {
            errors.at(
                at.key("vertex_credentials"),
                "api_type vertex needs a service-account key (vertex_credentials or \
                 GOOGLE_APPLICATION_CREDENTIALS) or an access token as api_key",
            );
            return None;
        }
    };
    ok.then(|| VertexTarget {
        project,
        location: location.to_string(),
        credentials,
    })
}

/// A service-account key from a file path, or the key's JSON text itself.
pub fn service_account(source: &str) -> Result<ServiceAccount, String> {
    let text = if source.starts_with('{') {
        source.to_string()
    } else {
        std::fs::read_to_string(source)
            .map_err(|e| format!("cannot read the credentials file `{source}`: {e}"))?
    };
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("the credentials are not JSON: {e}"))?;
    let field = |k: &str| v.get(k).and_then(serde_json::Value::as_str);
    if let Some(t) = field("type")
        && t != "service_account"
    {
        return Err(format!(
            "the credentials are of type `{t}`; only a service-account key (type \
             service_account) is supported, or give an access token as api_key"
        ));
    }
    let client_email = field("client_email")
        .filter(|s| !s.is_empty())
        .ok_or("the credentials have no `client_email`")?;
    let pem = field("private_key")
        .filter(|s| !s.is_empty())
        .ok_or("the credentials have no `private_key`")?;
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes())
        .map_err(|e| format!("the credentials' private_key is not an RSA key in PEM: {e}"))?;
    let token_uri = field("token_uri").unwrap_or(GOOGLE_TOKEN_URI);
    if !(token_uri.starts_with("https://") || token_uri.starts_with("http://")) {
        return Err(format!(
            "the credentials' token_uri `{token_uri}` is not a URL"
        ));
    }
    Ok(ServiceAccount {
        client_email: client_email.to_string(),
        token_uri: token_uri.to_string(),
        private_key_id: field("private_key_id").map(str::to_string),
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_and_bad_credentials() {
        assert_eq!(vertex_base("global"), "https://aiplatform.googleapis.com");
        assert_eq!(
            vertex_base("europe-west4"),
            "https://europe-west4-aiplatform.googleapis.com"
        );
        let e = service_account("/nonexistent/key.json").unwrap_err();
        assert!(e.contains("cannot read the credentials file"), "{e}");
        let e = service_account(r#"{"type":"authorized_user"}"#).unwrap_err();
        assert!(e.contains("authorized_user"), "{e}");
        let e =
            service_account(r#"{"type":"service_account","client_email":"a@b","private_key":"x"}"#)
                .unwrap_err();
        assert!(e.contains("not an RSA key"), "{e}");
    }
}
