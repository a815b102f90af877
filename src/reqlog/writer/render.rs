//! The writer's first stage: records off the queue in batches, rendered in
//! a blocking thread with their files written, rows passed to the database
//! stage (carried, bounded, while the database fails).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, watch};

use super::{BATCH, LINGER, LINGER_BELOW, RETRY_EVERY};
use crate::reqlog::db::Row;
use crate::reqlog::file::{self, Prepared};
use crate::reqlog::redact::Scrubber;
use crate::reqlog::segments::{self, Segments};
use crate::reqlog::{LogStats, Record, Trouble};

/// Stage one: takes records off the queue in batches, renders them (in a
/// blocking thread, with the file writes) and passes the rows on.
pub(super) struct Render {
    pub(super) rx: mpsc::UnboundedReceiver<Record>,
    pub(super) stats: Arc<LogStats>,
    pub(super) dir: Option<PathBuf>,
    /// The `segments` layout's writer (`None`: a file per request).
    pub(super) segments: Option<Arc<std::sync::Mutex<Segments>>>,
    /// Known secrets; replaced when the config changes.
    pub(super) scrubber: Arc<arc_swap::ArcSwap<Scrubber>>,
    /// To the database stage, when there is a database.
    pub(super) rows: Option<mpsc::Sender<Vec<Row>>>,
    /// Rows the database stage could not take yet while the database is
    /// failing (the files go on being written meanwhile); at most
    /// `max_carry`, the oldest dropped past it.
    pub(super) carry: Vec<Row>,
    pub(super) max_carry: usize,
}

impl Render {
    pub(super) async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        let mut batch: Vec<Record> = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                n = self.rx.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        break;
                    }
                    self.stats.took(n);
                    if batch.len() < LINGER_BELOW && !*stopped.borrow() {
                        tokio::time::sleep(LINGER).await;
                        let before = batch.len();
                        while batch.len() < BATCH {
                            match self.rx.try_recv() {
                                Ok(r) => batch.push(r),
                                Err(_) => break,
                            }
                        }
                        self.stats.took(batch.len() - before);
                    }
                    metrics::gauge!(crate::reqlog::QUEUE_DEPTH).set(self.rx.len() as f64);
                    metrics::gauge!(crate::reqlog::QUEUE_BYTES)
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
            self.stats.took(1);
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
            self.stats.released(0);
            self.stats.dropped.fetch_add(n, Ordering::Relaxed);
            metrics::counter!(crate::reqlog::DROPPED).increment(n);
            metrics::counter!(crate::reqlog::supervise::TASK_RESTARTS, "task" => "log_writer")
                .increment(1);
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
                    metrics::counter!(crate::reqlog::DROPPED).increment(excess as u64);
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
        let layout = self.segments.clone();
        let rendered = tokio::task::spawn_blocking(move || {
            let mut rows = Vec::with_capacity(if want_rows { records.len() } else { 0 });
            let note = |result: Result<(), String>, dir: &std::path::Path| match result {
                Ok(()) => {
                    stats.written_files.fetch_add(1, Ordering::Relaxed);
                    if stats.file_state.load(Ordering::Relaxed) == 2 {
                        stats.set_file_error(None);
                    }
                }
                Err(e) => {
                    stats.set_file_error(Some(e.clone()));
                    stats.failed_writes.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(crate::reqlog::WRITE_FAILURES, "sink" => "file").increment(1);
                    if stats.should_warn(Trouble::File) {
                        tracing::warn!(error = %e, dir = %dir.display(), "request log file not written");
                    }
                }
            };
            let mut lines = Vec::with_capacity(if layout.is_some() { records.len() } else { 0 });
            for r in records {
                let p = Prepared::new(&r);
                if let Some(dir) = &dir {
                    let text = file::render(&r, &p, &scrubber);
                    if layout.is_some() {
                        // The parsed output is in the record's own line.
                        lines.push(segments::line(&r.id, &r.started_at, &text));
                    } else {
                        let parsed = file::render_parsed(&r, &p, &scrubber);
                        let written = file::write_all(dir, &r, &text, parsed.as_deref());
                        note(written.map(|_| ()).map_err(|e| e.to_string()), dir);
                    }
                }
                if want_rows {
                    rows.push(Row::new(r, p, &scrubber));
                }
            }
            if let (Some(layout), Some(dir)) = (&layout, &dir) {
                // One write for the batch (more only where a segment rolls).
                let results = layout
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .append(chrono::Utc::now(), &lines);
                for result in results {
                    note(result, dir);
                }
            }
            rows
        })
        .await;
        self.stats.released(weight);
        match rendered {
            Ok(rows) if !rows.is_empty() => self.pass_rows(rows).await,
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "request log: rendering failed"),
        }
    }
}
