//! The commands the daemon sends the dispatcher: files, server settings, what the disk
//! says of `.failed/`, and the watchdog's ping. A reader adding a command adds it here
//! and handles it in `Scheduler::apply` ([`super`]).

use crate::RetryPolicy;
use outpost_config::Window;

/// Commands into the dispatcher.
#[derive(Debug)]
pub enum Command<I> {
    /// A new item for a server.
    Add {
        /// Server name.
        server: String,
        /// The item.
        item: I,
    },
    /// Adds a server or changes its limits.
    Configure {
        /// Server name.
        server: String,
        /// Files in flight for it.
        max_in_flight: usize,
        /// Its retry policy.
        retry: RetryPolicy,
        /// Globs of items published only after the earlier items of their group.
        last: Vec<String>,
        /// When its items may start (`None`: always); items in flight when it closes
        /// go on to their end.
        window: Option<Window>,
    },
    /// Removes a server once its queue is empty; no new attempt starts for it.
    Remove {
        /// Server name.
        server: String,
    },
    /// A file of the server was moved to `.failed/` (its order key): `publish_last`
    /// items of its group wait until it is requeued or removed.
    Failed {
        /// Server name.
        server: String,
        /// The failed file's order key (relative path).
        key: String,
    },
    /// Every file of the server in `.failed/`, as a scan of the disk found them
    /// (start-up and each rescan): replaces what was known, so a failed file removed by
    /// an operator releases its group.
    FailedScan {
        /// Server name.
        server: String,
        /// Order keys (relative paths) of the failed files.
        keys: Vec<String>,
        /// From discovery, after a scan of the server folder (a requeued file is then
        /// in the queue). One sent before (at start-up, before the claims of the last
        /// run) holds the server's `publish_last` items until the first one after.
        after_scan: bool,
    },
    /// Changes the global limit of attempts in flight.
    SetGlobal(usize),
    /// Does nothing but prove the dispatcher answers (the systemd watchdog).
    Ping,
}
