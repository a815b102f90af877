//! The one writer task: takes records off the queue in batches, renders
//! them (in a blocking thread, with the file writes), and inserts the batch
//! into the database in one transaction. A database that goes away keeps its
//! rows waiting (bounded) and is retried; files keep being written.
//! The two stages are `render.rs` and `store.rs`.

mod render;
mod store;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::db::Db;
use super::redact::Scrubber;
use super::{LogStats, Record};
use crate::config::{Config, DatabaseTarget};
use render::Render;
use store::Store;

const BATCH: usize = 256;
/// A batch smaller than this waits `LINGER` for more records before it is
/// written: a busy proxy fills it in milliseconds, and every batch costs a
/// database transaction (its index pages written again) and a trip to the
/// blocking thread, whatever its size. Only the log's own latency grows.
const LINGER_BELOW: usize = 64;
const LINGER: Duration = Duration::from_millis(20);
const RETRY_EVERY: Duration = Duration::from_secs(2);
const PRUNE_EVERY: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "request log directory {dir} is not writable: {source} (fix it, or set proxy_settings.logging.files.enabled: false)"
    )]
    LogDir { dir: String, source: std::io::Error },
    #[error(
        "request log database ({target}) is not usable: {message} (fix it, or set proxy_settings.logging.database.enabled: false)"
    )]
    Database { target: String, message: String },
}

/// The running writer: two stages joined by a short queue, so a batch's
/// files are written while the batch before it goes into the database (the
/// log keeps up with whichever stage is slower, not with their sum).
pub struct Writer {
    stop: watch::Sender<bool>,
    render: JoinHandle<()>,
    store: Option<JoinHandle<()>>,
    pruner: Option<JoinHandle<()>>,
    db: Option<Db>,
}

/// The least time [`Writer::finish`] is given, however little of the grace
/// period is left when it starts: the records of requests cut off at the
/// end of the grace period still go to a healthy sink.
pub(crate) const MIN_FINISH: Duration = Duration::from_millis(500);

/// Batches of rows between the stages: enough to overlap them, few enough
/// that a slow database holds the renderer back instead of piling up rows.
const ROW_BATCHES: usize = 2;

impl Writer {
    /// Opens the sinks (failing if they are unusable) and starts the task.
    pub async fn start(
        config: &Config,
        rx: mpsc::UnboundedReceiver<Record>,
        stats: Arc<LogStats>,
        scrubber: Arc<arc_swap::ArcSwap<Scrubber>>,
    ) -> Result<Writer, StartError> {
        let dir = config.logging.files_dir.clone();
        if let Some(dir) = &dir {
            probe_dir(dir).map_err(|source| StartError::LogDir {
                dir: dir.display().to_string(),
                source,
            })?;
            stats.files_on.store(true, Ordering::Relaxed);
        }
        let db = if config.logging.database {
            let target = &config.database.target;
            let fail = |message: String| StartError::Database {
                target: target.describe(),
                message,
            };
            let db = Db::connect(target).await.map_err(|e| fail(e.to_string()))?;
            db.migrate().await.map_err(|e| fail(e.to_string()))?;
            Some(db)
        } else {
            None
        };
        let pruner = match (&db, config.database.max_age, config.database.max_rows) {
            (Some(_), age, rows) if age.is_some() || rows.is_some() => {
                let target = config.database.target.clone();
                // Supervised: a pruner that fails is reported and started
                // again, never silently gone (retention would stop).
                Some(super::supervise::supervise("log_retention", move || {
                    let target = target.clone();
                    async move {
                        let mut conn = None;
                        loop {
                            prune_once(&target, &mut conn, age, rows).await;
                            tokio::time::sleep(PRUNE_EVERY).await;
                        }
                    }
                }))
            }
            _ => None,
        };
        if db.is_some() {
            stats.db_state.store(1, Ordering::Relaxed);
        }
        let (stop, stopped) = watch::channel(false);
        let (rows, store) = match &db {
            Some(db) => {
                let (tx, rx) = mpsc::channel(ROW_BATCHES);
                // Its own connections, so that after a failure (a full
                // disk) they can be dropped and opened again without
                // touching anyone else's.
                let own = Db::connect(&config.database.target)
                    .await
                    .unwrap_or_else(|_| db.clone());
                let store = Store {
                    rx,
                    stats: stats.clone(),
                    db: own,
                    target: config.database.target.clone(),
                    pending: Vec::new(),
                    max_pending: backlog(config),
                    failing: false,
                    retry_at: tokio::time::Instant::now(),
                };
                (Some(tx), Some(tokio::spawn(store.run())))
            }
            None => (None, None),
        };
        let segments = match (&dir, config.logging.layout) {
            (Some(dir), crate::config::FileLayout::Segments) => {
                Some(Arc::new(std::sync::Mutex::new(
                    super::segments::Segments::new(dir, config.logging.segment_max_bytes),
                )))
            }
            _ => None,
        };
        let render = Render {
            rx,
            stats,
            dir,
            segments,
            scrubber: scrubber.clone(),
            rows,
            carry: Vec::new(),
            max_carry: backlog(config),
        };
        let render = tokio::spawn(render.run(stopped));
        Ok(Writer {
            stop,
            render,
            store,
            pruner,
            db,
        })
    }

    /// The database the log writes to, if any.
    pub fn db(&self) -> Option<&Db> {
        self.db.as_ref()
    }

    /// Writes everything queued, then stops, by `deadline` (the end of the
    /// shutdown grace period, counted from the signal) or half a second
    /// from now, whichever is later: what a failing sink has not taken by
    /// then is lost, and an error says so.
    pub async fn finish(self, deadline: tokio::time::Instant) {
        let _ = self.stop.send(true);
        if let Some(p) = self.pruner {
            p.abort();
        }
        let deadline = deadline.max(tokio::time::Instant::now() + MIN_FINISH);
        // The renderer drains the queue, then closes the row channel, which
        // ends the database stage once it has written what it holds.
        let mut render = self.render;
        if tokio::time::timeout_at(deadline, &mut render)
            .await
            .is_err()
        {
            render.abort();
            tracing::error!(
                "request log: stopping took longer than the shutdown grace period; records still queued are lost"
            );
        }
        if let Some(mut store) = self.store
            && tokio::time::timeout_at(deadline, &mut store).await.is_err()
        {
            store.abort();
            tracing::error!(
                "request log: the database did not take the last rows within the shutdown grace period; they are lost (their files were written)"
            );
        }
        if let Some(db) = &self.db {
            let _ = tokio::time::timeout_at(deadline, db.close()).await;
        }
    }
}

/// Rows that may wait for a database that is failing: `queue_size`, but at
/// least a few batches, so that rows are never dropped on their way to a
/// healthy database (a batch of up to `BATCH` rows passes through the
/// backlog) when the queue is small.
fn backlog(config: &Config) -> usize {
    config.logging.queue_size.max(4 * BATCH)
}

/// Creates the directory (0700; an existing looser one is tightened) and
/// checks a file can be written in it.
fn probe_dir(dir: &std::path::Path) -> std::io::Result<()> {
    super::private::dir(dir)?;
    let probe = dir.join(format!(".yallmp-probe-{}", std::process::id()));
    let _ = std::fs::remove_file(&probe);
    super::private::create_file(&probe)?;
    std::fs::remove_file(&probe)
}

/// One retention pass on the pruner's own connections (opened on first
/// use, and again after a failure, for the same reason as the writer's).
async fn prune_once(
    target: &DatabaseTarget,
    conn: &mut Option<Db>,
    age: Option<Duration>,
    rows: Option<u64>,
) {
    if conn.is_none() {
        match Db::connect(target).await {
            Ok(db) => *conn = Some(db),
            Err(e) => {
                tracing::warn!(error = %e, "request log retention failed");
                return;
            }
        }
    }
    let Some(db) = conn.as_ref() else { return };
    match db.prune(age, rows).await {
        Ok(n) if n > 0 => tracing::info!(deleted = n, "request log retention"),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "request log retention failed");
            if let Some(db) = conn.take() {
                db.close().await;
            }
        }
    }
}
