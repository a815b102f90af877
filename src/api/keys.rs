//! `/admin/keys`, `/admin/teams` and `/admin/api/spend`: virtual keys and
//! teams made, changed, rotated and revoked through the admin API, and the
//! spend report (docs/keys-and-spend.md). The work is `keys::service`'s;
//! this file decodes the requests and encodes the answers.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use http::StatusCode;
use serde_json::{Value, json};

use super::Shared;
use super::error::json_error;
use crate::keys::model::{Team, VirtualKey};
use crate::keys::service::{Changes, KeyError};
use crate::keys::spend::Counter;
use crate::keys::store::{self, GroupBy, Owner};

/// A refusal in the admin API's error shape.
pub struct Refused(StatusCode, &'static str, String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        json_error(
            self.0,
            &json!({"error": {"message": self.2, "type": "invalid_request_error", "code": self.1}}),
        )
    }
}

impl From<KeyError> for Refused {
    fn from(e: KeyError) -> Refused {
        let (status, code) = match &e {
            KeyError::NotFound("key", _) => (StatusCode::NOT_FOUND, "key_not_found"),
            KeyError::NotFound(..) => (StatusCode::NOT_FOUND, "team_not_found"),
            KeyError::ReadOnly(_) => (StatusCode::CONFLICT, "read_only"),
            KeyError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            KeyError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            KeyError::NoDatabase => (StatusCode::SERVICE_UNAVAILABLE, "no_database"),
            KeyError::Db(_) => (StatusCode::SERVICE_UNAVAILABLE, "database_error"),
        };
        if let KeyError::Db(err) = &e {
            tracing::warn!(error = %err, "keys: database error");
        }
        Refused(status, code, e.to_string())
    }
}

fn changes(body: &Bytes) -> Result<Changes, Refused> {
    serde_json::from_slice(body).map_err(|e| {
        Refused(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("the body is not a valid key or team: {e}"),
        )
    })
}

/// When the period holding `now` ends (`None`: a lifetime budget).
pub(super) fn resets_at(
    period: Option<crate::grant::Period>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    period?.next_start(now)
}

/// A key or team as listed: its fields, its spend this period and when
/// the period ends.
async fn with_spend(
    state: &Shared,
    item: impl serde::Serialize,
    owner: Owner,
    who: &str,
    period: Option<crate::grant::Period>,
) -> Value {
    let now = Utc::now();
    let spent = state
        .keys
        .spend
        .spent(&Counter::new(owner, who, period, now))
        .await;
    let mut v = serde_json::to_value(item).unwrap_or(Value::Null);
    v["spend"] = json!(spent);
    v["budget_resets_at"] = json!(resets_at(period, now));
    v
}

async fn key_view(state: &Shared, k: &VirtualKey) -> Value {
    let mut v = with_spend(state, k, Owner::Key, &k.id, k.limits.budget_duration).await;
    v["team"] = json!(
        k.team_id
            .as_deref()
            .and_then(|t| state.keys.team(t))
            .map(|t| t.name.clone())
    );
    v
}

async fn team_view(state: &Shared, t: &Team) -> Value {
    with_spend(state, t, Owner::Team, &t.name, t.limits.budget_duration).await
}

/// `GET /admin/keys`
pub async fn list_keys(State(state): State<Shared>) -> Json<Value> {
    let mut data = Vec::new();
    for k in state.keys.keys() {
        data.push(key_view(&state, &k).await);
    }
    Json(json!({"object": "list", "data": data}))
}

/// `POST /admin/keys`: 201 with the secret, shown this once.
pub async fn create_key(State(state): State<Shared>, body: Bytes) -> Result<Response, Refused> {
    let (key, secret) = state.keys.create_key(&changes(&body)?).await?;
    let mut v = key_view(&state, &key).await;
    v["key"] = json!(secret);
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// `GET /admin/keys/{id}`
pub async fn get_key(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Refused> {
    let key = state
        .keys
        .key(&id)
        .ok_or_else(|| Refused::from(KeyError::NotFound("key", id)))?;
    Ok(Json(key_view(&state, &key).await))
}

/// `PATCH /admin/keys/{id}`
pub async fn update_key(
    State(state): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Refused> {
    let key = state.keys.update_key(&id, &changes(&body)?).await?;
    Ok(Json(key_view(&state, &key).await))
}

/// `DELETE /admin/keys/{id}`: revoked at once.
pub async fn revoke_key(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Refused> {
    let key = state.keys.revoke_key(&id).await?;
    Ok(Json(key_view(&state, &key).await))
}

/// `POST /admin/keys/{id}/rotate`: a new secret, shown this once.
pub async fn rotate_key(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Refused> {
    let (key, secret) = state.keys.rotate_key(&id).await?;
    let mut v = key_view(&state, &key).await;
    v["key"] = json!(secret);
    Ok(Json(v))
}

/// `GET /admin/teams`
pub async fn list_teams(State(state): State<Shared>) -> Json<Value> {
    let mut data = Vec::new();
    for t in state.keys.teams() {
        data.push(team_view(&state, &t).await);
    }
    Json(json!({"object": "list", "data": data}))
}

/// `POST /admin/teams`
pub async fn create_team(State(state): State<Shared>, body: Bytes) -> Result<Response, Refused> {
    let team = state.keys.create_team(&changes(&body)?).await?;
    Ok((StatusCode::CREATED, Json(team_view(&state, &team).await)).into_response())
}

/// `GET /admin/teams/{id}` (an id or a name)
pub async fn get_team(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Refused> {
    let team = state
        .keys
        .team(&id)
        .ok_or_else(|| Refused::from(KeyError::NotFound("team", id)))?;
    Ok(Json(team_view(&state, &team).await))
}

/// `PATCH /admin/teams/{id}`
pub async fn update_team(
    State(state): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Refused> {
    let team = state.keys.update_team(&id, &changes(&body)?).await?;
    Ok(Json(team_view(&state, &team).await))
}

/// `DELETE /admin/teams/{id}`: its keys stay, without a team.
pub async fn delete_team(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Refused> {
    let team = state.keys.delete_team(&id).await?;
    Ok(Json(team_view(&state, &team).await))
}

/// `GET /admin/api/spend?group_by=key|team|model|day&since=&until=`
pub async fn spend(
    State(state): State<Shared>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, Refused> {
    let bad = |m: String| Refused(StatusCode::BAD_REQUEST, "invalid_query", m);
    let mut group = GroupBy::Key;
    let mut since = None;
    let mut until = None;
    for (k, v) in super::logs::pairs(raw.as_deref()) {
        match k.as_str() {
            "group_by" => {
                group = serde_json::from_value(Value::String(v.clone()))
                    .map_err(|_| bad(format!("group_by `{v}`: use key, team, model or day")))?;
            }
            "since" | "until" => {
                let t = DateTime::parse_from_rfc3339(&v)
                    .map_err(|_| bad(format!("{k} `{v}` is not an RFC 3339 time")))?
                    .with_timezone(&Utc);
                if k == "since" {
                    since = Some(t);
                } else {
                    until = Some(t);
                }
            }
            other => return Err(bad(format!("unknown parameter `{other}`"))),
        }
    }
    let until = until.unwrap_or_else(Utc::now);
    let since = since.unwrap_or(until - Duration::days(30));
    if since > until {
        return Err(bad("`since` is after `until`".into()));
    }
    let db = state.log_reader.as_ref().ok_or_else(|| {
        Refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_database",
            "the spend report reads the request log's database: turn database logging on".into(),
        )
    })?;
    let rows = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        store::spend_report(db, group, since, until),
    )
    .await
    .map_err(|_| {
        Refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the spend report took longer than 30 s".into(),
        )
    })?
    .map_err(KeyError::Db)?;
    Ok(Json(json!({
        "group_by": group,
        "since": since,
        "until": until,
        "data": rows,
    })))
}
