//! What a key or a team is granted: the models it may use, its budget
//! and budget period, its own rate limits. A leaf below `config` (keys and
//! teams declared in the config file resolve to these) and `keys`.

pub mod period;

use serde::{Deserialize, Serialize};

pub use period::Period;

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
