//! Batch folders of a `manifest` server: a folder directly under the server folder is a
//! batch once it is complete — at once under `completion: rename` (it was renamed into
//! place whole: its files are what it holds when first seen), once its marker
//! `<folder><suffix>` is beside it under `completion: marker`. Then its file list is
//! recorded durably (`Spool::record_batch`) before any of its files is claimed, all are
//! claimed without markers of their own, and the folder marker is removed after the
//! claims — only if it is still the marker the record names.
//!
//! A file that arrives in a folder whose batch is already recorded is not in that
//! batch: it waits until the batch is done (its manifest uploaded), then starts the next
//! batch of that name. Touch this to change when a folder counts as a batch.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use outpost_config::Completion;

use super::ServerRule;
use super::event_loop::State;
use crate::fsx::{self, FileType};
use crate::rules::{in_progress, marker_target};
use crate::spool::MarkerSeen;

impl State {
    /// Whether this is the first report of `batch` of `server` in this run (its
    /// problems are said once).
    fn first_report(&mut self, server: &str, batch: &str) -> bool {
        self.reported
            .insert((server.to_owned(), PathBuf::from(batch)))
    }

    /// Handles the regular file `rel` of a server with batches if it belongs to a batch
    /// (a file in a folder, or a folder's marker): true when handled here.
    pub(super) fn consider_batch(&mut self, rule: &ServerRule, rel: &Path) -> bool {
        let mut comps = rel.components();
        let (Some(Component::Normal(top)), rest) = (comps.next(), comps.as_path()) else {
            return false;
        };
        let Some(batch) = top.to_str().filter(|b| crate::spool::batch_name_ok(b)) else {
            return false;
        };
        if !rest.as_os_str().is_empty() {
            // A name that is not UTF-8 can never be in a record: failed as it is.
            let Some(rel_str) = rel.to_str() else {
                return false;
            };
            self.batch_file(rule, batch, rel_str);
            return true;
        }
        // A folder's marker at the top of the server folder.
        let Completion::Marker { suffix } = &rule.completion else {
            return false;
        };
        let Some(folder) = marker_target(top.as_bytes(), suffix) else {
            return false;
        };
        let folder = OsStr::from_bytes(folder);
        let Ok(root) = self.d.spool.server_root(&rule.name) else {
            return false;
        };
        let is_dir =
            fsx::lstat_at(&root, folder).is_ok_and(|st| fsx::kind(&st) == FileType::Directory);
        match folder.to_str() {
            Some(f) if is_dir && crate::spool::batch_name_ok(f) => {
                let f = f.to_owned();
                self.batch_complete(rule, &f);
                true
            }
            _ => false,
        }
    }

    /// The file `rel` of the folder `batch`: claimed if its batch's record lists it;
    /// the batch recorded and claimed whole if it is complete and not recorded yet.
    fn batch_file(&mut self, rule: &ServerRule, batch: &str, rel: &str) {
        let server = rule.name.as_str();
        let rec = match self.d.spool.batch_record(server, batch) {
            Ok(r) => r,
            Err(e) => {
                if self.first_report(server, batch) {
                    tracing::error!(server, batch, error = %e, "cannot read the batch record; the batch's files stay in the spool");
                }
                return;
            }
        };
        let Some(rec) = rec else {
            self.batch_complete(rule, batch);
            return;
        };
        if rec.files.binary_search_by(|f| f.as_str().cmp(rel)).is_ok() {
            self.take(rule, Path::new(rel), None);
            return;
        }
        // A marker of a file of the batch (`requeue` makes them): it means nothing here.
        if let Completion::Marker { suffix } = &rule.completion
            && let Some(data) = marker_target(rel.as_bytes(), suffix)
            && std::str::from_utf8(data).is_ok_and(|d| rec.files.iter().any(|f| f == d))
        {
            let _ = self.d.spool.remove_marker(server, Path::new(rel), None);
            return;
        }
        if self
            .reported
            .insert((server.to_owned(), PathBuf::from(rel)))
        {
            tracing::warn!(
                server,
                batch,
                rel,
                "a file arrived in a batch folder after its batch was recorded: it is not in that batch, and waits until the batch's manifest is uploaded to start the next one (a batch folder must arrive whole)"
            );
        }
    }

    /// The folder `batch` if it is complete now: recorded (unless it is already) and
    /// its files claimed; its marker removed after the claims.
    fn batch_complete(&mut self, rule: &ServerRule, batch: &str) {
        let server = rule.name.as_str();
        let Ok(root) = self.d.spool.server_root(server) else {
            return;
        };
        let marker = match &rule.completion {
            Completion::Rename => None,
            Completion::Marker { suffix } => {
                let name = format!("{batch}{suffix}");
                match fsx::lstat_at(&root, OsStr::new(&name)) {
                    Ok(st) => Some((PathBuf::from(name), (st.st_ino, fsx::mtime_ns(&st)))),
                    // Not complete yet.
                    Err(_) => return,
                }
            }
            // Refused by the configuration: a folder cannot be told complete.
            Completion::Quiet { .. } => return,
        };
        let rec = match self.d.spool.batch_record(server, batch) {
            Ok(Some(rec)) => rec,
            Ok(None) => {
                let files = list_batch(&root, batch);
                if files.is_empty() {
                    // Nothing to deliver yet (a folder made, its files still to come).
                    return;
                }
                match self
                    .d
                    .spool
                    .record_batch(server, batch, files, marker.as_ref().map(|m| m.1))
                {
                    Ok(rec) => {
                        tracing::info!(server, batch, files = rec.files.len(), "batch recorded");
                        rec
                    }
                    Err(e) => {
                        if self.first_report(server, batch) {
                            tracing::error!(server, batch, error = %e, "cannot record the batch; its files stay in the spool");
                        }
                        return;
                    }
                }
            }
            Err(e) => {
                if self.first_report(server, batch) {
                    tracing::error!(server, batch, error = %e, "cannot read the batch record; the batch's files stay in the spool");
                }
                return;
            }
        };
        for f in &rec.files {
            self.take(rule, Path::new(f), None);
        }
        // Only the marker the record names goes; a newer one is for the next batch.
        if let Some((m, seen)) = marker
            && rec.marker == Some(seen)
        {
            self.batch_markers
                .push((server.to_owned(), m, MarkerSeen(seen.0, seen.1)));
        }
    }
}

/// The files of the folder `batch` in the open server folder `root`: relative paths
/// below the server folder, regular files only, names in progress (and dot-folders)
/// left out, names that are not UTF-8 left to fail on their own.
fn list_batch(root: &std::os::fd::OwnedFd, batch: &str) -> Vec<String> {
    let Ok(dir) = fsx::open_dir_beneath(root, Path::new(batch)) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    fsx::walk_files(&dir, false, &mut |_, rel, name, _| {
        if in_progress(name) || rel.components().any(|c| in_progress(c.as_os_str())) {
            return;
        }
        if let Some(p) = Path::new(batch).join(rel).join(name).to_str() {
            files.push(p.to_owned());
        }
    });
    files
}
