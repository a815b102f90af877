//! The admin API: models at runtime (register, replace, copy, delete),
//! config reload, and the effective config. Every change builds a complete
//! new config (file + runtime overlay), validates it, persists the overlay,
//! then swaps the live snapshot; writes are serialized, reads never wait.
//! Secrets never leave: keys show as `***`.

mod reload;
pub mod sync;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Shared;
use super::auth::has_admin_password;
use super::error::json_error;
use crate::config::overlay::Overlay;
use crate::config::{Config, ConfigError, ModelConfig};
use crate::live::Live;
use crate::live::revise::rebuild;
pub use reload::{effective_config, reload, reload_config};

/// A model as the admin API takes it: the fields users know.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminModel {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_base: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supports_reasoning: Option<bool>,
    /// `model_params.reasoning`: `{style, effort, budget_tokens}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supports_responses: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub responses_websocket: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_type: Option<String>,
    /// Azure OpenAI: the `api-version` query.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Azure OpenAI: the deployment name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// Bedrock: the region and the AWS profile (keys come from `api_key`,
    /// the `AWS_*` variables or the profile; never through this API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_region_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_profile_name: Option<String>,
    /// Vertex AI: the project and location (credentials: `api_key` as a
    /// token, or the server's `GOOGLE_APPLICATION_CREDENTIALS`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vertex_project: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vertex_location: Option<String>,
    /// Wildcard models: send the requested name without the pattern's prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strip_prefix: Option<bool>,
    /// `model_params.interleaved_thinking`, as in the config file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interleaved_thinking: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallbacks: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protected: Option<bool>,
    /// The model's own response parsers (`parsers:` of a `model_list` entry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parsers: Option<Value>,
}

impl AdminModel {
    /// Refuses control characters (CR, LF, NUL, tab, ...) in the fields
    /// that become URLs, headers or names: 400 naming the field.
    fn check_text(&self) -> Result<(), AdminError> {
        let fields = [
            ("model_name", &self.model_name),
            ("api_base", &self.api_base),
            ("api_key", &self.api_key),
            ("model", &self.model),
            ("target_model", &self.target_model),
            ("api_type", &self.api_type),
            ("api_version", &self.api_version),
            ("deployment", &self.deployment),
            ("aws_region_name", &self.aws_region_name),
            ("aws_profile_name", &self.aws_profile_name),
            ("vertex_project", &self.vertex_project),
            ("vertex_location", &self.vertex_location),
            ("extends", &self.extends),
        ];
        for (field, v) in fields {
            if let Some(v) = v {
                no_control(field, v)?;
            }
        }
        // Every string is literal through the API (`$` is escaped); an
        // `os.environ/NAME` reference has no escape, so it is refused: it
        // would read the proxy's environment into a key sent upstream.
        no_env_refs(&serde_json::to_value(self).unwrap_or_default())?;
        if let Some(Value::Array(list)) = &self.fallbacks {
            for (i, f) in list.iter().enumerate() {
                if let Some(name) = f.as_str() {
                    no_control(&format!("fallbacks[{i}]"), name)?;
                }
            }
        }
        Ok(())
    }

    /// The `model_list` entry it stands for. Its strings are literal: a `$`
    /// is escaped so the loader's variable substitution leaves it alone.
    fn entry(&self, name: &str) -> serde_yaml::Value {
        let lit = |s: &String| Value::from(s.replace('$', "$$"));
        let mut params = serde_json::Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                params.insert(k.into(), v);
            }
        };
        put("api_base", self.api_base.as_ref().map(lit));
        put("api_key", self.api_key.as_ref().map(lit));
        put("model", self.model.as_ref().map(lit));
        put("target_model", self.target_model.as_ref().map(lit));
        put("request_timeout", self.request_timeout.map(Value::from));
        put(
            "supports_reasoning",
            self.supports_reasoning.map(Value::from),
        );
        put("reasoning", self.reasoning.clone());
        put(
            "supports_responses",
            self.supports_responses.map(Value::from),
        );
        put(
            "responses_websocket",
            self.responses_websocket.map(Value::from),
        );
        put("api_type", self.api_type.as_ref().map(lit));
        put("api_version", self.api_version.as_ref().map(lit));
        put("deployment", self.deployment.as_ref().map(lit));
        put("aws_region_name", self.aws_region_name.as_ref().map(lit));
        put("aws_profile_name", self.aws_profile_name.as_ref().map(lit));
        put("vertex_project", self.vertex_project.as_ref().map(lit));
        put("vertex_location", self.vertex_location.as_ref().map(lit));
        put("strip_prefix", self.strip_prefix.map(Value::from));
        put("interleaved_thinking", self.interleaved_thinking.clone());
        let mut entry = serde_json::Map::new();
        entry.insert("model_name".into(), name.into());
        if !params.is_empty() {
            entry.insert("model_params".into(), Value::Object(params));
        }
        for (k, v) in [
            ("extends", self.extends.as_ref().map(lit)),
            ("parameters", self.parameters.clone()),
            ("fallbacks", self.fallbacks.clone()),
            ("protected", self.protected.map(Value::from)),
            ("parsers", self.parsers.clone()),
        ] {
            if let Some(v) = v {
                entry.insert(k.into(), v);
            }
        }
        serde_yaml::to_value(Value::Object(entry)).unwrap_or(serde_yaml::Value::Null)
    }
}

/// 400 when `v` holds a control character.
/// Refuses a string anywhere in `v` that the loader would read as an
/// `os.environ/NAME` reference.
pub(crate) fn no_env_refs(v: &Value) -> Result<(), AdminError> {
    match v {
        Value::String(s) if s.trim_start().starts_with("os.environ/") => {
            Err(AdminError::BadRequest(format!(
                "`{}…`: environment references (os.environ/NAME) are not taken through the API; \
                 give the value itself, or write the reference in the config file",
                s.chars().take(16).collect::<String>()
            )))
        }
        Value::Array(a) => a.iter().try_for_each(no_env_refs),
        Value::Object(o) => o.values().try_for_each(no_env_refs),
        _ => Ok(()),
    }
}

fn no_control(field: &str, v: &str) -> Result<(), AdminError> {
    if v.chars().any(char::is_control) {
        return Err(AdminError::BadRequest(format!(
            "{field}: must not contain control characters (CR, LF, tab, NUL, ...)"
        )));
    }
    Ok(())
}

/// What can go wrong with an admin request.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    BadRequest(String),
    #[error("the change would make the config invalid: {}", .0.errors.join("; "))]
    Invalid(ConfigError),
    #[error("the config was not reloaded: {}", .0.errors.join("; "))]
    Reload(ConfigError),
    #[error("no model `{0}`")]
    NotFound(String),
    #[error("model `{0}` already exists")]
    Exists(String),
    #[error(
        "model `{0}` is protected: changing it needs the admin password (Authorization: Bearer <YALLMP_ADMIN_PASSWORD>)"
    )]
    Protected(String),
    #[error("cannot save runtime models: {0}")]
    Store(crate::model_store::StoreError),
    #[error("cannot save runtime models to {path}: {source}")]
    Persist {
        path: String,
        source: std::io::Error,
    },
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            AdminError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            AdminError::Invalid(_) | AdminError::Reload(_) => {
                (StatusCode::BAD_REQUEST, "invalid_config")
            }
            AdminError::NotFound(_) => (StatusCode::NOT_FOUND, "model_not_found"),
            AdminError::Exists(_) => (StatusCode::CONFLICT, "model_exists"),
            AdminError::Protected(_) => (StatusCode::FORBIDDEN, "model_protected"),
            AdminError::Persist { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "overlay_write_failed")
            }
            AdminError::Store(crate::model_store::StoreError::NoSecretKey(_)) => {
                (StatusCode::BAD_REQUEST, "secret_key_required")
            }
            AdminError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "model_store_failed"),
        };
        let mut error =
            json!({"message": self.to_string(), "type": "invalid_request_error", "code": code});
        if let AdminError::Invalid(e) | AdminError::Reload(e) = &self {
            error["errors"] = json!(e.errors);
        }
        json_error(status, &json!({ "error": error }))
    }
}

/// A model as the API shows it, keys masked.
pub fn model_json(m: &ModelConfig) -> Value {
    let backends: Vec<Value> = m
        .backends
        .iter()
        .map(|b| {
            let params: serde_json::Map<String, Value> = b
                .parameters
                .iter()
                .map(|p| {
                    (
                        p.name.clone(),
                        json!({"default": p.default, "allow_override": p.allow_override}),
                    )
                })
                .collect();
            json!({
                "name": b.name,
                "api_type": b.api_type,
                "api_base": crate::config::mask_url_secret(&b.api_base),
                "api_key": b.api_key.as_ref().map(|_| "***"),
                "target_model": b.upstream_model,
                "request_timeout": b.request_timeout.as_secs_f64(),
                "supports_reasoning": b.supports_reasoning,
                "reasoning": b.reasoning,
                "interleaved_thinking": b.thinking.as_deref(),
                "supports_responses": b.supports_responses,
                "responses_websocket": b.responses_websocket,
                "parameters": params,
                "deployment": b.azure.as_ref().map(|a| a.deployment.as_str()),
                "api_version": b.azure.as_ref().map(|a| a.api_version.as_str()),
                // Where the credentials came from, never what they are.
                "aws_region": b.bedrock.as_ref().map(|a| a.region.as_str()),
                "aws_credentials": b.bedrock.as_ref().map(|a| a.source.as_str()),
                "vertex_project": b.vertex.as_ref().map(|v| v.project.as_str()),
                "vertex_location": b.vertex.as_ref().map(|v| v.location.as_str()),
                "strip_prefix": b.strip_prefix,
            })
        })
        .collect();
    json!({
        "model_name": m.name,
        "source": m.source,
        "protected": m.protected,
        "fallbacks": m.fallbacks,
        "parsers": m.parsers,
        "backends": backends,
    })
}

/// Persists the overlay (in PostgreSQL when runtime models are shared
/// there, else beside the config file) and swaps the new snapshot in.
pub(super) async fn commit(state: &Shared, config: Config) -> Result<(), AdminError> {
    if let Some(store) = &state.model_store {
        for entry in &config.origin.overlay.models {
            store.check_storable(entry).map_err(AdminError::Store)?;
        }
        let version = store
            .save(&config.origin.overlay)
            .await
            .map_err(AdminError::Store)?;
        state
            .model_version
            .store(version, std::sync::atomic::Ordering::SeqCst);
    } else if let Some(path) = &config.path {
        // Off the serving thread: a slow disk stalls no request.
        let file = Overlay::path_for(path);
        let overlay = config.origin.overlay.clone();
        let target = file.clone();
        tokio::task::spawn_blocking(move || overlay.write(&target))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .map_err(|source| AdminError::Persist {
                path: file.display().to_string(),
                source,
            })?;
    }
    state.log.update_secrets(&config);
    let thinking_dropped = state.thinking.retain_configured(&config);
    let (declared_keys, declared_teams) = crate::keys::service::declared(&config.auth);
    state.live.store(Arc::new(Live::new(config)));
    state.keys.set_declared(declared_keys, declared_teams).await;
    if thinking_dropped > 0 {
        tracing::info!(
            stores = thinking_dropped,
            "interleaved thinking: memory stores of models no longer configured dropped"
        );
    }
    Ok(())
}

/// Whether changing `name` is allowed for this request.
pub(super) fn may_change(
    state: &Shared,
    headers: &HeaderMap,
    name: &str,
) -> Result<(), AdminError> {
    let live = state.live.load();
    let protected = live.config.model(name).is_some_and(|m| m.protected);
    if !protected || has_admin_password(state, headers) {
        Ok(())
    } else {
        Err(AdminError::Protected(name.to_string()))
    }
}

pub async fn list_models(State(state): State<Shared>) -> Json<Value> {
    let live = state.live.load();
    let data: Vec<Value> = live.config.models.iter().map(model_json).collect();
    Json(json!({"object": "list", "data": data}))
}

pub async fn get_model(
    State(state): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let live = state.live.load();
    live.config
        .model(&name)
        .map(|m| Json(model_json(m)))
        .ok_or(AdminError::NotFound(name))
}

/// Parses a JSON body into `T`, naming the field on error.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AdminError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." || path == "?" {
            String::new()
        } else {
            format!("{path}: ")
        };
        AdminError::BadRequest(format!("{at}{}", e.inner()))
    })
}

pub async fn register(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, AdminError> {
    let model: AdminModel = parse(&body)?;
    model.check_text()?;
    let name = model
        .model_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .ok_or_else(|| AdminError::BadRequest("model_name: required".into()))?;
    let _guard = state.admin_lock.lock().await;
    may_change(&state, &headers, &name)?;
    let current = state.live.load_full();
    let existed = current.config.model(&name).is_some();
    let mut overlay = current.config.origin.overlay.clone();
    overlay.upsert(&name, vec![model.entry(&name)]);
    let config = rebuild(&current.config, &overlay).map_err(AdminError::Invalid)?;
    let shown = config.model(&name).map(model_json);
    commit(&state, config).await?;
    tracing::info!(model = %name, replaced = existed, "model registered through the admin API");
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(json!({"model": shown, "replaced": existed}))).into_response())
}

/// The file's own `model_list` entries for a model, unsubstituted.
pub(super) fn file_entries(config: &Config, name: &str) -> Vec<serde_yaml::Value> {
    let tree: serde_yaml::Value = serde_yaml::from_str(&config.origin.text).unwrap_or_default();
    tree.get("model_list")
        .and_then(|l| l.as_sequence())
        .map(|l| {
            l.iter()
                .filter(|e| e.get("model_name").and_then(|n| n.as_str()) == Some(name))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

pub async fn delete(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let _guard = state.admin_lock.lock().await;
    let current = state.live.load_full();
    if current.config.model(&name).is_none() {
        return Err(AdminError::NotFound(name));
    }
    may_change(&state, &headers, &name)?;
    let mut overlay = current.config.origin.overlay.clone();
    let in_file = !file_entries(&current.config, &name).is_empty();
    overlay.delete(&name, in_file);
    let config = rebuild(&current.config, &overlay).map_err(AdminError::Invalid)?;
    commit(&state, config).await?;
    tracing::info!(model = %name, "model deleted through the admin API");
    Ok(Json(json!({"deleted": name})))
}

/// `new_name` plus any [`AdminModel`] field to override (checked by
/// parsing the rest as one).
#[derive(Debug, Deserialize)]
pub struct CopyRequest {
    pub new_name: String,
    #[serde(flatten)]
    pub overrides: BTreeMap<String, Value>,
}

pub async fn copy(
    State(state): State<Shared>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, AdminError> {
    let req: CopyRequest = parse(&body)?;
    let rest = serde_json::to_vec(&req.overrides).unwrap_or_default();
    let overrides: AdminModel = parse(&rest)?;
    overrides.check_text()?;
    no_control("new_name", &req.new_name)?;
    let new_name = req.new_name.trim().to_string();
    if new_name.is_empty() {
        return Err(AdminError::BadRequest("new_name: required".into()));
    }
    let _guard = state.admin_lock.lock().await;
    let current = state.live.load_full();
    if current.config.model(&new_name).is_some() {
        return Err(AdminError::Exists(new_name));
    }
    let mut overlay = current.config.origin.overlay.clone();
    let mut entries = overlay.entries(&name);
    if entries.is_empty() {
        entries = file_entries(&current.config, &name);
    }
    if entries.is_empty() {
        return Err(AdminError::NotFound(name));
    }
    // A model derived by its name (`Base:Variant`) keeps its base by name.
    let implicit_base = current
        .config
        .model(&name)
        .filter(|m| m.source == crate::config::ModelSource::Derived)
        .and_then(|_| name.rsplit_once(':'))
        .map(|(base, _)| base.to_string());
    // The copy is a new model: it starts unprotected unless told otherwise.
    let over = overrides.entry(&new_name);
    for e in &mut entries {
        if let serde_yaml::Value::Mapping(m) = e {
            m.remove("protected");
            if let Some(base) = &implicit_base
                && !m.contains_key("extends")
            {
                m.insert("extends".into(), base.as_str().into());
            }
        }
        crate::config::overlay::deep_merge(e, over.clone());
    }
    overlay.upsert(&new_name, entries);
    let config = rebuild(&current.config, &overlay).map_err(AdminError::Invalid)?;
    let shown = config.model(&new_name).map(model_json);
    commit(&state, config).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"model": shown, "copied_from": name})),
    )
        .into_response())
}
