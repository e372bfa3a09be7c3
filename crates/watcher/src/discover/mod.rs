//! Discovery: inotify events (through `notify`), a start-up scan and a periodic rescan
//! find complete files by each server's completion rule and claim them. Runs on its own
//! thread: file-system calls block, and no server's queue can make it wait.
//!
//! This file holds what the binary sees ([`Discovery`], [`DiscoveryHandle`],
//! [`run_discovery`]) and the messages into the thread. Then, one job per file:
//! - `event_loop` — the thread: one loop, one `handle(msg)` per message, the rescan
//!   timer, reloads.
//! - `scan` — looking at entries (an event's path, a folder tree) and asking the
//!   completion rules (`crate::completion`, pure) whether a file is complete.
//! - `batch` — folders of a `manifest` server: when one is complete, its record, its
//!   files claimed whole, its marker.
//! - `take` — claiming what is complete in batches, failing what can never be a key,
//!   and reporting refused entries once.

mod batch;
mod event_loop;
mod scan;
mod take;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use outpost_config::Completion;

use crate::{Claim, Spool, SpoolEvents};
use event_loop::State;

/// What discovery needs to know of one server.
#[derive(Debug, Clone)]
pub struct ServerRule {
    /// Server name (= folder).
    pub name: String,
    /// Key prefix, to refuse keys over S3's limit at once.
    pub prefix: String,
    /// Bucket, for failure records.
    pub bucket: String,
    /// Completion rule.
    pub completion: Completion,
    /// Archive retention, pruned on each rescan.
    pub archive_retention: Option<Duration>,
    /// `publish_last` globs: a scan claims such files after the other files of their
    /// folder (a scan cannot tell the drop order of files with equal timestamps).
    pub publish_last: Vec<String>,
    /// Folders directly under the server folder are batches (`manifest` is on): each is
    /// recorded with its files once complete, and claimed whole.
    pub batches: bool,
}

/// Discovery's settings and outputs.
pub struct Discovery {
    /// The spool.
    pub spool: Arc<Spool>,
    /// The configured servers.
    pub servers: Vec<ServerRule>,
    /// Full rescan period.
    pub rescan_interval: Duration,
    /// Logs and counts refused entries.
    pub events: Arc<dyn SpoolEvents>,
    /// Receives every claim; returns false once the receiver is gone.
    pub sink: Box<dyn Fn(Claim) -> bool + Send>,
    /// Called once the start-up scan is done.
    pub on_ready: Box<dyn FnOnce() + Send>,
    /// Told of files in `.failed/`: each one failed by discovery itself, and after each
    /// full scan every server's whole set (so the scheduler holds `publish_last` files
    /// whose folder has a failed file, and releases them once it is gone).
    pub on_failed: Box<dyn Fn(FailedFiles) + Send>,
}

/// Files in `.failed/`, for [`Discovery::on_failed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailedFiles {
    /// One file was just moved there (its relative path, as the scheduler keys it).
    One {
        /// Server.
        server: String,
        /// Relative path.
        rel: String,
    },
    /// Every file of a server found there by a scan.
    All {
        /// Server.
        server: String,
        /// Relative paths.
        rels: Vec<String>,
    },
}

/// Messages into the discovery thread, each handled by `State::handle`.
enum Msg {
    /// A file-system event from `notify` (or its error).
    Fs(notify::Result<notify::Event>),
    /// File-system events were dropped (too many not yet handled): rescan.
    Overflow,
    /// Show you are alive: advance the heartbeat.
    Ping,
    /// The new set of servers after a reload.
    Reconfigure(Vec<ServerRule>),
    /// Stop now: what is not handled yet is found by the next start's scan.
    Stop,
}

/// Stops and watches the discovery thread.
#[derive(Clone)]
pub struct DiscoveryHandle {
    /// Into the thread's one queue, shared with file-system events: a stop or ping is
    /// handled in order with them.
    tx: mpsc::Sender<Msg>,
    /// Shared with the thread, which advances it as it works; a watchdog reads it.
    heartbeat: Arc<AtomicU64>,
}

impl DiscoveryHandle {
    /// Asks discovery to stop after the message in hand; messages and events queued
    /// before this one but not yet looked at are left for the next start's scan.
    pub fn stop(&self) {
        let _ = self.tx.send(Msg::Stop);
    }
    /// Asks discovery to show it is alive: the heartbeat advances when it handles the
    /// ping (or as it works through a long scan).
    pub fn ping(&self) {
        let _ = self.tx.send(Msg::Ping);
    }
    /// Replaces the servers discovery serves (a reload): added folders are watched and
    /// scanned, removed ones left alone.
    pub fn reconfigure(&self, servers: Vec<ServerRule>) {
        let _ = self.tx.send(Msg::Reconfigure(servers));
    }
    /// Advances whenever discovery handles a message or scans a batch of entries.
    pub fn heartbeat(&self) -> u64 {
        self.heartbeat.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for DiscoveryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DiscoveryHandle")
    }
}

/// Starts discovery on its own thread.
pub fn run_discovery(
    d: Discovery,
) -> std::io::Result<(DiscoveryHandle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel();
    let heartbeat = Arc::new(AtomicU64::new(0));
    let handle = DiscoveryHandle {
        tx: tx.clone(),
        heartbeat: heartbeat.clone(),
    };
    let join = std::thread::Builder::new()
        .name("outpost-discovery".into())
        .spawn(move || State::new(d, heartbeat).run(tx, rx))?;
    Ok((handle, join))
}
