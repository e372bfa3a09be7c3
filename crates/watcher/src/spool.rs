//! The spool on disk: layout, the instance lock, and the atomic moves that take a file
//! over (claim), finish it (delete or archive), fail it, and requeue it.
//!
//! Layout below `spool_dir`:
//! - `<server>/…` — exporters drop files here.
//! - `.outpost/<instance>/claims/<server>/<seq>~<path>.data` — a claimed file, named
//!   after its claim order and relative path (see `claimname`); `<seq>.data` +
//!   `<seq>.json` for paths too long for a name (the record is fsynced *before* the file
//!   moves); `<seq>.upload` — the uploader's journal (multipart upload id).
//! - `.outpost/<instance>/lock`, `lease`, `live.json` — instance lock, lease, live state.
//! - `.failed/<server>/<rel>` with `.<name>.error.json` beside it.
//! - `.archive/<server>/<rel>`.
//!
//! Why no file can be lost: a file is only ever renamed (same filesystem, atomic), its
//! relative path travels in its claimed name (or in a record made durable before the
//! rename), and a file is removed only by [`Spool::finish`], which the binary calls after
//! S3 acknowledged the whole object.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::Claim;
use crate::fsx::{self, FileType};

/// A spool operation that failed, naming what and where.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// An I/O error on a named path.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another daemon holds this instance's lock.
    #[error("another outpost is already running on {path} as instance {instance:?} (lock held)")]
    Locked {
        /// Instance folder.
        path: PathBuf,
        /// Instance name.
        instance: String,
    },
    /// The entry is not a regular file.
    #[error("{path}: not a regular file")]
    NotRegular {
        /// The entry.
        path: PathBuf,
    },
    /// Unknown server.
    #[error("server {0:?} is not configured")]
    UnknownServer(String),
}

impl SpoolError {
    /// The OS error behind it, if any.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            SpoolError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
    /// The OS error behind it, if any.
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            SpoolError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
    /// Whether the entry was reached through a symbolic link.
    pub fn is_link(&self) -> bool {
        matches!(self, SpoolError::Io { source, .. } if source.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) || source.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()))
    }
}

fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> SpoolError {
    let path = path.into();
    move |source| SpoolError::Io { op, path, source }
}

/// Why a file went to `.failed/`: written beside it as `.<name>.error.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FailRecord {
    /// Server it was dropped for.
    pub server: String,
    /// Its relative path in the server folder (where `requeue` puts it back).
    pub relative_path: String,
    /// Name of the failed file in this folder (differs from the original when an earlier
    /// failure of the same path is kept).
    pub file: String,
    /// Reason class.
    pub reason: String,
    /// Destination bucket.
    pub bucket: String,
    /// Destination key.
    pub key: String,
    /// Upload attempts made.
    pub attempts: u32,
    /// First attempt (RFC 3339), if any.
    pub first_attempt: Option<String>,
    /// Last attempt (RFC 3339), if any.
    pub last_attempt: Option<String>,
    /// The last error, in words.
    pub last_error: String,
    /// When it was moved here (RFC 3339).
    pub failed_at: String,
    /// `file`'s exact bytes, %-escaped, when the name is not UTF-8 (`file` then holds
    /// a lossy rendering for people).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_bytes: Option<String>,
    /// `relative_path`'s exact bytes, %-escaped, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative_path_bytes: Option<String>,
}

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
}

/// Open folders of one server.
struct ServerDirs {
    /// `<spool>/<server>`: where exporters drop files.
    src: OwnedFd,
    /// `.outpost/<instance>/claims/<server>`.
    claims: OwnedFd,
}

/// The spool of one daemon instance.
pub struct Spool {
    /// `spool_dir`.
    root: PathBuf,
    /// Open `spool_dir`, so every path below is resolved without following links.
    root_fd: OwnedFd,
    /// `.outpost/<instance>` path (for messages).
    inst_path: PathBuf,
    /// Open `.outpost/<instance>`: the lease and live state are written through it.
    inst_fd: OwnedFd,
    /// This daemon's instance name.
    instance: String,
    /// The lock file; holding it open holds the lock.
    _lock: std::fs::File,
    /// Per-server folders, created on demand.
    servers: RwLock<HashMap<String, Arc<ServerDirs>>>,
    /// Next claim sequence number.
    next_seq: AtomicU64,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool").field("root", &self.root).finish()
    }
}

const DIR_MODE: u32 = 0o2775;
const STATE: &str = ".outpost";
const FAILED: &str = ".failed";
const ARCHIVE: &str = ".archive";

/// This host's instance name: its hostname.
pub fn default_instance() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty() && crate::fsx::split(Path::new(s)).0.as_os_str().is_empty())
        .unwrap_or_else(|| "localhost".into())
}

use crate::claimname::{self, seq_name};

/// Formats a time as RFC 3339 UTC (seconds).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Names tried for one archived or failed file before giving up (`name.1` … as many
/// as a path can collect in years of archiving).
const MAX_NAME_TRIES: usize = 100_000_000;

/// `Some(%-escaped bytes)` for a name that is not UTF-8 (its record keeps it exactly).
fn pct_if_not_utf8(name: &OsStr) -> Option<String> {
    if name.to_str().is_some() {
        return None;
    }
    let mut out = String::new();
    for b in name.as_bytes() {
        if b.is_ascii_graphic() && *b != b'%' || *b == b' ' {
            out.push(*b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Some(out)
}

/// The bytes of a %-escaped name.
fn pct_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Name of the record beside a failed file: starts with a dot, so it can never be an
/// exporter's published file, and fits in 255 bytes.
fn record_name(file: &OsStr) -> OsString {
    let mut n = OsString::from(".");
    n.push(file);
    n.push(".error.json");
    if n.as_bytes().len() <= 255 {
        return n;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in file.as_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    }
    OsString::from(format!(".{h:016x}.error.json"))
}

impl Spool {
    /// Opens the spool for the daemon: creates the layout and the server folders, and
    /// takes the instance lock.
    pub fn open(root: &Path, instance: &str, servers: &[String]) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(root).map_err(io("create spool", root))?;
        let root_fd = fsx::open_dir(root).map_err(io("open spool", root))?;
        let rel_inst = Path::new(STATE).join(instance);
        let inst = fsx::mkdirs_beneath(&root_fd, &rel_inst, 0o750)
            .map_err(io("create state folder", root.join(&rel_inst)))?;
        let inst_path = root.join(&rel_inst);
        let lock_path = inst_path.join("lock");
        // Daemon state is owner-only: an exporter in the spool's group must not be able
        // to keep a dead daemon's lease fresh (and so prevent take-over).
        let lock = rustix::fs::openat(
            &inst,
            "lock",
            rustix::fs::OFlags::WRONLY
                | rustix::fs::OFlags::CREATE
                | rustix::fs::OFlags::CLOEXEC
                | rustix::fs::OFlags::NOFOLLOW,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .and_then(|fd| rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(0o600)).map(|()| fd))
        .map(std::fs::File::from)
        .map_err(|e| io("open lock", &lock_path)(e.into()))?;
        match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(SpoolError::Locked {
                    path: inst_path,
                    instance: instance.into(),
                });
            }
            Err(e) => return Err(io("lock", &lock_path)(e.into())),
        }
        let spool = Spool {
            root: root.to_owned(),
            root_fd,
            inst_fd: inst,
            inst_path,
            instance: instance.to_owned(),
            _lock: lock,
            servers: RwLock::new(HashMap::new()),
            next_seq: AtomicU64::new(1),
        };
        for s in servers {
            spool.add_server(s)?;
        }
        spool
            .renew_lease()
            .map_err(io("write lease", spool.inst_path.join("lease")))?;
        Ok(spool)
    }

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
            let lease_age = fsx::lstat_at(&dir, OsStr::new("lease"))
                .ok()
                .filter(|st| fsx::kind(st) == FileType::RegularFile)
                .or_else(|| rustix::fs::fstat(&dir).ok())
                .map(|st| {
                    let t = crate::dropped_at_ns(fsx::mtime_ns(&st));
                    SystemTime::now().duration_since(t).unwrap_or_default()
                })
                .unwrap_or_default();
            if lease_age < ttl {
                continue;
            }
            // A daemon of that name alive on this host still holds its lock.
            let Ok(lock) = rustix::fs::openat(
                &dir,
                "lock",
                rustix::fs::OFlags::WRONLY
                    | rustix::fs::OFlags::NOFOLLOW
                    | rustix::fs::OFlags::NONBLOCK
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            ) else {
                continue;
            };
            if !rustix::fs::fstat(&lock).is_ok_and(|st| fsx::kind(&st) == FileType::RegularFile)
                || rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                    .is_err()
            {
                continue;
            }
            let names: Vec<String> = {
                let map = self.servers.read().unwrap_or_else(|e| e.into_inner());
                map.keys().cloned().collect()
            };
            let before = out.len();
            for server in names {
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
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        let (mut c, new_name) = match parsed {
            claimname::Data::Short { rel, .. } => {
                let st = fsx::lstat_at(from, entry).ok()?;
                let c = Claim {
                    server: server.to_owned(),
                    seq,
                    rel: rel.clone(),
                    size: st.st_size as u64,
                    mtime_ns: fsx::mtime_ns(&st),
                    marker: None,
                    data: String::new(),
                    taken: false,
                };
                (c, claimname::short(seq, &rel)?)
            }
            claimname::Data::Long { seq: old } => {
                let bytes = fsx::read_at(from, &seq_name(old, "json")).ok()?;
                let mut c: Claim = serde_json::from_slice(&bytes).ok()?;
                c.server = server.to_owned();
                c.seq = seq;
                let meta = serde_json::to_vec(&c).ok()?;
                fsx::write_atomic(&d.claims, &seq_name(seq, "json"), &meta).ok()?;
                (c, seq_name(seq, "data"))
            }
        };
        let old_seq = claimname::seq_of(entry)?;
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

    /// `spool_dir`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates (if missing) and opens the folders of `server`.
    pub fn add_server(&self, server: &str) -> Result<(), SpoolError> {
        let src = fsx::mkdirs_beneath(&self.root_fd, Path::new(server), DIR_MODE)
            .map_err(io("create server folder", self.root.join(server)))?;
        let rel_claims = self
            .inst_path
            .strip_prefix(&self.root)
            .unwrap_or(Path::new(STATE))
            .join("claims")
            .join(server);
        let claims = fsx::mkdirs_beneath(&self.root_fd, &rel_claims, 0o750)
            .map_err(io("create claims folder", self.root.join(&rel_claims)))?;
        let mut map = self.servers.write().unwrap_or_else(|e| e.into_inner());
        map.insert(server.to_owned(), Arc::new(ServerDirs { src, claims }));
        Ok(())
    }

    /// Makes sure `server`'s folder handle is the folder now at `<spool>/<server>`: a
    /// folder removed (and perhaps made again) by someone else is re-created if missing
    /// (mode as at start) and re-opened. True when the handle was replaced (discovery
    /// then watches and scans the new folder).
    pub fn refresh_server(&self, server: &str) -> Result<bool, SpoolError> {
        let d = self.dirs(server)?;
        let same = match (
            rustix::fs::fstat(&d.src),
            fsx::lstat_at(&self.root_fd, OsStr::new(server)),
        ) {
            (Ok(open), Ok(now)) => {
                open.st_dev == now.st_dev
                    && open.st_ino == now.st_ino
                    && fsx::kind(&now) == FileType::Directory
            }
            _ => false,
        };
        if same {
            return Ok(false);
        }
        let src = fsx::mkdirs_beneath(&self.root_fd, Path::new(server), DIR_MODE)
            .map_err(io("create server folder", self.root.join(server)))?;
        let mut map = self.servers.write().unwrap_or_else(|e| e.into_inner());
        let claims = match map.get(server) {
            Some(old) => fsx::open_dir_beneath(&old.claims, Path::new(""))
                .map_err(io("open claims folder", self.claims_path(server)))?,
            None => return Err(SpoolError::UnknownServer(server.into())),
        };
        map.insert(server.to_owned(), Arc::new(ServerDirs { src, claims }));
        tracing::warn!(server, path = %self.root.join(server).display(), "the server folder was removed or replaced; made again and watched anew");
        Ok(true)
    }

    fn dirs(&self, server: &str) -> Result<Arc<ServerDirs>, SpoolError> {
        let map = self.servers.read().unwrap_or_else(|e| e.into_inner());
        map.get(server)
            .cloned()
            .ok_or_else(|| SpoolError::UnknownServer(server.into()))
    }

    /// Opens the server folder again (for discovery).
    pub fn server_root(&self, server: &str) -> Result<OwnedFd, SpoolError> {
        let d = self.dirs(server)?;
        fsx::open_dir_beneath(&d.src, Path::new("")).map_err(io("open", self.root.join(server)))
    }

    fn claims_path(&self, server: &str) -> PathBuf {
        self.inst_path.join("claims").join(server)
    }

    /// Every claim this instance holds, in claim order; cleans what a crash left half
    /// done (a record whose file never moved, temporary files).
    pub fn recover(&self) -> Result<Vec<Claim>, SpoolError> {
        let names: Vec<String> = {
            let map = self.servers.read().unwrap_or_else(|e| e.into_inner());
            map.keys().cloned().collect()
        };
        self.recover_servers(&names)
    }

    /// [`Spool::recover`] for some servers only (a server added by a reload).
    pub fn recover_servers(&self, names: &[String]) -> Result<Vec<Claim>, SpoolError> {
        let mut out = Vec::new();
        let mut max_seq = 0;
        for server in names {
            let d = self.dirs(server)?;
            let path = self.claims_path(server);
            let entries = fsx::list(&d.claims).map_err(io("list", &path))?;
            let mut with_data = std::collections::HashSet::new();
            for (name, _) in &entries {
                let Some(data) = claimname::parse(name) else {
                    continue;
                };
                let c = match data {
                    claimname::Data::Short { seq, rel } => {
                        let Ok(st) = fsx::lstat_at(&d.claims, name) else {
                            continue;
                        };
                        Claim {
                            server: server.clone(),
                            seq,
                            rel,
                            size: st.st_size as u64,
                            mtime_ns: fsx::mtime_ns(&st),
                            marker: None,
                            data: String::new(),
                            taken: false,
                        }
                    }
                    claimname::Data::Long { seq } => {
                        let bytes = match fsx::read_at(&d.claims, &seq_name(seq, "json")) {
                            Ok(b) => b,
                            Err(e) => {
                                tracing::error!(path = %path.join(name).display(), error = %e, "claimed file without its record; left in place for an operator");
                                max_seq = max_seq.max(seq);
                                with_data.insert(seq);
                                continue;
                            }
                        };
                        match serde_json::from_slice::<Claim>(&bytes) {
                            Ok(mut c) => {
                                c.server = server.clone();
                                c.seq = seq;
                                self.drop_stale_marker(&d, &c);
                                c
                            }
                            Err(e) => {
                                tracing::error!(path = %path.join(name).display(), error = %e, "unreadable claim record; the claimed file stays in place");
                                max_seq = max_seq.max(seq);
                                with_data.insert(seq);
                                continue;
                            }
                        }
                    }
                };
                max_seq = max_seq.max(c.seq);
                with_data.insert(c.seq);
                let mut c = c;
                c.data = name.to_string_lossy().into_owned();
                out.push(c);
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
                let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
                let mut claim = Claim {
                    server: server.to_owned(),
                    seq,
                    rel: rel_str.to_owned(),
                    size: st.st_size as u64,
                    mtime_ns: fsx::mtime_ns(&st),
                    marker: marker.as_ref().and_then(|m| m.to_str()).map(str::to_owned),
                    data: String::new(),
                    taken: false,
                };
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
                    markers.push(m.clone());
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
        for m in markers {
            let (mp, mn) = fsx::split(&m);
            if let Ok(mfd) = fsx::open_dir_beneath(&d.src, mp) {
                match fsx::unlink_at(&mfd, mn) {
                    Ok(()) => {
                        let _ = fsx::sync(&mfd);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(server, marker = %m.display(), error = %e, "cannot remove marker")
                    }
                }
            }
        }
        out
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

    /// After S3 acknowledged the object: removes the file, or archives it.
    pub fn finish(&self, c: &Claim, archive: bool) -> Result<Option<PathBuf>, SpoolError> {
        let d = self.dirs(&c.server)?;
        let cpath = self.claims_path(&c.server);
        let data = OsString::from(&c.data);
        let mut archived = None;
        if archive {
            let rel = Path::new(ARCHIVE).join(&c.server).join(&c.rel);
            let (parent, name) = fsx::split(&rel);
            let afd = fsx::mkdirs_beneath(&self.root_fd, parent, 0o750)
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
        let ffd = fsx::mkdirs_beneath(&self.root_fd, parent, 0o750)
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

fn claim_time_ns(d: &ServerDirs, c: &Claim) -> i128 {
    fsx::lstat_at(&d.claims, &seq_name(c.seq, "json"))
        .map(|st| fsx::mtime_ns(&st))
        .unwrap_or(i128::MAX)
}

/// Each instance folder below `.outpost/`, open (name, folder); none without `.outpost`.
/// Opened beneath the spool: a link there is not followed.
fn instance_dirs(root_fd: &OwnedFd) -> std::io::Result<Vec<(OsString, OwnedFd)>> {
    let state = match fsx::open_dir_beneath(root_fd, Path::new(STATE)) {
        Ok(fd) => fd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for (name, kind) in fsx::list(&state)? {
        if kind != FileType::Directory {
            continue;
        }
        if let Ok(fd) = fsx::open_dir_beneath(&state, Path::new(&name)) {
            out.push((name, fd));
        }
    }
    Ok(out)
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
                    let names: std::collections::HashSet<(PathBuf, OsString)> = files
                        .iter()
                        .map(|(r, n, _)| (r.clone(), n.clone()))
                        .collect();
                    for (rel, name, stat) in &files {
                        if crate::rules::marker_target(name.as_bytes(), suffix).is_some() {
                            continue; // a marker, not data
                        }
                        let mut marker = name.clone();
                        marker.push(suffix);
                        if names.contains(&(rel.clone(), marker)) {
                            add(stat, &mut st);
                        } else {
                            st.waiting_for_marker += 1;
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
                fsx::read_regular_beneath(inst, Path::new("live.json"), 1 << 20)
                    .ok()
                    .flatten()
            })
            .collect()
    }

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
            let shown = rel_dir.join(&rec_name).display().to_string();
            let Ok(dir) = fsx::open_dir_beneath(&failed, &rel_dir) else {
                errors.push(format!("{shown}: its folder changed; not requeued"));
                continue;
            };
            let rec: FailRecord = match fsx::read_at(&dir, &rec_name)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(r) => r,
                Err(e) => {
                    errors.push(format!("{shown}: unreadable record: {e}"));
                    continue;
                }
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
                errors.push(format!(
                    "{shown}: malformed %-escape in the record; refused, nothing moved"
                ));
                continue;
            };
            let file = OsString::from_vec(file);
            let failed_rel = rel_dir.join(&file).display().to_string();
            if let Some(only) = only
                && !only
                    .iter()
                    .any(|o| *o == failed_rel || *o == rec.relative_path)
            {
                continue;
            }
            seen.push(failed_rel.clone());
            seen.push(rec.relative_path.clone());
            if !plain_name(file.as_bytes()) || record_name(&file) != rec_name {
                errors.push(format!(
                    "{shown}: the record's `file` is not the plain name of the file it sits beside; refused, nothing moved"
                ));
                continue;
            }
            if !plain_relative(&rel) {
                errors.push(format!(
                    "{shown}: the record's `relative_path` is absolute, climbs with `..` or has an empty segment; refused, nothing moved"
                ));
                continue;
            }
            if std::str::from_utf8(&rel).is_err() {
                // Back in the spool it would fail again at once: S3 keys are UTF-8.
                errors.push(format!(
                    "{failed_rel}: its name is not UTF-8, so it can never be a key; move it back under a UTF-8 name yourself (mv <spool>/.failed/{server}/{failed_rel} <spool>/{server}/<new name>) and remove its record ({}); nothing moved",
                    rel_dir.join(&rec_name).display()
                ));
                continue;
            }
            let rel = PathBuf::from(OsString::from_vec(rel));
            let (parent, last) = fsx::split(&rel);
            if parent != rel_dir {
                errors.push(format!(
                    "{shown}: the record's `relative_path` names another folder than the one the file failed in; refused, nothing moved"
                ));
                continue;
            }
            match fsx::lstat_at(&dir, &file) {
                Ok(st) if fsx::kind(&st) == FileType::RegularFile => {}
                Ok(_) => {
                    errors.push(format!(
                        "{failed_rel}: not a regular file; refused, nothing moved"
                    ));
                    continue;
                }
                Err(e) => {
                    errors.push(format!("{failed_rel}: {e}"));
                    continue;
                }
            }
            let dest = match fsx::mkdirs_beneath(&src, parent, DIR_MODE) {
                Ok(fd) => fd,
                Err(e) => {
                    errors.push(format!(
                        "{failed_rel}: {e} (the folder in the spool must not be a link)"
                    ));
                    continue;
                }
            };
            match fsx::rename_noreplace(&dir, &file, &dest, last) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    errors.push(format!(
                        "{failed_rel}: a newer file of the same path is pending in the spool; requeue it after that one is published"
                    ));
                    continue;
                }
                Err(e) => {
                    errors.push(format!("{failed_rel}: {e}"));
                    continue;
                }
            }
            let _ = fsx::unlink_at(&dir, &rec_name);
            let _ = fsx::sync(&dest);
            let _ = fsx::sync(&dir);
            if let Some(suffix) = marker_suffix {
                let mut m = last.to_owned();
                m.push(suffix);
                if let Err(e) = fsx::write_new(&dest, &m, b"", 0o664)
                    && e.kind() != std::io::ErrorKind::AlreadyExists
                {
                    errors.push(format!(
                        "{failed_rel}: requeued, but its marker could not be made: {e}"
                    ));
                }
            }
            done.push(rel.display().to_string());
        }
        Ok(())
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

/// A single file-name component: not empty, no `/`, not `.` or `..`, no NUL.
fn plain_name(b: &[u8]) -> bool {
    !b.is_empty() && b != b"." && b != b".." && !b.contains(&b'/') && !b.contains(&0)
}

/// A relative path of plain names joined by single `/`s.
fn plain_relative(b: &[u8]) -> bool {
    !b.is_empty() && b.split(|c| *c == b'/').all(plain_name)
}
