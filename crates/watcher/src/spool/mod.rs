//! The spool on disk: its layout, the open folders of one daemon instance, and the map
//! of who does what to which file. Read this first; touch it to change the layout or
//! how a server folder is opened.
//!
//! Layout below `spool_dir`:
//! - `<server>/…` — exporters drop files here.
//! - `.outpost/<instance>/claims/<server>/<seq>~<path>.data` — a claimed file, named
//!   after its claim order and relative path (see `claimname`); `<seq>.data` +
//!   `<seq>.json` for paths too long for a name (the record is fsynced *before* the file
//!   moves); `<seq>.upload` — the uploader's journal (multipart upload id).
//! - `.outpost/<instance>/lock`, `lease`, `live.json` — instance lock, lease, live state.
//! - `.outpost/.batches/<server>/` — batch records and their files' facts (`manifest`
//!   servers; shared by every instance, see `batch`).
//! - `.failed/<server>/<rel>` with `.<name>.error.json` beside it.
//! - `.archive/<server>/<rel>`.
//!
//! Who does what, one job per file:
//! - `lease` — the instance lock, the lease and state files, take-over of the claims of
//!   a daemon whose lease expired.
//! - `recover` — the claims this instance held when it stopped, read back at start.
//! - `claim` — claim (file → claims folder), the open claimed file, journals.
//! - `batch`, `batch_record` — batch records and the facts of their delivered files.
//! - `finish` — the end of a claim: delete, archive, or move to `.failed/`.
//! - `offline`, `requeue` — what works with the daemon down (`status`, `requeue`, …).
//! - `record` — failure records: their fields, names, %-escapes and times.
//! - `error` — [`SpoolError`].
//!
//! Every path below `spool_dir` is resolved through `fsx` (beneath an open folder, no
//! link followed), in the daemon and in the offline commands alike.
//!
//! Why no file can be lost: a file is only ever renamed (same filesystem, atomic), its
//! relative path travels in its claimed name (or in a record made durable before the
//! rename), and a file is removed only by [`Spool::finish`], which the binary calls after
//! S3 acknowledged the whole object.

mod batch;
mod batch_record;
mod claim;
pub(crate) use claim::MarkerSeen;
mod error;
mod finish;
mod lease;
mod offline;
mod record;
mod recover;
mod requeue;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

use crate::fsx::{self, FileType};

pub use batch_record::BatchState;
pub(crate) use batch_record::batch_name_ok;
pub use error::SpoolError;
use error::io;
pub use offline::{BatchWaiting, ServerStatus};
pub use record::{ExistingObject, FailRecord, rfc3339};

/// Open folders of one server.
struct ServerDirs {
    /// `<spool>/<server>`: where exporters drop files.
    src: Arc<OwnedFd>,
    /// `.outpost/<instance>/claims/<server>` (from [`ClaimsDirs`]).
    claims: Arc<OwnedFd>,
}

/// Claims folders kept open: at most [`ClaimsDirs::KEEP`], the least recently used
/// closed first, so 10,000 servers hold their 10,000 server folders open and not 10,000
/// claims folders besides (a claims folder is opened again, beneath the instance folder,
/// when next used).
#[derive(Default)]
struct ClaimsDirs {
    /// Open folders by server, with the tick of their last use.
    open: HashMap<String, (Arc<OwnedFd>, u64)>,
    /// Uses so far.
    tick: u64,
}

impl ClaimsDirs {
    /// Claims folders kept open at most.
    const KEEP: usize = 256;
}

/// A folder's identity and times: equal stamps mean nothing was added, removed or
/// renamed in it since (its modification time moves with every such change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirStamp {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i128,
    /// Status change time, ns since the epoch.
    pub ctime_ns: i128,
}

impl DirStamp {
    fn of(fd: impl std::os::fd::AsFd) -> Option<DirStamp> {
        let st = rustix::fs::fstat(fd).ok()?;
        Some(DirStamp {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            mtime_ns: fsx::mtime_ns(&st),
            ctime_ns: st.st_ctime as i128 * 1_000_000_000 + st.st_ctime_nsec as i128,
        })
    }
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
    /// Per-server folders, created on demand. Behind a lock because a reload adds
    /// servers and discovery re-opens a replaced folder while workers finish claims.
    servers: RwLock<HashMap<String, Arc<OwnedFd>>>,
    /// Open claims folders, a bounded number.
    claims: Mutex<ClaimsDirs>,
    /// Next claim sequence number: raised past every number found by recovery, so a
    /// number is never reused within this instance's claims folder.
    next_seq: AtomicU64,
    /// Batch records read so far, by server and batch, with what is known of their
    /// facts: a delivered file's check for completion reads no more than it must.
    batches: Mutex<HashMap<(String, String), batch::Known>>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool").field("root", &self.root).finish()
    }
}

/// Mode of the folders exporters write into (server folders and theirs, requeued
/// folders): group-writable, and new entries inherit the group.
const DIR_MODE: u32 = 0o2775;
/// Mode of the daemon's own folders (state, claims, `.failed`, `.archive`).
const PRIVATE_DIR_MODE: u32 = 0o750;
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

impl Spool {
    /// Opens the spool for the daemon: creates the layout and the server folders, and
    /// takes the instance lock.
    pub fn open(root: &Path, instance: &str, servers: &[String]) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(root).map_err(io("create spool", root))?;
        let root_fd = fsx::open_dir(root).map_err(io("open spool", root))?;
        let rel_inst = Path::new(STATE).join(instance);
        let inst = fsx::mkdirs_beneath(&root_fd, &rel_inst, PRIVATE_DIR_MODE)
            .map_err(io("create state folder", root.join(&rel_inst)))?;
        let inst_path = root.join(&rel_inst);
        let lock = lease::take_lock(&inst, &inst_path, instance)?;
        let spool = Spool {
            root: root.to_owned(),
            root_fd,
            inst_fd: inst,
            inst_path,
            instance: instance.to_owned(),
            _lock: lock,
            servers: RwLock::new(HashMap::new()),
            claims: Mutex::default(),
            next_seq: AtomicU64::new(1),
            batches: Mutex::new(HashMap::new()),
        };
        for s in servers {
            spool.add_server(s)?;
        }
        spool
            .renew_lease()
            .map_err(io("write lease", spool.inst_path.join("lease")))?;
        Ok(spool)
    }

    /// `spool_dir`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates (if missing) and opens the folders of `server`.
    pub fn add_server(&self, server: &str) -> Result<(), SpoolError> {
        let src = fsx::mkdirs_beneath(&self.root_fd, Path::new(server), DIR_MODE)
            .map_err(io("create server folder", self.root.join(server)))?;
        // Made beneath the instance folder the claims are opened beneath, and cached
        // (replacing a handle of a claims folder removed while the server was not
        // configured).
        let claims = fsx::mkdirs_beneath(
            &self.inst_fd,
            &Path::new("claims").join(server),
            PRIVATE_DIR_MODE,
        )
        .map_err(io("create claims folder", self.claims_path(server)))?;
        self.cache_claims(server, Arc::new(claims));
        let mut map = self.servers.write().unwrap_or_else(|e| e.into_inner());
        map.insert(server.to_owned(), Arc::new(src));
        Ok(())
    }

    /// Makes sure `server`'s folder handle is the folder now at `<spool>/<server>`: a
    /// folder removed (and perhaps made again) by someone else is re-created if missing
    /// (mode as at start) and re-opened. True when the handle was replaced (discovery
    /// then watches and scans the new folder).
    pub fn refresh_server(&self, server: &str) -> Result<bool, SpoolError> {
        let src = self.src_dir(server)?;
        let same = match (
            rustix::fs::fstat(&src),
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
        if !map.contains_key(server) {
            return Err(SpoolError::UnknownServer(server.into()));
        }
        map.insert(server.to_owned(), Arc::new(src));
        tracing::warn!(server, path = %self.root.join(server).display(), "the server folder was removed or replaced; made again and watched anew");
        Ok(true)
    }

    /// The inode and times of `server`'s folder, from its open handle (no open, no
    /// inotify event); `None` when it cannot be read.
    pub fn server_stamp(&self, server: &str) -> Option<DirStamp> {
        DirStamp::of(&*self.src_dir(server).ok()?)
    }

    /// The configured servers, in no particular order.
    fn server_names(&self) -> Vec<String> {
        let map = self.servers.read().unwrap_or_else(|e| e.into_inner());
        map.keys().cloned().collect()
    }

    fn dirs(&self, server: &str) -> Result<ServerDirs, SpoolError> {
        Ok(ServerDirs {
            src: self.src_dir(server)?,
            claims: self.claims_dir(server)?,
        })
    }

    /// `server`'s folder handle alone (no claims folder opened).
    fn src_dir(&self, server: &str) -> Result<Arc<OwnedFd>, SpoolError> {
        let map = self.servers.read().unwrap_or_else(|e| e.into_inner());
        map.get(server)
            .cloned()
            .ok_or_else(|| SpoolError::UnknownServer(server.into()))
    }

    /// `server`'s claims folder, open (from the cache, or opened beneath the instance
    /// folder: a link is not followed).
    fn claims_dir(&self, server: &str) -> Result<Arc<OwnedFd>, SpoolError> {
        {
            let mut c = self.claims.lock().unwrap_or_else(|e| e.into_inner());
            c.tick += 1;
            let tick = c.tick;
            if let Some((fd, used)) = c.open.get_mut(server) {
                *used = tick;
                return Ok(fd.clone());
            }
        }
        // Opened outside the lock: a slow file system delays only this server.
        let fd = Arc::new(
            fsx::open_dir_beneath(&self.inst_fd, &Path::new("claims").join(server))
                .map_err(io("open claims folder", self.claims_path(server)))?,
        );
        Ok(self.cache_claims(server, fd))
    }

    /// Keeps `fd` as `server`'s open claims folder (the one already kept, if another
    /// thread opened it meanwhile and it is the same folder), closing the least recently
    /// used beyond [`ClaimsDirs::KEEP`].
    fn cache_claims(&self, server: &str, fd: Arc<OwnedFd>) -> Arc<OwnedFd> {
        let mut c = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        c.tick += 1;
        let tick = c.tick;
        if c.open.len() >= ClaimsDirs::KEEP
            && !c.open.contains_key(server)
            && let Some(oldest) = c
                .open
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
        {
            c.open.remove(&oldest);
        }
        c.open.insert(server.to_owned(), (fd.clone(), tick));
        fd
    }

    /// Names in `spool_dir` itself (for discovery: folders of servers not configured).
    pub(crate) fn root_entries(&self) -> std::io::Result<Vec<OsString>> {
        Ok(fsx::list(&self.root_fd)?
            .into_iter()
            .map(|(n, _)| n)
            .collect())
    }

    /// Opens the server folder again (for discovery).
    pub fn server_root(&self, server: &str) -> Result<OwnedFd, SpoolError> {
        let src = self.src_dir(server)?;
        fsx::open_dir_beneath(&src, Path::new("")).map_err(io("open", self.root.join(server)))
    }

    fn claims_path(&self, server: &str) -> PathBuf {
        self.inst_path.join("claims").join(server)
    }
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
        // A dot-name is never an instance (`.batches`).
        if kind != FileType::Directory || name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        if let Ok(fd) = fsx::open_dir_beneath(&state, Path::new(&name)) {
            out.push((name, fd));
        }
    }
    Ok(out)
}
