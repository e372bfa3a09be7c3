//! The writer thread: the only code that writes the ledger. It takes one message, then
//! everything already queued (up to `max_batch`), stores the rows in one transaction
//! and then answers every acknowledgement — so a lone row is committed at once and a
//! burst shares one commit. Between batches it prunes in small steps. A database error
//! fails the rows of its transaction (their acknowledgements say so, [`Shared::errors`]
//! counts them), is logged once when writes start failing and once when they work
//! again, and never stops the thread.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use crate::LedgerError;
use crate::outbox::{Notice, Update};
use crate::row::{Row, UnixMillis, now_millis};
use crate::store::{Message, write};

/// Answers one message.
pub(crate) type Reply = oneshot::Sender<Result<(), LedgerError>>;

/// Rows deleted per prune transaction: short enough that rows waiting behind it are
/// committed within milliseconds.
const PRUNE_STEP: i64 = 1000;
/// Automatic pruning runs at most this often.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// What the writer is asked to do.
pub(crate) enum Msg {
    /// Store a row and its notifications (boxed: the queue's slots stay small).
    Row(Box<(Row, Vec<Notice>)>, Reply),
    /// The results of sending notifications.
    Outbox(Vec<Update>, Reply),
    /// Delete rows older than `cutoff`, answering once all are gone.
    Prune(UnixMillis, Reply),
    /// Answer once everything queued before is committed (or failed).
    Sync(Reply),
    /// Look at the retention again (`set_retention`).
    Wake,
    /// A multipart upload begun or ended (`uploads.rs`); unacknowledged.
    Upload(crate::UploadMark),
}

/// State shared between the [`crate::Ledger`] handle and its writer.
#[derive(Default)]
pub(crate) struct Shared {
    /// Rows a database error kept out of the ledger, plus failed prune steps.
    pub errors: AtomicU64,
    /// Rows never queued: the queue was full or the writer gone.
    pub dropped: AtomicU64,
    /// `ledger_retention` in milliseconds; 0 until the daemon sets it (no pruning).
    pub retention_ms: AtomicU64,
    /// Whether rows are being dropped now: logged once when it starts and ends.
    pub dropping: AtomicBool,
}

/// One prune in progress: tables are done one after the other.
struct Prune {
    /// Rows older than this go.
    cutoff: UnixMillis,
    /// Index into [`TABLES`] of the table being pruned.
    table: usize,
    /// Who waits for the end (none for the automatic prune).
    reply: Option<Reply>,
}

/// Each table and its time column.
const TABLES: [(&str, &str); 5] = [
    ("delivered", "delivered_at"),
    ("failed", "at"),
    ("requeued", "at"),
    ("outbox", "created_at"),
    // Only ended uploads: an open one's `ended_at` is NULL, never older than the cutoff.
    ("uploads", "ended_at"),
];

pub(crate) struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    /// The file, for log lines.
    path: PathBuf,
    /// Messages taken at most per transaction.
    max_batch: usize,
    /// Whether the last write failed: errors are logged when this changes.
    failing: bool,
    /// Rows lost since writes started failing, for the recovery's log line.
    lost: u64,
    /// Prunes waiting or in progress, oldest first.
    prunes: VecDeque<Prune>,
    /// When the next automatic prune may start.
    next_auto: Instant,
}

impl Writer {
    pub(crate) fn new(
        conn: Connection,
        shared: Arc<Shared>,
        path: PathBuf,
        max_batch: usize,
    ) -> Self {
        Writer {
            conn,
            shared,
            path,
            max_batch: max_batch.max(1),
            failing: false,
            lost: 0,
            prunes: VecDeque::new(),
            next_auto: Instant::now(),
        }
    }

    /// Serves `rx` until every sender is gone and the queue is empty.
    pub(crate) fn run(mut self, rx: Receiver<Msg>) {
        loop {
            // With a prune in progress, queued rows go first and pruning goes on when
            // none wait; otherwise sleep until a message or the next automatic prune.
            let first = if self.prunes.is_empty() {
                match rx.recv_timeout(self.until_auto_prune()) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match rx.try_recv() {
                    Ok(m) => Some(m),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => break,
                }
            };
            if let Some(first) = first {
                let mut batch = vec![first];
                while batch.len() < self.max_batch {
                    match rx.try_recv() {
                        Ok(m) => batch.push(m),
                        Err(_) => break,
                    }
                }
                self.handle(batch);
            }
            self.schedule_auto_prune();
            self.prune_step();
        }
        // Keeps the planner's statistics fresh for the next readers; cheap.
        if let Err(e) = self.conn.execute_batch("PRAGMA optimize") {
            tracing::debug!(error = %e, "delivery ledger: PRAGMA optimize failed");
        }
    }

    /// Stores the rows of `batch` in one transaction, then answers every message.
    fn handle(&mut self, batch: Vec<Msg>) {
        let mut rows: Vec<(Message, Reply)> = Vec::with_capacity(batch.len());
        let mut syncs = Vec::new();
        let mut marks = Vec::new();
        for m in batch {
            match m {
                Msg::Row(row, reply) => rows.push((Message::Row(row), reply)),
                Msg::Outbox(updates, reply) => rows.push((Message::Outbox(updates), reply)),
                Msg::Prune(cutoff, reply) => self.prunes.push_back(Prune {
                    cutoff,
                    table: 0,
                    reply: Some(reply),
                }),
                Msg::Sync(reply) => syncs.push(reply),
                Msg::Wake => {}
                Msg::Upload(m) => marks.push(m),
            }
        }
        if !marks.is_empty() {
            let r = crate::uploads::write(&mut self.conn, &marks);
            if r.is_err() {
                self.shared
                    .errors
                    .fetch_add(marks.len() as u64, Ordering::Relaxed);
                self.lost += marks.len() as u64;
            }
            self.note(r.err().as_ref());
        }
        if !rows.is_empty() {
            let results = match write(&mut self.conn, &rows) {
                Ok(per_row) => per_row,
                Err(e) => {
                    let e = Arc::new(e);
                    rows.iter().map(|_| Err(e.clone())).collect()
                }
            };
            let mut first_error = None;
            for ((_, reply), result) in rows.into_iter().zip(results) {
                let answer = result.map_err(|e| {
                    first_error.get_or_insert_with(|| e.clone());
                    LedgerError::Write(e)
                });
                if answer.is_err() {
                    self.shared.errors.fetch_add(1, Ordering::Relaxed);
                    self.lost += 1;
                }
                // The caller may have stopped waiting: nothing to do then.
                let _ = reply.send(answer);
            }
            self.note(first_error.as_deref());
        }
        for reply in syncs {
            let _ = reply.send(Ok(()));
        }
    }

    /// Logs a change between working and failing writes.
    fn note(&mut self, error: Option<&rusqlite::Error>) {
        match (error, self.failing) {
            (Some(e), false) => {
                self.failing = true;
                tracing::error!(
                    path = %self.path.display(),
                    error = %e,
                    "delivery ledger: writes fail; deliveries go on but are not recorded \
                     (outpost_ledger_errors_total counts the rows)"
                );
            }
            (None, true) => {
                tracing::info!(
                    path = %self.path.display(),
                    lost = self.lost,
                    "delivery ledger: writes work again"
                );
                self.failing = false;
                self.lost = 0;
            }
            _ => {}
        }
    }

    fn retention_ms(&self) -> i64 {
        i64::try_from(self.shared.retention_ms.load(Ordering::Relaxed)).unwrap_or(i64::MAX)
    }

    fn until_auto_prune(&self) -> Duration {
        if self.retention_ms() == 0 {
            return PRUNE_EVERY;
        }
        self.next_auto.saturating_duration_since(Instant::now())
    }

    /// Queues the automatic prune when the retention is set and its minute has come.
    fn schedule_auto_prune(&mut self) {
        let retention = self.retention_ms();
        if retention == 0 || Instant::now() < self.next_auto {
            return;
        }
        self.next_auto = Instant::now() + PRUNE_EVERY;
        self.prunes.push_back(Prune {
            cutoff: now_millis().saturating_sub(retention),
            table: 0,
            reply: None,
        });
    }

    /// Deletes one step of the oldest prune; answers it once its last table is done.
    fn prune_step(&mut self) {
        let Some(p) = self.prunes.front_mut() else {
            return;
        };
        let (table, column) = TABLES[p.table];
        let sql = format!(
            "DELETE FROM {table} WHERE id IN \
             (SELECT id FROM {table} WHERE {column} < ?1 ORDER BY {column} LIMIT ?2)"
        );
        match self.conn.execute(&sql, params![p.cutoff, PRUNE_STEP]) {
            Ok(n) if n as i64 >= PRUNE_STEP => {}
            Ok(_) if p.table + 1 < TABLES.len() => p.table += 1,
            Ok(_) => {
                if let Some(reply) = self.prunes.pop_front().and_then(|p| p.reply) {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(e) => {
                self.shared.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(path = %self.path.display(), error = %e, "delivery ledger: pruning failed; tried again in a minute");
                if let Some(reply) = self.prunes.pop_front().and_then(|p| p.reply) {
                    let _ = reply.send(Err(LedgerError::Write(Arc::new(e))));
                }
            }
        }
    }
}
