//! The end of a claim: after S3 acknowledged it, the file is deleted or archived; a file
//! that can never be published moves to `.failed/` with its record beside it (from the
//! claims folder, or straight from the server folder). Neither ever replaces an earlier
//! file: the next free name is taken. Touch this to change where a finished or failed
//! file goes.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::record::{pct_if_not_utf8, record_name};
use super::{ARCHIVE, FAILED, FailRecord, PRIVATE_DIR_MODE, Spool, SpoolError, io};
use crate::Claim;
use crate::claimname::seq_name;
use crate::fsx;

/// Names tried for one archived or failed file before giving up (`name.1` … as many
/// as a path can collect in years of archiving).
const MAX_NAME_TRIES: usize = 100_000_000;

impl Spool {
    /// After S3 acknowledged the object: removes the file, or archives it.
    pub fn finish(&self, c: &Claim, archive: bool) -> Result<Option<PathBuf>, SpoolError> {
        let d = self.dirs(&c.server)?;
        let cpath = self.claims_path(&c.server);
        let data = OsString::from(&c.data);
        let mut archived = None;
        if archive {
            let rel = Path::new(ARCHIVE).join(&c.server).join(&c.rel);
            let (parent, name) = fsx::split(&rel);
            let afd = fsx::mkdirs_beneath(&self.root_fd, parent, PRIVATE_DIR_MODE)
                .map_err(io("create archive folder", self.root.join(parent)))?;
            // Never replaces an earlier archived copy (nor another daemon's, racing for
            // the same path): the next free name is taken instead.
            let mut moved = None;
            for target in fsx::candidates(name).take(MAX_NAME_TRIES) {
                match fsx::rename_noreplace(&d.claims, &data, &afd, &target) {
                    Ok(()) => {
                        moved = Some(target);
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(io("archive", self.root.join(&rel))(e)),
                }
            }
            let target = moved.ok_or_else(|| {
                io("archive", self.root.join(&rel))(std::io::Error::other("no free name"))
            })?;
            archived = Some(self.root.join(parent).join(target));
        } else {
            match fsx::unlink_at(&d.claims, &data) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("delete", cpath.join(&data))(e)),
            }
        }
        let _ = fsx::unlink_at(&d.claims, &seq_name(c.seq, "upload"));
        if !c.data.contains('~') {
            // Only long-form claims have a record.
            let _ = fsx::unlink_at(&d.claims, &seq_name(c.seq, "json"));
        }
        // Not fsynced: a power cut right now can only bring the file back, and it is
        // uploaded again (at-least-once); no fsync per delivered file.
        Ok(archived)
    }

    /// Moves a claimed file to `.failed/<server>/<rel>` with its record beside it.
    pub fn fail(&self, c: &Claim, mut record: FailRecord) -> Result<PathBuf, SpoolError> {
        let d = self.dirs(&c.server)?;
        let data = OsString::from(&c.data);
        let dest =
            self.move_to_failed(&d.claims, &data, &c.server, Path::new(&c.rel), &mut record)?;
        let _ = fsx::unlink_at(&d.claims, &seq_name(c.seq, "upload"));
        let _ = fsx::unlink_at(&d.claims, &seq_name(c.seq, "json"));
        let _ = fsx::sync(&d.claims);
        Ok(dest)
    }

    /// Moves an unclaimed spool file that can never be published straight to `.failed/`.
    pub fn fail_in_place(
        &self,
        server: &str,
        rel: &Path,
        mut record: FailRecord,
    ) -> Result<PathBuf, SpoolError> {
        let d = self.dirs(server)?;
        let (parent, name) = fsx::split(rel);
        let pfd = fsx::open_dir_beneath(&d.src, parent)
            .map_err(io("open", self.root.join(server).join(parent)))?;
        let dest = self.move_to_failed(&pfd, name, server, rel, &mut record)?;
        let _ = fsx::sync(&pfd);
        Ok(dest)
    }

    fn move_to_failed(
        &self,
        from_dir: &OwnedFd,
        from_name: &OsStr,
        server: &str,
        rel: &Path,
        record: &mut FailRecord,
    ) -> Result<PathBuf, SpoolError> {
        let frel = Path::new(FAILED).join(server).join(rel);
        let (parent, name) = fsx::split(&frel);
        record.relative_path_bytes = pct_if_not_utf8(rel.as_os_str());
        let ffd = fsx::mkdirs_beneath(&self.root_fd, parent, PRIVATE_DIR_MODE)
            .map_err(io("create failed folder", self.root.join(parent)))?;
        // A free name whose record name is free too: never overwrite an earlier failure,
        // nor another daemon's failing the same path at the same moment. The record is
        // created first (never replacing one), then the file moves (never replacing
        // one); a name taken at either step moves on to the next.
        let mut placed = None;
        for target in fsx::candidates(name).take(MAX_NAME_TRIES) {
            let rec = record_name(&target);
            record.file = target.to_string_lossy().into_owned();
            record.file_bytes = pct_if_not_utf8(&target);
            let json =
                serde_json::to_vec_pretty(record).map_err(|e| io("encode", &frel)(e.into()))?;
            match fsx::write_new(&ffd, &rec, &json, 0o640) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io("write failure record", self.root.join(parent))(e)),
            }
            match fsx::rename_noreplace(from_dir, from_name, &ffd, &target) {
                Ok(()) => {
                    placed = Some(target);
                    break;
                }
                Err(e) => {
                    let _ = fsx::unlink_at(&ffd, &rec);
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        continue;
                    }
                    return Err(io("move to .failed", self.root.join(&frel))(e));
                }
            }
        }
        let target = placed.ok_or_else(|| {
            io("move to .failed", self.root.join(&frel))(std::io::Error::other("no free name"))
        })?;
        fsx::sync(&ffd).map_err(io("sync", self.root.join(parent)))?;
        Ok(self.root.join(parent).join(target))
    }
}
