//! What a virtual key or a team may do: the models it may use, its
//! budget, its own rate limits, its expiry.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::grant::Limits;

/// Where a key or team was declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `proxy_settings.auth.keys` / `teams`: read-only through the API.
    Config,
    /// Made through the admin API, kept in the database.
    Api,
}

/// A virtual key (never its secret: only the hash and a hint).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VirtualKey {
    pub id: String,
    pub name: String,
    #[serde(skip)]
    pub hash: String,
    pub hint: String,
    pub team_id: Option<String>,
    #[serde(flatten)]
    pub limits: Limits,
    pub expires_at: Option<DateTime<Utc>>,
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub rotated_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub source: Source,
}

impl VirtualKey {
    /// Whether it may be used at `now`.
    pub fn usable(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

/// A team: limits its keys share.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Team {
    pub id: String,
    pub name: String,
    #[serde(flatten)]
    pub limits: Limits,
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
    pub source: Source,
}
