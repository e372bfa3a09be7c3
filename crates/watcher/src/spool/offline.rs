//! What works with the daemon down or beside it, read from the disk: `status` totals,
//! every instance's live state, the failed files of a server, and the archive pruning.
//! Like the daemon, everything below `spool_dir` is resolved through `fsx` (beneath an
//! open folder, no link followed, nothing waited on). `requeue` is in its own file.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::batch_record::{open_batches, read_record, recorded, state_of};
use super::{ARCHIVE, FAILED, FailRecord, Spool, SpoolError, instance_dirs, io};
use crate::claimname;
use crate::completion::{self, Verdict};
use crate::fsx::{self, FileType};

/// Pending, failed and in-flight totals of one server, read from disk.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ServerStatus {
    /// Files waiting (claimed by any instance, or complete in the server folder).
    pub pending_files: u64,
    /// Their bytes.
    pub pending_bytes: u64,
    /// Age of the oldest pending file, from its modification time.
    pub oldest_pending_age_seconds: f64,
    /// Files in `.failed/<server>/`.
    pub failed_files: u64,
    /// Files in the server folder still waiting for their marker (`completion: marker`):
    /// not pending yet.
    pub waiting_for_marker: u64,
    /// Batches recorded and not yet done (`manifest` servers), by name.
    pub batches_waiting: Vec<BatchWaiting>,
}

/// A batch whose manifest is not uploaded yet.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct BatchWaiting {
    /// The batch folder's name.
    pub batch: String,
    /// Its files.
    pub files: u64,
    /// Of which delivered.
    pub delivered: u64,
    /// A file of the batch in `.failed/` (relative path): it holds the manifest until it
    /// is requeued and delivered.
    pub held_by: Option<String>,
}

/// Read-only views and operator moves that work with the daemon down. Like the
/// daemon, they resolve every path below `spool_dir` through [`fsx`] (`openat2` with
/// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`): nothing outside the spool is read, moved
/// or written, whatever a record says or a link points at.
impl Spool {
    /// Pending, failed totals of `server`, from the disk: every instance's claims plus
    /// the files still in the server folder that the daemon would publish under
    /// `completion` — not what it never will (names and folders in progress, markers,
    /// files still waiting for their marker, which are counted apart).
    pub fn status(
        root: &Path,
        server: &str,
        completion: &outpost_config::Completion,
    ) -> Result<ServerStatus, SpoolError> {
        let mut st = ServerStatus::default();
        let now = SystemTime::now();
        let mut oldest: Option<SystemTime> = None;
        let mut add = |stat: &rustix::fs::Stat, st: &mut ServerStatus| {
            st.pending_files += 1;
            st.pending_bytes += stat.st_size as u64;
            let t = crate::dropped_at_ns(fsx::mtime_ns(stat));
            oldest = Some(oldest.map_or(t, |o: SystemTime| o.min(t)));
        };
        let root_fd = fsx::open_dir(root).map_err(io("open spool", root))?;
        // Claims of every instance.
        for (_, inst) in instance_dirs(&root_fd).unwrap_or_default() {
            let rel = Path::new("claims").join(server);
            let Ok(dir) = fsx::open_dir_beneath(&inst, &rel) else {
                continue;
            };
            for (name, _) in fsx::list(&dir).unwrap_or_default() {
                if claimname::parse(&name).is_none() {
                    continue;
                }
                if let Ok(stat) = fsx::lstat_at(&dir, &name)
                    && fsx::kind(&stat) == FileType::RegularFile
                {
                    add(&stat, &mut st);
                }
            }
        }
        // Files in the server folder not yet claimed, by the server's completion rule.
        if let Ok(dir) = fsx::open_dir_beneath(&root_fd, Path::new(server)) {
            let mut files: Vec<(PathBuf, OsString, rustix::fs::Stat)> = Vec::new();
            fsx::walk_files(&dir, false, &mut |_, rel, name, stat| {
                let in_progress_folder = rel
                    .components()
                    .any(|c| crate::rules::in_progress(c.as_os_str()));
                if !in_progress_folder && !crate::rules::in_progress(name) {
                    files.push((rel.to_owned(), name.to_owned(), *stat));
                }
            });
            match completion {
                outpost_config::Completion::Marker { suffix } => {
                    let names: HashSet<(PathBuf, OsString)> = files
                        .iter()
                        .map(|(r, n, _)| (r.clone(), n.clone()))
                        .collect();
                    // Files of a recorded batch are claimed whole, without markers of
                    // their own (manifest servers).
                    let batches: HashSet<String> = open_batches(&root_fd, server)
                        .map(|d| recorded(&d).into_iter().collect())
                        .unwrap_or_default();
                    let in_batch = |rel: &Path| {
                        rel.components().next().is_some_and(|c| {
                            c.as_os_str().to_str().is_some_and(|b| batches.contains(b))
                        })
                    };
                    for (rel, name, stat) in &files {
                        if crate::rules::marker_target(name.as_bytes(), suffix).is_some() {
                            continue; // a marker, not data
                        }
                        if in_batch(rel) {
                            add(stat, &mut st);
                            continue;
                        }
                        // The daemon's own rule, asked of the files seen here.
                        let sibling = |n: &OsStr| {
                            let seen = names.contains(&(rel.clone(), n.to_owned()));
                            seen.then_some(FileType::RegularFile)
                        };
                        match completion::marker(&rel.join(name), suffix, sibling) {
                            Verdict::Take { .. } => add(stat, &mut st),
                            _ => st.waiting_for_marker += 1,
                        }
                    }
                }
                _ => {
                    for (_, _, stat) in &files {
                        add(stat, &mut st);
                    }
                }
            }
        }
        if let Ok(dir) = fsx::open_dir_beneath(&root_fd, &Path::new(FAILED).join(server)) {
            fsx::walk_files(&dir, false, &mut |_, _, _, _| st.failed_files += 1);
        }
        st.batches_waiting = batches_waiting(&root_fd, server);
        st.oldest_pending_age_seconds = oldest
            .and_then(|o| now.duration_since(o).ok())
            .unwrap_or(Duration::ZERO)
            .as_secs_f64();
        Ok(st)
    }

    /// What every instance on the spool wrote as its live state (`.outpost/*/live.json`,
    /// each at most 1 MiB), read beneath the spool without following links or blocking.
    pub fn live_states(root: &Path) -> Vec<Vec<u8>> {
        let Ok(root_fd) = fsx::open_dir(root) else {
            return Vec::new();
        };
        instance_dirs(&root_fd)
            .unwrap_or_default()
            .iter()
            .filter_map(|(_, inst)| {
                fsx::read_regular_beneath(inst, Path::new(crate::live::LIVE), 1 << 20)
                    .ok()
                    .flatten()
            })
            .collect()
    }

    /// The servers with a folder in `.failed/` (one listing: the servers without one
    /// have no failed file, and need no open of their own).
    pub fn failed_servers(&self) -> std::collections::HashSet<String> {
        fsx::open_dir_beneath(&self.root_fd, Path::new(FAILED))
            .and_then(|d| fsx::list(&d))
            .map(|entries| {
                entries
                    .into_iter()
                    .map(|(n, _)| n.to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Relative paths (as claims name them, lossy for names that are not UTF-8) of the
    /// files of `server` in `.failed/`, records excluded.
    pub fn failed_files(&self, server: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(dir) = fsx::open_dir_beneath(&self.root_fd, &Path::new(FAILED).join(server)) {
            fsx::walk_files(&dir, false, &mut |_, rel, name, _| {
                out.push(rel.join(name).to_string_lossy().into_owned());
            });
        }
        out.sort();
        out
    }

    /// Removes archived files of `server` archived longer than `retention` ago.
    pub fn prune_archive(&self, server: &str, retention: Duration) -> usize {
        let Ok(base) = fsx::open_dir_beneath(&self.root_fd, &Path::new(ARCHIVE).join(server))
        else {
            return 0;
        };
        let now = SystemTime::now();
        let mut n = 0;
        fsx::walk_files(&base, true, &mut |dir, _, name, st| {
            // ctime changes on the rename into the archive: the archive time.
            let ctime = SystemTime::UNIX_EPOCH + Duration::from_secs(st.st_ctime.max(0) as u64);
            if now.duration_since(ctime).unwrap_or_default() > retention
                && fsx::unlink_at(dir, name).is_ok()
            {
                n += 1;
            }
        });
        n
    }
}

/// The batches of `server` not yet done, each with the first of its missing files found
/// in `.failed/` (by the relative paths its failure records name).
fn batches_waiting(root_fd: &std::os::fd::OwnedFd, server: &str) -> Vec<BatchWaiting> {
    let Ok(dir) = open_batches(root_fd, server) else {
        return Vec::new();
    };
    let batches = recorded(&dir);
    if batches.is_empty() {
        return Vec::new();
    }
    let mut failed = HashSet::new();
    if let Ok(fdir) = fsx::open_dir_beneath(root_fd, &Path::new(FAILED).join(server)) {
        fsx::walk_files(&fdir, true, &mut |d, _, name, _| {
            let b = name.as_bytes();
            if b.starts_with(b".")
                && b.ends_with(b".error.json")
                && let Ok(Some(bytes)) = fsx::read_regular_beneath(d, Path::new(name), 1 << 20)
                && let Ok(r) = serde_json::from_slice::<FailRecord>(&bytes)
            {
                failed.insert(r.relative_path);
            }
        });
    }
    let mut out = Vec::new();
    for batch in batches {
        let Ok(Some(rec)) = read_record(&dir, &batch) else {
            continue;
        };
        let st = state_of(&dir, &rec);
        out.push(BatchWaiting {
            batch,
            files: st.files.len() as u64,
            delivered: st.delivered.len() as u64,
            held_by: st.missing.into_iter().find(|m| failed.contains(m)),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_counts_by_the_completion_rule() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        std::fs::create_dir_all(root.join("s/d")).expect("mkdir");
        for f in [
            "s/a.csv",
            "s/a.csv.ready",
            "s/b.csv",
            "s/d/c.csv",
            "s/d/c.csv.ready",
        ] {
            std::fs::write(root.join(f), b"xy").expect("write");
        }
        std::fs::write(root.join("s/e.csv.tmp"), b"x").expect("write");
        let marker = outpost_config::Completion::Marker {
            suffix: ".ready".into(),
        };
        let st = Spool::status(root, "s", &marker).expect("status");
        assert_eq!((st.pending_files, st.pending_bytes), (2, 4));
        assert_eq!(st.waiting_for_marker, 1);
        let st = Spool::status(root, "s", &outpost_config::Completion::Rename).expect("status");
        assert_eq!((st.pending_files, st.waiting_for_marker), (5, 0));
    }

    /// Under the marker rule, the files of a recorded batch are claimed whole, without
    /// markers of their own: pending, not waiting for a marker.
    #[test]
    fn files_of_a_recorded_batch_do_not_wait_for_markers() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        let spool = Spool::open(root, "i1", &["s".into()]).expect("open");
        std::fs::create_dir_all(root.join("s/b1")).expect("mkdir");
        for f in ["s/b1/x.csv", "s/b1/y.csv", "s/b1.ready", "s/loose.csv"] {
            std::fs::write(root.join(f), b"xy").expect("write");
        }
        let files = vec!["b1/x.csv".to_owned(), "b1/y.csv".to_owned()];
        spool.record_batch("s", "b1", files, None).expect("record");
        let marker = outpost_config::Completion::Marker {
            suffix: ".ready".into(),
        };
        let st = Spool::status(root, "s", &marker).expect("status");
        assert_eq!((st.pending_files, st.waiting_for_marker), (2, 1));
    }
}
