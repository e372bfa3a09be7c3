//! The instance lock and lease, this daemon's own state files (`lease`, `live.json`),
//! and the take-over of the claims of a daemon whose lease expired. Touch this to
//! change how daemons sharing one spool decide who holds which claim.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use rustix::fs::{Mode, OFlags};

use super::{ServerDirs, Spool, SpoolError, instance_dirs, io, recover};
use crate::Claim;
use crate::claimname::{self, seq_name};
use crate::fsx::{self, FileType};

/// Opens (creating, owner-only) and locks `lock` in the instance folder `inst`: holding
/// the open file holds the lock. [`SpoolError::Locked`] when another daemon holds it.
pub(super) fn take_lock(
    inst: &OwnedFd,
    inst_path: &Path,
    instance: &str,
) -> Result<std::fs::File, SpoolError> {
    let lock_path = inst_path.join("lock");
    // Daemon state is owner-only: an exporter in the spool's group must not be able
    // to keep a dead daemon's lease fresh (and so prevent take-over).
    let lock = open_lock(inst, OFlags::CREATE, 0o600)
        .and_then(|fd| rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o600)).map(|()| fd))
        .map(std::fs::File::from)
        .map_err(|e| io("open lock", &lock_path)(e.into()))?;
    match lock_now(&lock) {
        Ok(()) => Ok(lock),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(SpoolError::Locked {
            path: inst_path.to_owned(),
            instance: instance.into(),
        }),
        Err(e) => Err(io("lock", &lock_path)(e.into())),
    }
}

/// The lock of the instance folder `dir`, taken, if it was free (its daemon is gone):
/// held while its claims move. Never blocks: a FIFO planted there cannot hang the
/// lease loop.
fn lock_if_free(dir: &OwnedFd) -> Option<OwnedFd> {
    let lock = open_lock(dir, OFlags::NONBLOCK, 0).ok()?;
    let free = rustix::fs::fstat(&lock).is_ok_and(|st| fsx::kind(&st) == FileType::RegularFile)
        && lock_now(&lock).is_ok();
    free.then_some(lock)
}

/// Opens `lock` in the instance folder `dir` for writing (never through a link), with
/// `flags` and, when created, `mode`.
fn open_lock(dir: &OwnedFd, flags: OFlags, mode: u32) -> rustix::io::Result<OwnedFd> {
    let flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | flags;
    rustix::fs::openat(dir, "lock", flags, Mode::from_raw_mode(mode))
}

/// Takes an exclusive lock without waiting.
fn lock_now(lock: impl std::os::fd::AsFd) -> rustix::io::Result<()> {
    rustix::fs::flock(lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
}

/// How long ago the instance folder `dir` renewed its lease (the folder's own time
/// when it has no lease file).
fn lease_age(dir: &OwnedFd) -> Duration {
    fsx::lstat_at(dir, OsStr::new("lease"))
        .ok()
        .filter(|st| fsx::kind(st) == FileType::RegularFile)
        .or_else(|| rustix::fs::fstat(dir).ok())
        .map(|st| {
            let t = crate::dropped_at_ns(fsx::mtime_ns(&st));
            SystemTime::now().duration_since(t).unwrap_or_default()
        })
        .unwrap_or_default()
}

impl Spool {
    /// Refreshes this instance's lease: other daemons on the spool take over its claims
    /// only once the lease is older than their `lease_ttl`.
    pub fn renew_lease(&self) -> std::io::Result<()> {
        self.write_state("lease", format!("{}\n", std::process::id()).as_bytes())
    }

    /// Writes one of this daemon's own state files (`lease`, `live.json`) in its
    /// instance folder: owner-only (0600), replaced atomically, never through a link.
    /// Advisory, so not fsynced.
    pub fn write_state(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        fsx::write_state(&self.inst_fd, OsStr::new(name), bytes)
    }

    /// Removes one of this daemon's state files.
    pub fn remove_state(&self, name: &str) {
        let _ = fsx::unlink_at(&self.inst_fd, OsStr::new(name));
    }

    /// Takes over the claims of every other instance whose lease expired more than
    /// `ttl` ago and whose lock is free, for the servers configured here. Each file
    /// moves by one atomic rename, so two daemons racing for it cannot both win.
    pub fn take_over_expired(&self, ttl: Duration) -> Vec<Claim> {
        let mut out = Vec::new();
        // Everything below `.outpost` is opened beneath the spool, never through a link;
        // the lock without blocking (a FIFO planted there cannot hang the lease loop).
        for (inst, dir) in instance_dirs(&self.root_fd).unwrap_or_default() {
            let name = inst.to_string_lossy().into_owned();
            if name == self.instance {
                continue;
            }
            let lease_age = lease_age(&dir);
            if lease_age < ttl {
                continue;
            }
            // A daemon of that name alive on this host still holds its lock.
            let Some(_lock) = lock_if_free(&dir) else {
                continue;
            };
            let before = out.len();
            for server in self.server_names() {
                let Ok(d) = self.dirs(&server) else { continue };
                let Ok(from_fd) = fsx::open_dir_beneath(&dir, &Path::new("claims").join(&server))
                else {
                    continue;
                };
                let Ok(mut entries) = fsx::list(&from_fd) else {
                    continue;
                };
                // In the dead daemon's claim order (not readdir order): its versions of
                // one path keep their relative order under their new numbers.
                entries.sort_by_key(|(name, _)| claimname::seq_of(name).unwrap_or(u64::MAX));
                for (entry, _) in &entries {
                    if let Some(c) = self.take_one(&server, &d, &from_fd, entry) {
                        out.push(c);
                    }
                }
                let _ = fsx::sync(&d.claims);
                let _ = fsx::sync(&from_fd);
            }
            if out.len() > before {
                tracing::warn!(instance = %name, files = out.len() - before, lease_age_s = lease_age.as_secs(), "took over the claims of a daemon whose lease expired");
            }
        }
        out
    }

    /// Moves one claim of a dead instance into ours (one rename of its data).
    fn take_one(
        &self,
        server: &str,
        d: &ServerDirs,
        from: &OwnedFd,
        entry: &OsStr,
    ) -> Option<Claim> {
        let parsed = claimname::parse(entry)?;
        let old_seq = claimname::seq_of(entry)?;
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        let mut c = recover::read_claim(from, server, entry, &parsed).ok()?;
        c.seq = seq;
        let new_name = match parsed {
            claimname::Data::Short { rel, .. } => claimname::short(seq, &rel)?,
            claimname::Data::Long { .. } => {
                let meta = serde_json::to_vec(&c).ok()?;
                fsx::write_atomic(&d.claims, &seq_name(seq, "json"), &meta).ok()?;
                seq_name(seq, "data")
            }
        };
        // The rename of the data is the moment the file changes hands.
        if fsx::rename_at(from, entry, &d.claims, &new_name).is_err() {
            let _ = fsx::unlink_at(&d.claims, &seq_name(seq, "json"));
            return None;
        }
        let _ = fsx::rename_at(
            from,
            &seq_name(old_seq, "upload"),
            &d.claims,
            &seq_name(seq, "upload"),
        );
        let _ = fsx::unlink_at(from, &seq_name(old_seq, "json"));
        c.data = new_name.to_string_lossy().into_owned();
        c.taken = true;
        Some(c)
    }
}
