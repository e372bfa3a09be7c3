//! Discovery: inotify events (through `notify`), a start-up scan and a periodic rescan
//! find complete files by each server's completion rule and claim them. Runs on its own
//! thread: file-system calls block, and no server's queue can make it wait.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use notify::{RecursiveMode, Watcher};
use outpost_config::Completion;

use crate::fsx::{self, FileType};
use crate::rules::{in_progress, key_problem, marker_target};
use crate::spool::{FailRecord, SpoolError, rfc3339};
use crate::{Claim, RejectReason, Spool, SpoolEvents};

/// How long an emptied sub-folder must stay empty before it is removed.
const EMPTY_DIR_AGE: Duration = Duration::from_secs(300);
/// Most events handled in one batch: events already queued are taken together (no
/// waiting for more, which would add latency to every drop).
const MAX_BATCH: usize = 10_000;
/// A relative path to claim and its marker, if any.
type ToClaim = (PathBuf, Option<PathBuf>);

/// Most files claimed in one batch (one set of fsyncs).
const CLAIM_BATCH: usize = 256;

/// What discovery needs to know of one server.
#[derive(Debug, Clone)]
pub struct ServerRule {
    /// Server name (= folder).
    pub name: String,
    /// Key prefix, to refuse keys over S3's limit at once.
    pub prefix: String,
    /// Bucket, for failure records.
    pub bucket: String,
    /// Completion rule.
    pub completion: Completion,
    /// Archive retention, pruned on each rescan.
    pub archive_retention: Option<Duration>,
    /// `publish_last` globs: a scan claims such files after the other files of their
    /// folder (a scan cannot tell the drop order of files with equal timestamps).
    pub publish_last: Vec<String>,
}

/// Discovery's settings and outputs.
pub struct Discovery {
    /// The spool.
    pub spool: Arc<Spool>,
    /// The configured servers.
    pub servers: Vec<ServerRule>,
    /// Full rescan period.
    pub rescan_interval: Duration,
    /// Logs and counts refused entries.
    pub events: Arc<dyn SpoolEvents>,
    /// Receives every claim; returns false once the receiver is gone.
    pub sink: Box<dyn Fn(Claim) -> bool + Send>,
    /// Called once the start-up scan is done.
    pub on_ready: Box<dyn FnOnce() + Send>,
    /// Told of files in `.failed/`: each one failed by discovery itself, and after each
    /// full scan every server's whole set (so the scheduler holds `publish_last` files
    /// whose folder has a failed file, and releases them once it is gone).
    pub on_failed: Box<dyn Fn(FailedFiles) + Send>,
}

/// Files in `.failed/`, for [`Discovery::on_failed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailedFiles {
    /// One file was just moved there (its relative path, as the scheduler keys it).
    One {
        /// Server.
        server: String,
        /// Relative path.
        rel: String,
    },
    /// Every file of a server found there by a scan.
    All {
        /// Server.
        server: String,
        /// Relative paths.
        rels: Vec<String>,
    },
}

/// Messages into the discovery thread.
enum Msg {
    Fs(notify::Result<notify::Event>),
    /// File-system events were dropped (too many not yet handled): rescan.
    Overflow,
    Ping,
    /// The new set of servers after a reload.
    Reconfigure(Vec<ServerRule>),
    Stop,
}

/// Stops and watches the discovery thread.
#[derive(Clone)]
pub struct DiscoveryHandle {
    tx: mpsc::Sender<Msg>,
    heartbeat: Arc<AtomicU64>,
}

impl DiscoveryHandle {
    /// Asks discovery to stop after the event in hand.
    pub fn stop(&self) {
        let _ = self.tx.send(Msg::Stop);
    }
    /// Asks discovery to show it is alive: the heartbeat advances when it handles the
    /// ping (or as it works through a long scan).
    pub fn ping(&self) {
        let _ = self.tx.send(Msg::Ping);
    }
    /// Replaces the servers discovery serves (a reload): added folders are watched and
    /// scanned, removed ones left alone.
    pub fn reconfigure(&self, servers: Vec<ServerRule>) {
        let _ = self.tx.send(Msg::Reconfigure(servers));
    }
    /// Advances whenever discovery handles a message or scans a batch of entries.
    pub fn heartbeat(&self) -> u64 {
        self.heartbeat.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for DiscoveryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DiscoveryHandle")
    }
}

/// Starts discovery on its own thread.
pub fn run_discovery(
    d: Discovery,
) -> std::io::Result<(DiscoveryHandle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel();
    let heartbeat = Arc::new(AtomicU64::new(0));
    let handle = DiscoveryHandle {
        tx: tx.clone(),
        heartbeat: heartbeat.clone(),
    };
    let join = std::thread::Builder::new()
        .name("outpost-discovery".into())
        .spawn(move || State::new(d, heartbeat).run(tx, rx))?;
    Ok((handle, join))
}

/// A file under the quiet rule, last seen as it was.
struct QuietSeen {
    size: u64,
    mtime_ns: i128,
    since: Instant,
}

struct State {
    d: Discovery,
    rules: HashMap<String, ServerRule>,
    /// Entries already logged and counted as refused (once per run).
    reported: HashSet<(String, PathBuf)>,
    /// Quiet-rule candidates.
    quiet: HashMap<(String, PathBuf), QuietSeen>,
    /// Advances as the thread works (watchdog).
    heartbeat: Arc<AtomicU64>,
    /// inotify watches (None when the kernel refused them: rescans only).
    watcher: Option<notify::RecommendedWatcher>,
    /// Complete files waiting to be claimed in the current batch.
    to_claim: Vec<(String, PathBuf, Option<PathBuf>)>,
    /// File-system events sent and not yet handled (bounded by [`MAX_QUEUED`]).
    queued: Arc<std::sync::atomic::AtomicUsize>,
    /// Set when events were dropped; cleared by the rescan it causes.
    overflowed: Arc<std::sync::atomic::AtomicBool>,
}

/// File-system events queued for the discovery thread at most; more are dropped and
/// replaced by one rescan.
const MAX_QUEUED: usize = 65_536;

impl State {
    fn new(d: Discovery, heartbeat: Arc<AtomicU64>) -> State {
        let rules = d
            .servers
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect();
        State {
            d,
            rules,
            reported: HashSet::new(),
            quiet: HashMap::new(),
            heartbeat,
            watcher: None,
            to_claim: Vec::new(),
            queued: Arc::default(),
            overflowed: Arc::default(),
        }
    }

    fn run(mut self, tx: mpsc::Sender<Msg>, rx: mpsc::Receiver<Msg>) {
        let root = self.d.spool.root().to_owned();
        let watcher = {
            let tx = tx.clone();
            let queued = self.queued.clone();
            let overflowed = self.overflowed.clone();
            // Links are never followed: a folder holding `root -> /` must not make the
            // watcher walk (and watch) the whole machine.
            let config = notify::Config::default().with_follow_symlinks(false);
            notify::RecommendedWatcher::new(
                move |ev| {
                    // Bounded: past MAX_QUEUED events not yet handled, events are dropped
                    // and one rescan is asked for, as for a kernel queue overflow.
                    if queued.load(Ordering::SeqCst) < MAX_QUEUED {
                        queued.fetch_add(1, Ordering::SeqCst);
                        let _ = tx.send(Msg::Fs(ev));
                    } else if !overflowed.swap(true, Ordering::SeqCst) {
                        let _ = tx.send(Msg::Overflow);
                    }
                },
                config,
            )
        };
        self.watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "file-system events unavailable; relying on the periodic rescan");
                None
            }
        };
        let names: Vec<String> = self.d.servers.iter().map(|s| s.name.clone()).collect();
        for n in names {
            self.watch(&n);
        }
        self.full_scan();
        self.flush();
        self.report_failed();
        let ready = std::mem::replace(&mut self.d.on_ready, Box::new(|| {}));
        ready();
        let mut next_rescan = Instant::now() + self.d.rescan_interval;
        loop {
            let now = Instant::now();
            let mut wake = next_rescan;
            if let Some(q) = self.next_quiet_check() {
                wake = wake.min(q);
            }
            let mut paths: Vec<PathBuf> = Vec::new();
            let mut rescan = false;
            let msg = rx.recv_timeout(wake.saturating_duration_since(now));
            self.beat();
            match msg {
                Ok(Msg::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Ok(Msg::Ping) => {}
                Ok(Msg::Reconfigure(servers)) => self.reconfigure(servers),
                Ok(Msg::Overflow) => rescan |= self.overflow(),
                Ok(Msg::Fs(ev)) => {
                    self.queued.fetch_sub(1, Ordering::SeqCst);
                    rescan |= collect(ev, &mut paths);
                    while let Ok(m) = rx.try_recv() {
                        match m {
                            Msg::Stop => return,
                            Msg::Ping => self.beat(),
                            Msg::Reconfigure(servers) => self.reconfigure(servers),
                            Msg::Overflow => rescan |= self.overflow(),
                            Msg::Fs(ev) => {
                                self.queued.fetch_sub(1, Ordering::SeqCst);
                                rescan |= collect(ev, &mut paths)
                            }
                        }
                        if paths.len() > MAX_BATCH {
                            break;
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if rescan || Instant::now() >= next_rescan {
                if rescan {
                    tracing::info!("file-system events were lost; rescanning the spool");
                }
                self.full_scan();
                self.housekeeping();
                // After this scan's claims (a requeued file arrives before its record
                // leaves the failed set).
                self.flush();
                self.report_failed();
                next_rescan = Instant::now() + self.d.rescan_interval;
            } else {
                // In arrival order (drop order decides same-path and publish_last order).
                let mut seen = HashSet::new();
                paths.retain(|p| seen.insert(p.clone()));
                for p in paths {
                    if let Some((server, rel)) = split_event_path(&root, &p)
                        && self.rules.contains_key(&server)
                    {
                        if rel.as_os_str().is_empty() {
                            // The server folder itself changed (removed, made again).
                            if self.refresh(&server) {
                                self.scan_tree(&server, PathBuf::new(), false);
                            }
                            continue;
                        }
                        self.examine(&server, &rel);
                    }
                }
            }
            self.check_quiet();
            self.flush();
        }
    }

    /// Waits until notify's loop has handled what it read so far (its watches of new
    /// folders included): `configure` is answered by that loop, after the batch.
    fn settle_watches(&mut self) {
        if let Some(w) = self.watcher.as_mut() {
            let _ = w.configure(notify::Config::default().with_follow_symlinks(false));
        }
    }

    /// Events were dropped: the next turn rescans (true), and later drops ask again.
    fn overflow(&mut self) -> bool {
        self.overflowed.store(false, Ordering::SeqCst);
        tracing::warn!(
            max = MAX_QUEUED,
            "too many file-system events waiting; dropped, rescanning instead"
        );
        true
    }

    fn watch(&mut self, server: &str) {
        let p = self.d.spool.root().join(server);
        if let Some(w) = self.watcher.as_mut()
            && let Err(e) = w.watch(&p, RecursiveMode::Recursive)
        {
            tracing::warn!(server, path = %p.display(), error = %e, "cannot watch server folder; relying on the periodic rescan");
        }
    }

    fn reconfigure(&mut self, servers: Vec<ServerRule>) {
        let old: HashSet<String> = self.rules.keys().cloned().collect();
        let new: HashSet<String> = servers.iter().map(|s| s.name.clone()).collect();
        for gone in old.difference(&new) {
            if let Some(w) = self.watcher.as_mut() {
                let _ = w.unwatch(&self.d.spool.root().join(gone));
            }
            self.quiet.retain(|(s, _), _| s != gone);
        }
        self.rules = servers
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect();
        self.d.servers = servers;
        let mut added: Vec<String> = new.difference(&old).cloned().collect();
        added.sort();
        for s in &added {
            self.reported
                .retain(|(srv, rel)| !(srv == s && rel.as_os_str().is_empty()));
            self.watch(s);
            self.scan_tree(s, PathBuf::new(), true);
        }
        // Servers added: their `publish_last` files wait for this report.
        self.flush();
        self.report_failed();
    }

    fn beat(&self) {
        self.heartbeat.fetch_add(1, Ordering::Relaxed);
    }

    fn full_scan(&mut self) {
        let root = self.d.spool.root().to_owned();
        if let Ok(entries) = std::fs::read_dir(&root) {
            for e in entries.flatten() {
                let name = e.file_name();
                let n = name.to_string_lossy().into_owned();
                if n.starts_with('.') || self.rules.contains_key(&n) {
                    continue;
                }
                self.reject(
                    &n,
                    Path::new(""),
                    RejectReason::UnknownServer,
                    &root.join(&name),
                );
            }
        }
        let names: Vec<String> = self.d.servers.iter().map(|s| s.name.clone()).collect();
        for s in names {
            self.refresh(&s);
            self.scan_tree(&s, PathBuf::new(), true);
        }
    }

    /// A server folder removed or replaced since it was opened is made again, re-opened
    /// and watched anew.
    fn refresh(&mut self, server: &str) -> bool {
        match self.d.spool.refresh_server(server) {
            Ok(true) => {
                self.watch(server);
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::error!(server, error = %e, "cannot make the server folder again");
                false
            }
        }
    }

    /// Tells the scheduler every server's files in `.failed/`.
    fn report_failed(&self) {
        for s in &self.d.servers {
            (self.d.on_failed)(FailedFiles::All {
                server: s.name.clone(),
                rels: self.d.spool.failed_files(&s.name),
            });
        }
    }

    fn housekeeping(&mut self) {
        for s in &self.d.servers {
            if let Some(r) = s.archive_retention {
                let n = self.d.spool.prune_archive(&s.name, r);
                if n > 0 {
                    tracing::info!(server = %s.name, files = n, "pruned archive");
                }
            }
        }
    }

    /// Handles one path an event named.
    fn examine(&mut self, server: &str, rel: &Path) {
        if rel.components().any(|c| in_progress(c.as_os_str())) {
            // In-progress names, and anything inside a dot-folder, wait for their rename.
            if let Some(Component::Normal(last)) = rel.components().next_back()
                && !in_progress(last)
            {
                return;
            }
            return;
        }
        let Ok(root) = self.d.spool.server_root(server) else {
            return;
        };
        let (parent, name) = fsx::split(rel);
        let pfd = match fsx::open_dir_beneath(&root, parent) {
            Ok(fd) => fd,
            Err(e) => {
                self.open_error(server, parent, &e);
                return;
            }
        };
        let st = match fsx::lstat_at(&pfd, name) {
            Ok(st) => st,
            Err(_) => return,
        };
        match fsx::kind(&st) {
            FileType::Directory => {
                // A new folder: notify hands us its event before it adds the folder's
                // watch (at the end of the batch it is reading), so a file landing in
                // between would be seen neither by this scan nor by an event. One round
                // trip to notify's loop first: by then the watch is in place.
                self.settle_watches();
                self.scan_tree(server, rel.to_owned(), false)
            }
            _ => self.consider(server, &pfd, rel, Some(&st)),
        }
    }

    /// Scans the folder `rel` and everything below it.
    fn scan_tree(&mut self, server: &str, rel: PathBuf, remove_empty: bool) {
        let Ok(root) = self.d.spool.server_root(server) else {
            return;
        };
        let mut stack = vec![rel];
        while let Some(dir) = stack.pop() {
            let fd = match fsx::open_dir_beneath(&root, &dir) {
                Ok(fd) => fd,
                Err(e) => {
                    self.open_error(server, &dir, &e);
                    continue;
                }
            };
            let entries = match fsx::list(&fd) {
                Ok(v) => v,
                Err(e) => {
                    self.open_error(server, &dir, &e);
                    continue;
                }
            };
            if entries.is_empty() && remove_empty && !dir.as_os_str().is_empty() {
                self.remove_if_stale(&root, &dir);
                continue;
            }
            // Files in modification order: the best guess of drop order for files found
            // by a scan (same-path and publish_last order follow it).
            let mut files = Vec::new();
            for (i, (name, ft)) in entries.into_iter().enumerate() {
                if i % 256 == 0 {
                    self.beat();
                }
                let child = dir.join(&name);
                let st = fsx::lstat_at(&fd, &name).ok();
                let is_dir = match ft {
                    FileType::Directory => true,
                    FileType::Unknown => st.as_ref().map(fsx::kind) == Some(FileType::Directory),
                    _ => false,
                };
                if is_dir {
                    if !in_progress(&name) {
                        stack.push(child);
                    }
                } else {
                    files.push((st.as_ref().map_or(0, fsx::mtime_ns), child, st));
                }
            }
            let globs = self
                .rules
                .get(server)
                .map(|r| r.publish_last.clone())
                .unwrap_or_default();
            let last = |p: &Path| {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default();
                globs.iter().any(|g| outpost_config::glob_match(g, &name))
            };
            files.sort_by(|a, b| (last(&a.1), a.0, &a.1).cmp(&(last(&b.1), b.0, &b.1)));
            for (_, child, st) in files {
                self.consider(server, &fd, &child, st.as_ref());
            }
        }
    }

    fn remove_if_stale(&self, root: &OwnedFd, dir: &Path) {
        let (parent, name) = fsx::split(dir);
        let Ok(pfd) = fsx::open_dir_beneath(root, parent) else {
            return;
        };
        let Ok(st) = fsx::lstat_at(&pfd, name) else {
            return;
        };
        let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(st.st_mtime.max(0) as u64);
        if SystemTime::now().duration_since(mtime).unwrap_or_default() >= EMPTY_DIR_AGE {
            // Fails harmlessly if something was dropped into it meanwhile.
            let _ = fsx::rmdir_at(&pfd, name);
        }
    }

    /// A non-folder entry `rel` in the open folder `dir`.
    fn consider(&mut self, server: &str, dir: &OwnedFd, rel: &Path, st: Option<&rustix::fs::Stat>) {
        let name = fsx::split(rel).1;
        if in_progress(name) {
            return;
        }
        let st = match st {
            Some(st) => *st,
            None => match fsx::lstat_at(dir, name) {
                Ok(st) => st,
                Err(_) => return,
            },
        };
        match fsx::kind(&st) {
            FileType::RegularFile => {}
            FileType::Symlink => {
                self.reject(server, rel, RejectReason::Symlink, &self.full(server, rel));
                return;
            }
            _ => {
                self.reject(server, rel, RejectReason::Special, &self.full(server, rel));
                return;
            }
        }
        let Some(rule) = self.rules.get(server).map(|r| r.completion.clone()) else {
            return;
        };
        match rule {
            Completion::Rename => self.take(server, rel, None),
            Completion::Marker { suffix } => {
                if let Some(data) = marker_target(name.as_bytes(), &suffix) {
                    let data_rel = rel.with_file_name(OsStr::from_bytes(data));
                    match fsx::lstat_at(dir, OsStr::from_bytes(data)) {
                        Ok(dst) if fsx::kind(&dst) == FileType::RegularFile => {
                            self.take(server, &data_rel, Some(rel))
                        }
                        Ok(_) => self.consider(server, dir, &data_rel, None),
                        Err(_) => {}
                    }
                } else {
                    let mut m = name.to_owned();
                    m.push(&suffix);
                    if fsx::exists_at(dir, &m).unwrap_or(false) {
                        let marker = rel.with_file_name(&m);
                        self.take(server, rel, Some(&marker));
                    }
                }
            }
            Completion::Quiet { period } => {
                let key = (server.to_owned(), rel.to_owned());
                let size = st.st_size as u64;
                let mtime_ns = fsx::mtime_ns(&st);
                let now = Instant::now();
                match self.quiet.get(&key) {
                    Some(q) if q.size == size && q.mtime_ns == mtime_ns => {
                        if now.duration_since(q.since) >= period {
                            self.quiet.remove(&key);
                            self.take(server, rel, None);
                        }
                    }
                    _ => {
                        self.quiet.insert(
                            key,
                            QuietSeen {
                                size,
                                mtime_ns,
                                since: now,
                            },
                        );
                    }
                }
            }
        }
    }

    fn next_quiet_check(&self) -> Option<Instant> {
        self.quiet
            .iter()
            .filter_map(
                |((s, _), q)| match self.rules.get(s).map(|r| &r.completion) {
                    Some(Completion::Quiet { period }) => Some(q.since + *period),
                    _ => None,
                },
            )
            .min()
    }

    fn check_quiet(&mut self) {
        let now = Instant::now();
        let due: Vec<(String, PathBuf)> = self
            .quiet
            .iter()
            .filter(
                |((s, _), q)| match self.rules.get(s).map(|r| &r.completion) {
                    Some(Completion::Quiet { period }) => q.since + *period <= now,
                    _ => true,
                },
            )
            .map(|(k, _)| k.clone())
            .collect();
        for (server, rel) in due {
            let Ok(root) = self.d.spool.server_root(&server) else {
                continue;
            };
            let (parent, _) = fsx::split(&rel);
            match fsx::open_dir_beneath(&root, parent) {
                Ok(fd) => self.consider(&server, &fd, &rel, None),
                Err(_) => {
                    self.quiet.remove(&(server, rel));
                }
            }
        }
        // Forget files that went away.
        self.quiet
            .retain(|(s, rel), _| self.d.spool.root().join(s).join(rel).exists());
    }

    /// Claims a complete file, or fails it at once if its name can never be a key.
    fn take(&mut self, server: &str, rel: &Path, marker: Option<&Path>) {
        let Some(rule) = self.rules.get(server).cloned() else {
            return;
        };
        if let Some(reason) = key_problem(&rule.prefix, rel.as_os_str().as_bytes()) {
            let rel_lossy = rel.to_string_lossy().into_owned();
            let record = FailRecord {
                server: server.to_owned(),
                relative_path: rel_lossy.clone(),
                file: String::new(),
                reason: reason.as_str().into(),
                bucket: rule.bucket.clone(),
                key: format!("{}{}", rule.prefix, rel_lossy),
                attempts: 0,
                first_attempt: None,
                last_attempt: None,
                last_error: match reason {
                    crate::FailReason::NameNotUtf8 => {
                        "the file name is not valid UTF-8; S3 keys are UTF-8".into()
                    }
                    _ => format!(
                        "the key would be longer than S3's {} bytes",
                        crate::rules::MAX_KEY_BYTES
                    ),
                },
                failed_at: rfc3339(SystemTime::now()),
                file_bytes: None,
                relative_path_bytes: None,
            };
            match self.d.spool.fail_in_place(server, rel, record) {
                Ok(dest) => {
                    self.d.events.failed_at_discovery(server, reason, &dest);
                    (self.d.on_failed)(FailedFiles::One {
                        server: server.to_owned(),
                        rel: rel_lossy,
                    });
                }
                Err(e) => {
                    tracing::error!(server, path = %self.full(server, rel).display(), error = %e, "cannot move an unpublishable file to .failed")
                }
            }
            if let Some(m) = marker {
                let _ = std::fs::remove_file(self.full(server, m));
            }
            return;
        }
        self.to_claim.push((
            server.to_owned(),
            rel.to_owned(),
            marker.map(Path::to_owned),
        ));
        if self.to_claim.len() >= CLAIM_BATCH {
            self.flush();
        }
    }

    /// Claims what [`State::take`] collected: one batch per server, so the fsyncs are
    /// paid once per batch, not once per file.
    fn flush(&mut self) {
        if self.to_claim.is_empty() {
            return;
        }
        let items = std::mem::take(&mut self.to_claim);
        let mut by_server: Vec<(String, Vec<ToClaim>)> = Vec::new();
        for (server, rel, marker) in items {
            match by_server.iter_mut().find(|(s, _)| *s == server) {
                Some((_, v)) => v.push((rel, marker)),
                None => by_server.push((server, vec![(rel, marker)])),
            }
        }
        for (server, batch) in by_server {
            for (rel, result) in self.d.spool.claim_batch(&server, &batch) {
                let server = server.as_str();
                let rel = rel.as_path();
                match result {
                    Ok(Some(c)) => {
                        tracing::debug!(server, rel = %c.rel, seq = c.seq, bytes = c.size, "claimed");
                        if !(self.d.sink)(c) {
                            tracing::debug!("claim receiver gone");
                        }
                    }
                    Ok(None) => {}
                    Err(SpoolError::NotRegular { .. }) => {
                        self.reject(server, rel, RejectReason::Special, &self.full(server, rel))
                    }
                    Err(e) if e.is_link() => {
                        self.reject(server, rel, RejectReason::Symlink, &self.full(server, rel))
                    }
                    Err(e) => {
                        let key = (server.to_owned(), rel.to_owned());
                        if self.reported.insert(key) {
                            tracing::error!(server, path = %self.full(server, rel).display(), error = %e, "cannot claim file; it stays in the spool");
                        }
                    }
                }
            }
        }
    }

    fn open_error(&mut self, server: &str, rel: &Path, e: &std::io::Error) {
        if e.kind() == std::io::ErrorKind::NotFound {
            return;
        }
        let loop_ = e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
            || e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error())
            || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error());
        let reason = if loop_ {
            RejectReason::Symlink
        } else {
            RejectReason::Unreadable
        };
        self.reject(server, rel, reason, &self.full(server, rel));
    }

    fn reject(&mut self, server: &str, rel: &Path, reason: RejectReason, full: &Path) {
        if self.reported.insert((server.to_owned(), rel.to_owned())) {
            self.d.events.rejected(server, reason, full);
        }
    }

    fn full(&self, server: &str, rel: &Path) -> PathBuf {
        self.d.spool.root().join(server).join(rel)
    }
}

/// Adds the paths of an event; true if events were lost and a rescan is due.
fn collect(ev: notify::Result<notify::Event>, paths: &mut Vec<PathBuf>) -> bool {
    match ev {
        Ok(ev) => {
            if ev.need_rescan() {
                return true;
            }
            use notify::EventKind;
            match ev.kind {
                // A removed folder is looked at (a server folder removed and made
                // again must be re-opened); removed files are of no interest.
                EventKind::Remove(notify::event::RemoveKind::Folder) => paths.extend(ev.paths),
                EventKind::Remove(_) | EventKind::Access(notify::event::AccessKind::Open(_)) => {}
                _ => paths.extend(ev.paths),
            }
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "file-system event error");
            true
        }
    }
}

/// `(server, rel)` of an absolute event path below `root`.
fn split_event_path(root: &Path, p: &Path) -> Option<(String, PathBuf)> {
    let rest = p.strip_prefix(root).ok()?;
    let mut comps = rest.components();
    let server = comps.next()?.as_os_str().to_str()?.to_owned();
    Some((server, comps.as_path().to_owned()))
}
