//! outpost spool: discovery of completed batch files, the completion rules, and every
//! move of a spool file — claim, finish (delete or archive), fail, requeue.
//!
//! Architecture Invariant: this is the only crate that renames, writes or deletes
//! anything under `spool_dir`; the uploader only opens claimed files read-only. It knows
//! nothing about S3: upload journals are opaque bytes it keeps beside a claim.

mod claimname;
mod completion;
mod discover;
mod fsx;
mod live;
pub mod rules;
mod spool;

pub use discover::{Discovery, DiscoveryHandle, FailedFiles, ServerRule, run_discovery};
pub use live::{LiveState, SpoolLive};
pub use spool::{
    BatchState, BatchWaiting, ExistingObject, FailRecord, ServerStatus, Spool, SpoolError,
    default_instance, rfc3339,
};

use std::path::PathBuf;
use std::time::SystemTime;

/// A file taken over by this daemon: renamed into `.outpost/<instance>/claims/<server>/`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claim {
    /// Server the file was dropped for.
    pub server: String,
    /// Claim order, per instance; equal relative paths are published in this order.
    pub seq: u64,
    /// Relative path below the server folder, `/`-separated (always UTF-8).
    pub rel: String,
    /// Size when claimed.
    pub size: u64,
    /// Modification time when claimed (nanoseconds since the epoch): the drop time used
    /// for the oldest-pending age.
    pub mtime_ns: i128,
    /// Marker file removed with this claim (marker completion rule), relative path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker: Option<String>,
    /// Name of the claimed file in the claims folder.
    #[serde(skip)]
    pub data: String,
    /// Taken over from a daemon whose lease expired: its place among this daemon's
    /// claims of the same path is decided by drop time, not by claim order.
    #[serde(skip)]
    pub taken: bool,
}

impl Claim {
    /// The claim of `rel` in `server`'s folder, numbered `seq`, whose file has the
    /// status `st` (size and drop time are taken from it). Its `data` name is set once
    /// the file is in the claims folder.
    pub(crate) fn new(
        server: &str,
        seq: u64,
        rel: String,
        st: &rustix::fs::Stat,
        marker: Option<String>,
    ) -> Claim {
        Claim {
            server: server.to_owned(),
            seq,
            rel,
            size: st.st_size as u64,
            mtime_ns: fsx::mtime_ns(st),
            marker,
            data: String::new(),
            taken: false,
        }
    }

    /// When the exporter last wrote the file.
    pub fn dropped_at(&self) -> SystemTime {
        dropped_at_ns(self.mtime_ns)
    }
}

/// A modification time in nanoseconds since the epoch as a `SystemTime`.
pub(crate) fn dropped_at_ns(mtime_ns: i128) -> SystemTime {
    let ns = mtime_ns.max(0) as u128;
    SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(ns.min(u64::MAX as u128) as u64)
}

/// Why a spool entry was refused without being published (a closed set: metric labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// A symbolic link (never followed).
    Symlink,
    /// A FIFO, socket or device.
    Special,
    /// A folder or file that cannot be read.
    Unreadable,
    /// A folder for a server that is not configured (files left untouched).
    UnknownServer,
}

impl RejectReason {
    /// Every reason, so metrics can start at zero.
    pub const ALL: [RejectReason; 4] = [
        RejectReason::Symlink,
        RejectReason::Special,
        RejectReason::Unreadable,
        RejectReason::UnknownServer,
    ];
    /// Metric label and log word.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Symlink => "symlink",
            RejectReason::Special => "special_file",
            RejectReason::Unreadable => "unreadable",
            RejectReason::UnknownServer => "unknown_server",
        }
    }
}

/// Why a file can never be published and went to `.failed/` (a closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailReason {
    /// Retries exhausted on transient errors.
    RetriesExhausted,
    /// The name is not UTF-8 (S3 keys are UTF-8).
    NameNotUtf8,
    /// The key would exceed S3's 1,024-byte limit.
    KeyTooLong,
    /// Larger than S3's object size limit.
    TooLarge,
    /// Cannot be opened or read.
    Unreadable,
    /// The store refused the object itself (not the server).
    Rejected,
    /// The destination refused this file on every attempt while it accepted other
    /// files of the same server (e.g. a key under a customer's Deny).
    Refused,
    /// `overwrite: never`: another object already holds the key (left untouched).
    Exists,
}

impl FailReason {
    /// Every reason, so metrics can start at zero.
    pub const ALL: [FailReason; 8] = [
        FailReason::RetriesExhausted,
        FailReason::NameNotUtf8,
        FailReason::KeyTooLong,
        FailReason::TooLarge,
        FailReason::Unreadable,
        FailReason::Rejected,
        FailReason::Refused,
        FailReason::Exists,
    ];
    /// Metric label and record word.
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::RetriesExhausted => "retries_exhausted",
            FailReason::NameNotUtf8 => "name_not_utf8",
            FailReason::KeyTooLong => "key_too_long",
            FailReason::TooLarge => "too_large",
            FailReason::Unreadable => "unreadable",
            FailReason::Rejected => "rejected",
            FailReason::Refused => "refused",
            FailReason::Exists => "exists",
        }
    }
}

/// What discovery reports besides claims; the binary logs and counts each in one place.
pub trait SpoolEvents: Send + Sync {
    /// An entry was refused (reported once per entry per run).
    fn rejected(&self, server: &str, reason: RejectReason, path: &std::path::Path);
    /// A file went to `.failed/` during discovery.
    fn failed_at_discovery(&self, server: &str, reason: FailReason, path: &std::path::Path);
}

/// Where a failed or archived copy went.
pub type Destination = PathBuf;
