//! URLs: a backend's endpoint URLs (OpenAI, Anthropic and Azure layouts),
//! and the secret a URL's userinfo may carry, masked for display.

use std::sync::Arc;

use super::{ApiType, Backend};

impl Backend {
    /// Parses the endpoint URLs once (`urls`).
    pub fn parse_urls(&mut self) {
        let urls: Option<Vec<Target>> = crate::endpoint::Endpoint::ALL
            .iter()
            .map(|e| Target::parse(&self.endpoint_url(*e)))
            .collect();
        self.urls = urls.map(Arc::from);
    }

    /// The URL of an endpoint on this backend: `api_base` + the path for
    /// OpenAI-compatible backends; `api_base` (without a trailing `/v1`) +
    /// `/v1` + the path for Anthropic ones, as Anthropic's SDK takes it;
    /// `{api_base}/openai/deployments/{deployment}` + the path +
    /// `?api-version=` for Azure ones.
    pub fn endpoint_url(&self, endpoint: crate::endpoint::Endpoint) -> String {
        match (self.api_type, &self.azure) {
            (ApiType::Anthropic, _) => {
                let base = self.api_base.strip_suffix("/v1").unwrap_or(&self.api_base);
                format!("{base}/v1{}", endpoint.path())
            }
            (ApiType::Bedrock, _) => {
                self.bedrock_url(self.upstream_model.as_deref().unwrap_or("{model}"), false)
            }
            (ApiType::Gemini | ApiType::Vertex, _) => self.google_url(
                self.upstream_model.as_deref().unwrap_or("{model}"),
                endpoint,
            ),
            (ApiType::Azure, Some(az)) => format!(
                "{}/openai/deployments/{}{}?api-version={}",
                self.azure_base(),
                az.deployment,
                endpoint.path(),
                az.api_version
            ),
            _ => self.url(endpoint.path()),
        }
    }

    /// The URL of a `GET` on the backend's API (`/models` for health checks
    /// and model listings): `api_base` + the path, or for Azure
    /// `{api_base}/openai` + the path + `?api-version=`.
    pub fn api_url(&self, path: &str) -> String {
        match (self.api_type, &self.azure) {
            (ApiType::Azure, Some(az)) => format!(
                "{}/openai{path}?api-version={}",
                self.azure_base(),
                az.api_version
            ),
            _ => self.url(path),
        }
    }

    /// A Bedrock model's Converse URL (`/converse-stream` when `stream`):
    /// the model id (or ARN, with its `:` and `/`) percent-encoded as one
    /// path segment.
    pub fn bedrock_url(&self, model: &str, stream: bool) -> String {
        const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'_')
            .remove(b'.')
            .remove(b'~');
        format!(
            "{}/model/{}/{}",
            self.api_base,
            percent_encoding::utf8_percent_encode(model, SEGMENT),
            if stream {
                "converse-stream"
            } else {
                "converse"
            }
        )
    }

    /// A Google backend's URL for `model` (a `models/` prefix taken off):
    /// `{api_base}/v1beta/models/{model}:{method}` on AI Studio,
    /// `{api_base}/v1/projects/{p}/locations/{l}/publishers/google/models/
    /// {model}:{method}` on Vertex AI. The method is `generateContent`,
    /// `streamGenerateContent?alt=sse` for a stream, `batchEmbedContents`
    /// for embeddings (`embedContent` for one input).
    pub fn google_url(&self, model: &str, endpoint: crate::endpoint::Endpoint) -> String {
        self.google_method_url(model, google_method(endpoint, false, false))
    }

    /// As [`google_url`](Self::google_url) with the method given.
    pub fn google_method_url(&self, model: &str, method: &str) -> String {
        let model = model.strip_prefix("models/").unwrap_or(model);
        match (&self.vertex, self.api_type) {
            (Some(v), ApiType::Vertex) => format!(
                "{}/v1/projects/{}/locations/{}/publishers/google/models/{model}:{method}",
                self.api_base, v.project, v.location
            ),
            _ => {
                let base = self
                    .api_base
                    .strip_suffix("/v1beta")
                    .unwrap_or(&self.api_base);
                format!("{base}/v1beta/models/{model}:{method}")
            }
        }
    }

    /// `api_base` without an `/openai` the user may have written.
    fn azure_base(&self) -> &str {
        self.api_base
            .strip_suffix("/openai")
            .unwrap_or(&self.api_base)
    }

    /// The URL for an endpoint path such as `/chat/completions`.
    pub fn url(&self, endpoint: &str) -> String {
        let mut url = String::with_capacity(self.api_base.len() + endpoint.len());
        url.push_str(&self.api_base);
        url.push_str(endpoint);
        url
    }
}

/// The Gemini method for an endpoint: `streamGenerateContent?alt=sse`
/// when `stream`, `embedContent` for embeddings of one input (`single`).
pub fn google_method(
    endpoint: crate::endpoint::Endpoint,
    stream: bool,
    single: bool,
) -> &'static str {
    match (endpoint, stream, single) {
        (crate::endpoint::Endpoint::Embeddings, _, true) => "embedContent",
        (crate::endpoint::Endpoint::Embeddings, _, false) => "batchEmbedContents",
        (_, true, _) => "streamGenerateContent?alt=sse",
        _ => "generateContent",
    }
}

/// Where an upstream request goes: the URI without its userinfo, and that
/// userinfo as `Authorization: Basic`, as HTTP clients send a URL's
/// credentials.
#[derive(Debug, Clone)]
pub struct Target {
    pub uri: http::Uri,
    pub basic: Option<http::HeaderValue>,
}

impl Target {
    /// `None` when `url` is not an absolute http(s) URL.
    pub fn parse(url: &str) -> Option<Target> {
        use base64::Engine as _;
        let mut parsed = reqwest::Url::parse(url).ok()?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return None;
        }
        let basic = if parsed.username().is_empty() && parsed.password().is_none() {
            None
        } else {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            let user = decode(parsed.username());
            let password = parsed.password().map(decode).unwrap_or_default();
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            let mut value = http::HeaderValue::from_str(&format!("Basic {token}")).ok()?;
            value.set_sensitive(true);
            parsed.set_username("").ok()?;
            parsed.set_password(None).ok()?;
            Some(value)
        };
        let uri = http::Uri::try_from(parsed.as_str()).ok()?;
        Some(Target { uri, basic })
    }
}

/// The userinfo of a URL (`user:password@` after the scheme), if any.
fn userinfo(url: &str) -> Option<(usize, &str)> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let at = authority.rfind('@')?;
    Some((start, &authority[..at]))
}

/// `url` with the password of its userinfo (or a lone user name, often a
/// token) shown as `***`: what the admin API, the banner and the logs show
/// of an `api_base`.
pub fn mask_url_secret(url: &str) -> std::borrow::Cow<'_, str> {
    let Some((start, info)) = userinfo(url) else {
        return url.into();
    };
    let shown = match info.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_string(),
    };
    format!("{}{shown}{}", &url[..start], &url[start + info.len()..]).into()
}

/// The secret part of a URL's userinfo (the password, or a lone user
/// name), for the scrubbers' known secrets.
pub fn url_secret(url: &str) -> Option<&str> {
    let (_, info) = userinfo(url)?;
    let secret = info.split_once(':').map_or(info, |(_, pw)| pw);
    (!secret.is_empty()).then_some(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_through_endpoints_on_azure_and_openai() {
        use crate::endpoint::Endpoint;
        let c = crate::Config::from_yaml(
            "model_list:\n  - {model_name: a, model_params: {api_type: azure, api_base: 'https://r.example', api_key: k, api_version: 2024-10-21, deployment: whisper}}\n  - {model_name: o, model_params: {api_base: 'http://h/v1'}}\n",
            None,
            &crate::config::Env::isolated::<[(&str, &str); 0], _, _>([]),
        )
        .unwrap();
        let az = &c.models[0].backends[0];
        assert_eq!(
            az.endpoint_url(Endpoint::AudioTranscriptions),
            "https://r.example/openai/deployments/whisper/audio/transcriptions?api-version=2024-10-21"
        );
        assert_eq!(
            az.endpoint_url(Endpoint::ImagesEdits),
            "https://r.example/openai/deployments/whisper/images/edits?api-version=2024-10-21"
        );
        assert_eq!(
            az.api_url("/files/f-1/content"),
            "https://r.example/openai/files/f-1/content?api-version=2024-10-21"
        );
        let o = &c.models[1].backends[0];
        assert_eq!(o.endpoint_url(Endpoint::Rerank), "http://h/v1/rerank");
        assert_eq!(
            o.endpoint_url(Endpoint::AudioSpeech),
            "http://h/v1/audio/speech"
        );
        // Every endpoint has its parsed URL.
        assert_eq!(o.urls.as_ref().map(|u| u.len()), Some(Endpoint::ALL.len()));
    }

    #[test]
    fn masks_userinfo() {
        assert_eq!(
            mask_url_secret("https://u:p4ss@h.example:8443/v1?x=@y"),
            "https://u:***@h.example:8443/v1?x=@y"
        );
        assert_eq!(mask_url_secret("http://tok@h/v1"), "http://***@h/v1");
        assert_eq!(mask_url_secret("http://h/v1/a@b"), "http://h/v1/a@b");
        assert_eq!(url_secret("https://u:p4ss@h/v1"), Some("p4ss"));
        assert_eq!(url_secret("http://tok@h"), Some("tok"));
        assert_eq!(url_secret("http://h/x@y"), None);
    }
}
