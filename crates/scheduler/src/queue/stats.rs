//! The totals the dispatcher shares with metrics and `status`: one [`ServerStats`] per
//! server, replaced whole after every change of its queue. A reader adding a total adds
//! a field here and fills it in `ServerQueue::stats` ([`super::server`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Live totals of one server, for metrics and `status`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerStats {
    /// Files not yet acknowledged (waiting or in flight).
    pub queue_files: u64,
    /// Their bytes.
    pub queue_bytes: u64,
    /// Files being uploaded now.
    pub in_flight: u64,
    /// Drop time of the oldest file not yet acknowledged.
    pub oldest_dropped: Option<SystemTime>,
    /// Why the server is blocked, if it is.
    pub blocked: Option<String>,
    /// Why `publish_last` files wait beyond the normal order, if they do.
    pub held: Option<String>,
    /// While the server's delivery window is closed: when it opens.
    pub window_until: Option<SystemTime>,
}

/// Shared view of every server's totals.
pub type Stats = Arc<Mutex<HashMap<String, ServerStats>>>;

/// Replaces (`Some`) or removes (`None`) the totals of `server`.
pub(super) fn set(stats: &Stats, server: &str, s: Option<ServerStats>) {
    let mut all = stats.lock().unwrap_or_else(|e| e.into_inner());
    match s {
        Some(s) => all.insert(server.to_owned(), s),
        None => all.remove(server),
    };
}
