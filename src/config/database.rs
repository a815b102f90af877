//! Top-level `database`: SQLite or PostgreSQL (a URL or its parts) and
//! retention.

use std::path::PathBuf;
use std::time::Duration;

use super::errors::Errors;
use super::raw::RawDatabase;
use super::{
    DEFAULT_SQLITE_PATH, DatabaseSettings, DatabaseTarget, PostgresTarget, Secret, nearest,
};

/// The longest `database.retention.max_age_days` accepted: a century. A
/// cutoff further back than the calendar can hold would stop retention.
const MAX_RETENTION_DAYS: f64 = 36_500.0;

pub(super) fn resolve(raw: RawDatabase, errors: &mut Errors) -> DatabaseSettings {
    let max_age = raw.retention.max_age_days.and_then(|d| {
        if d.is_finite() && d > 0.0 && d <= MAX_RETENTION_DAYS {
            Some(Duration::from_secs_f64(d * 86_400.0))
        } else {
            errors.at(
                "database.retention.max_age_days",
                format!(
                    "must be a number of days above 0 and at most {MAX_RETENTION_DAYS}, got {d}"
                ),
            );
            None
        }
    });
    let max_rows = raw.retention.max_rows.and_then(|n| {
        if n >= 1 && i64::try_from(n).is_ok() {
            Some(n)
        } else {
            errors.at(
                "database.retention.max_rows",
                format!("must be from 1 to {}, got {n}", i64::MAX),
            );
            None
        }
    });
    let target = match (
        raw.url.filter(|u| !u.trim().is_empty()),
        raw.backend.as_deref(),
    ) {
        (Some(url), _) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            DatabaseTarget::Postgres(PostgresTarget {
                url: Some(Secret::new(url)),
                host: String::new(),
                port: 5432,
                database: String::new(),
                user: None,
                password: None,
            })
        }
        (Some(url), _) if url.starts_with("sqlite:") => {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            DatabaseTarget::Sqlite {
                path: PathBuf::from(path.split('?').next().unwrap_or(path)),
            }
        }
        (Some(url), _) => {
            errors.at(
                "database.url",
                format!(
                    "`{}` is neither a postgres:// nor a sqlite: URL",
                    url.split('@').next_back().unwrap_or("")
                ),
            );
            DatabaseTarget::Sqlite {
                path: PathBuf::from(DEFAULT_SQLITE_PATH),
            }
        }
        (None, None | Some("sqlite")) => DatabaseTarget::Sqlite {
            path: PathBuf::from(raw.connection.sqlite.path()),
        },
        (None, Some("postgres" | "postgresql")) => {
            let p = raw.connection.postgres;
            DatabaseTarget::Postgres(PostgresTarget {
                url: None,
                host: p.host(),
                port: p.port(),
                database: p.database(),
                user: p.user.filter(|u| !u.is_empty()),
                password: p.password.filter(|p| !p.is_empty()).map(Secret::new),
            })
        }
        (None, Some(other)) => {
            let hint = nearest(other, &["sqlite", "postgres"])
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            errors.at(
                "database.backend",
                format!("unknown backend `{other}` (sqlite or postgres){hint}"),
            );
            DatabaseTarget::Sqlite {
                path: PathBuf::from(DEFAULT_SQLITE_PATH),
            }
        }
    };
    DatabaseSettings {
        target,
        max_age,
        max_rows,
    }
}
