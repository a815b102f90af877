//! What wildcard backends offer, for `GET /v1/models`: each one's own
//! `GET /models`, fetched in the background with a short timeout and kept
//! for a while. A listing never waits for a fetch: it shows what is known
//! (nothing, the first time) and starts the fetches that are due.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{ApiType, Backend};
use crate::wildcard;

/// How long a backend's list is kept before it is fetched again.
pub const TTL: Duration = Duration::from_secs(60);
/// How long one fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest model list read from a backend (a list of a few thousand
/// models is well under 1 MiB).
pub const MAX_LIST_BYTES: usize = 8 * 1024 * 1024;

#[derive(Default)]
struct Entry {
    /// The names clients can ask for (the pattern's prefix put back when
    /// the backend strips it).
    ids: Arc<[String]>,
    /// When the last fetch ended (`None`: never).
    fetched: Option<Instant>,
    /// A fetch is running.
    fetching: bool,
}

/// The cache, one entry per wildcard backend (by name and `api_base`).
#[derive(Default)]
pub struct Catalog {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Catalog {
    /// The names the backends of the wildcard `pattern` are known to serve;
    /// starts the fetches that are due. Never waits.
    pub fn offered(
        self: &Arc<Self>,
        backends: &[Arc<Backend>],
        client: &reqwest::Client,
    ) -> Vec<String> {
        let mut out = Vec::new();
        let now = Instant::now();
        let Ok(mut entries) = self.entries.lock() else {
            return out;
        };
        for b in backends.iter().filter(|b| listable(b)) {
            let key = format!("{}|{}", b.name, b.api_base);
            let entry = entries.entry(key.clone()).or_default();
            out.extend(entry.ids.iter().cloned());
            let due = entry.fetched.is_none_or(|t| now.duration_since(t) >= TTL);
            if due && !entry.fetching {
                entry.fetching = true;
                let catalog = self.clone();
                let client = client.clone();
                let backend = b.clone();
                tokio::spawn(async move {
                    let ids = fetch(&client, &backend).await;
                    catalog.store(&key, ids);
                });
            }
        }
        out
    }

    fn store(&self, key: &str, ids: Result<Vec<String>, String>) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let entry = entries.entry(key.to_string()).or_default();
        entry.fetching = false;
        entry.fetched = Some(Instant::now());
        match ids {
            Ok(ids) => entry.ids = ids.into(),
            // Keep what was known; try again after the TTL.
            Err(why) => tracing::debug!(backend = key, %why, "model list not fetched"),
        }
    }
}

/// Backends with a `/models` to ask: OpenAI-compatible and Azure ones.
fn listable(b: &Backend) -> bool {
    matches!(b.api_type, ApiType::Openai | ApiType::Azure)
}

/// One backend's models, as names clients can ask for under its pattern.
async fn fetch(client: &reqwest::Client, b: &Backend) -> Result<Vec<String>, String> {
    let mut req = client.get(b.api_url("/models")).timeout(FETCH_TIMEOUT);
    if let Some((name, value)) = crate::upstream::key_header(b) {
        req = req.header(name, value);
    }
    let response = req
        .send()
        .await
        .map_err(|e| crate::upstream::error_chain(&e.without_url()))?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    let declared = crate::upstream::content_length(response.headers());
    let mut body: crate::upstream::BodyStream =
        Box::pin(futures::StreamExt::map(response.bytes_stream(), |r| {
            r.map_err(|e| {
                crate::upstream::UpstreamError::Body(crate::upstream::error_chain(&e.without_url()))
            })
        }));
    let bytes = crate::upstream::read_body(&mut body, FETCH_TIMEOUT, MAX_LIST_BYTES, declared)
        .await
        .map_err(|e| e.to_string())?;
    let body: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("not a model list: {e}"))?;
    Ok(names(b, &body))
}

/// The `data[].id`s of a model list, mapped to the names clients use:
/// with `strip_prefix` the pattern's prefix goes back in front; names the
/// pattern does not cover are left out.
fn names(b: &Backend, body: &serde_json::Value) -> Vec<String> {
    let prefix = wildcard::literal_prefix(&b.model_name);
    body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str())
        .map(|id| {
            if b.strip_prefix {
                format!("{prefix}{id}")
            } else {
                id.to_string()
            }
        })
        .filter(|name| wildcard::matches(&b.model_name, name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn backend(model_name: &str, strip: bool) -> Backend {
        let yaml = format!(
            "model_list:\n  - {{model_name: '{model_name}', model_params: {{api_base: 'http://b/v1', strip_prefix: {strip}}}}}\n"
        );
        let c = crate::Config::from_yaml(
            &yaml,
            None,
            &crate::config::Env::isolated::<[(&str, &str); 0], _, _>([]),
        )
        .unwrap();
        (*c.models[0].backends[0]).clone()
    }

    #[test]
    fn ids_become_names_the_pattern_serves() {
        let body = json!({"data": [{"id": "gpt-4o"}, {"id": "local-x"}, {"nope": 1}]});
        assert_eq!(
            names(&backend("openai/*", true), &body),
            ["openai/gpt-4o", "openai/local-x"]
        );
        assert_eq!(names(&backend("local-*", false), &body), ["local-x"]);
        assert_eq!(names(&backend("*", false), &body), ["gpt-4o", "local-x"]);
        assert!(names(&backend("*", false), &json!({"error": {}})).is_empty());
    }
}
