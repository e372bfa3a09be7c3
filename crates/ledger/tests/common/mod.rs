//! Helpers shared by the ledger's integration tests: a ledger in a temporary folder and
//! rows with realistic fields.

#![allow(dead_code)] // reason: each test binary uses a different subset

use std::path::PathBuf;

use outpost_ledger::{Delivered, Failed, Ledger, Mode, Outcome, Requeued, UnixMillis};

/// A fresh state folder (kept until the value is dropped) and its ledger path.
pub fn state() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state").join("ledger.sqlite");
    (dir, path)
}

pub fn open(path: &std::path::Path) -> Ledger {
    Ledger::open(path).expect("open ledger")
}

/// A delivered row for `key` on `server` at `at`, claim `seq` of instance `host-a`.
pub fn delivered(server: &str, key: &str, seq: u64, at: UnixMillis) -> Delivered {
    let rel = key.split_once('/').map_or(key, |(_, r)| r).to_owned();
    Delivered {
        server: server.into(),
        bucket: format!("{server}-bucket"),
        key: key.into(),
        size: 1_258_291 + seq,
        checksum_algorithm: "crc32c".into(),
        checksum: format!("crc{seq:05}=="),
        store_checksum: Some(format!("crc{seq:05}==")),
        etag: Some(format!("\"{seq:032x}\"")),
        version_id: seq.is_multiple_of(2).then(|| format!("v{seq}")),
        relative_path: rel,
        dropped_at: at - 5_000,
        first_attempt: at - 4_000,
        delivered_at: at,
        attempts: 1,
        duration_ms: 812,
        mode: Mode::Single,
        outcome: Outcome::Written,
        instance: "host-a".into(),
        seq,
        batch: None,
    }
}

pub fn failed(server: &str, key: &str, at: UnixMillis) -> Failed {
    Failed {
        server: server.into(),
        bucket: format!("{server}-bucket"),
        key: key.into(),
        relative_path: key.into(),
        reason: "exists".into(),
        record_path: format!("/var/spool/outpost/.failed/{server}/{key}.failed.json"),
        at,
        attempts: 3,
        instance: "host-a".into(),
    }
}

pub fn requeued(server: &str, rel: &str, at: UnixMillis) -> Requeued {
    Requeued {
        server: server.into(),
        relative_path: rel.into(),
        at,
    }
}
