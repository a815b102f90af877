//! The writer's second stage: each batch of rows into the database in
//! transactions of a bounded size; rows the database has not taken wait
//! (bounded) and are retried, a refused row is written around.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::{BATCH, RETRY_EVERY};
use crate::config::DatabaseTarget;
use crate::reqlog::db::{self, Db, Row};
use crate::reqlog::{LogStats, Trouble};

/// Stage two: inserts each batch of rows in one transaction; rows the
/// database has not taken wait (bounded) and are retried.
pub(super) struct Store {
    pub(super) rx: mpsc::Receiver<Vec<Row>>,
    pub(super) stats: Arc<LogStats>,
    /// The stage's own connections (opened again after a failure).
    pub(super) db: Db,
    pub(super) target: DatabaseTarget,
    /// Rows the database has not taken yet.
    pub(super) pending: Vec<Row>,
    pub(super) max_pending: usize,
    /// The last write failed: rows wait and are retried every
    /// `RETRY_EVERY` instead of with each batch.
    pub(super) failing: bool,
    /// When waiting rows are tried next.
    pub(super) retry_at: tokio::time::Instant,
}

impl Store {
    pub(super) async fn run(mut self) {
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
            metrics::counter!(crate::reqlog::DROPPED).increment(n);
            metrics::counter!(crate::reqlog::supervise::TASK_RESTARTS, "task" => "log_database")
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
            metrics::counter!(crate::reqlog::DROPPED).increment(excess as u64);
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
        metrics::counter!(crate::reqlog::DATABASE_ERRORS).increment(1);
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
                                metrics::counter!(crate::reqlog::WRITE_FAILURES, "sink" => "database")
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
