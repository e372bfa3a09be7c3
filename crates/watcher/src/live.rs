//! The running daemon's live state, `.outpost/<instance>/live.json`: what only the
//! daemon knows (files in flight, why a server is blocked or its `publish_last` files
//! are held, why its background verification fails), written by it about once a second and read by `outpost status`, which
//! merges every instance on the spool whose process is still alive.
//!
//! Touch this file to add a field to `status`; the file's place and modes are the
//! spool's (`Spool::write_state`, `Spool::live_states`).

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Spool;

/// The live state's file name in the instance folder.
pub(crate) const LIVE: &str = "live.json";

/// What one running daemon reports.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveState {
    /// The daemon's process: a state whose process is gone (kill -9) is ignored.
    #[serde(default)]
    pub pid: u32,
    /// Files in flight per server.
    #[serde(default)]
    pub in_flight: HashMap<String, u64>,
    /// Why a server is blocked, per blocked server.
    #[serde(default)]
    pub blocked: HashMap<String, String>,
    /// Why `publish_last` files of a server wait, per server.
    #[serde(default)]
    pub held: HashMap<String, String>,
    /// Why the last background verification failed, per server whose last one did.
    #[serde(default)]
    pub verify_failed: HashMap<String, String>,
    /// When the delivery window opens (RFC 3339 UTC), per server whose window is closed.
    #[serde(default)]
    pub window: HashMap<String, String>,
}

/// What every running daemon on a spool reports, merged.
#[derive(Debug, Default)]
pub struct SpoolLive {
    /// Whether any daemon is running on this spool.
    pub running: bool,
    /// Files in flight per server, summed over the daemons.
    pub in_flight: HashMap<String, u64>,
    /// Why a server is blocked (any daemon's reason).
    pub blocked: HashMap<String, String>,
    /// Why `publish_last` files of a server wait (any daemon's reason).
    pub held: HashMap<String, String>,
    /// Why a server's last background verification failed (any daemon's reason).
    pub verify_failed: HashMap<String, String>,
    /// When a server's closed delivery window opens (RFC 3339 UTC; any daemon's).
    pub window: HashMap<String, String>,
}

impl Spool {
    /// Writes this daemon's live state (owner-only, atomic, never through a link).
    pub fn write_live(&self, state: &LiveState) -> std::io::Result<()> {
        let body = serde_json::to_vec(state).map_err(std::io::Error::other)?;
        self.write_state(LIVE, &body)
    }

    /// Removes this daemon's live state (a clean stop).
    pub fn remove_live(&self) {
        self.remove_state(LIVE);
    }

    /// The live state of every daemon running on the spool at `root`, merged. Read
    /// beneath the spool: no link followed, no FIFO waited on; unreadable or garbled
    /// states are skipped.
    pub fn read_live(root: &Path) -> SpoolLive {
        let mut out = SpoolLive::default();
        for bytes in Spool::live_states(root) {
            let Ok(s) = serde_json::from_slice::<LiveState>(&bytes) else {
                continue;
            };
            if s.pid == 0 || !Path::new(&format!("/proc/{}", s.pid)).exists() {
                continue;
            }
            out.running = true;
            for (k, n) in s.in_flight {
                *out.in_flight.entry(k).or_insert(0) += n;
            }
            out.blocked.extend(s.blocked);
            out.held.extend(s.held);
            out.verify_failed.extend(s.verify_failed);
            out.window.extend(s.window);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_format_is_the_one_status_has_always_read() {
        let old = br#"{"pid":42,"in_flight":{"acme":2},"blocked":{"b":"why"},"held":{}}"#;
        let s: LiveState = serde_json::from_slice(old).expect("parse");
        assert_eq!(s.pid, 42);
        assert_eq!(s.in_flight["acme"], 2);
        assert_eq!(s.blocked["b"], "why");
        let back: serde_json::Value =
            serde_json::from_slice(&serde_json::to_vec(&s).expect("ser")).expect("json");
        assert_eq!(back["in_flight"]["acme"], 2);
    }
}
