//! `store: database`: the request log's database (`database:`, SQLite or
//! PostgreSQL), table `interleaved_thinking` (migration
//! `20261202000010_interleaved_thinking`). Entries survive restarts and are
//! shared by every instance on one PostgreSQL. Opened at start-up when a
//! model uses it (or when a model registered later first does); expired
//! rows are deleted every minute by a background task.

use std::time::Duration;

use chrono::Utc;
use tokio::sync::OnceCell;

use super::Entry;
use super::keys::Key;
use crate::config::DatabaseTarget;
use crate::reqlog::db::Db;

/// How often expired rows are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

pub struct DbStore {
    target: DatabaseTarget,
    db: OnceCell<Db>,
}

/// key, source, reasoning, signature.
type Row = (String, String, String, Option<String>);

impl DbStore {
    pub fn new(target: DatabaseTarget) -> DbStore {
        DbStore {
            target,
            db: OnceCell::new(),
        }
    }

    /// Connects and migrates once; starts the pruning task.
    pub async fn open(&self) -> Result<&Db, sqlx::Error> {
        self.db
            .get_or_try_init(|| async {
                let db = Db::connect(&self.target).await?;
                db.migrate().await.map_err(sqlx::Error::from)?;
                let pruned = db.clone();
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(PRUNE_EVERY);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        if let Err(e) = prune(&pruned).await {
                            tracing::warn!(error = %e, "interleaved thinking: pruning failed");
                        }
                    }
                });
                Ok(db)
            })
            .await
    }

    /// The live entries under these keys.
    pub async fn get(&self, keys: &[Key]) -> Vec<(Key, Entry)> {
        match self.try_get(keys).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "interleaved thinking: database lookup failed");
                Vec::new()
            }
        }
    }

    async fn try_get(&self, keys: &[Key]) -> Result<Vec<(Key, Entry)>, sqlx::Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let db = self.open().await?;
        let now = Utc::now().timestamp_millis();
        let hex: Vec<String> = keys.iter().map(Key::hex).collect();
        let rows: Vec<Row> = match db {
            Db::Sqlite(p) => {
                let marks = vec!["?"; hex.len()].join(",");
                let sql = format!(
                    "SELECT key, source, reasoning, signature FROM interleaved_thinking \
                     WHERE expires_at > ? AND key IN ({marks})"
                );
                let mut q = sqlx::query_as::<_, Row>(&sql).bind(now);
                for h in &hex {
                    q = q.bind(h);
                }
                q.fetch_all(p).await?
            }
            Db::Postgres(p) => {
                sqlx::query_as::<_, Row>(
                    "SELECT key, source, reasoning, signature FROM interleaved_thinking \
                     WHERE expires_at > $1 AND key = ANY($2)",
                )
                .bind(now)
                .bind(&hex)
                .fetch_all(p)
                .await?
            }
        };
        Ok(rows
            .into_iter()
            .filter_map(|(key, source, reasoning, signature)| {
                let i = hex.iter().position(|h| *h == key)?;
                Some((
                    keys[i],
                    Entry {
                        reasoning,
                        signature,
                        source,
                    },
                ))
            })
            .collect())
    }

    /// Writes (or renews) the entry under every key, in one transaction.
    pub async fn put(
        &self,
        model: &str,
        keys: &[Key],
        entry: &Entry,
        ttl: Duration,
    ) -> Result<(), sqlx::Error> {
        let db = self.open().await?;
        let now = Utc::now().timestamp_millis();
        let expires = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        macro_rules! upsert {
            ($pool:expr, $sql:expr) => {{
                let mut tx = $pool.begin().await?;
                for k in keys {
                    sqlx::query($sql)
                        .bind(k.hex())
                        .bind(model)
                        .bind(&entry.source)
                        .bind(&entry.reasoning)
                        .bind(&entry.signature)
                        .bind(now)
                        .bind(expires)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await
            }};
        }
        match db {
            Db::Sqlite(p) => upsert!(
                p,
                "INSERT INTO interleaved_thinking \
                 (key, model, source, reasoning, signature, created_at, expires_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET \
                 model = excluded.model, source = excluded.source, reasoning = excluded.reasoning, \
                 signature = excluded.signature, created_at = excluded.created_at, \
                 expires_at = excluded.expires_at"
            ),
            Db::Postgres(p) => upsert!(
                p,
                "INSERT INTO interleaved_thinking \
                 (key, model, source, reasoning, signature, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (key) DO UPDATE SET \
                 model = excluded.model, source = excluded.source, reasoning = excluded.reasoning, \
                 signature = excluded.signature, created_at = excluded.created_at, \
                 expires_at = excluded.expires_at"
            ),
        }
    }
}

/// Deletes expired rows; returns how many.
pub async fn prune(db: &Db) -> Result<u64, sqlx::Error> {
    let now = Utc::now().timestamp_millis();
    Ok(match db {
        Db::Sqlite(p) => sqlx::query("DELETE FROM interleaved_thinking WHERE expires_at <= ?")
            .bind(now)
            .execute(p)
            .await?
            .rows_affected(),
        Db::Postgres(p) => sqlx::query("DELETE FROM interleaved_thinking WHERE expires_at <= $1")
            .bind(now)
            .execute(p)
            .await?
            .rows_affected(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn expired_rows_are_never_read_and_get_pruned() {
        let path = std::env::temp_dir()
            .join(format!("yallmp-thinking-{}", uuid::Uuid::new_v4().simple()))
            .join("t.db");
        let store = DbStore::new(DatabaseTarget::Sqlite { path: path.clone() });
        let e = Entry {
            reasoning: "r \"é\"\n".into(),
            signature: Some("s".into()),
            source: "openai:m".into(),
        };
        let (k1, k2, k3) = (Key([1; 32]), Key([2; 32]), Key([3; 32]));
        store
            .put("m", &[k1, k2], &e, Duration::from_secs(60))
            .await
            .unwrap();
        store
            .put("m", &[k3], &e, Duration::from_millis(1))
            .await
            .unwrap();
        // Written again: renewed, not duplicated.
        store
            .put("m", &[k1], &e, Duration::from_secs(60))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut got = store.get(&[k1, k2, k3]).await;
        got.sort_by_key(|(k, _)| k.0);
        assert_eq!(got.len(), 2, "the expired row is not read");
        assert_eq!(got[0], (k1, e.clone()));
        assert_eq!(got[1].0, k2);
        let db = store.open().await.unwrap();
        // The store's own pruning task runs once when it opens, so it may
        // have taken the expired row first: between them, it goes once.
        assert!(prune(db).await.unwrap() <= 1);
        assert_eq!(prune(db).await.unwrap(), 0);
        assert_eq!(store.get(&[k1, k2, k3]).await.len(), 2);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
