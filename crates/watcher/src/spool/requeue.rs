//! `outpost requeue`: failed files moved back into their server folder, for the daemon
//! to publish again. A failure record is trusted for nothing but names, and every path
//! is resolved through `fsx` (beneath the spool, no link followed, nothing replaced).
//! Touch this to change what requeue accepts.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::record::{pct_decode, record_name};
use super::{DIR_MODE, FAILED, FailRecord, Spool};
use crate::fsx::{self, FileType};

impl Spool {
    /// Moves failed files of `server` back into its folder: all of them, or those whose
    /// path (relative to `.failed/<server>/`, or the original relative path) is listed.
    /// With `marker_suffix` (a `completion: marker` server) each requeued file gets its
    /// marker again, so it is published. Returns the relative paths requeued and the
    /// errors of those that could not be.
    ///
    /// A record is trusted for nothing but names: its `file` must be a plain name in the
    /// record's own folder (the one the record is named after) and its `relative_path`
    /// a relative path without `.`, `..` or empty segments whose folder is the one the
    /// failed file sits in; otherwise it is refused and nothing moves. The move never
    /// replaces an existing file.
    pub fn requeue(
        root: &Path,
        server: &str,
        only: Option<&[String]>,
        marker_suffix: Option<&str>,
    ) -> (Vec<String>, Vec<String>) {
        let mut done = Vec::new();
        let mut errors = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        if let Err(e) = Self::requeue_in(
            root,
            server,
            only,
            marker_suffix,
            &mut done,
            &mut errors,
            &mut seen,
        ) {
            errors.push(e);
        }
        if let Some(only) = only {
            for o in only {
                if !seen.iter().any(|d| d == o) {
                    errors.push(format!("{o}: no such failed file for server {server}"));
                }
            }
        }
        (done, errors)
    }

    fn requeue_in(
        root: &Path,
        server: &str,
        only: Option<&[String]>,
        marker_suffix: Option<&str>,
        done: &mut Vec<String>,
        errors: &mut Vec<String>,
        seen: &mut Vec<String>,
    ) -> Result<(), String> {
        if !plain_name(server.as_bytes()) {
            return Err(format!("{server:?}: not a server name"));
        }
        let root_fd = fsx::open_dir(root).map_err(|e| format!("{}: {e}", root.display()))?;
        let frel = Path::new(FAILED).join(server);
        let failed = match fsx::open_dir_beneath(&root_fd, &frel) {
            Ok(fd) => fd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(format!(
                    "{}: {e} (a link or not a folder: refused)",
                    root.join(&frel).display()
                ));
            }
        };
        let src = fsx::open_dir_beneath(&root_fd, Path::new(server)).map_err(|e| {
            format!(
                "{}: {e} (the server folder must be a real folder, not a link)",
                root.join(server).display()
            )
        })?;
        let mut records: Vec<(PathBuf, OsString)> = Vec::new();
        fsx::walk_files(&failed, true, &mut |_, rel, name, stat| {
            let b = name.as_bytes();
            if b.starts_with(b".") && b.ends_with(b".error.json") && stat.st_size < 1 << 20 {
                records.push((rel.to_owned(), name.to_owned()));
            }
        });
        records.sort();
        for (rel_dir, rec_name) in records {
            let wanted = |failed_rel: &str, rel: &str| {
                only.is_none_or(|only| only.iter().any(|o| o == failed_rel || o == rel))
            };
            match requeue_one(
                &failed,
                &src,
                server,
                &rel_dir,
                &rec_name,
                marker_suffix,
                wanted,
            ) {
                Outcome::NotAsked => {}
                Outcome::Refused { seen: s, error } => {
                    seen.extend(s.into_iter().flatten());
                    errors.push(error);
                }
                Outcome::Requeued {
                    seen: s,
                    rel,
                    marker_error,
                } => {
                    seen.extend(s);
                    errors.extend(marker_error);
                    done.push(rel);
                }
            }
        }
        Ok(())
    }
}

/// What became of one failed file.
enum Outcome {
    /// Not among the files asked for.
    NotAsked,
    /// Asked for (its names are `seen`) but not requeued: why.
    Refused {
        /// Its path below `.failed/<server>` and its original relative path, once the
        /// record was read (so `only` does not also report it as missing).
        seen: Option<[String; 2]>,
        /// Why, in words.
        error: String,
    },
    /// Back in the server folder as `rel`; its marker could not be made, if
    /// `marker_error`.
    Requeued {
        /// As for `Refused`.
        seen: [String; 2],
        /// Its relative path in the server folder.
        rel: String,
        /// Requeued, but a marker-rule server will not see it until its marker exists.
        marker_error: Option<String>,
    },
}

/// Requeues the failed file whose record is `rec_name` in `rel_dir` below `failed`
/// (`.failed/<server>`) into `src` (the server folder), if `wanted(path below failed,
/// original relative path)`.
fn requeue_one(
    failed: &OwnedFd,
    src: &OwnedFd,
    server: &str,
    rel_dir: &Path,
    rec_name: &OsStr,
    marker_suffix: Option<&str>,
    wanted: impl Fn(&str, &str) -> bool,
) -> Outcome {
    let shown = rel_dir.join(rec_name).display().to_string();
    let refused = |error: String| Outcome::Refused { seen: None, error };
    let Ok(dir) = fsx::open_dir_beneath(failed, rel_dir) else {
        return refused(format!("{shown}: its folder changed; not requeued"));
    };
    // Never waits on what could block: a FIFO swapped in for the record.
    let rec: FailRecord = match fsx::read_regular_beneath(&dir, Path::new(rec_name), 1 << 20)
        .map_err(|e| e.to_string())
        .and_then(|b| b.ok_or_else(|| "not a regular file".to_owned()))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => return refused(format!("{shown}: unreadable record: {e}")),
    };
    let file = match rec.file_bytes.as_deref() {
        Some(p) => pct_decode(p),
        None => Some(rec.file.as_bytes().to_vec()),
    };
    let rel = match rec.relative_path_bytes.as_deref() {
        Some(p) => pct_decode(p),
        None => Some(rec.relative_path.as_bytes().to_vec()),
    };
    let (Some(file), Some(rel)) = (file, rel) else {
        return refused(format!(
            "{shown}: malformed %-escape in the record; refused, nothing moved"
        ));
    };
    let file = OsString::from_vec(file);
    let failed_rel = rel_dir.join(&file).display().to_string();
    if !wanted(&failed_rel, &rec.relative_path) {
        return Outcome::NotAsked;
    }
    let seen = [failed_rel.clone(), rec.relative_path.clone()];
    let refused = |error: String| Outcome::Refused {
        seen: Some(seen.clone()),
        error,
    };
    if !plain_name(file.as_bytes()) || record_name(&file) != rec_name {
        return refused(format!(
            "{shown}: the record's `file` is not the plain name of the file it sits beside; refused, nothing moved"
        ));
    }
    if !plain_relative(&rel) {
        return refused(format!(
            "{shown}: the record's `relative_path` is absolute, climbs with `..` or has an empty segment; refused, nothing moved"
        ));
    }
    if std::str::from_utf8(&rel).is_err() {
        // Back in the spool it would fail again at once: S3 keys are UTF-8.
        return refused(format!(
            "{failed_rel}: its name is not UTF-8, so it can never be a key; move it back under a UTF-8 name yourself (mv <spool>/.failed/{server}/{failed_rel} <spool>/{server}/<new name>) and remove its record ({}); nothing moved",
            rel_dir.join(rec_name).display()
        ));
    }
    let rel = PathBuf::from(OsString::from_vec(rel));
    let (parent, last) = fsx::split(&rel);
    if parent != rel_dir {
        return refused(format!(
            "{shown}: the record's `relative_path` names another folder than the one the file failed in; refused, nothing moved"
        ));
    }
    match fsx::lstat_at(&dir, &file) {
        Ok(st) if fsx::kind(&st) == FileType::RegularFile => {}
        Ok(_) => {
            return refused(format!(
                "{failed_rel}: not a regular file; refused, nothing moved"
            ));
        }
        Err(e) => return refused(format!("{failed_rel}: {e}")),
    }
    let dest = match fsx::mkdirs_beneath(src, parent, DIR_MODE) {
        Ok(fd) => fd,
        Err(e) => {
            return refused(format!(
                "{failed_rel}: {e} (the folder in the spool must not be a link)"
            ));
        }
    };
    match fsx::rename_noreplace(&dir, &file, &dest, last) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return refused(format!(
                "{failed_rel}: a newer file of the same path is pending in the spool; requeue it after that one is published"
            ));
        }
        Err(e) => return refused(format!("{failed_rel}: {e}")),
    }
    let _ = fsx::unlink_at(&dir, rec_name);
    let _ = fsx::sync(&dest);
    let _ = fsx::sync(&dir);
    let mut marker_error = None;
    if let Some(suffix) = marker_suffix {
        let mut m = last.to_owned();
        m.push(suffix);
        if let Err(e) = fsx::write_new(&dest, &m, b"", 0o664)
            && e.kind() != std::io::ErrorKind::AlreadyExists
        {
            marker_error = Some(format!(
                "{failed_rel}: requeued, but its marker could not be made: {e}"
            ));
        }
    }
    Outcome::Requeued {
        seen,
        rel: rel.display().to_string(),
        marker_error,
    }
}

/// A single file-name component: not empty, no `/`, not `.` or `..`, no NUL.
pub(super) fn plain_name(b: &[u8]) -> bool {
    !b.is_empty() && b != b"." && b != b".." && !b.contains(&b'/') && !b.contains(&0)
}

/// A relative path of plain names joined by single `/`s.
pub(super) fn plain_relative(b: &[u8]) -> bool {
    !b.is_empty() && b.split(|c| *c == b'/').all(plain_name)
}
