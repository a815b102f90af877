//! What a virtual key or a team may do: the models it may use, its
//! budget, its own rate limits, its expiry.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::period::Period;

/// Limits a key or a team carries (a key in a team is bound by both).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Model names and wildcards (`gpt-*`); empty: every model.
    #[serde(default)]
    pub models: Vec<String>,
    /// USD per period (or for the key's life without a period).
    #[serde(default)]
    pub max_budget: Option<f64>,
    #[serde(default)]
    pub budget_duration: Option<Period>,
    /// Requests per minute; replaces the global per-key limit.
    #[serde(default)]
    pub rpm_limit: Option<u64>,
    /// Tokens per minute; replaces the global per-key limit.
    #[serde(default)]
    pub tpm_limit: Option<u64>,
}

impl Limits {
    /// Whether `model` is one of the allowed names (or matches one of the
    /// allowed wildcards); every model when the list is empty.
    pub fn allows(&self, model: &str) -> bool {
        self.models.is_empty()
            || self
                .models
                .iter()
                .any(|m| m == model || (m.contains('*') && crate::wildcard::matches(m, model)))
    }

    /// Checks what a client or the config may set.
    pub fn check(&self) -> Result<(), String> {
        if let Some(b) = self.max_budget
            && !(b.is_finite() && b >= 0.0)
        {
            return Err("`max_budget` must be a number of USD, 0 or more".into());
        }
        if self.budget_duration.is_some() && self.max_budget.is_none() {
            return Err("`budget_duration` needs a `max_budget`".into());
        }
        if self.rpm_limit == Some(0) || self.tpm_limit == Some(0) {
            return Err("`rpm_limit` and `tpm_limit` must be 1 or more".into());
        }
        for m in &self.models {
            if m.is_empty() || m.len() > 256 || m.chars().any(char::is_control) {
                return Err(format!("`models` holds an invalid name: {m:?}"));
            }
        }
        Ok(())
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_by_name_or_wildcard() {
        let all = Limits::default();
        assert!(all.allows("anything"));
        let some = Limits {
            models: vec!["gpt-4o".into(), "claude-*".into()],
            ..Limits::default()
        };
        assert!(some.allows("gpt-4o"));
        assert!(some.allows("claude-sonnet-4-5"));
        assert!(!some.allows("gpt-4o-mini"));
        assert!(!some.allows("my-claude"));
    }

    #[test]
    fn limits_are_checked() {
        let bad = [
            Limits {
                max_budget: Some(-1.0),
                ..Limits::default()
            },
            Limits {
                budget_duration: Some(Period::Days(1)),
                ..Limits::default()
            },
            Limits {
                rpm_limit: Some(0),
                ..Limits::default()
            },
            Limits {
                models: vec![String::new()],
                ..Limits::default()
            },
        ];
        for l in bad {
            assert!(l.check().is_err(), "{l:?}");
        }
        assert!(Limits::default().check().is_ok());
    }
}
