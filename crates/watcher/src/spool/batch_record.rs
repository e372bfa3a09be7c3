//! Batch records on disk: what a record holds, the check that makes its names
//! trusted, where records and facts are named, and reading them back (`status` reads
//! through here with the daemon down). Pure format plus reads; the moves and writes are
//! in `batch`. Touch this to change what a record says.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::STATE;
use super::requeue::{plain_name, plain_relative};
use crate::fsx::{self, FileType};

/// Folder of the batch records below `.outpost/` (a dot-name: never an instance's).
pub(super) const BATCHES: &str = ".batches";
/// Largest record read back (a batch of ~100,000 long paths).
const MAX_RECORD: u64 = 64 << 20;
/// Largest facts file read back.
const MAX_FACTS: u64 = 1 << 20;

/// A batch record as written to disk.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Record {
    /// The batch folder's name (directly under the server folder).
    pub batch: String,
    /// Names the folder of this record's facts: unique per recording.
    pub id: String,
    /// When it was recorded (RFC 3339).
    pub recorded_at: String,
    /// Relative paths below the server folder (`<batch>/…`), sorted, each once.
    pub files: Vec<String>,
    /// The folder marker seen when the batch was found complete (marker rule): inode and
    /// modification time; only that marker is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker: Option<(u64, i128)>,
}

impl Record {
    /// Whether every name in the record is what it must be for `batch`: the batch a plain
    /// name, the id a plain name without a leading dot, each file a plain relative path
    /// of at least two names below the batch folder, sorted and unique.
    pub(crate) fn check(&self, batch: &str) -> bool {
        let id_ok = plain_name(self.id.as_bytes()) && !self.id.starts_with('.');
        let files_ok = self.files.iter().all(|f| {
            plain_relative(f.as_bytes())
                && f.strip_prefix(batch)
                    .and_then(|r| r.strip_prefix('/'))
                    .is_some_and(|r| !r.is_empty())
        }) && self.files.windows(2).all(|w| w[0] < w[1]);
        self.batch == batch && batch_name_ok(batch) && id_ok && files_ok
    }
}

/// Whether `batch` can name a batch: a plain name, not in progress, and short enough
/// for `<batch>.json`.
pub(crate) fn batch_name_ok(batch: &str) -> bool {
    plain_name(batch.as_bytes())
        && !crate::rules::in_progress(OsStr::new(batch))
        && batch.len() <= 250
}

/// What is known of one batch: its files, the facts of those delivered, those missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchState {
    /// The record's id: [`crate::Spool::batch_done`] forgets this batch only, never a
    /// newer one of the same name recorded meanwhile.
    pub id: String,
    /// Relative paths (`<batch>/…`), sorted.
    pub files: Vec<String>,
    /// The facts of each delivered file, by relative path.
    pub delivered: BTreeMap<String, Vec<u8>>,
    /// Files without facts yet, sorted.
    pub missing: Vec<String>,
}

impl BatchState {
    /// Whether every file of the batch was delivered.
    pub fn complete(&self) -> bool {
        self.missing.is_empty()
    }
}

pub(super) fn record_name(batch: &str) -> String {
    format!("{batch}.json")
}

pub(super) fn facts_name(n: usize) -> String {
    format!("{n}.json")
}

/// A new record id: time, process, counter.
pub(super) fn new_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let ns = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{ns:x}-{:x}-{n}", std::process::id())
}

/// The batch folder `.outpost/.batches/<server>` below the open spool, if it exists.
pub(super) fn open_batches(root_fd: &OwnedFd, server: &str) -> std::io::Result<OwnedFd> {
    fsx::open_dir_beneath(root_fd, &Path::new(STATE).join(BATCHES).join(server))
}

/// Reads and checks the record of `batch` in the open batch folder `dir`: `Ok(None)`
/// when there is none; an error for one that cannot be read or is not a record.
pub(super) fn read_record(dir: &OwnedFd, batch: &str) -> std::io::Result<Option<Record>> {
    let bytes = match fsx::read_regular_beneath(dir, Path::new(&record_name(batch)), MAX_RECORD) {
        Ok(Some(b)) => b,
        Ok(None) => return Err(std::io::ErrorKind::InvalidData.into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let rec: Record = serde_json::from_slice(&bytes).map_err(std::io::Error::from)?;
    if !rec.check(batch) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a batch record: a name in it is not a plain name below its batch folder",
        ));
    }
    Ok(Some(rec))
}

/// The names of the batches recorded in the open batch folder `dir`, sorted.
pub(super) fn recorded(dir: &OwnedFd) -> Vec<String> {
    let mut out: Vec<String> = fsx::list(dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, k)| *k == FileType::RegularFile)
        .filter_map(|(n, _)| n.to_str()?.strip_suffix(".json").map(str::to_owned))
        .filter(|b| batch_name_ok(b))
        .collect();
    out.sort();
    out
}

/// The facts of file `n` of `rec`, if written (read beneath `dir`, never through a link).
pub(super) fn read_facts(dir: &OwnedFd, rec: &Record, n: usize) -> Option<Vec<u8>> {
    let rel = Path::new(&rec.id).join(facts_name(n));
    fsx::read_regular_beneath(dir, &rel, MAX_FACTS)
        .ok()
        .flatten()
}

/// The state of `rec`'s batch from the facts beside it in `dir`.
pub(super) fn state_of(dir: &OwnedFd, rec: &Record) -> BatchState {
    let mut st = BatchState {
        id: rec.id.clone(),
        files: rec.files.clone(),
        ..BatchState::default()
    };
    for (n, f) in rec.files.iter().enumerate() {
        match read_facts(dir, rec, n) {
            Some(facts) => {
                st.delivered.insert(f.clone(), facts);
            }
            None => st.missing.push(f.clone()),
        }
    }
    st
}

/// Removes the facts folder `id` in `dir` and what it holds (never through a link).
pub(super) fn remove_facts(dir: &OwnedFd, id: &OsStr) {
    if let Ok(fd) = fsx::open_dir_beneath(dir, Path::new(id)) {
        for (name, _) in fsx::list(&fd).unwrap_or_default() {
            let _ = fsx::unlink_at(&fd, &name);
        }
    }
    let _ = fsx::rmdir_at(dir, id);
}
