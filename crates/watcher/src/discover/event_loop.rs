//! The discovery thread: one event loop. Each turn waits for a message (or the next
//! rescan or quiet-rule check), hands it and every message already queued to
//! [`State::handle`], then either rescans everything or looks at the paths the events
//! named, and finally claims what was found complete. Touch this to change when
//! discovery looks; what it does with an entry is in `scan` and `take`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use notify::{RecursiveMode, Watcher};

use super::{Discovery, FailedFiles, Msg, ServerRule};
use crate::completion::QuietTracker;

/// File-system events queued for the discovery thread at most; more are dropped and
/// replaced by one rescan.
const MAX_QUEUED: usize = 65_536;
/// Most event paths collected in one turn: events already queued are taken together
/// (no waiting for more, which would add latency to every drop).
const MAX_BATCH: usize = 10_000;

/// The discovery thread's state.
pub(super) struct State {
    /// Settings and outputs as the binary gave them (`servers` replaced on reload).
    pub(super) d: Discovery,
    /// The servers by name (the same rules as `d.servers`, which keeps their order).
    pub(super) rules: HashMap<String, Arc<ServerRule>>,
    /// Entries already logged and counted as refused (once per run).
    pub(super) reported: HashSet<(String, PathBuf)>,
    /// Quiet-rule candidates, by server and relative path.
    pub(super) quiet: QuietTracker<(String, PathBuf)>,
    /// Advances as the thread works (watchdog).
    heartbeat: Arc<AtomicU64>,
    /// inotify watches (None when the kernel refused them: rescans only).
    watcher: Option<notify::RecommendedWatcher>,
    /// Complete files waiting to be claimed in the current batch: server, relative
    /// path, marker.
    pub(super) to_claim: Vec<(String, PathBuf, Option<PathBuf>)>,
    /// Folder markers of batches recorded in this batch of claims: removed after the
    /// claims (server, marker, the marker as the record saw it).
    pub(super) batch_markers: Vec<(String, PathBuf, crate::spool::MarkerSeen)>,
    /// File-system events sent and not yet handled (bounded by [`MAX_QUEUED`]).
    queued: Arc<AtomicUsize>,
    /// Set when events were dropped; cleared by the rescan it causes.
    overflowed: Arc<AtomicBool>,
    /// Server folders the last full scan found empty, with their settled stamps: the
    /// next one skips them while the stamp is the same.
    pub(super) empty_seen: HashMap<String, crate::spool::DirStamp>,
    /// Full scans so far (every tenth ignores `empty_seen`).
    pub(super) scans: u64,
}

/// What the messages of one turn asked for.
#[derive(Default)]
struct Turn {
    /// Paths named by file-system events, in arrival order.
    paths: Vec<PathBuf>,
    /// Events were lost: rescan everything instead of looking at `paths`.
    rescan: bool,
}

/// Whether the loop goes on after a message.
#[derive(PartialEq, Eq)]
enum Flow {
    Go,
    Stop,
}

impl State {
    pub(super) fn new(d: Discovery, heartbeat: Arc<AtomicU64>) -> State {
        let rules = d
            .servers
            .iter()
            .map(|s| (s.name.clone(), Arc::new(s.clone())))
            .collect();
        State {
            d,
            rules,
            reported: HashSet::new(),
            quiet: QuietTracker::default(),
            heartbeat,
            watcher: None,
            to_claim: Vec::new(),
            batch_markers: Vec::new(),
            queued: Arc::default(),
            overflowed: Arc::default(),
            empty_seen: HashMap::new(),
            scans: 0,
        }
    }

    pub(super) fn run(mut self, tx: mpsc::Sender<Msg>, rx: mpsc::Receiver<Msg>) {
        // `tx` lives as long as this loop: the queue never disconnects under it.
        self.watcher = self.start_watcher(tx.clone());
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
            let wake = self
                .next_quiet_check()
                .map_or(next_rescan, |q| q.min(next_rescan));
            let mut turn = Turn::default();
            let first = match rx.recv_timeout(wake.saturating_duration_since(Instant::now())) {
                Ok(msg) => Some(msg),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                // Cannot happen while `tx` lives; a stop if it ever did.
                Err(mpsc::RecvTimeoutError::Disconnected) => Some(Msg::Stop),
            };
            self.beat();
            if let Some(msg) = first {
                if self.handle(msg, &mut turn) == Flow::Stop {
                    return;
                }
                // Messages already queued are taken in the same turn (at most
                // MAX_BATCH paths or messages: events without a path, a stream of
                // removals, must not hold off rescans and quiet checks either).
                let mut taken = 0;
                while turn.paths.len() <= MAX_BATCH
                    && taken < MAX_BATCH
                    && let Ok(msg) = rx.try_recv()
                {
                    taken += 1;
                    if self.handle(msg, &mut turn) == Flow::Stop {
                        return;
                    }
                }
            }
            if turn.rescan || Instant::now() >= next_rescan {
                if turn.rescan {
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
                self.examine_paths(turn.paths);
            }
            self.check_quiet();
            self.flush();
        }
    }

    /// Handles one message: the only place a message is read.
    fn handle(&mut self, msg: Msg, turn: &mut Turn) -> Flow {
        match msg {
            Msg::Stop => return Flow::Stop,
            Msg::Ping => self.beat(),
            Msg::Reconfigure(servers) => self.reconfigure(servers),
            Msg::Overflow => turn.rescan |= self.overflow(),
            Msg::Fs(ev) => {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                turn.rescan |= collect(ev, &mut turn.paths);
            }
        }
        Flow::Go
    }

    /// Looks at the paths events named, each once, in arrival order (drop order decides
    /// same-path and `publish_last` order).
    fn examine_paths(&mut self, mut paths: Vec<PathBuf>) {
        let root = self.d.spool.root().to_owned();
        let mut seen = HashSet::new();
        paths.retain(|p| seen.insert(p.clone()));
        for p in paths {
            let Some((server, rel)) = split_event_path(&root, &p) else {
                continue;
            };
            if !self.rules.contains_key(&server) {
                continue;
            }
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

    /// The `notify` watcher, sending into this thread's queue; `None` when the kernel
    /// refuses (rescans only).
    fn start_watcher(&self, tx: mpsc::Sender<Msg>) -> Option<notify::RecommendedWatcher> {
        let queued = self.queued.clone();
        let overflowed = self.overflowed.clone();
        // Links are never followed: a folder holding `root -> /` must not make the
        // watcher walk (and watch) the whole machine.
        let config = notify::Config::default().with_follow_symlinks(false);
        let watcher = notify::RecommendedWatcher::new(
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
        );
        match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "file-system events unavailable; relying on the periodic rescan");
                None
            }
        }
    }

    /// Waits until notify's loop has handled what it read so far (its watches of new
    /// folders included): `configure` is answered by that loop, after the batch.
    pub(super) fn settle_watches(&mut self) {
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

    /// Watches a server folder (recursively), if events are available at all.
    pub(super) fn watch(&mut self, server: &str) {
        let p = self.d.spool.root().join(server);
        if let Some(w) = self.watcher.as_mut()
            && let Err(e) = w.watch(&p, RecursiveMode::Recursive)
        {
            tracing::warn!(server, path = %p.display(), error = %e, "cannot watch server folder; relying on the periodic rescan");
        }
    }

    /// A reload: removed servers are no longer watched (their files stay), added ones
    /// are watched and scanned.
    fn reconfigure(&mut self, servers: Vec<ServerRule>) {
        let old: HashSet<String> = self.rules.keys().cloned().collect();
        let new: HashSet<String> = servers.iter().map(|s| s.name.clone()).collect();
        for gone in old.difference(&new) {
            if let Some(w) = self.watcher.as_mut() {
                let _ = w.unwatch(&self.d.spool.root().join(gone));
            }
            self.quiet.retain(|(s, _)| s != gone);
            self.empty_seen.remove(gone);
        }
        self.rules = servers
            .iter()
            .map(|s| (s.name.clone(), Arc::new(s.clone())))
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

    pub(super) fn beat(&self) {
        self.heartbeat.fetch_add(1, Ordering::Relaxed);
    }

    /// Tells the scheduler every server's files in `.failed/`.
    pub(super) fn report_failed(&self) {
        let present = self.d.spool.failed_servers();
        for s in &self.d.servers {
            (self.d.on_failed)(FailedFiles::All {
                server: s.name.clone(),
                rels: if present.contains(&s.name) {
                    self.d.spool.failed_files(&s.name)
                } else {
                    Vec::new()
                },
            });
        }
    }

    /// Prunes the archives (on each rescan).
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
