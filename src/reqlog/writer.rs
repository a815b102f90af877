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
use crate::config::DatabaseTarget;

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
    /// Rows the database stage could not take yet while the database is
    /// failing (the files go on being written meanwhile); at most
    /// `max_carry`, the oldest dropped past it.
    carry: Vec<Row>,
    max_carry: usize,
}

/// Stage two: inserts each batch of rows in one transaction; rows the
/// database has not taken wait (bounded) and are retried.
struct Store {
    rx: mpsc::Receiver<Vec<Row>>,
    stats: Arc<LogStats>,
    /// The stage's own connections (opened again after a failure).
    db: Db,
    target: DatabaseTarget,
    /// Rows the database has not taken yet.
    pending: Vec<Row>,
    max_pending: usize,
    /// The last write failed: rows wait and are retried every
    /// `RETRY_EVERY` instead of with each batch.
    failing: bool,
    /// When waiting rows are tried next.
    retry_at: tokio::time::Instant,
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
                    max_pending: config.logging.queue_size,
                    failing: false,
                    retry_at: tokio::time::Instant::now(),
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
            carry: Vec::new(),
            max_carry: config.logging.queue_size,
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
                    self.write_guarded(std::mem::take(&mut batch)).await;
                }
                _ = tokio::time::sleep(RETRY_EVERY), if !self.carry.is_empty() => {
                    self.pass_rows(Vec::new()).await;
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
                self.write_guarded(std::mem::take(&mut batch)).await;
            }
        }
        if !batch.is_empty() {
            self.write_guarded(batch).await;
        }
        // What waited for a failing database gets its last chance.
        if !self.carry.is_empty()
            && let Some(tx) = &self.rows
        {
            let _ = tx.send(std::mem::take(&mut self.carry)).await;
        }
        // Dropping `self.rows` now tells the database stage to finish.
    }

    /// [`Render::write`], and a panic in it is reported (the batch is lost,
    /// counted) instead of ending the writer: the next batch is written.
    async fn write_guarded(&mut self, records: Vec<Record>) {
        use futures::FutureExt;
        let n = records.len() as u64;
        let weight: usize = records.iter().map(|r| r.queued_bytes).sum();
        let result = std::panic::AssertUnwindSafe(self.write(records))
            .catch_unwind()
            .await;
        if result.is_err() {
            // `write` gives the batch's bytes back only when it finishes.
            let _ =
                self.stats
                    .queued_bytes
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                        Some(q.saturating_sub(weight))
                    });
            self.stats.dropped.fetch_add(n, Ordering::Relaxed);
            metrics::counter!(super::DROPPED).increment(n);
            metrics::counter!(super::supervise::TASK_RESTARTS, "task" => "log_writer").increment(1);
            tracing::error!(
                lost = n,
                "request log: the writer failed on a batch (a bug); it goes on with the next"
            );
        }
    }

    /// Hands rows (and any carried ones) to the database stage. While the
    /// database is healthy this waits for the stage (a slow database holds
    /// the renderer back, and the record queue absorbs it); while it is
    /// failing it never waits, so files go on being written: rows the stage
    /// cannot take yet are carried, bounded.
    async fn pass_rows(&mut self, rows: Vec<Row>) {
        let Some(tx) = &self.rows else { return };
        let failing = self.stats.db_state.load(Ordering::Relaxed) == 2;
        if self.carry.is_empty() && !failing {
            if !rows.is_empty() && tx.send(rows).await.is_err() {
                tracing::error!("request log: the database stage stopped; rows not written");
            }
            return;
        }
        self.carry.extend(rows);
        if self.carry.is_empty() {
            return;
        }
        match tx.try_send(std::mem::take(&mut self.carry)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(back)) => {
                self.carry = back;
                if self.carry.len() > self.max_carry {
                    let excess = self.carry.len() - self.max_carry;
                    self.carry.drain(..excess);
                    self.stats
                        .dropped
                        .fetch_add(excess as u64, Ordering::Relaxed);
                    metrics::counter!(super::DROPPED).increment(excess as u64);
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::error!("request log: the database stage stopped; rows not written");
            }
        }
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
                            if stats.file_state.load(Ordering::Relaxed) == 2 {
                                stats.set_file_error(None);
                            }
                        }
                        Err(e) => {
                            stats.set_file_error(Some(e.to_string()));
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
            Ok(rows) if !rows.is_empty() => self.pass_rows(rows).await,
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
                    // While failing, rows only gather; the timer retries.
                    if !self.failing {
                        self.flush_guarded().await;
                    }
                }
                // A deadline, not a fresh sleep per loop: batches arriving
                // more often than the retry period must not put it off.
                _ = tokio::time::sleep_until(self.retry_at), if !self.pending.is_empty() => {
                    self.flush_guarded().await;
                }
            }
        }
        if !self.pending.is_empty() {
            // One last try (bounded by the shutdown grace in `finish`).
            self.flush_guarded().await;
            if !self.pending.is_empty() {
                tracing::error!(
                    lost = self.pending.len(),
                    "request log: database not writable at shutdown; rows not written (their files were)"
                );
            }
        }
        self.db.close().await;
    }

    /// [`Store::flush_db`], and a panic in it is reported (the rows are
    /// lost, counted) instead of ending the stage.
    async fn flush_guarded(&mut self) {
        use futures::FutureExt;
        let result = std::panic::AssertUnwindSafe(self.flush_db())
            .catch_unwind()
            .await;
        if result.is_err() {
            let n = std::mem::take(&mut self.pending).len() as u64;
            self.stats.dropped.fetch_add(n, Ordering::Relaxed);
            metrics::counter!(super::DROPPED).increment(n);
            metrics::counter!(super::supervise::TASK_RESTARTS, "task" => "log_database")
                .increment(1);
            tracing::error!(
                lost = n,
                "request log: the database stage failed on a batch (a bug); it goes on with the next"
            );
        }
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
            if self.stats.should_warn(Trouble::Database) {
                tracing::warn!(
                    dropped = excess,
                    "request log: database backlog full; oldest rows dropped"
                );
            }
        }
    }

    /// The database failed to take the rows and they wait: reported (the
    /// health check, a counter, a warning at most every 10 s), and for
    /// SQLite its connections dropped and opened again, so nothing a failed
    /// write left behind (an open transaction holding the write lock) can
    /// outlive the failure.
    async fn failed(&mut self, e: &sqlx::Error) {
        self.failing = true;
        self.retry_at = tokio::time::Instant::now() + RETRY_EVERY;
        self.stats.db_state.store(2, Ordering::Relaxed);
        self.stats.set_db_error(Some(e.to_string()));
        metrics::counter!(super::DATABASE_ERRORS).increment(1);
        if self.stats.should_warn(Trouble::Database) {
            tracing::warn!(error = %e, waiting = self.pending.len(), "request log: database unavailable; will retry");
        }
        if let DatabaseTarget::Sqlite { .. } = self.target {
            self.db.close().await;
            match Db::connect(&self.target).await {
                Ok(db) => self.db = db,
                Err(e) => {
                    // Closed: the next write fails at once and tries again.
                    tracing::debug!(error = %e, "request log: reopening the database failed");
                }
            }
        }
    }

    fn recovered(&mut self) {
        if self.failing {
            tracing::info!("request log: the database takes rows again");
        }
        self.failing = false;
        self.stats.db_state.store(1, Ordering::Relaxed);
        self.stats.set_db_error(None);
    }

    async fn flush_db(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        if self.db.is_closed()
            && let Ok(db) = Db::connect(&self.target).await
        {
            self.db = db;
        }
        // In transactions of a bounded size, oldest first: after a full
        // disk, a backlog too large to go in at once still goes in as room
        // allows, instead of failing whole on every retry.
        while !self.pending.is_empty() {
            let n = chunk_len(&self.pending);
            match self.db.insert(&self.pending[..n]).await {
                Ok(written) => {
                    self.stats
                        .written_rows
                        .fetch_add(written, Ordering::Relaxed);
                    if written < n as u64 {
                        // Already there (a batch sent again after a commit
                        // whose answer was lost): not written twice.
                        tracing::warn!(
                            rows = n as u64 - written,
                            "request log: rows already in the database were not written again"
                        );
                    }
                    self.pending.drain(..n);
                }
                Err(e) if db::is_unavailable(&e) => {
                    self.failed(&e).await;
                    return;
                }
                Err(e) => {
                    // A row the database refuses: write the others one by one.
                    tracing::warn!(error = %e, "request log: batch refused; inserting rows one by one");
                    let chunk: Vec<Row> = self.pending.drain(..n).collect();
                    let mut back = Vec::new();
                    let mut unavailable = None;
                    for row in chunk {
                        if unavailable.is_some() {
                            back.push(row);
                            continue;
                        }
                        match self.db.insert(std::slice::from_ref(&row)).await {
                            Ok(w) => {
                                self.stats.written_rows.fetch_add(w, Ordering::Relaxed);
                            }
                            Err(e) if db::is_unavailable(&e) => {
                                back.push(row);
                                unavailable = Some(e);
                            }
                            Err(e) => {
                                self.stats.failed_writes.fetch_add(1, Ordering::Relaxed);
                                metrics::counter!(super::WRITE_FAILURES, "sink" => "database")
                                    .increment(1);
                                tracing::warn!(error = %e, id = %row.id, "request log: row refused by the database");
                            }
                        }
                    }
                    if let Some(e) = unavailable {
                        self.pending.splice(0..0, back);
                        self.failed(&e).await;
                        return;
                    }
                }
            }
        }
        self.recovered();
    }
}

/// Rows of one transaction: up to `BATCH` rows or about `CHUNK_BYTES` of
/// text, at least one.
fn chunk_len(rows: &[Row]) -> usize {
    let mut bytes = 0usize;
    for (i, r) in rows.iter().take(BATCH).enumerate() {
        bytes += 1024
            + r.request_body.len()
            + r.response_body.as_ref().map_or(0, String::len)
            + r.chunks.as_ref().map_or(0, String::len)
            + r.parsed.as_ref().map_or(0, String::len);
        if bytes > CHUNK_BYTES && i > 0 {
            return i;
        }
    }
    rows.len().min(BATCH)
}

/// About how much text one transaction of waiting rows carries.
const CHUNK_BYTES: usize = 256 << 10;

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
