//! Batches of a `manifest` server: a folder directly under the server folder that
//! arrived complete, its file list recorded durably before any of its files is claimed,
//! and each delivered file's facts (opaque bytes from the binary) kept until the batch's
//! manifest is uploaded. Touch this to change what is remembered of a batch; when a
//! folder counts as a batch is decided by discovery (`discover/batch.rs`).
//!
//! Layout, shared by every daemon on the spool (a take-over needs nothing special):
//! - `.outpost/.batches/<server>/<batch>.json` — the record: batch name, its id, when
//!   recorded, the sorted relative paths of its files (and the folder marker seen).
//!   Written once, never replaced (a second daemon recording the same folder reads the
//!   first one's), fsynced.
//! - `.outpost/.batches/<server>/<id>/<n>.json` — the facts of the record's `n`th file,
//!   fsynced before the binary finishes the file. Named by the record's id, not by the
//!   batch: facts a crash left behind after [`Spool::batch_done`] can never be taken for
//!   a later batch of the same name. Named by index, not by path: any path fits.
//!
//! A record is trusted for names only after they were checked ([`Record::check`]).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use super::batch_record::{
    BATCHES, BatchState, Record, batch_name_ok, facts_name, new_id, open_batches, read_facts,
    read_record, record_name, recorded, remove_facts, state_of,
};
use super::{PRIVATE_DIR_MODE, STATE, Spool, SpoolError, io, rfc3339};
use crate::fsx::{self, FileType};

/// One batch record as this process knows it.
#[derive(Debug)]
pub(super) struct Known {
    /// The record file's identity (inode, modification time, size) when read: a record
    /// replaced by another daemon is read again.
    stamp: (u64, i128, i64),
    /// The record.
    pub(super) record: Arc<Record>,
    /// Position of each file in the record.
    index: HashMap<String, usize>,
    /// Files known to have facts; `first_missing` the lowest index not known to.
    delivered: Vec<bool>,
    first_missing: usize,
    /// Completion was reported once by [`Spool::batch_file_delivered`].
    announced: bool,
}

impl Spool {
    /// `.outpost/.batches/<server>`, made if missing.
    fn batches_dir(&self, server: &str) -> Result<OwnedFd, SpoolError> {
        let rel = Path::new(STATE).join(BATCHES).join(server);
        fsx::mkdirs_beneath(&self.root_fd, &rel, PRIVATE_DIR_MODE)
            .map_err(io("create batch folder", self.root.join(&rel)))
    }

    fn batches_path(&self, server: &str) -> std::path::PathBuf {
        self.root.join(STATE).join(BATCHES).join(server)
    }

    /// The record of `batch`, from this process's memory while the file is the one read.
    pub(crate) fn batch_record(
        &self,
        server: &str,
        batch: &str,
    ) -> Result<Option<Arc<Record>>, SpoolError> {
        self.with_known(server, batch, |k| k.record.clone())
    }

    /// Calls `f` with what is known of `batch`'s record (read again if the file changed);
    /// `None` when there is no record.
    fn with_known<T>(
        &self,
        server: &str,
        batch: &str,
        f: impl FnOnce(&mut Known) -> T,
    ) -> Result<Option<T>, SpoolError> {
        if !batch_name_ok(batch) {
            return Ok(None);
        }
        let path = self.batches_path(server);
        let dir = match open_batches(&self.root_fd, server) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("open batch folder", path)(e)),
        };
        let key = (server.to_owned(), batch.to_owned());
        let name = record_name(batch);
        let st = match fsx::lstat_at(&dir, OsStr::new(&name)) {
            Ok(st) => st,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.known_map().remove(&key);
                return Ok(None);
            }
            Err(e) => return Err(io("stat batch record", path.join(&name))(e)),
        };
        let stamp = (st.st_ino, fsx::mtime_ns(&st), st.st_size);
        let mut map = self.known_map();
        if map.get(&key).is_none_or(|k| k.stamp != stamp) {
            let Some(rec) =
                read_record(&dir, batch).map_err(io("read batch record", path.join(&name)))?
            else {
                map.remove(&key);
                return Ok(None);
            };
            let index = rec
                .files
                .iter()
                .enumerate()
                .map(|(i, f)| (f.clone(), i))
                .collect();
            let n = rec.files.len();
            map.insert(
                key.clone(),
                Known {
                    stamp,
                    record: Arc::new(rec),
                    index,
                    delivered: vec![false; n],
                    first_missing: 0,
                    announced: false,
                },
            );
        }
        Ok(map.get_mut(&key).map(f))
    }

    fn known_map(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Known>> {
        self.batches.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `batch` of `server` with its `files` (relative paths, `<batch>/…`) durably,
    /// before any of them is claimed. A batch already recorded (by another daemon, or
    /// before a crash) keeps its record, which is returned.
    pub(crate) fn record_batch(
        &self,
        server: &str,
        batch: &str,
        mut files: Vec<String>,
        marker: Option<(u64, i128)>,
    ) -> Result<Arc<Record>, SpoolError> {
        files.sort();
        files.dedup();
        let rec = Record {
            batch: batch.to_owned(),
            id: new_id(),
            recorded_at: rfc3339(SystemTime::now()),
            files,
            marker,
        };
        let path = self.batches_path(server).join(record_name(batch));
        if !rec.check(batch) {
            let e = std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a batch name");
            return Err(io("record batch", path)(e));
        }
        let dir = self.batches_dir(server)?;
        let json = serde_json::to_vec_pretty(&rec).map_err(|e| io("encode", &path)(e.into()))?;
        match fsx::write_new(&dir, OsStr::new(&record_name(batch)), &json, 0o640) {
            Ok(()) => fsx::sync(&dir).map_err(io("sync batch folder", &path))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("record batch", path)(e)),
        }
        let e = || io("record batch", &path)(std::io::ErrorKind::NotFound.into());
        self.batch_record(server, batch)?.ok_or_else(e)
    }

    /// The batch whose record lists the file `rel` of `server`, if any. A record that
    /// cannot be read now (EIO, descriptors, a stale handle) is an error, never "no
    /// batch": the caller must not forget a file its batch's manifest still needs.
    pub fn batch_of(&self, server: &str, rel: &str) -> Result<Option<String>, SpoolError> {
        let Some((batch, _)) = rel.split_once('/') else {
            return Ok(None);
        };
        let listed = self.with_known(server, batch, |k| k.index.contains_key(rel))?;
        Ok((listed == Some(true)).then(|| batch.to_owned()))
    }

    /// Keeps the facts of the delivered file `rel` of `batch` durably (written, fsynced):
    /// the binary calls it after the store acknowledged the file and before the spool
    /// finishes it, so no delivered file's facts can be lost. True when every file of the
    /// batch now has its facts — told once per batch in this process, so one caller
    /// uploads the manifest (another daemon may tell its own caller too: the manifest is
    /// at-least-once, like every object).
    pub fn batch_file_delivered(
        &self,
        server: &str,
        batch: &str,
        rel: &str,
        facts: &[u8],
    ) -> Result<bool, SpoolError> {
        let path = self.batches_path(server);
        let not_listed = || {
            let e = std::io::Error::new(std::io::ErrorKind::NotFound, "not in a batch record");
            io("keep facts", path.join(batch).join(rel))(e)
        };
        let Some((rec, n)) = self
            .with_known(server, batch, |k| {
                k.index.get(rel).map(|n| (k.record.clone(), *n))
            })?
            .flatten()
        else {
            return Err(not_listed());
        };
        let dir = self.batches_dir(server)?;
        let facts_dir = match fsx::open_dir_beneath(&dir, Path::new(&rec.id)) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let d = fsx::mkdirs_beneath(&dir, Path::new(&rec.id), PRIVATE_DIR_MODE)
                    .map_err(io("create facts folder", path.join(&rec.id)))?;
                // The new folder's entry must outlive a power cut with the facts in it.
                fsx::sync(&dir).map_err(io("sync batch folder", &path))?;
                d
            }
            Err(e) => return Err(io("open facts folder", path.join(&rec.id))(e)),
        };
        fsx::write_atomic(&facts_dir, OsStr::new(&facts_name(n)), facts)
            .map_err(io("write facts", path.join(&rec.id).join(facts_name(n))))?;
        let complete = self.with_known(server, batch, |k| {
            if Arc::ptr_eq(&k.record, &rec) {
                k.delivered[n] = true;
            }
            while k.first_missing < k.delivered.len() {
                let i = k.first_missing;
                if !k.delivered[i] && read_facts(&dir, &k.record, i).is_none() {
                    return false;
                }
                k.delivered[i] = true;
                k.first_missing += 1;
            }
            !std::mem::replace(&mut k.announced, true)
        })?;
        Ok(complete.unwrap_or(false))
    }

    /// What is known of `batch` of `server` now, from the disk; `None` without a record.
    pub fn batch_state(&self, server: &str, batch: &str) -> Result<Option<BatchState>, SpoolError> {
        let Some(rec) = self.batch_record(server, batch)? else {
            return Ok(None);
        };
        let dir = open_batches(&self.root_fd, server)
            .map_err(io("open batch folder", self.batches_path(server)))?;
        Ok(Some(state_of(&dir, &rec)))
    }

    /// The batches of `server` whose every file has its facts, sorted: at start, those
    /// whose manifest was not uploaded before a stop. Facts folders no record names any
    /// more (a crash inside [`Spool::batch_done`]) are removed first.
    pub fn batches_complete(&self, server: &str) -> Vec<String> {
        let Ok(dir) = open_batches(&self.root_fd, server) else {
            return Vec::new();
        };
        // Folders listed before the records: a folder is made only after its record, so
        // a live batch's folder always has its record in the later listing.
        let folders: Vec<_> = fsx::list(&dir)
            .unwrap_or_default()
            .into_iter()
            .filter(|(n, k)| *k == FileType::Directory && !n.as_encoded_bytes().starts_with(b"."))
            .map(|(n, _)| n)
            .collect();
        let mut ids = std::collections::HashSet::new();
        let mut out = Vec::new();
        // An unreadable record hides no other batch; it only keeps every facts folder
        // (one of them may be its own).
        let mut unreadable = false;
        for batch in recorded(&dir) {
            match read_record(&dir, &batch) {
                Ok(Some(rec)) => {
                    ids.insert(rec.id.clone());
                    if state_of(&dir, &rec).complete() {
                        out.push(batch);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    let path = self.batches_path(server).join(record_name(&batch));
                    tracing::error!(server, path = %path.display(), error = %e, "cannot read a batch record; its batch gets no manifest until it is repaired or removed");
                    unreadable = true;
                }
            }
        }
        if unreadable {
            return out;
        }
        for f in folders {
            if !f.to_str().is_some_and(|f| ids.contains(f)) {
                remove_facts(&dir, &f);
            }
        }
        out
    }

    /// Forgets `batch` of `server` once its manifest was uploaded: the record first (the
    /// batch is done), then its facts.
    pub fn batch_done(&self, server: &str, batch: &str, id: &str) -> Result<(), SpoolError> {
        let path = self.batches_path(server);
        let Some(rec) = self.batch_record(server, batch)? else {
            return Ok(());
        };
        if rec.id != id {
            // Another daemon finished that batch, and the folder's next batch of the
            // same name was recorded since: not ours to forget.
            return Ok(());
        }
        let dir = open_batches(&self.root_fd, server).map_err(io("open batch folder", &path))?;
        match fsx::unlink_at(&dir, OsStr::new(&record_name(batch))) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove batch record", path.join(record_name(batch)))(e)),
        }
        let _ = fsx::sync(&dir);
        self.known_map()
            .remove(&(server.to_owned(), batch.to_owned()));
        remove_facts(&dir, OsStr::new(&rec.id));
        Ok(())
    }
}
