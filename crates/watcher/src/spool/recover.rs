//! Recovery at start (and for a server added by a reload): the claims this instance
//! held, read back from their names and records, and what a crash left half done
//! cleaned up. [`read_claim`] — a claims-folder entry back to a [`Claim`] — also serves
//! the take-over in `lease`. Touch this to change what a restart finds.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::{ServerDirs, Spool, SpoolError, io};
use crate::Claim;
use crate::claimname::{self, seq_name};
use crate::fsx;

/// Why a claimed file could not be read back as a claim.
pub(super) enum Unreadable {
    /// The file went away (or cannot be looked at) since its folder was listed.
    Gone,
    /// A long-form claim whose record cannot be read.
    NoRecord(std::io::Error),
    /// A long-form claim whose record is not a claim.
    BadRecord(serde_json::Error),
}

/// The claim of the data file `name` (parsed as `data`) in the claims folder `dir`:
/// from its name and size (short form) or its record (long form). Its `data` is `name`.
pub(super) fn read_claim(
    dir: &OwnedFd,
    server: &str,
    name: &OsStr,
    data: &claimname::Data,
) -> Result<Claim, Unreadable> {
    let mut c = match data {
        claimname::Data::Short { seq, rel } => {
            let st = fsx::lstat_at(dir, name).map_err(|_| Unreadable::Gone)?;
            Claim::new(server, *seq, rel.clone(), &st, None)
        }
        claimname::Data::Long { seq } => {
            // Never waits on what could block (a FIFO in a dead daemon's folder).
            let record = Path::new(&seq_name(*seq, "json")).to_owned();
            let bytes = fsx::read_regular_beneath(dir, &record, 1 << 20)
                .and_then(|b| b.ok_or_else(|| std::io::Error::other("not a regular file")))
                .map_err(Unreadable::NoRecord)?;
            let mut c: Claim = serde_json::from_slice(&bytes).map_err(Unreadable::BadRecord)?;
            c.server = server.to_owned();
            c.seq = *seq;
            c
        }
    };
    c.data = name.to_string_lossy().into_owned();
    Ok(c)
}

impl Spool {
    /// Every claim this instance holds, in claim order; cleans what a crash left half
    /// done (a record whose file never moved, temporary files).
    pub fn recover(&self) -> Result<Vec<Claim>, SpoolError> {
        self.recover_servers(&self.server_names())
    }

    /// [`Spool::recover`] for some servers only (a server added by a reload).
    pub fn recover_servers(&self, names: &[String]) -> Result<Vec<Claim>, SpoolError> {
        let mut out = Vec::new();
        let mut max_seq = 0;
        for server in names {
            let d = self.dirs(server)?;
            let path = self.claims_path(server);
            let entries = fsx::list(&d.claims).map_err(io("list", &path))?;
            let mut with_data = HashSet::new();
            for (name, _) in &entries {
                let Some(data) = claimname::parse(name) else {
                    continue;
                };
                match read_claim(&d.claims, server, name, &data) {
                    Ok(c) => {
                        self.drop_stale_marker(&d, &c);
                        max_seq = max_seq.max(c.seq);
                        with_data.insert(c.seq);
                        out.push(c);
                        continue;
                    }
                    Err(Unreadable::Gone) => continue,
                    Err(Unreadable::NoRecord(e)) => {
                        tracing::error!(path = %path.join(name).display(), error = %e, "claimed file without its record; left in place for an operator");
                    }
                    Err(Unreadable::BadRecord(e)) => {
                        tracing::error!(path = %path.join(name).display(), error = %e, "unreadable claim record; the claimed file stays in place");
                    }
                }
                // Left in place: its number stays taken and its journal stays beside it.
                let (claimname::Data::Short { seq, .. } | claimname::Data::Long { seq }) = data;
                max_seq = max_seq.max(seq);
                with_data.insert(seq);
            }
            // What a crash left half done: a record or journal whose file never moved (or
            // was already delivered), temporary files.
            for (name, _) in &entries {
                let s = name.to_string_lossy();
                if s.ends_with(".tmp") {
                    let _ = fsx::unlink_at(&d.claims, name);
                    continue;
                }
                if claimname::parse(name).is_some() {
                    continue;
                }
                if let Some(seq) = claimname::seq_of(name) {
                    max_seq = max_seq.max(seq);
                    if !with_data.contains(&seq) {
                        let _ = fsx::unlink_at(&d.claims, name);
                    }
                }
            }
        }
        self.next_seq.fetch_max(max_seq + 1, Ordering::SeqCst);
        out.sort_by_key(|c| c.seq);
        Ok(out)
    }

    /// A marker that belonged to a claim interrupted before it was removed.
    fn drop_stale_marker(&self, d: &ServerDirs, c: &Claim) {
        let Some(m) = &c.marker else { return };
        let (parent, name) = fsx::split(Path::new(m));
        let Ok(pfd) = fsx::open_dir_beneath(&d.src, parent) else {
            return;
        };
        if let Ok(st) = fsx::lstat_at(&pfd, name) {
            // Only a marker older than the claim is ours; a newer one is for a new drop.
            if fsx::mtime_ns(&st) <= claim_time_ns(d, c) {
                let _ = fsx::unlink_at(&pfd, name);
            }
        }
    }
}

/// When the claim's record was written (the claim time of a long-form claim).
fn claim_time_ns(d: &ServerDirs, c: &Claim) -> i128 {
    fsx::lstat_at(&d.claims, &seq_name(c.seq, "json"))
        .map(|st| fsx::mtime_ns(&st))
        .unwrap_or(i128::MAX)
}
