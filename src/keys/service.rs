//! [`Keys`]: the in-memory index of every key and team (from the config
//! and the database), the lookup done on each request, and the changes
//! the admin API makes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::model::{Limits, Source, Team, VirtualKey};
use super::secret;
use super::spend::Spend;
use super::store;
use crate::grant::Period;
use crate::reqlog::db::Db;

/// Who a request is: its key and the key's team.
#[derive(Debug, Clone)]
pub struct Identity {
    pub key: Arc<VirtualKey>,
    pub team: Option<Arc<Team>>,
}

#[derive(Default)]
struct Ring {
    by_hash: HashMap<String, Arc<VirtualKey>>,
    by_id: HashMap<String, Arc<VirtualKey>>,
    teams: HashMap<String, Arc<Team>>,
}

impl Ring {
    fn build(keys: Vec<VirtualKey>, teams: Vec<Team>) -> Ring {
        let mut ring = Ring::default();
        for t in teams {
            ring.teams.insert(t.id.clone(), Arc::new(t));
        }
        for k in keys {
            let k = Arc::new(k);
            ring.by_hash.insert(k.hash.clone(), k.clone());
            ring.by_id.insert(k.id.clone(), k);
        }
        ring
    }

    fn team_named(&self, id_or_name: &str) -> Option<Arc<Team>> {
        self.teams
            .get(id_or_name)
            .cloned()
            .or_else(|| self.teams.values().find(|t| t.name == id_or_name).cloned())
    }
}

/// Why a change to keys or teams was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no {0} with id `{1}`")]
    NotFound(&'static str, String),
    #[error("`{0}` is declared in the config file and cannot change through the API")]
    ReadOnly(String),
    #[error("{0}")]
    Invalid(String),
    #[error("a team named `{0}` exists already")]
    Conflict(String),
    #[error(
        "keys and teams made through the API live in the request log's database: \
         turn database logging on (or declare keys in proxy_settings.auth.keys)"
    )]
    NoDatabase,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// `Some(None)` for an explicit `null` (clear it), `None` when absent.
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The body of `POST` (all fields) and `PATCH` (the fields to change;
/// `null` clears one) on `/admin/keys` and `/admin/teams`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Changes {
    pub name: Option<String>,
    /// Keys only: the team's id or name.
    #[serde(default, deserialize_with = "nullable")]
    pub team: Option<Option<String>>,
    pub models: Option<Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub max_budget: Option<Option<f64>>,
    #[serde(default, deserialize_with = "nullable")]
    pub budget_duration: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub rpm_limit: Option<Option<u64>>,
    #[serde(default, deserialize_with = "nullable")]
    pub tpm_limit: Option<Option<u64>>,
    /// Keys only.
    #[serde(default, deserialize_with = "nullable")]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub metadata: Option<Value>,
}

impl Changes {
    fn apply(&self, limits: &mut Limits) -> Result<(), KeyError> {
        if let Some(m) = &self.models {
            limits.models = m.clone();
        }
        if let Some(b) = self.max_budget {
            limits.max_budget = b;
        }
        if let Some(d) = &self.budget_duration {
            limits.budget_duration = match d {
                Some(d) => Some(Period::parse(d).map_err(KeyError::Invalid)?),
                None => None,
            };
        }
        if let Some(r) = self.rpm_limit {
            limits.rpm_limit = r;
        }
        if let Some(t) = self.tpm_limit {
            limits.tpm_limit = t;
        }
        limits.check().map_err(KeyError::Invalid)
    }

    fn name(&self, required: bool) -> Result<Option<String>, KeyError> {
        match &self.name {
            Some(n) if n.trim().is_empty() || n.len() > 200 || n.chars().any(char::is_control) => {
                Err(KeyError::Invalid(
                    "`name` must be 1 to 200 printable characters".into(),
                ))
            }
            Some(n) => Ok(Some(n.trim().to_string())),
            None if required => Err(KeyError::Invalid("`name` is required".into())),
            None => Ok(None),
        }
    }

    fn metadata(&self) -> Result<Option<Value>, KeyError> {
        match &self.metadata {
            Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
            Some(Value::Null) | None => Ok(None),
            Some(_) => Err(KeyError::Invalid("`metadata` must be an object".into())),
        }
    }
}

/// The keys and teams a config declares, as index entries (ids derived
/// from their names, so they stay the same across restarts and reloads).
pub fn declared(auth: &crate::config::AuthSettings) -> (Vec<VirtualKey>, Vec<Team>) {
    let id = |kind: &str, name: &str| {
        let h = secret::hash(name);
        format!("cfg_{kind}_{}", &h[..16])
    };
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    let teams: Vec<Team> = auth
        .teams
        .iter()
        .map(|t| Team {
            id: id("team", &t.name),
            name: t.name.clone(),
            limits: t.limits.clone(),
            metadata: t.metadata.clone(),
            created_at: epoch,
            updated_at: epoch,
            deleted_at: None,
            source: Source::Config,
        })
        .collect();
    let keys = auth
        .keys
        .iter()
        .map(|k| VirtualKey {
            id: id("key", &k.name),
            name: k.name.clone(),
            hash: secret::hash(k.secret.expose()),
            hint: secret::hint(k.secret.expose()),
            team_id: k
                .team
                .as_ref()
                .and_then(|t| teams.iter().find(|x| &x.name == t))
                .map(|t| t.id.clone()),
            limits: k.limits.clone(),
            expires_at: k.expires_at,
            metadata: k.metadata.clone(),
            created_at: epoch,
            updated_at: epoch,
            rotated_at: None,
            revoked_at: None,
            source: Source::Config,
        })
        .collect();
    (keys, teams)
}

/// Every key and team, and the spend counters.
pub struct Keys {
    ring: ArcSwap<Ring>,
    /// Declared in the config: always in the index, never in the database.
    declared: Mutex<(Vec<VirtualKey>, Vec<Team>)>,
    db: Option<Db>,
    pub spend: Arc<Spend>,
    /// The database tables' fingerprint at the last load.
    seen: Mutex<Option<(i64, i64)>>,
    /// One change at a time (a change reads, then writes the row).
    writing: tokio::sync::Mutex<()>,
}

impl Keys {
    /// The index of the declared keys and teams, and (when there is one)
    /// the database's; call [`Keys::reload`] before serving.
    pub fn new(
        declared_keys: Vec<VirtualKey>,
        declared_teams: Vec<Team>,
        db: Option<Db>,
        spend: Arc<Spend>,
    ) -> Keys {
        let ring = Ring::build(declared_keys.clone(), declared_teams.clone());
        Keys {
            ring: ArcSwap::from_pointee(ring),
            declared: Mutex::new((declared_keys, declared_teams)),
            db,
            spend,
            seen: Mutex::new(None),
            writing: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether any virtual key exists (without one, requests skip every
    /// key check).
    pub fn any(&self) -> bool {
        !self.ring.load().by_hash.is_empty()
    }

    /// The key a presented secret is, if it is one (usable or not).
    pub fn identify(&self, presented: &str) -> Option<Identity> {
        let ring = self.ring.load();
        if ring.by_hash.is_empty() {
            return None;
        }
        let key = ring.by_hash.get(&secret::hash(presented))?.clone();
        let team = key
            .team_id
            .as_deref()
            .and_then(|t| ring.teams.get(t).cloned());
        Some(Identity { key, team })
    }

    /// Reloads the database's keys and teams if they changed since the
    /// last load. `Ok(true)` when it reloaded.
    pub async fn reload(&self) -> Result<bool, sqlx::Error> {
        let Some(db) = &self.db else {
            return Ok(false);
        };
        let version = store::version(db).await?;
        if self.seen.lock().ok().and_then(|s| *s) == Some(version) {
            return Ok(false);
        }
        let (mut keys, mut teams) = (store::keys(db).await?, store::teams(db).await?);
        if let Ok(d) = self.declared.lock() {
            keys.extend(d.0.iter().cloned());
            teams.extend(d.1.iter().cloned());
        }
        self.ring.store(Arc::new(Ring::build(keys, teams)));
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(version);
        }
        Ok(true)
    }

    /// Polls the database every `every` for changes made by other
    /// instances (revocations reach every instance within that time).
    pub fn spawn_reload(self: &Arc<Self>, every: Duration) -> Option<tokio::task::JoinHandle<()>> {
        self.db.as_ref()?;
        let this = Arc::downgrade(self);
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(keys) = this.upgrade() else { return };
                if let Err(e) = keys.reload().await {
                    tracing::warn!(error = %e, "keys: reloading from the database failed");
                }
            }
        }))
    }

    fn db(&self) -> Result<&Db, KeyError> {
        self.db.as_ref().ok_or(KeyError::NoDatabase)
    }

    /// Every key, newest last.
    pub fn keys(&self) -> Vec<Arc<VirtualKey>> {
        let mut all: Vec<_> = self.ring.load().by_id.values().cloned().collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        all
    }

    pub fn key(&self, id: &str) -> Option<Arc<VirtualKey>> {
        self.ring.load().by_id.get(id).cloned()
    }

    /// The key whose secret hashes to `hash` (SHA-256 hex), usable or not.
    pub fn key_by_hash(&self, hash: &str) -> Option<Arc<VirtualKey>> {
        self.ring.load().by_hash.get(hash).cloned()
    }

    /// Every team, oldest first.
    pub fn teams(&self) -> Vec<Arc<Team>> {
        let mut all: Vec<_> = self.ring.load().teams.values().cloned().collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        all
    }

    pub fn team(&self, id_or_name: &str) -> Option<Arc<Team>> {
        self.ring.load().team_named(id_or_name)
    }

    /// A new key; returns it and its secret (shown this once).
    pub async fn create_key(&self, c: &Changes) -> Result<(VirtualKey, String), KeyError> {
        self.create_key_with(c, None).await
    }

    /// A new key with the caller's secret (`None`: a new `yk-` one). A
    /// chosen secret must be 16 to 256 visible ASCII characters and not
    /// any key's already.
    pub async fn create_key_with(
        &self,
        c: &Changes,
        chosen: Option<String>,
    ) -> Result<(VirtualKey, String), KeyError> {
        let _one = self.writing.lock().await;
        let db = self.db()?;
        let name = c.name(true)?.unwrap_or_default();
        let mut limits = Limits::default();
        c.apply(&mut limits)?;
        let team_id = self.team_of(c)?;
        let secret = match chosen {
            Some(s) => {
                if !(16..=256).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(KeyError::Invalid(
                        "a chosen key must be 16 to 256 visible ASCII characters".into(),
                    ));
                }
                if self.ring.load().by_hash.contains_key(&secret::hash(&s)) {
                    return Err(KeyError::Invalid("that key exists already".into()));
                }
                s
            }
            None => secret::generate(),
        };
        let now = Utc::now();
        let key = VirtualKey {
            id: format!("key_{}", uuid::Uuid::now_v7().simple()),
            name,
            hash: secret::hash(&secret),
            hint: secret::hint(&secret),
            team_id: team_id.flatten(),
            limits,
            expires_at: c.expires_at.flatten(),
            metadata: c
                .metadata()?
                .unwrap_or_else(|| Value::Object(Default::default())),
            created_at: now,
            updated_at: now,
            rotated_at: None,
            revoked_at: None,
            source: Source::Api,
        };
        store::put_key(db, &key).await?;
        self.reload_now().await?;
        Ok((key, secret))
    }

    /// The team a change names: `Some(None)` to leave the team.
    fn team_of(&self, c: &Changes) -> Result<Option<Option<String>>, KeyError> {
        match &c.team {
            None => Ok(None),
            Some(None) => Ok(Some(None)),
            Some(Some(t)) => match self.team(t) {
                Some(team) => Ok(Some(Some(team.id.clone()))),
                None => Err(KeyError::Invalid(format!("no team `{t}`"))),
            },
        }
    }

    fn api_key(&self, id: &str) -> Result<Arc<VirtualKey>, KeyError> {
        let key = self
            .key(id)
            .ok_or_else(|| KeyError::NotFound("key", id.to_string()))?;
        if key.source == Source::Config {
            return Err(KeyError::ReadOnly(key.name.clone()));
        }
        Ok(key)
    }

    /// Changes a key's name, team, limits, expiry or metadata.
    pub async fn update_key(&self, id: &str, c: &Changes) -> Result<VirtualKey, KeyError> {
        let _one = self.writing.lock().await;
        let mut key = (*self.api_key(id)?).clone();
        let db = self.db()?;
        if let Some(name) = c.name(false)? {
            key.name = name;
        }
        c.apply(&mut key.limits)?;
        if let Some(team) = self.team_of(c)? {
            key.team_id = team;
        }
        if let Some(e) = c.expires_at {
            key.expires_at = e;
        }
        if let Some(m) = c.metadata()? {
            key.metadata = m;
        }
        key.updated_at = Utc::now();
        store::put_key(db, &key).await?;
        self.reload_now().await?;
        Ok(key)
    }

    /// Revokes a key at once (its row, spend and records stay).
    pub async fn revoke_key(&self, id: &str) -> Result<VirtualKey, KeyError> {
        let _one = self.writing.lock().await;
        let mut key = (*self.api_key(id)?).clone();
        let db = self.db()?;
        let now = Utc::now();
        key.revoked_at.get_or_insert(now);
        key.updated_at = now;
        store::put_key(db, &key).await?;
        self.reload_now().await?;
        Ok(key)
    }

    /// A new secret for a key: the old one stops working at once; the id,
    /// limits, spend and records stay.
    pub async fn rotate_key(&self, id: &str) -> Result<(VirtualKey, String), KeyError> {
        let _one = self.writing.lock().await;
        let mut key = (*self.api_key(id)?).clone();
        let db = self.db()?;
        if key.revoked_at.is_some() {
            return Err(KeyError::Invalid("a revoked key cannot be rotated".into()));
        }
        let secret = secret::generate();
        let now = Utc::now();
        key.hash = secret::hash(&secret);
        key.hint = secret::hint(&secret);
        key.rotated_at = Some(now);
        key.updated_at = now;
        store::put_key(db, &key).await?;
        self.reload_now().await?;
        Ok((key, secret))
    }

    pub async fn create_team(&self, c: &Changes) -> Result<Team, KeyError> {
        self.create_team_with(c, None).await
    }

    /// A new team with the caller's id (`None`: a new `team_` one); a
    /// chosen id must be 1 to 200 printable characters, no team's id or
    /// name yet.
    pub async fn create_team_with(
        &self,
        c: &Changes,
        chosen_id: Option<String>,
    ) -> Result<Team, KeyError> {
        let _one = self.writing.lock().await;
        let db = self.db()?;
        if let Some(id) = &chosen_id {
            if id.trim().is_empty() || id.len() > 200 || id.chars().any(char::is_control) {
                return Err(KeyError::Invalid(
                    "a team id must be 1 to 200 printable characters".into(),
                ));
            }
            if self.team(id).is_some() {
                return Err(KeyError::Conflict(id.clone()));
            }
        }
        if c.team.is_some() || c.expires_at.is_some() {
            return Err(KeyError::Invalid(
                "`team` and `expires_at` are a key's fields, not a team's".into(),
            ));
        }
        let name = c.name(true)?.unwrap_or_default();
        if self.team(&name).is_some() {
            return Err(KeyError::Conflict(name));
        }
        let mut limits = Limits::default();
        c.apply(&mut limits)?;
        let now = Utc::now();
        let team = Team {
            id: chosen_id.unwrap_or_else(|| format!("team_{}", uuid::Uuid::now_v7().simple())),
            name,
            limits,
            metadata: c
                .metadata()?
                .unwrap_or_else(|| Value::Object(Default::default())),
            created_at: now,
            updated_at: now,
            deleted_at: None,
            source: Source::Api,
        };
        store::put_team(db, &team).await?;
        self.reload_now().await?;
        Ok(team)
    }

    fn api_team(&self, id: &str) -> Result<Arc<Team>, KeyError> {
        let team = self
            .team(id)
            .ok_or_else(|| KeyError::NotFound("team", id.to_string()))?;
        if team.source == Source::Config {
            return Err(KeyError::ReadOnly(team.name.clone()));
        }
        Ok(team)
    }

    pub async fn update_team(&self, id: &str, c: &Changes) -> Result<Team, KeyError> {
        let _one = self.writing.lock().await;
        if c.team.is_some() || c.expires_at.is_some() {
            return Err(KeyError::Invalid(
                "`team` and `expires_at` are a key's fields, not a team's".into(),
            ));
        }
        let mut team = (*self.api_team(id)?).clone();
        let db = self.db()?;
        if let Some(name) = c.name(false)? {
            if name != team.name && self.team(&name).is_some() {
                return Err(KeyError::Conflict(name));
            }
            team.name = name;
        }
        c.apply(&mut team.limits)?;
        if let Some(m) = c.metadata()? {
            team.metadata = m;
        }
        team.updated_at = Utc::now();
        store::put_team(db, &team).await?;
        self.reload_now().await?;
        Ok(team)
    }

    /// Deletes a team; its keys stay, without a team.
    pub async fn delete_team(&self, id: &str) -> Result<Team, KeyError> {
        let _one = self.writing.lock().await;
        let mut team = (*self.api_team(id)?).clone();
        let db = self.db()?;
        let now = Utc::now();
        team.deleted_at = Some(now);
        team.updated_at = now;
        for key in self.keys() {
            if key.team_id.as_deref() == Some(team.id.as_str()) && key.source == Source::Api {
                let mut k = (*key).clone();
                k.team_id = None;
                k.updated_at = now;
                store::put_key(db, &k).await?;
            }
        }
        store::put_team(db, &team).await?;
        self.reload_now().await?;
        Ok(team)
    }

    /// The config's keys and teams changed (a reload): index them.
    pub async fn set_declared(&self, keys: Vec<VirtualKey>, teams: Vec<Team>) {
        if let Ok(mut d) = self.declared.lock() {
            *d = (keys.clone(), teams.clone());
        }
        if self.db.is_none() {
            self.ring.store(Arc::new(Ring::build(keys, teams)));
        } else if let Err(e) = self.reload_now().await {
            tracing::warn!(error = %e, "keys: reloading from the database failed");
        }
    }

    async fn reload_now(&self) -> Result<(), sqlx::Error> {
        if let Ok(mut s) = self.seen.lock() {
            *s = None;
        }
        self.reload().await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatabaseTarget;

    async fn sqlite() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&DatabaseTarget::Sqlite {
            path: dir.path().join("keys.db"),
        })
        .await
        .unwrap();
        db.migrate().await.unwrap();
        (dir, db)
    }

    fn changes(json: &str) -> Changes {
        serde_json::from_str(json).unwrap()
    }

    #[tokio::test]
    async fn keys_and_teams_round_trip_through_the_database() {
        let (_dir, db) = sqlite().await;
        let spend = Arc::new(Spend::new(Some(db.clone()), None));
        let keys = Keys::new(vec![], vec![], Some(db.clone()), spend.clone());
        let team = keys
            .create_team(&changes(
                r#"{"name":"ml","max_budget":10,"budget_duration":"1mo"}"#,
            ))
            .await
            .unwrap();
        let (key, secret) = keys
            .create_key(&changes(
                r#"{"name":"ci","team":"ml","models":["gpt-*"],"rpm_limit":5,"metadata":{"owner":"ana"}}"#,
            ))
            .await
            .unwrap();
        assert!(secret.starts_with("yk-"));
        assert_eq!(key.team_id.as_deref(), Some(team.id.as_str()));
        let who = keys.identify(&secret).unwrap();
        assert_eq!(who.key.id, key.id);
        assert_eq!(who.team.unwrap().name, "ml");
        assert!(keys.identify("yk-wrong").is_none());

        // Another instance on the same database sees the same keys.
        let other = Keys::new(vec![], vec![], Some(db.clone()), spend.clone());
        assert!(other.reload().await.unwrap());
        assert!(!other.reload().await.unwrap(), "unchanged: no reload");
        assert_eq!(
            other.identify(&secret).unwrap().key.limits.rpm_limit,
            Some(5)
        );

        // Changes, `null` clearing a field.
        let changed = keys
            .update_key(&key.id, &changes(r#"{"rpm_limit":null,"models":[]}"#))
            .await
            .unwrap();
        assert_eq!(changed.limits.rpm_limit, None);
        assert!(changed.limits.models.is_empty());
        assert!(
            keys.update_key(&key.id, &changes(r#"{"max_budget":-1}"#))
                .await
                .is_err()
        );
        assert!(matches!(
            keys.update_key("key_nope", &changes("{}")).await,
            Err(KeyError::NotFound(..))
        ));

        // Rotation: the old secret stops working, the id stays.
        let (rotated, new_secret) = keys.rotate_key(&key.id).await.unwrap();
        assert_eq!(rotated.id, key.id);
        assert!(keys.identify(&secret).is_none());
        assert!(keys.identify(&new_secret).is_some());

        // Revocation reaches the other instance at its next reload.
        keys.revoke_key(&key.id).await.unwrap();
        assert!(!keys.identify(&new_secret).unwrap().key.usable(Utc::now()));
        assert!(other.reload().await.unwrap());
        assert!(!other.identify(&new_secret).unwrap().key.usable(Utc::now()));

        // Deleting a team leaves its keys without one.
        keys.delete_team(&team.id).await.unwrap();
        assert!(keys.team("ml").is_none());
        assert_eq!(keys.key(&key.id).unwrap().team_id, None);
    }

    #[tokio::test]
    async fn declared_keys_are_read_only_and_no_database_means_no_api_keys() {
        let now = Utc::now();
        let declared = VirtualKey {
            id: "cfg-ops".into(),
            name: "ops".into(),
            hash: secret::hash("yk-declared"),
            hint: secret::hint("yk-declared"),
            team_id: None,
            limits: Limits::default(),
            expires_at: None,
            metadata: Value::Null,
            created_at: now,
            updated_at: now,
            rotated_at: None,
            revoked_at: None,
            source: Source::Config,
        };
        let keys = Keys::new(
            vec![declared],
            vec![],
            None,
            Arc::new(Spend::new(None, None)),
        );
        assert!(keys.any());
        assert_eq!(keys.identify("yk-declared").unwrap().key.name, "ops");
        assert!(matches!(
            keys.create_key(&changes(r#"{"name":"x"}"#)).await,
            Err(KeyError::NoDatabase)
        ));
        let (_dir, db) = sqlite().await;
        let declared = keys.keys()[0].as_ref().clone();
        let keys = Keys::new(
            vec![declared],
            vec![],
            Some(db),
            Arc::new(Spend::new(None, None)),
        );
        assert!(matches!(
            keys.revoke_key("cfg-ops").await,
            Err(KeyError::ReadOnly(_))
        ));
    }
}
