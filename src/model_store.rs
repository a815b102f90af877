//! Runtime models shared through PostgreSQL. With `database` on
//! PostgreSQL, the runtime overlay (models registered, changed or deleted
//! through the admin API) lives in one row of `yallmp_runtime_models`
//! instead of the `*.runtime.yaml` file, and every instance on that
//! database follows it (unless `logging.database.enabled` is false: the
//! database is then not used at all): a change is saved with a version number and a
//! `NOTIFY`; each instance `LISTEN`s (and polls as a safety net) and
//! rebuilds its snapshot when the version moves.
//!
//! The database must not hold secrets in the clear: a runtime model's
//! `api_key` is stored encrypted (XChaCha20-Poly1305) with a key derived
//! from `YALLMP_SECRET_KEY`, else the admin password, which every instance
//! shares. With neither set, a runtime model with an API key cannot be
//! shared and registering it is refused with a clear message.

use std::time::Duration;

use base64::Engine;
use chacha20poly1305::aead::{Aead, Generate, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde_yaml::Value;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};

use crate::config::overlay::Overlay;
use crate::config::{Config, DatabaseTarget};
use crate::reqlog::db::{POSTGRES_MIGRATIONS, pg_options};

/// The `NOTIFY` channel every instance listens on.
pub const CHANNEL: &str = "yallmp_runtime_models";
/// How often an instance re-reads the row even without a notification
/// (a dropped listener connection must not leave it stale for long).
pub const POLL_EVERY: Duration = Duration::from_secs(10);
/// Marks an encrypted value in the stored overlay.
const SEALED: &str = "yallmp-sealed:v1:";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored runtime models are not readable: {0}")]
    Corrupt(String),
    #[error(
        "model `{0}` has an api_key, and runtime models are shared through PostgreSQL, which never holds keys in the clear: set YALLMP_SECRET_KEY (the same on every instance) or an admin password, or give the key in the config file"
    )]
    NoSecretKey(String),
}

/// The shared runtime overlay.
pub struct ModelStore {
    pool: PgPool,
    options: PgConnectOptions,
    cipher: Option<XChaCha20Poly1305>,
}

impl ModelStore {
    /// Connects when the database is PostgreSQL and in use (`None` for
    /// SQLite, one instance's file, or with `logging.database.enabled:
    /// false`: then the overlay file, as without a database). Applies the
    /// migrations.
    pub async fn open(config: &Config) -> Result<Option<ModelStore>, StoreError> {
        let DatabaseTarget::Postgres(target) = &config.database.target else {
            return Ok(None);
        };
        if !config.logging.database {
            return Ok(None);
        }
        let options = pg_options(target)?;
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
            .await?;
        POSTGRES_MIGRATIONS.run(&pool).await?;
        let secret = config
            .origin
            .env
            .get("YALLMP_SECRET_KEY")
            .filter(|s| !s.is_empty())
            .or_else(|| {
                config
                    .auth
                    .admin_password
                    .as_ref()
                    .map(|p| p.expose().to_string())
            });
        let cipher = secret.map(|s| {
            let mut h = Sha256::new();
            h.update(b"yallmp runtime models v1\0");
            h.update(s.as_bytes());
            let key: [u8; 32] = h.finalize().into();
            XChaCha20Poly1305::new(&key.into())
        });
        Ok(Some(ModelStore {
            pool,
            options,
            cipher,
        }))
    }

    /// The stored overlay and its version; `None` when nothing was ever
    /// stored.
    pub async fn load(&self) -> Result<Option<(i64, Overlay)>, StoreError> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT version, overlay FROM yallmp_runtime_models WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        let Some((version, text)) = row else {
            return Ok(None);
        };
        let mut overlay: Overlay =
            serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        for entry in &mut overlay.models {
            self.open_secrets(entry)?;
        }
        Ok(Some((version, overlay)))
    }

    /// The stored version alone (cheap: for the poll).
    pub async fn version(&self) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT version FROM yallmp_runtime_models WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Stores `overlay` as the next version and tells the other instances.
    /// Returns the new version.
    pub async fn save(&self, overlay: &Overlay) -> Result<i64, StoreError> {
        let mut sealed = overlay.clone();
        for entry in &mut sealed.models {
            self.seal_secrets(entry)?;
        }
        let text =
            serde_json::to_string(&sealed).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.pool.begin().await?;
        let version: i64 = sqlx::query_scalar(
            "INSERT INTO yallmp_runtime_models (id, version, overlay, updated_at) \
             VALUES (1, 1, $1, now()) \
             ON CONFLICT (id) DO UPDATE SET version = yallmp_runtime_models.version + 1, \
             overlay = EXCLUDED.overlay, updated_at = now() \
             RETURNING version",
        )
        .bind(&text)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(version.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(version)
    }

    /// A listener on [`CHANNEL`] (its own connection).
    pub async fn listen(&self) -> Result<PgListener, StoreError> {
        let mut l = PgListener::connect_with(&self.pool).await?;
        l.listen(CHANNEL).await?;
        Ok(l)
    }

    /// The connection options (for a fresh listener after the pool closed).
    pub fn options(&self) -> &PgConnectOptions {
        &self.options
    }

    /// Whether a model entry may be stored (its key can be sealed).
    pub fn check_storable(&self, entry: &Value) -> Result<(), StoreError> {
        if self.cipher.is_none() && api_key(entry).is_some() {
            return Err(StoreError::NoSecretKey(name(entry)));
        }
        Ok(())
    }

    fn seal_secrets(&self, entry: &mut Value) -> Result<(), StoreError> {
        let Some(key) = api_key_mut(entry) else {
            return Ok(());
        };
        let Value::String(plain) = key else {
            return Ok(());
        };
        let Some(cipher) = &self.cipher else {
            let n = name(entry);
            return Err(StoreError::NoSecretKey(n));
        };
        let nonce = XNonce::generate();
        let sealed = cipher
            .encrypt(&nonce, plain.as_bytes())
            .map_err(|_| StoreError::Corrupt("cannot encrypt".into()))?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        *key = Value::String(format!(
            "{SEALED}{}",
            base64::engine::general_purpose::STANDARD.encode(blob)
        ));
        Ok(())
    }

    fn open_secrets(&self, entry: &mut Value) -> Result<(), StoreError> {
        let n = name(entry);
        let Some(Value::String(stored)) = api_key_mut(entry) else {
            return Ok(());
        };
        let Some(b64) = stored.strip_prefix(SEALED) else {
            return Ok(());
        };
        let cipher = self.cipher.as_ref().ok_or_else(|| {
            StoreError::Corrupt(format!(
                "model `{n}` has an encrypted api_key and this instance has no YALLMP_SECRET_KEY or admin password to open it"
            ))
        })?;
        let blob = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| StoreError::Corrupt(format!("model `{n}`: {e}")))?;
        if blob.len() < 24 {
            return Err(StoreError::Corrupt(format!("model `{n}`: short api_key")));
        }
        let (nonce, sealed) = blob.split_at(24);
        let nonce = XNonce::try_from(nonce)
            .map_err(|_| StoreError::Corrupt(format!("model `{n}`: bad nonce")))?;
        let plain = cipher.decrypt(&nonce, sealed).map_err(|_| {
            StoreError::Corrupt(format!(
                "model `{n}`: the api_key was encrypted with another YALLMP_SECRET_KEY or admin password"
            ))
        })?;
        *stored = String::from_utf8(plain)
            .map_err(|_| StoreError::Corrupt(format!("model `{n}`: api_key is not text")))?;
        Ok(())
    }
}

fn name(entry: &Value) -> String {
    entry
        .get("model_name")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string()
}

/// `model_params.api_key` (or `litellm_params.api_key`).
fn api_key(entry: &Value) -> Option<&Value> {
    ["model_params", "litellm_params"]
        .iter()
        .find_map(|p| entry.get(p)?.get("api_key"))
}

fn api_key_mut(entry: &mut Value) -> Option<&mut Value> {
    let which = ["model_params", "litellm_params"]
        .into_iter()
        .find(|p| entry.get(p).and_then(|m| m.get("api_key")).is_some())?;
    entry.get_mut(which)?.get_mut("api_key")
}

/// At start-up: the config to run, with the shared runtime models in place
/// of the overlay file. An empty store is seeded from the overlay file, so
/// moving an instance to PostgreSQL keeps its runtime models.
pub async fn adopt(store: &ModelStore, config: Config) -> Result<(Config, i64), StoreError> {
    match store.load().await? {
        Some((version, overlay)) => {
            if overlay == config.origin.overlay {
                return Ok((config, version));
            }
            let next = crate::live::revise::rebuild(&config, &overlay)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok((next, version))
        }
        None if config.origin.overlay != Overlay::default() => {
            for entry in &config.origin.overlay.models {
                store.check_storable(entry)?;
            }
            let version = store.save(&config.origin.overlay).await?;
            tracing::info!(
                version,
                "runtime models from the overlay file are now shared through PostgreSQL"
            );
            Ok((config, version))
        }
        None => Ok((config, 0)),
    }
}
