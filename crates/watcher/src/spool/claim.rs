//! Claiming: a complete file renamed from its server folder into this instance's claims
//! folder (one batch, one set of fsyncs), the claimed file opened for the uploader, and
//! the uploader's journal kept beside it. Touch this to change how a file is taken over
//! or what is kept with a claim; the end of a claim is in `finish`.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::{Spool, SpoolError, instance_dirs, io};
use crate::Claim;
use crate::claimname::{self, seq_name};
use crate::fsx::{self, FileType};

/// A marker as seen when its data file was claimed: inode and modification time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MarkerSeen(pub(crate) u64, pub(crate) i128);

impl Spool {
    /// Takes over the regular file at `rel` in `server`'s folder. `Ok(None)` when it
    /// vanished first. With `marker`, that marker file is removed after the claim.
    pub fn claim(
        &self,
        server: &str,
        rel: &Path,
        marker: Option<&Path>,
    ) -> Result<Option<Claim>, SpoolError> {
        self.claim_batch(server, &[(rel.to_owned(), marker.map(Path::to_owned))])
            .pop()
            .map_or(Ok(None), |(_, r)| r)
    }

    /// Takes over several files of one server: each by one atomic rename into the claims
    /// folder, then one fsync of the claims folder and of each source folder for the
    /// whole batch. Returns each path with its outcome, in the order given.
    pub fn claim_batch(
        &self,
        server: &str,
        items: &[(PathBuf, Option<PathBuf>)],
    ) -> Vec<(PathBuf, Result<Option<Claim>, SpoolError>)> {
        let d = match self.dirs(server) {
            Ok(d) => d,
            Err(_) => {
                return items
                    .iter()
                    .map(|(rel, _)| (rel.clone(), Err(SpoolError::UnknownServer(server.into()))))
                    .collect();
            }
        };
        let cpath = self.claims_path(server);
        let mut parents: HashMap<PathBuf, OwnedFd> = HashMap::new();
        let mut out = Vec::with_capacity(items.len());
        let mut markers = Vec::new();
        for (rel, marker) in items {
            let full = self.root.join(server).join(rel);
            let r = (|| {
                let rel_str = rel
                    .to_str()
                    .ok_or_else(|| io("claim", &full)(std::io::ErrorKind::InvalidData.into()))?;
                let (parent, name) = fsx::split(rel);
                if !parents.contains_key(parent) {
                    let fd = fsx::open_dir_beneath(&d.src, parent).map_err(io("open", &full))?;
                    parents.insert(parent.to_owned(), fd);
                }
                let pfd = &parents[parent];
                let st = match fsx::lstat_at(pfd, name) {
                    Ok(st) => st,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(io("stat", &full)(e)),
                };
                if fsx::kind(&st) != FileType::RegularFile {
                    return Err(SpoolError::NotRegular { path: full.clone() });
                }
                // The marker as it is now: after the fsyncs only this marker is removed
                // (one made or touched meanwhile is for a new drop of the same name).
                let seen = marker
                    .as_ref()
                    .filter(|m| fsx::split(m).0 == parent)
                    .and_then(|m| fsx::lstat_at(pfd, fsx::split(m).1).ok())
                    .map(|st| MarkerSeen(st.st_ino, fsx::mtime_ns(&st)));
                let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
                let marker_str = marker.as_ref().and_then(|m| m.to_str()).map(str::to_owned);
                let mut claim = Claim::new(server, seq, rel_str.to_owned(), &st, marker_str);
                let short = if claim.marker.is_none() {
                    claimname::short(seq, rel_str)
                } else {
                    None
                };
                let data = match short {
                    Some(n) => n,
                    None => {
                        // Long form: the record must be durable before the file moves.
                        let meta = serde_json::to_vec(&claim)
                            .map_err(|e| io("encode", &full)(e.into()))?;
                        fsx::write_atomic(&d.claims, &seq_name(seq, "json"), &meta)
                            .map_err(io("write claim record", &cpath))?;
                        seq_name(seq, "data")
                    }
                };
                if let Err(e) = fsx::rename_at(pfd, name, &d.claims, &data) {
                    let _ = fsx::unlink_at(&d.claims, &seq_name(seq, "json"));
                    if e.kind() == std::io::ErrorKind::NotFound {
                        return Ok(None);
                    }
                    return Err(io("claim", &full)(e));
                }
                claim.data = data.to_string_lossy().into_owned();
                if let Some(m) = marker {
                    markers.push((m.clone(), seen));
                }
                Ok(Some(claim))
            })();
            out.push((rel.clone(), r));
        }
        if out.iter().any(|(_, r)| matches!(r, Ok(Some(_)))) {
            if let Err(e) = fsx::sync(&d.claims) {
                tracing::error!(path = %cpath.display(), error = %e, "cannot sync the claims folder");
            }
            for fd in parents.values() {
                let _ = fsx::sync(fd);
            }
        }
        for (m, seen) in markers {
            if let Err(e) = self.remove_marker(server, &m, seen) {
                tracing::warn!(server, marker = %m.display(), error = %e, "cannot remove marker");
            }
        }
        out
    }

    /// Removes the marker file `rel` of `server` (marker rule), never through a link —
    /// with `seen`, only if it is still the marker seen then (same inode, same
    /// modification time). Gone already, or its folder gone, is success.
    pub(crate) fn remove_marker(
        &self,
        server: &str,
        rel: &Path,
        seen: Option<MarkerSeen>,
    ) -> std::io::Result<()> {
        let Ok(d) = self.dirs(server) else {
            return Ok(());
        };
        let (parent, name) = fsx::split(rel);
        let Ok(pfd) = fsx::open_dir_beneath(&d.src, parent) else {
            return Ok(());
        };
        if let Some(MarkerSeen(ino, mtime)) = seen
            && let Ok(st) = fsx::lstat_at(&pfd, name)
            && (st.st_ino, fsx::mtime_ns(&st)) != (ino, mtime)
        {
            tracing::debug!(server, marker = %rel.display(), "marker made anew since the claim; left for the new drop");
            return Ok(());
        }
        match fsx::unlink_at(&pfd, name) {
            Ok(()) => {
                let _ = fsx::sync(&pfd);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Opens a claimed file read-only, never through a link.
    pub fn open_claimed(&self, c: &Claim) -> Result<std::fs::File, SpoolError> {
        let d = self.dirs(&c.server)?;
        let name = OsString::from(&c.data);
        fsx::open_file_beneath(&d.claims, Path::new(&name))
            .map_err(io("open", self.claims_path(&c.server).join(name)))
    }

    /// Whether this daemon still holds the claim (its file is still in this instance's
    /// claims folder: not taken over by another daemon while this one was paused).
    /// Only "not found" says no: any other error (EIO, ESTALE, ENOMEM) answers yes, so
    /// a passing error never turns a held file into a vanished one.
    pub fn holds(&self, c: &Claim) -> bool {
        let Ok(d) = self.dirs(&c.server) else {
            return true;
        };
        match fsx::lstat_at(&d.claims, OsStr::new(&c.data)) {
            Ok(st) => fsx::kind(&st) == FileType::RegularFile,
            Err(e) => e.kind() != std::io::ErrorKind::NotFound,
        }
    }

    /// Every multipart journal on the spool, `.outpost/*/claims/*/*.upload` — every
    /// instance's (a shared spool), this one's included — each at most 64 KiB. Opened
    /// beneath the spool, never through a link, never blocking; anything but a regular
    /// file is skipped.
    pub fn journals_on_spool(&self) -> std::io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for (_, inst) in instance_dirs(&self.root_fd)? {
            let Ok(claims) = fsx::open_dir_beneath(&inst, Path::new("claims")) else {
                continue;
            };
            for (server, kind) in fsx::list(&claims)? {
                if kind != FileType::Directory {
                    continue;
                }
                let Ok(dir) = fsx::open_dir_beneath(&claims, Path::new(&server)) else {
                    continue;
                };
                for (name, kind) in fsx::list(&dir)? {
                    if kind != FileType::RegularFile || !name.as_bytes().ends_with(b".upload") {
                        continue;
                    }
                    match fsx::read_regular_beneath(&dir, Path::new(&name), 64 << 10) {
                        Ok(Some(bytes)) => out.push(bytes),
                        Ok(None) => {}
                        // Finished (or taken over) meanwhile.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(out)
    }

    /// The uploader's journal of a claim, if one was saved.
    pub fn journal(&self, c: &Claim) -> Option<Vec<u8>> {
        let d = self.dirs(&c.server).ok()?;
        fsx::read_at(&d.claims, &seq_name(c.seq, "upload")).ok()
    }

    /// Saves the uploader's journal durably (before any part is sent).
    pub fn save_journal(&self, c: &Claim, bytes: &[u8]) -> Result<(), SpoolError> {
        let d = self.dirs(&c.server)?;
        fsx::write_atomic(&d.claims, &seq_name(c.seq, "upload"), bytes)
            .map_err(io("write journal", self.claims_path(&c.server)))
    }

    /// Drops the uploader's journal.
    pub fn clear_journal(&self, c: &Claim) {
        if let Ok(d) = self.dirs(&c.server) {
            let _ = fsx::unlink_at(&d.claims, &seq_name(c.seq, "upload"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The marker of a claimed file is removed after the fsyncs only if it is still the
    /// one seen at the claim: a new drop of the same name (marker made or touched
    /// meanwhile) keeps its marker.
    #[test]
    fn only_the_marker_seen_at_the_claim_is_removed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let spool = Spool::open(tmp.path(), "i1", &["acme".into()]).expect("open");
        let dir = tmp.path().join("acme");
        let marker = dir.join("a.csv.ready");
        std::fs::write(&marker, b"").expect("marker");
        let pfd = fsx::open_dir(&dir).expect("dir");
        let st = fsx::lstat_at(&pfd, std::ffi::OsStr::new("a.csv.ready")).expect("stat");
        let seen = MarkerSeen(st.st_ino, fsx::mtime_ns(&st) - 1);
        // Touched since (its time differs from what was seen): left.
        spool
            .remove_marker("acme", Path::new("a.csv.ready"), Some(seen))
            .expect("remove");
        assert!(marker.exists(), "a marker made anew was removed");
        // The one seen: removed.
        let seen = MarkerSeen(st.st_ino, fsx::mtime_ns(&st));
        spool
            .remove_marker("acme", Path::new("a.csv.ready"), Some(seen))
            .expect("remove");
        assert!(!marker.exists());
    }
}
