//! The one writer task: takes records off the queue in batches, renders
//! them (in a blocking thread, with the file writes), and inserts the batch
//! into the database in one transaction. A database that goes away keeps its
//! rows waiting (bounded) and is retried; files keep being written.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::db::{self, Db, Row};
use super::file::{self, Prepared};
use super::redact::Scrubber;
use super::{LogStats, Record, Trouble};
use crate::config::Config;

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

/// Stage one: takes records off the queue in batches, renders them (in a
/// blocking thread, with the file writes) and passes the rows on.
struct Render {
    rx: mpsc::Receiver<Record>,
    stats: Arc<LogStats>,
    dir: Option<PathBuf>,
    /// Known secrets; replaced when the config changes.
    scrubber: Arc<arc_swap::ArcSwap<Scrubber>>,
    /// To the database stage, when there is a database.
    rows: Option<mpsc::Sender<Vec<Row>>>,
}

/// Stage two: inserts each batch of rows in one transaction; rows the
/// database has not taken wait (bounded) and are retried.
struct Store {
    rx: mpsc::Receiver<Vec<Row>>,
    stats: Arc<LogStats>,
    db: Db,
    /// Rows the database has not taken yet.
    pending: Vec<Row>,
    max_pending: usize,
}

/// Batches of rows between the stages: enough to overlap them, few enough
/// that a slow database holds the renderer back instead of piling up rows.
const ROW_BATCHES: usize = 2;

impl Writer {
    /// Opens the sinks (failing if they are unusable) and starts the task.
    pub async fn start(
        config: &Config,
        rx: mpsc::Receiver<Record>,
        stats: Arc<LogStats>,
        scrubber: Arc<arc_swap::ArcSwap<Scrubber>>,
    ) -> Result<Writer, StartError> {
        let dir = config.logging.files_dir.clone();
        if let Some(dir) = &dir {
            probe_dir(dir).map_err(|source| StartError::LogDir {
                dir: dir.display().to_string(),
                source,
            })?;
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
            (Some(db), age, rows) if age.is_some() || rows.is_some() => {
                let db = db.clone();
                // Supervised: a pruner that fails is reported and started
                // again, never silently gone (retention would stop).
                Some(super::supervise::supervise("log_retention", move || {
                    let db = db.clone();
                    async move {
                        loop {
                            match db.prune(age, rows).await {
                                Ok(n) if n > 0 => {
                                    tracing::info!(deleted = n, "request log retention")
                                }
                                Ok(_) => {}
                                Err(e) => {
                                    tracing::warn!(error = %e, "request log retention failed")
                                }
                            }
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
                let store = Store {
                    rx,
                    stats: stats.clone(),
                    db: db.clone(),
                    pending: Vec::new(),
                    max_pending: config.logging.queue_size,
                };
                (Some(tx), Some(tokio::spawn(store.run())))
            }
            None => (None, None),
        };
        let render = Render {
            rx,
            stats,
            dir,
            scrubber: scrubber.clone(),
            rows,
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

    /// Writes everything queued, then stops.
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        // The renderer drains the queue, then closes the row channel, which
        // ends the database stage once it has written what it holds.
        let _ = self.render.await;
        if let Some(store) = self.store {
            let _ = store.await;
        }
        if let Some(p) = self.pruner {
            p.abort();
        }
    }
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

impl Render {
    async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        let mut batch: Vec<Record> = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                n = self.rx.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        break;
                    }
                    if batch.len() < LINGER_BELOW && !*stopped.borrow() {
                        tokio::time::sleep(LINGER).await;
                        while batch.len() < BATCH {
                            match self.rx.try_recv() {
                                Ok(r) => batch.push(r),
                                Err(_) => break,
                            }
                        }
                    }
                    metrics::gauge!(super::QUEUE_DEPTH).set(self.rx.len() as f64);
                    metrics::gauge!(super::QUEUE_BYTES)
                        .set(self.stats.queued_bytes.load(Ordering::Relaxed) as f64);
                    self.write(std::mem::take(&mut batch)).await;
                }
                _ = stopped.changed() => {
                    break;
                }
            }
        }
        // Drain what is queued.
        while let Ok(r) = self.rx.try_recv() {
            batch.push(r);
            if batch.len() >= BATCH {
                self.write(std::mem::take(&mut batch)).await;
            }
        }
        if !batch.is_empty() {
            self.write(batch).await;
        }
        // Dropping `self.rows` now tells the database stage to finish.
    }

    async fn write(&mut self, records: Vec<Record>) {
        // The batch stops counting against the queue's byte bound once it
        // is rendered and its files written (its memory is held till then).
        let weight: usize = records.iter().map(|r| r.queued_bytes).sum();
        let dir = self.dir.clone();
        let want_rows = self.rows.is_some();
        let scrubber = self.scrubber.load_full();
        let stats = self.stats.clone();
        let rendered = tokio::task::spawn_blocking(move || {
            let mut rows = Vec::with_capacity(if want_rows { records.len() } else { 0 });
            for r in records {
                let p = Prepared::new(&r);
                if let Some(dir) = &dir {
                    let text = file::render(&r, &p, &scrubber);
                    let parsed = file::render_parsed(&r, &p, &scrubber);
                    match file::write_all(dir, &r, &text, parsed.as_deref()) {
                        Ok(_) => {
                            stats.written_files.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            stats.failed_writes.fetch_add(1, Ordering::Relaxed);
                            metrics::counter!(super::WRITE_FAILURES, "sink" => "file").increment(1);
                            if stats.should_warn(Trouble::File) {
                                tracing::warn!(error = %e, dir = %dir.display(), "request log file not written");
                            }
                        }
                    }
                }
                if want_rows {
                    rows.push(Row::new(r, p, &scrubber));
                }
            }
            rows
        })
        .await;
        self.stats.queued_bytes.fetch_sub(weight, Ordering::Relaxed);
        match rendered {
            Ok(rows) if !rows.is_empty() => {
                if let Some(tx) = &self.rows {
                    // Waits while the database stage is busy with the batch
                    // before; the record queue absorbs the wait.
                    if tx.send(rows).await.is_err() {
                        tracing::error!(
                            "request log: the database stage stopped; rows not written"
                        );
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "request log: rendering failed"),
        }
    }
}

impl Store {
    async fn run(mut self) {
        loop {
            tokio::select! {
                rows = self.rx.recv() => {
                    let Some(rows) = rows else { break };
                    self.take(rows);
                    self.flush_db().await;
                }
                _ = tokio::time::sleep(RETRY_EVERY), if !self.pending.is_empty() => {
                    self.flush_db().await;
                }
            }
        }
        if !self.pending.is_empty() {
            self.flush_db().await;
            if !self.pending.is_empty() {
                tracing::error!(
                    lost = self.pending.len(),
                    "request log: database unreachable at shutdown; rows not written (their files were)"
                );
            }
        }
        self.db.close().await;
    }

    /// Adds a batch to the rows waiting, dropping the oldest beyond the cap.
    fn take(&mut self, rows: Vec<Row>) {
        self.pending.extend(rows);
        if self.pending.len() > self.max_pending {
            let excess = self.pending.len() - self.max_pending;
            self.pending.drain(..excess);
            self.stats
                .dropped
                .fetch_add(excess as u64, Ordering::Relaxed);
            metrics::counter!(super::DROPPED).increment(excess as u64);
            tracing::warn!(
                dropped = excess,
                "request log: database backlog full; oldest rows dropped"
            );
        }
    }

    async fn flush_db(&mut self) {
        let db = &self.db;
        if self.pending.is_empty() {
            return;
        }
        match db.insert(&self.pending).await {
            Ok(()) => {
                self.stats
                    .written_rows
                    .fetch_add(self.pending.len() as u64, Ordering::Relaxed);
                self.pending.clear();
                self.stats.db_state.store(1, Ordering::Relaxed);
            }
            Err(e) if db::is_transient(&e) => {
                self.stats.db_state.store(2, Ordering::Relaxed);
                if self.stats.should_warn(Trouble::Database) {
                    tracing::warn!(error = %e, waiting = self.pending.len(), "request log: database unavailable; will retry");
                }
            }
            Err(e) => {
                // A row the database refuses: write the others one by one.
                tracing::warn!(error = %e, "request log: batch refused; inserting rows one by one");
                for row in std::mem::take(&mut self.pending) {
                    match db.insert(std::slice::from_ref(&row)).await {
                        Ok(()) => {
                            self.stats.written_rows.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) if db::is_transient(&e) => self.pending.push(row),
                        Err(e) => {
                            self.stats.failed_writes.fetch_add(1, Ordering::Relaxed);
                            metrics::counter!(super::WRITE_FAILURES, "sink" => "database")
                                .increment(1);
                            tracing::warn!(error = %e, id = %row.id, "request log: row refused by the database");
                        }
                    }
                }
            }
        }
    }
}
