//! outpost's delivery ledger: every outcome (delivered, failed, requeued) in an embedded
//! SQLite database, `<state_dir>/ledger.sqlite`, and what `outpost deliveries` prints.
//!
//! Architecture Invariant: a ledger problem never blocks or loses a delivery.
//! [`Ledger::record`] never waits: a row goes into a bounded queue or is counted as
//! dropped at once; one writer thread commits the queue group-wise and answers each
//! row's [`Ack`]; a database error is counted, logged when writes start and stop
//! failing, and the thread goes on. Readers ([`query`]) use a connection of their own,
//! read-only, with the daemon running or stopped.
//!
//! This file holds the handle. `row.rs` the row types and the time unit (Unix
//! milliseconds), `schema.rs` the file, its settings and migrations, `writer.rs` the
//! writer thread (group commit, pruning), `store.rs` one transaction (duplicates),
//! `query.rs` the reads, `render.rs` the table and JSON lines, `outbox.rs` the
//! notification outbox, `uploads.rs` the multipart uploads outpost began.

mod error;
mod outbox;
mod query;
pub mod render;
mod row;
mod schema;
mod store;
mod uploads;
mod writer;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;

pub use error::LedgerError;
pub use outbox::{Backlog, Notice, OutboxReader, Pending, Update};
pub use query::{Filter, query, query_at};
pub use row::{
    Delivered, Failed, Mode, Outcome, Requeued, Row, UnixMillis, format_rfc3339, now_millis,
    unix_millis,
};
pub use schema::VERSION as SCHEMA_VERSION;
pub use uploads::{OpenUpload, UploadMark, open_uploads};

use writer::{Msg, Shared, Writer};

/// The ledger's file name in `state_dir`.
pub const FILE_NAME: &str = "ledger.sqlite";

/// The ledger file of a `state_dir`.
pub fn path_in(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// Sizes of the writer's queue and transactions.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Rows that may wait for the writer; beyond, rows are dropped (counted). At ~0.5 KB
    /// a row, the default holds ~5 MB: tens of seconds of a stalled disk at full speed.
    pub queue: usize,
    /// Rows per transaction at most.
    pub max_batch: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            queue: 10_000,
            max_batch: 1000,
        }
    }
}

/// The daemon's handle on the ledger: queue rows, read the counters, set the retention.
/// `Sync`: share it behind an `Arc`.
pub struct Ledger {
    /// The writer's queue; `None` once [`Ledger::close`] began.
    queue: Option<SyncSender<Msg>>,
    /// Counters and retention, shared with the writer.
    shared: Arc<Shared>,
    /// The writer thread, joined by [`Ledger::close`].
    writer: Option<JoinHandle<()>>,
    /// The file, for messages.
    path: PathBuf,
    /// A read-only connection kept for the daemon's own reads (the orphan sweep asks
    /// once per server and period: 10,000 servers must not open the file each time).
    reader: std::sync::Mutex<Option<rusqlite::Connection>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("path", &self.path).finish()
    }
}

impl Ledger {
    /// Opens (or creates: folder 0750, file 0640) the ledger at `path`, migrates its
    /// schema and starts the writer thread.
    pub fn open(path: &Path) -> Result<Ledger, LedgerError> {
        Ledger::open_with(path, Options::default())
    }

    /// [`Ledger::open`] with other queue sizes.
    pub fn open_with(path: &Path, options: Options) -> Result<Ledger, LedgerError> {
        let conn = schema::open_writer(path)?;
        let shared = Arc::new(Shared::default());
        let (queue, rx) = std::sync::mpsc::sync_channel(options.queue.max(1));
        let w = Writer::new(conn, shared.clone(), path.to_owned(), options.max_batch);
        let writer = std::thread::Builder::new()
            .name("outpost-ledger".into())
            .spawn(move || w.run(rx))
            .map_err(|e| LedgerError::Create {
                path: path.to_owned(),
                source: Arc::new(e),
            })?;
        Ok(Ledger {
            queue: Some(queue),
            shared,
            writer: Some(writer),
            path: path.to_owned(),
            reader: std::sync::Mutex::new(None),
        })
    }

    /// The ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues `row` for the writer; never waits. The [`Ack`] resolves once the row is
    /// committed, or at once with [`LedgerError::QueueFull`] / [`LedgerError::WriterGone`]
    /// (the row is then counted in [`Ledger::dropped`]).
    pub fn record(&self, row: impl Into<Row>) -> Ack {
        self.record_with(row, Vec::new())
    }

    /// [`Ledger::record`], with the notifications of a delivery written in the same
    /// transaction (none when the row is a re-upload of a claim already recorded: its
    /// notifications were written with the first row).
    pub fn record_with(&self, row: impl Into<Row>, notices: Vec<Notice>) -> Ack {
        let (reply, ack) = oneshot::channel();
        match self.send(Msg::Row(Box::new((row.into(), notices)), reply)) {
            Ok(()) => {
                if self.shared.dropping.load(Ordering::Relaxed)
                    && self.shared.dropping.swap(false, Ordering::Relaxed)
                {
                    tracing::info!(path = %self.path.display(), "delivery ledger: rows are queued again");
                }
                Ack::waiting(ack)
            }
            Err(e) => {
                self.count_dropped();
                Ack::ready(Err(e))
            }
        }
    }

    /// Counts a row or mark never queued; logged when dropping starts.
    fn count_dropped(&self) {
        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        if !self.shared.dropping.swap(true, Ordering::Relaxed) {
            tracing::error!(path = %self.path.display(), "delivery ledger: rows are dropped (queue full or writer gone); deliveries go on (outpost_ledger_dropped_total counts them)");
        }
    }

    pub(crate) fn send(&self, msg: Msg) -> Result<(), LedgerError> {
        let queue = self.queue.as_ref().ok_or(LedgerError::WriterGone)?;
        queue.try_send(msg).map_err(|e| match e {
            TrySendError::Full(_) => LedgerError::QueueFull,
            TrySendError::Disconnected(_) => LedgerError::WriterGone,
        })
    }

    /// Rows a database error kept out of the ledger, plus failed prune steps
    /// (`outpost_ledger_errors_total`).
    pub fn errors(&self) -> u64 {
        self.shared.errors.load(Ordering::Relaxed)
    }

    /// Rows never queued because the queue was full or the writer gone
    /// (`outpost_ledger_dropped_total`).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Sets `ledger_retention` (at start and on reload): rows older than it are pruned
    /// by the writer, in steps of 1000 rows between batches, at most once a minute.
    pub fn set_retention(&self, retention: Duration) {
        let ms = u64::try_from(retention.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        self.shared.retention_ms.store(ms, Ordering::Relaxed);
        // A full queue wakes the writer anyway.
        let _ = self.send(Msg::Wake);
    }

    /// Deletes rows older than `older_than` now (between batches, in small steps); the
    /// [`Ack`] resolves once all are gone.
    pub fn prune(&self, older_than: SystemTime) -> Ack {
        let (reply, ack) = oneshot::channel();
        match self.send(Msg::Prune(unix_millis(older_than), reply)) {
            Ok(()) => Ack::waiting(ack),
            Err(e) => Ack::ready(Err(e)),
        }
    }

    /// An [`Ack`] that resolves once everything queued before it is committed (or
    /// failed).
    pub fn sync(&self) -> Ack {
        let (reply, ack) = oneshot::channel();
        match self.send(Msg::Sync(reply)) {
            Ok(()) => Ack::waiting(ack),
            Err(e) => Ack::ready(Err(e)),
        }
    }

    /// Stops taking rows, lets the writer commit what is queued and waits for it
    /// (blocking: call from a blocking context at the daemon's stop).
    pub fn close(mut self) {
        // The kept reader first: an open connection would keep the writer's close from
        // checkpointing the WAL into the file and removing it.
        drop(self.reader.lock().unwrap_or_else(|e| e.into_inner()).take());
        self.queue = None;
        if let Some(w) = self.writer.take()
            && w.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "delivery ledger: the writer thread panicked");
        }
    }
}

/// The answer to one [`Ledger::record`] (or `prune`, `sync`): `Ok` once committed.
/// Await it (with a bound: `tokio::time::timeout`), or [`Ack::wait`] outside async
/// code. Dropping it is fine: the row is stored all the same.
#[derive(Debug)]
pub struct Ack(AckState);

#[derive(Debug)]
enum AckState {
    /// Known at once (the row was not queued), taken by the first poll.
    Ready(Option<Result<(), LedgerError>>),
    /// The writer answers.
    Waiting(oneshot::Receiver<Result<(), LedgerError>>),
}

impl Ack {
    pub(crate) fn ready(r: Result<(), LedgerError>) -> Ack {
        Ack(AckState::Ready(Some(r)))
    }

    pub(crate) fn waiting(rx: oneshot::Receiver<Result<(), LedgerError>>) -> Ack {
        Ack(AckState::Waiting(rx))
    }

    /// Blocks the thread until the writer answers. Not from async code (it panics
    /// inside a tokio runtime): await the `Ack` there.
    pub fn wait(self) -> Result<(), LedgerError> {
        match self.0 {
            AckState::Ready(r) => r.unwrap_or(Err(LedgerError::WriterGone)),
            AckState::Waiting(rx) => rx.blocking_recv().unwrap_or(Err(LedgerError::WriterGone)),
        }
    }
}

impl Future for Ack {
    type Output = Result<(), LedgerError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            AckState::Ready(r) => Poll::Ready(r.take().unwrap_or(Err(LedgerError::WriterGone))),
            // The writer dropped the reply without answering: it is gone.
            AckState::Waiting(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(LedgerError::WriterGone))),
        }
    }
}
