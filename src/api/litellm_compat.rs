//! LiteLLM's proxy management API, answered over yallmp's own virtual
//! keys, teams, request log and runtime models (docs/migrating-from-litellm.md):
//! `/key/generate`, `/key/info`, `/key/update`, `/key/delete`, `/key/list`,
//! `/team/new`, `/team/info`, `/spend/logs`, `/model/new`, `/model/info`.
//! Scripts written for LiteLLM get LiteLLM's field names and shapes; the
//! work is `keys::service`'s and the admin API's (one key system, one
//! model path).
//!
//! Who may call: the admin password (or a UI session), or
//! `general_settings.master_key` as `Authorization: Bearer`, never a client
//! key or a virtual key; the admin edge rules apply ([`super::guard`]).
//! Errors are LiteLLM's: `{"error": {"message", "type", "param", "code"}}`,
//! `code` the status as a string.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use http::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::Shared;
use super::admin::AdminError;
use super::auth::{client_ip, matches};
use super::error::json_error;
use super::keys::resets_at;
use crate::config::Secret;
use crate::identity::presented;
use crate::keys::model::{Source, Team, VirtualKey};
use crate::keys::secret;
use crate::keys::service::{Changes, KeyError};
use crate::keys::spend::Counter;
use crate::keys::store::{self, Owner};

/// The paths this module serves: the admin edge rules cover them.
pub const PATHS: [&str; 10] = [
    "/key/generate",
    "/key/info",
    "/key/update",
    "/key/delete",
    "/key/list",
    "/team/new",
    "/team/info",
    "/spend/logs",
    "/model/new",
    "/model/info",
];

/// Whether `path` is one of [`PATHS`].
pub fn is_management(path: &str) -> bool {
    PATHS.contains(&path)
}

/// An error in LiteLLM's shape.
#[derive(Debug)]
pub struct LlmError {
    status: StatusCode,
    kind: &'static str,
    param: Option<String>,
    message: String,
}

impl LlmError {
    fn new(status: StatusCode, message: impl Into<String>) -> LlmError {
        let kind = match status.as_u16() {
            401 | 403 => "auth_error",
            404 => "not_found_error",
            400 | 409 | 415 | 422 => "bad_request_error",
            429 => "rate_limit_error",
            _ => "internal_server_error",
        };
        LlmError {
            status,
            kind,
            param: None,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> LlmError {
        LlmError::new(StatusCode::BAD_REQUEST, message)
    }

    fn param(mut self, p: &str) -> LlmError {
        self.param = Some(p.to_string());
        self
    }
}

impl IntoResponse for LlmError {
    fn into_response(self) -> Response {
        json_error(
            self.status,
            &json!({"error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.status.as_u16().to_string(),
            }}),
        )
    }
}

impl From<KeyError> for LlmError {
    fn from(e: KeyError) -> LlmError {
        let status = match &e {
            KeyError::NotFound(..) => StatusCode::NOT_FOUND,
            KeyError::ReadOnly(_) | KeyError::Conflict(_) => StatusCode::CONFLICT,
            KeyError::Invalid(_) => StatusCode::BAD_REQUEST,
            KeyError::NoDatabase | KeyError::Db(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        if let KeyError::Db(err) = &e {
            tracing::warn!(error = %err, "keys: database error");
            return LlmError::new(status, "database error (see the proxy's log)");
        }
        LlmError::new(status, e.to_string())
    }
}

impl From<AdminError> for LlmError {
    fn from(e: AdminError) -> LlmError {
        let status = match &e {
            AdminError::BadRequest(_) | AdminError::Invalid(_) | AdminError::Reload(_) => {
                StatusCode::BAD_REQUEST
            }
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Exists(_) => StatusCode::CONFLICT,
            AdminError::Protected(_) => StatusCode::FORBIDDEN,
            AdminError::Store(crate::model_store::StoreError::NoSecretKey(_)) => {
                StatusCode::BAD_REQUEST
            }
            AdminError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Persist { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        LlmError::new(status, e.to_string())
    }
}

/// Layer on these routes: the master key, the admin password or a UI
/// session; without either set, loopback clients only (as `/admin`).
/// Wrong keys are throttled per address like wrong admin passwords.
pub async fn auth(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let live = state.live.load();
    let accepted: Vec<Secret> = [
        live.config.auth.admin_password.clone(),
        live.config.auth.master_key.clone(),
    ]
    .into_iter()
    .flatten()
    .collect();
    drop(live);
    if accepted.is_empty() {
        if client_ip(&req).is_some_and(|ip| ip.is_loopback()) {
            return next.run(req).await;
        }
        return LlmError::new(
            StatusCode::FORBIDDEN,
            "No master key or admin password is set, so the management endpoints answer loopback clients only.",
        )
        .into_response();
    }
    if super::auth::ui_session(&state, &req) {
        return next.run(req).await;
    }
    let Some(given) = presented(req.headers()) else {
        return LlmError::new(
            StatusCode::UNAUTHORIZED,
            "Authentication Error, No api key passed in: send `Authorization: Bearer <master_key>`.",
        )
        .into_response();
    };
    match state
        .auth_throttle
        .check(client_ip(&req), || matches(given, &accepted))
    {
        Ok(true) => next.run(req).await,
        Ok(false) => LlmError::new(
            StatusCode::UNAUTHORIZED,
            "Authentication Error: the management endpoints need the master key or the admin password.",
        )
        .into_response(),
        Err(wait) => super::throttle::throttled(wait),
    }
}

/// Parses a JSON body, naming the field on error (`param`).
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, LlmError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let err = LlmError::bad(format!("invalid body: {}", e.inner()));
        if path == "." || path == "?" {
            err
        } else {
            err.param(&path)
        }
    })
}

/// A query string's pairs.
fn query(raw: Option<&str>) -> BTreeMap<String, String> {
    super::logs::pairs(raw).into_iter().collect()
}

/// LiteLLM's durations: `30s`, `30m`, `30h`, `30d`, `2w`, `1mo`, `1y`.
pub fn parse_duration(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    let bad = || format!("`{s}` is not a duration: use e.g. `30s`, `30m`, `30h`, `30d`, `1mo`");
    let i = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (digits, unit) = s.split_at(i);
    let n: u32 = digits.parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(bad());
    }
    let n64 = i64::from(n);
    let at = match unit {
        "s" => now.checked_add_signed(Duration::seconds(n64)),
        "m" => now.checked_add_signed(Duration::minutes(n64)),
        "h" => now.checked_add_signed(Duration::hours(n64)),
        "d" => now.checked_add_signed(Duration::days(n64)),
        "w" => now.checked_add_signed(Duration::weeks(n64)),
        "mo" => now.checked_add_months(chrono::Months::new(n)),
        "y" => n
            .checked_mul(12)
            .and_then(|m| now.checked_add_months(chrono::Months::new(m))),
        _ => return Err(bad()),
    };
    at.ok_or_else(bad)
}

/// LiteLLM's key fields (`/key/generate`, `/key/update`). `null` means
/// "not given", as in LiteLLM. Fields yallmp has no use for are accepted
/// and listed in the answer's `yallmp_ignored`.
#[derive(Debug, Default, Deserialize)]
struct KeyRequest {
    key: Option<String>,
    key_alias: Option<String>,
    duration: Option<String>,
    models: Option<Vec<String>>,
    max_budget: Option<f64>,
    budget_duration: Option<String>,
    rpm_limit: Option<u64>,
    tpm_limit: Option<u64>,
    team_id: Option<String>,
    metadata: Option<Value>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

impl KeyRequest {
    fn changes(&self, now: DateTime<Utc>) -> Result<Changes, LlmError> {
        let expires_at = match self.duration.as_deref() {
            None => None,
            Some(d) => Some(Some(
                parse_duration(d, now).map_err(|m| LlmError::bad(m).param("duration"))?,
            )),
        };
        Ok(Changes {
            name: self.key_alias.clone(),
            team: self.team_id.clone().map(Some),
            models: self.models.clone(),
            max_budget: self.max_budget.map(Some),
            budget_duration: self.budget_duration.clone().map(Some),
            rpm_limit: self.rpm_limit.map(Some),
            tpm_limit: self.tpm_limit.map(Some),
            expires_at,
            metadata: self.metadata.clone(),
        })
    }

    /// The given fields yallmp ignores (non-null ones).
    fn ignored(&self) -> Vec<&str> {
        self.other
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, _)| k.as_str())
            .collect()
    }
}

/// The key a script names: its secret, its `token` (the secret's SHA-256
/// hex, as LiteLLM's), or yallmp's key id. Revoked keys are gone.
fn find_key(state: &Shared, given: &str) -> Option<Arc<VirtualKey>> {
    let keys = &state.keys;
    keys.key_by_hash(&secret::hash(given))
        .or_else(|| keys.key_by_hash(given))
        .or_else(|| keys.key(given))
        .filter(|k| k.revoked_at.is_none())
}

fn key_not_found(given: &str) -> LlmError {
    let shown: String = given.chars().take(8).collect();
    LlmError::new(
        StatusCode::NOT_FOUND,
        format!("Key not found: {shown}… is no key (or it was deleted)"),
    )
    .param("key")
}

/// A key as LiteLLM's `/key/info` shows it (no secret, no token).
async fn key_info(state: &Shared, k: &VirtualKey) -> Value {
    let now = Utc::now();
    let period = k.limits.budget_duration;
    let spend = state
        .keys
        .spend
        .spent(&Counter::new(Owner::Key, &k.id, period, now))
        .await;
    // Without an alias the name is the hint (`yk-…abcd`): LiteLLM's key_name.
    let alias = (k.name != k.hint).then(|| k.name.clone());
    json!({
        "key_name": k.hint,
        "key_alias": alias,
        "spend": spend,
        "max_budget": k.limits.max_budget,
        "budget_duration": k.limits.budget_duration,
        "budget_reset_at": resets_at(period, now),
        "models": k.limits.models,
        "rpm_limit": k.limits.rpm_limit,
        "tpm_limit": k.limits.tpm_limit,
        "expires": k.expires_at,
        "team_id": k.team_id,
        "user_id": null,
        "metadata": k.metadata,
        "blocked": k.revoked_at.is_some(),
        "created_at": k.created_at,
        "updated_at": k.updated_at,
        "yallmp_key_id": k.id,
        "yallmp_source": k.source,
    })
}

/// `POST /key/generate`
pub async fn generate(State(state): State<Shared>, body: Bytes) -> Result<Response, LlmError> {
    let req: KeyRequest = parse(&body)?;
    let now = Utc::now();
    let mut changes = req.changes(now)?;
    // A caller's key, or one of yallmp's (`yk-`).
    if let Some(k) = &req.key {
        if !(16..=256).contains(&k.len()) || !k.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                LlmError::bad("`key` must be 16 to 256 visible ASCII characters").param("key"),
            );
        }
        if state.keys.key_by_hash(&secret::hash(k)).is_some() {
            return Err(LlmError::bad("that key exists already").param("key"));
        }
    }
    let secret = req.key.clone().unwrap_or_else(secret::generate);
    if changes.name.is_none() {
        changes.name = Some(secret::hint(&secret));
    }
    let (key, secret) = state.keys.create_key_with(&changes, Some(secret)).await?;
    let mut v = key_info(&state, &key).await;
    v["key"] = json!(secret);
    v["token"] = json!(key.hash);
    v["token_id"] = json!(key.hash);
    v["duration"] = json!(req.duration);
    let ignored = req.ignored();
    if !ignored.is_empty() {
        v["yallmp_ignored"] = json!(ignored);
    }
    Ok(Json(v).into_response())
}

/// `GET /key/info?key=`
pub async fn info(
    State(state): State<Shared>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, LlmError> {
    let q = query(raw.as_deref());
    let given = q
        .get("key")
        .filter(|k| !k.is_empty())
        .ok_or_else(|| LlmError::bad("`key` is required: /key/info?key=<key>").param("key"))?;
    let key = find_key(&state, given).ok_or_else(|| key_not_found(given))?;
    Ok(Json(
        json!({"key": given, "info": key_info(&state, &key).await}),
    ))
}

/// `POST /key/update`
pub async fn update(State(state): State<Shared>, body: Bytes) -> Result<Json<Value>, LlmError> {
    let req: KeyRequest = parse(&body)?;
    let given = req
        .key
        .clone()
        .ok_or_else(|| LlmError::bad("`key` is required").param("key"))?;
    let key = find_key(&state, &given).ok_or_else(|| key_not_found(&given))?;
    let changes = req.changes(Utc::now())?;
    let key = state.keys.update_key(&key.id, &changes).await?;
    let mut v = key_info(&state, &key).await;
    v["key"] = json!(given);
    let ignored = req.ignored();
    if !ignored.is_empty() {
        v["yallmp_ignored"] = json!(ignored);
    }
    Ok(Json(v))
}

#[derive(Debug, Deserialize)]
struct DeleteRequest {
    #[serde(default)]
    keys: Option<Vec<String>>,
    #[serde(default)]
    key_aliases: Option<Vec<String>>,
}

/// `POST /key/delete`: every named key is revoked, or none (404 when one
/// is unknown).
pub async fn delete(State(state): State<Shared>, body: Bytes) -> Result<Json<Value>, LlmError> {
    let req: DeleteRequest = parse(&body)?;
    let keys = req.keys.unwrap_or_default();
    let aliases = req.key_aliases.unwrap_or_default();
    if keys.is_empty() && aliases.is_empty() {
        return Err(LlmError::bad("`keys` or `key_aliases` is required").param("keys"));
    }
    let mut ids = Vec::new();
    for given in &keys {
        let key = find_key(&state, given).ok_or_else(|| key_not_found(given))?;
        ids.push(key.id.clone());
    }
    for alias in &aliases {
        let named: Vec<String> = state
            .keys
            .keys()
            .iter()
            .filter(|k| k.revoked_at.is_none() && k.name == *alias && k.name != k.hint)
            .map(|k| k.id.clone())
            .collect();
        if named.is_empty() {
            return Err(LlmError::new(
                StatusCode::NOT_FOUND,
                format!("no key with alias `{alias}`"),
            )
            .param("key_aliases"));
        }
        ids.extend(named);
    }
    // Config keys cannot go: refuse before revoking any.
    if let Some(k) = ids
        .iter()
        .filter_map(|id| state.keys.key(id))
        .find(|k| k.source == Source::Config)
    {
        return Err(KeyError::ReadOnly(k.name.clone()).into());
    }
    ids.sort();
    ids.dedup();
    for id in &ids {
        state.keys.revoke_key(id).await?;
    }
    let mut deleted = keys;
    deleted.extend(aliases);
    Ok(Json(json!({"deleted_keys": deleted})))
}

/// `GET /key/list?page=&size=&team_id=&key_alias=&return_full_object=`:
/// the keys' tokens (or, with `return_full_object=true`, their info).
pub async fn list(
    State(state): State<Shared>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, LlmError> {
    let q = query(raw.as_deref());
    let number = |name: &str, default: usize, max: usize| -> Result<usize, LlmError> {
        match q.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| LlmError::bad(format!("`{name}` must be 1 to {max}")).param(name)),
        }
    };
    let page = number("page", 1, 1_000_000)?;
    let size = number("size", 10, 100)?;
    let full = q.get("return_full_object").is_some_and(|v| v == "true");
    let team = q.get("team_id");
    let alias = q.get("key_alias");
    let all: Vec<Arc<VirtualKey>> = state
        .keys
        .keys()
        .into_iter()
        .filter(|k| k.revoked_at.is_none())
        .filter(|k| team.is_none_or(|t| k.team_id.as_ref() == Some(t)))
        .filter(|k| alias.is_none_or(|a| &k.name == a))
        .collect();
    let total = all.len();
    let mut out = Vec::new();
    for k in all.iter().skip((page - 1) * size).take(size) {
        if full {
            let mut v = key_info(&state, k).await;
            v["token"] = json!(k.hash);
            out.push(v);
        } else {
            out.push(json!(k.hash));
        }
    }
    Ok(Json(json!({
        "keys": out,
        "total_count": total,
        "current_page": page,
        "total_pages": total.div_ceil(size),
    })))
}

#[derive(Debug, Default, Deserialize)]
struct TeamRequest {
    team_alias: Option<String>,
    team_id: Option<String>,
    models: Option<Vec<String>>,
    max_budget: Option<f64>,
    budget_duration: Option<String>,
    rpm_limit: Option<u64>,
    tpm_limit: Option<u64>,
    metadata: Option<Value>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

/// A team as LiteLLM's team table row.
async fn team_row(state: &Shared, t: &Team) -> Value {
    let now = Utc::now();
    let period = t.limits.budget_duration;
    let spend = state
        .keys
        .spend
        .spent(&Counter::new(Owner::Team, &t.name, period, now))
        .await;
    json!({
        "team_id": t.id,
        "team_alias": t.name,
        "models": t.limits.models,
        "max_budget": t.limits.max_budget,
        "budget_duration": t.limits.budget_duration,
        "budget_reset_at": resets_at(period, now),
        "rpm_limit": t.limits.rpm_limit,
        "tpm_limit": t.limits.tpm_limit,
        "spend": spend,
        "metadata": t.metadata,
        "members_with_roles": [],
        "admins": [],
        "members": [],
        "blocked": false,
        "organization_id": null,
        "created_at": t.created_at,
        "updated_at": t.updated_at,
    })
}

/// `POST /team/new`
pub async fn team_new(State(state): State<Shared>, body: Bytes) -> Result<Json<Value>, LlmError> {
    let req: TeamRequest = parse(&body)?;
    let id = req
        .team_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let changes = Changes {
        name: Some(req.team_alias.clone().unwrap_or_else(|| id.clone())),
        models: req.models.clone(),
        max_budget: req.max_budget.map(Some),
        budget_duration: req.budget_duration.clone().map(Some),
        rpm_limit: req.rpm_limit.map(Some),
        tpm_limit: req.tpm_limit.map(Some),
        metadata: req.metadata.clone(),
        ..Changes::default()
    };
    let team = state.keys.create_team_with(&changes, Some(id)).await?;
    let mut v = team_row(&state, &team).await;
    let ignored: Vec<&str> = req
        .other
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, _)| k.as_str())
        .collect();
    if !ignored.is_empty() {
        v["yallmp_ignored"] = json!(ignored);
    }
    Ok(Json(v))
}

/// `GET /team/info?team_id=`
pub async fn team_info(
    State(state): State<Shared>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, LlmError> {
    let q = query(raw.as_deref());
    let id = q
        .get("team_id")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| LlmError::bad("`team_id` is required").param("team_id"))?;
    let team = state.keys.team(id).ok_or_else(|| {
        LlmError::new(StatusCode::NOT_FOUND, format!("Team not found: `{id}`")).param("team_id")
    })?;
    let mut keys = Vec::new();
    for k in state.keys.keys() {
        if k.revoked_at.is_none() && k.team_id.as_deref() == Some(team.id.as_str()) {
            let mut v = key_info(&state, &k).await;
            v["token"] = json!(k.hash);
            keys.push(v);
        }
    }
    Ok(Json(json!({
        "team_id": team.id,
        "team_info": team_row(&state, &team).await,
        "keys": keys,
        "team_memberships": [],
    })))
}

/// `start_date`/`end_date`: a day (`YYYY-MM-DD`, UTC; an end day is
/// included) or an RFC 3339 time.
fn date(name: &str, v: &str, end: bool) -> Result<DateTime<Utc>, LlmError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    let day = NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| {
        LlmError::bad(format!("`{name}` `{v}` is not a date (YYYY-MM-DD)")).param(name)
    })?;
    let day = if end {
        day.succ_opt().unwrap_or(day)
    } else {
        day
    };
    Ok(day.and_time(chrono::NaiveTime::MIN).and_utc())
}

/// `GET /spend/logs?api_key=&start_date=&end_date=&request_id=`: the
/// logged requests (newest first, at most 1000; the last 30 days unless
/// dates are given), from the request log's database.
pub async fn spend_logs(
    State(state): State<Shared>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, LlmError> {
    let q = query(raw.as_deref());
    for k in q.keys() {
        if !["api_key", "start_date", "end_date", "request_id", "user_id"].contains(&k.as_str()) {
            return Err(LlmError::bad(format!("unknown parameter `{k}`")).param(k));
        }
    }
    let until = match q.get("end_date") {
        Some(v) => date("end_date", v, true)?,
        None => Utc::now() + Duration::seconds(1),
    };
    let since = match q.get("start_date") {
        Some(v) => date("start_date", v, false)?,
        None => until - Duration::days(30),
    };
    if since > until {
        return Err(LlmError::bad("`start_date` is after `end_date`").param("start_date"));
    }
    let key_id = match q.get("api_key") {
        Some(given) => match find_key(&state, given).or_else(|| {
            // A deleted key's logs stay readable by its token.
            let keys = &state.keys;
            keys.key_by_hash(&secret::hash(given))
                .or_else(|| keys.key_by_hash(given))
        }) {
            Some(k) => Some(k.id.clone()),
            None => return Ok(Json(json!([]))),
        },
        None => None,
    };
    // `user_id` is accepted: yallmp has no users, so it filters out nothing.
    let db = state.log_reader.as_ref().ok_or_else(|| {
        LlmError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "spend logs are read from the request log's database: turn database logging on",
        )
    })?;
    let rows = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        store::spend_logs(db, key_id.as_deref(), since, until),
    )
    .await
    .map_err(|_| {
        LlmError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "reading the spend logs took longer than 30 s",
        )
    })?
    .map_err(KeyError::Db)?;
    let wanted = q.get("request_id");
    let out: Vec<Value> = rows
        .into_iter()
        .filter(|r| wanted.is_none_or(|w| &r.id == w))
        .map(|r| {
            let hash = r
                .key_id
                .as_deref()
                .and_then(|id| state.keys.key(id))
                .map(|k| k.hash.clone());
            let team_id = r
                .team
                .as_deref()
                .and_then(|t| state.keys.team(t))
                .map(|t| t.id.clone());
            let end = r.started_at
                + Duration::microseconds((r.latency_ms * 1000.0).clamp(0.0, 8.64e13) as i64);
            let ok = r.status.is_some_and(|s| (200..300).contains(&s));
            json!({
                "request_id": r.id,
                "call_type": r.path,
                "api_key": hash.unwrap_or_default(),
                "spend": r.cost_usd.unwrap_or(0.0),
                "total_tokens": r.total_tokens.unwrap_or(0),
                "prompt_tokens": r.prompt_tokens.unwrap_or(0),
                "completion_tokens": r.completion_tokens.unwrap_or(0),
                "startTime": r.started_at,
                "endTime": end,
                "model": r.model.unwrap_or_default(),
                "user": "",
                "team_id": team_id,
                "status": if ok { "success" } else { "failure" },
                "metadata": {
                    "user_api_key_alias": r.key_name,
                    "user_api_key_team_alias": r.team,
                    "status_code": r.status,
                },
            })
        })
        .collect();
    Ok(Json(Value::Array(out)))
}

#[derive(Debug, Deserialize)]
struct ModelRequest {
    model_name: String,
    litellm_params: serde_json::Map<String, Value>,
    #[serde(default)]
    model_info: Option<Value>,
}

/// Strings made literal for the loader: `$` escaped, as the admin API does.
fn literal(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace('$', "$$")),
        Value::Array(a) => Value::Array(a.into_iter().map(literal).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, literal(v))).collect()),
        other => other,
    }
}

/// A backend as `/model/info` shows it (its key masked).
fn deployment(m: &crate::config::ModelConfig, b: &crate::config::Backend) -> Value {
    let api_type = serde_json::to_value(b.api_type)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let model = match &b.upstream_model {
        Some(u) => format!("{api_type}/{u}"),
        None => format!("{api_type}/{}", m.name),
    };
    json!({
        "model_name": m.name,
        "litellm_params": {
            "model": model,
            "api_base": crate::config::mask_url_secret(&b.api_base),
            "api_key": b.api_key.as_ref().map(|_| "***"),
        },
        "model_info": {
            "id": b.name,
            "db_model": m.source == crate::config::ModelSource::Runtime,
            "yallmp_source": m.source,
        },
    })
}

/// `POST /model/new`: one more deployment (backend) of `model_name`, a new
/// runtime model when it has none, through the admin API's path
/// (validated, persisted, swapped in).
pub async fn model_new(
    State(state): State<Shared>,
    headers: http::HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, LlmError> {
    let req: ModelRequest = parse(&body)?;
    let name = req.model_name.trim().to_string();
    if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
        return Err(
            LlmError::bad("`model_name` must be 1 to 256 printable characters").param("model_name"),
        );
    }
    let mut params = req.litellm_params;
    // `model_info.id` names the backend, as in a config file; the rest
    // of `model_info` has no use here.
    let mut info = match req.model_info {
        Some(Value::Object(info)) => info,
        _ => serde_json::Map::new(),
    };
    match info.remove("id") {
        Some(Value::String(id)) if !params.contains_key("id") => {
            params.insert("id".into(), Value::String(id));
        }
        Some(Value::Number(n)) if !params.contains_key("id") => {
            params.insert("id".into(), Value::String(n.to_string()));
        }
        _ => {}
    }
    let params = Value::Object(params);
    super::admin::no_env_refs(&params).map_err(|e| LlmError::from(e).param("litellm_params"))?;
    let params = literal(params);
    let mut entry = serde_json::Map::new();
    entry.insert("model_name".into(), Value::String(name.clone()));
    entry.insert("litellm_params".into(), params);
    let entry = serde_yaml::to_value(Value::Object(entry))
        .map_err(|e| LlmError::bad(format!("litellm_params: {e}")).param("litellm_params"))?;
    let _guard = state.admin_lock.lock().await;
    let master = state
        .live
        .load()
        .config
        .auth
        .master_key
        .as_ref()
        .zip(presented(&headers))
        .is_some_and(|(m, given)| matches(given, std::slice::from_ref(m)));
    if !master {
        super::admin::may_change(&state, &headers, &name)?;
    }
    let current = state.live.load_full();
    let mut overlay = current.config.origin.overlay.clone();
    let mut entries = overlay.entries(&name);
    if entries.is_empty() {
        entries = super::admin::file_entries(&current.config, &name);
    }
    entries.push(entry);
    overlay.upsert(&name, entries);
    let config = crate::live::revise::rebuild(&current.config, &overlay)
        .map_err(|e| LlmError::from(AdminError::Invalid(e)).param("litellm_params"))?;
    let shown = config
        .model(&name)
        .and_then(|m| m.backends.last().map(|b| deployment(m, b)));
    super::admin::commit(&state, config).await?;
    tracing::info!(model = %name, "model deployment added through /model/new");
    let mut v = shown.unwrap_or_else(|| json!({"model_name": name}));
    v["model_id"] = v["model_info"]["id"].clone();
    if !info.is_empty() {
        let keys: Vec<String> = info.keys().map(|k| format!("model_info.{k}")).collect();
        v["yallmp_ignored"] = json!(keys);
    }
    Ok(Json(v))
}

/// `GET /model/info`: every deployment (backend), keys masked.
pub async fn model_info(State(state): State<Shared>) -> Json<Value> {
    let live = state.live.load();
    let data: Vec<Value> = live
        .config
        .models
        .iter()
        .flat_map(|m| m.backends.iter().map(move |b| deployment(m, b)))
        .collect();
    Json(json!({"data": data}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_litellm_writes_them() {
        let now = DateTime::parse_from_rfc3339("2026-01-31T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_duration("30s", now).unwrap(),
            now + Duration::seconds(30)
        );
        assert_eq!(
            parse_duration("5m", now).unwrap(),
            now + Duration::minutes(5)
        );
        assert_eq!(parse_duration("1h", now).unwrap(), now + Duration::hours(1));
        assert_eq!(
            parse_duration("30d", now).unwrap(),
            now + Duration::days(30)
        );
        assert_eq!(parse_duration("2w", now).unwrap(), now + Duration::days(14));
        assert_eq!(
            parse_duration("1mo", now).unwrap().to_rfc3339(),
            "2026-02-28T00:00:00+00:00"
        );
        assert_eq!(
            parse_duration("1y", now).unwrap().to_rfc3339(),
            "2027-01-31T00:00:00+00:00"
        );
        for bad in ["", "d", "0d", "3x", "-1d", "1.5h"] {
            assert!(parse_duration(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn management_paths() {
        assert!(is_management("/key/generate"));
        assert!(is_management("/spend/logs"));
        assert!(!is_management("/v1/chat/completions"));
        assert!(!is_management("/key/generate/x"));
    }

    #[test]
    fn errors_in_litellm_shape() {
        let r = LlmError::bad("nope").param("models").into_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let e = LlmError::from(KeyError::NotFound("key", "x".into()));
        assert_eq!(
            (e.status, e.kind),
            (StatusCode::NOT_FOUND, "not_found_error")
        );
    }
}
