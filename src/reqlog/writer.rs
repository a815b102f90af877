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

/// The running writer.
pub struct Writer {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    pruner: Option<JoinHandle<()>>,
    db: Option<Db>,
}

struct State {
    rx: mpsc::Receiver<Record>,
    stats: Arc<LogStats>,
    dir: Option<PathBuf>,
    db: Option<Db>,
    /// Known secrets; replaced when the config changes.
    scrubber: Arc<arc_swap::ArcSwap<Scrubber>>,
    /// Rows the database has not taken yet.
    pending: Vec<Row>,
    max_pending: usize,
}

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
                Some(tokio::spawn(async move {
                    loop {
                        match db.prune(age, rows).await {
                            Ok(n) if n > 0 => tracing::info!(deleted = n, "request log retention"),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "request log retention failed"),
                        }
                        tokio::time::sleep(PRUNE_EVERY).await;
                    }
                }))
            }
            _ => None,
        };
        if db.is_some() {
            stats.db_state.store(1, Ordering::Relaxed);
        }
        let (stop, stopped) = watch::channel(false);
        let state = State {
            rx,
            stats,
            dir,
            db: db.clone(),
            scrubber: scrubber.clone(),
            pending: Vec::new(),
            max_pending: config.logging.queue_size,
        };
        let task = tokio::spawn(state.run(stopped));
        Ok(Writer {
            stop,
            task,
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
        let _ = self.task.await;
        if let Some(p) = self.pruner {
            p.abort();
        }
    }
}

/// Creates the directory and checks a file can be written in it.
fn probe_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".yallmp-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

impl State {
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
                    self.write(std::mem::take(&mut batch)).await;
                }
                _ = stopped.changed() => {
                    break;
                }
                _ = tokio::time::sleep(RETRY_EVERY), if !self.pending.is_empty() => {
                    self.flush_db().await;
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
        if !self.pending.is_empty() {
            self.flush_db().await;
            if !self.pending.is_empty() {
                tracing::error!(
                    lost = self.pending.len(),
                    "request log: database unreachable at shutdown; rows not written (their files were)"
                );
            }
        }
        if let Some(db) = &self.db {
            db.close().await;
        }
    }

    async fn write(&mut self, records: Vec<Record>) {
        let dir = self.dir.clone();
        let want_rows = self.db.is_some();
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
        match rendered {
            Ok(rows) if !rows.is_empty() => {
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
                self.flush_db().await;
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "request log: rendering failed"),
        }
    }

    async fn flush_db(&mut self) {
        let Some(db) = &self.db else { return };
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
