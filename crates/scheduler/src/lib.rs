//! outpost scheduler: one pending index per server, a per-server and a global
//! concurrency limit shared round-robin, same-path ordering, and per-file retry timing.
//!
//! Architecture Invariant: the scheduler knows nothing about S3 or the file system. It
//! orders opaque items and calls [`Work`]; *whether* an error is worth a retry is the
//! worker's verdict ([`Outcome`]), *when* to retry is decided here.

mod backoff;
mod queue;

pub use backoff::{RetryPolicy, full_jitter};
pub use queue::{Clock, Command, Scheduler, ServerStats, Stats};

use std::future::Future;
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

/// What the scheduler needs to know of an item.
pub trait Item: Send + Sync + Clone + 'static {
    /// Items with the same key run one at a time, in `seq` order.
    fn order_key(&self) -> &str;
    /// Arrival order.
    fn seq(&self) -> u64;
    /// Bytes, for queue totals.
    fn size(&self) -> u64;
    /// When the item was dropped, for the oldest-pending age.
    fn dropped_at(&self) -> SystemTime;
    /// The folder the item sits in: `publish_last` items wait for the earlier items of
    /// their group.
    fn group(&self) -> &str {
        ""
    }
    /// The name matched against `publish_last` globs.
    fn name(&self) -> &str {
        self.order_key()
    }
    /// Taken over from a dead daemon: placed among the items of its key by drop time
    /// rather than by `seq` (its `seq` was given when it was taken).
    fn taken_over(&self) -> bool {
        false
    }
}

pub use outpost_config::glob_match;

/// An order key split at its last `/`: (group, name) — the folder and the file name of
/// a relative path. [`Item::group`] and [`Item::name`] must agree with it for the keys
/// of failed files ([`Command::Failed`]) to hold the right group.
pub fn key_parts(key: &str) -> (&str, &str) {
    key.rsplit_once('/').unwrap_or(("", key))
}

/// The verdict of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered and finished; forget the item.
    Done,
    /// A transient error: retry after a backoff, or give up after the last attempt.
    Retry(String),
    /// The destination refuses us: the *server* is blocked, the item stays pending
    /// (its attempt is not counted), and only a probe runs until one succeeds. The text
    /// says the possible causes and the fix.
    Blocked(String),
    /// The worker already dealt with it (e.g. it vanished); forget it.
    Dropped,
    /// The worker moved it to `.failed/` (it can never go): forget it, and hold the
    /// `publish_last` items of its group until it is requeued or removed.
    Failed,
    /// Shutdown interrupted the attempt; the item stays claimed on disk for next time.
    Interrupted,
}

/// Attempt history handed to [`Work::give_up`].
#[derive(Debug, Clone)]
pub struct History {
    /// Attempts made.
    pub attempts: u32,
    /// First attempt.
    pub first_attempt: SystemTime,
    /// Last attempt.
    pub last_attempt: SystemTime,
    /// Last error.
    pub last_error: String,
    /// The destination refused this object itself (it accepted other files of the
    /// server meanwhile), rather than failing transiently.
    pub refused: bool,
}

/// The work the scheduler drives.
pub trait Work<I: Item>: Send + Sync + 'static {
    /// One attempt (1-based `attempt`). `stop` fires when shutdown's grace ran out.
    fn attempt(
        &self,
        server: &str,
        item: &I,
        attempt: u32,
        stop: CancellationToken,
    ) -> impl Future<Output = Outcome> + Send;
    /// Retries are exhausted.
    fn give_up(&self, server: &str, item: I, history: History) -> impl Future<Output = ()> + Send;
}
