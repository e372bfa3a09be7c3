//! The dispatcher: one task owns every server's pending index and starts attempts
//! round-robin across servers within the per-server and global limits.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::glob::Globs;
use crate::{History, Item, Outcome, RetryPolicy, Work};

/// Live totals of one server, for metrics and `status`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerStats {
    /// Files not yet acknowledged (waiting or in flight).
    pub queue_files: u64,
    /// Their bytes.
    pub queue_bytes: u64,
    /// Files being uploaded now.
    pub in_flight: u64,
    /// Drop time of the oldest file not yet acknowledged.
    pub oldest_dropped: Option<SystemTime>,
    /// Why the server is blocked, if it is.
    pub blocked: Option<String>,
    /// Why `publish_last` files wait beyond the normal order, if they do.
    pub held: Option<String>,
}

/// Longest wait between two probes of a blocked server.
pub const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(300);

/// A server the destination refuses: no uploads start but one probe at a time.
#[derive(Debug, Clone)]
struct Blocked {
    /// The worker's explanation (causes and fix).
    reason: String,
    since: std::time::Instant,
    /// Probes that failed so far.
    probes: u32,
    /// No probe before this.
    next_probe: Instant,
    /// A probe is in flight.
    /// The file being tried as the probe, while one is in flight.
    probing: Option<u64>,
}

/// Shared view of every server's totals.
pub type Stats = Arc<Mutex<HashMap<String, ServerStats>>>;

/// A file waiting in a server's index.
struct Pending<I> {
    item: I,
    /// Failed attempts so far.
    failures: u32,
    /// Not to be attempted before this.
    not_before: Option<Instant>,
    first_attempt: Option<SystemTime>,
    last_attempt: Option<SystemTime>,
    last_error: String,
    /// Times the destination refused this item (a `Blocked` outcome).
    refusals: u32,
    /// The server's `accepted` count at this item's last refusal: if other items were
    /// accepted since, a new refusal is the object's own, not the server's.
    refused_at: Option<u64>,
}

impl<I> Pending<I> {
    fn new(item: I) -> Self {
        Pending {
            item,
            failures: 0,
            not_before: None,
            first_attempt: None,
            last_attempt: None,
            last_error: String::new(),
            refusals: 0,
            refused_at: None,
        }
    }
}

/// One server's pending index and limits.
struct ServerQueue<I> {
    /// Waiting items by arrival order (seq).
    waiting: BTreeMap<u64, Pending<I>>,
    /// Items being attempted.
    running: HashMap<u64, Pending<I>>,
    /// Order keys being attempted: later items of the same key wait.
    running_keys: HashSet<String>,
    /// (drop time, seq) of every unacknowledged item, for the oldest age.
    by_age: BTreeSet<(SystemTime, u64)>,
    bytes: u64,
    max_in_flight: usize,
    retry: RetryPolicy,
    /// Set when the server was removed by a reload: drain, then forget.
    removed: bool,
    /// Set while the destination refuses us.
    blocked: Option<Blocked>,
    /// Items accepted so far (`Done`): tells a refused object from a refused server.
    accepted: u64,
    /// `publish_last` globs, compiled when the server is configured.
    last: Globs,
    /// (not before, seq) of waiting items in backoff: the next wake-up without a scan.
    backoff: BTreeSet<(Instant, u64)>,
    /// Per group, the order keys of its files in `.failed/` (given up, failed at once,
    /// or found there by a scan): `publish_last` items of that group wait until they
    /// are requeued or removed.
    failed_in_group: HashMap<String, HashSet<String>>,
    /// Pending items that came back from `.failed/` (requeued): `publish_last` items of
    /// their group wait for them too, although they arrived later.
    returned: HashSet<u64>,
    /// `publish_last` items wait for discovery's first scan (a file requeued while the
    /// daemon was down is found by it, not by the recovery of claims).
    await_scan: bool,
    /// Items given up whose move to `.failed/` is under way (seq → order key): a scan
    /// that does not see them there yet must not release their group.
    giving_up: HashMap<u64, String>,
    /// Waiting items taken over from a dead daemon, by order key: (drop time, seq).
    /// Such an item goes before this daemon's own items of the same key dropped later.
    taken: HashMap<String, BTreeSet<(SystemTime, u64)>>,
}

impl<I: Item> ServerQueue<I> {
    fn new(max_in_flight: usize, retry: RetryPolicy) -> Self {
        ServerQueue {
            waiting: BTreeMap::new(),
            running: HashMap::new(),
            running_keys: HashSet::new(),
            by_age: BTreeSet::new(),
            bytes: 0,
            max_in_flight,
            retry,
            removed: false,
            blocked: None,
            accepted: 0,
            last: Globs::default(),
            failed_in_group: HashMap::new(),
            returned: HashSet::new(),
            await_scan: false,
            giving_up: HashMap::new(),
            taken: HashMap::new(),
            backoff: BTreeSet::new(),
        }
    }

    /// Puts an item (back) into the waiting index.
    fn put_waiting(&mut self, p: Pending<I>) {
        if p.item.taken_over() {
            self.taken
                .entry(p.item.order_key().to_owned())
                .or_default()
                .insert((p.item.dropped_at(), p.item.seq()));
        }
        self.waiting.insert(p.item.seq(), p);
    }

    /// Takes an item out of the waiting index (to start it).
    fn take_waiting(&mut self, seq: u64) -> Option<Pending<I>> {
        let p = self.waiting.remove(&seq)?;
        if p.item.taken_over()
            && let Some(set) = self.taken.get_mut(p.item.order_key())
        {
            set.remove(&(p.item.dropped_at(), seq));
            if set.is_empty() {
                self.taken.remove(p.item.order_key());
            }
        }
        Some(p)
    }

    /// The item of `p`'s key that goes first: `p` (the lowest claim number), unless an
    /// item taken over from a dead daemon was dropped before it.
    fn first_of_key(&self, p: &Pending<I>) -> u64 {
        let seq = p.item.seq();
        let Some(set) = self.taken.get(p.item.order_key()) else {
            return seq;
        };
        match set.first() {
            Some(&(t, s)) if (t, s) < (p.item.dropped_at(), seq) => s,
            _ => seq,
        }
    }

    /// A file of this server is in `.failed/` (its order key).
    fn add_failed(&mut self, key: &str) {
        let (group, name) = crate::key_parts(key);
        if self.last.any(name) {
            // A control file that failed holds nothing.
            return;
        }
        self.failed_in_group
            .entry(group.to_owned())
            .or_default()
            .insert(key.to_owned());
    }

    /// The files of this server in `.failed/`, as a scan found them (replaces the set).
    fn set_failed(&mut self, keys: &[String]) {
        self.failed_in_group.clear();
        let under_way: Vec<String> = self.giving_up.values().cloned().collect();
        for k in keys.iter().chain(under_way.iter()) {
            self.add_failed(k);
        }
    }

    /// An item arrives: if its key was in `.failed/`, it was requeued.
    fn arrive(&mut self, item: &I) {
        let g = item.group();
        if let Some(set) = self.failed_in_group.get_mut(g)
            && set.remove(item.order_key())
        {
            self.returned.insert(item.seq());
            if set.is_empty() {
                self.failed_in_group.remove(g);
            }
        }
    }

    fn is_last(&self, item: &I) -> bool {
        self.last.any(item.name())
    }

    /// Whether a `publish_last` item must still wait: an earlier item of its group is
    /// pending or in flight, or one of its group failed.
    fn held_back(&self, item: &I) -> bool {
        if !self.is_last(item) {
            return false;
        }
        if self.await_scan {
            return true;
        }
        let g = item.group();
        if self.failed_in_group.get(g).is_some_and(|f| !f.is_empty()) {
            return true;
        }
        // Earlier: claimed before it, or dropped before it (a file requeued or taken over
        // from a dead daemon arrives later but was dropped earlier), or requeued.
        let earlier = |p: &Pending<I>| {
            (p.item.seq() < item.seq()
                || p.item.dropped_at() < item.dropped_at()
                || self.returned.contains(&p.item.seq()))
                && p.item.group() == g
                && !self.is_last(&p.item)
        };
        self.waiting.values().any(earlier) || self.running.values().any(earlier)
    }

    /// Delay before the `n`-th probe of a blocked server: the retry schedule capped at
    /// [`MAX_PROBE_INTERVAL`], drawn in `[d/2, d]` so probes never bunch up at zero.
    fn probe_delay(&self, n: u32) -> Duration {
        let cap = self.retry.max.min(MAX_PROBE_INTERVAL);
        let policy = RetryPolicy {
            max: cap.max(self.retry.initial),
            ..self.retry
        };
        let d = policy.base_delay(n.max(1));
        d / 2 + crate::full_jitter(d / 2)
    }

    /// The first waiting item that may start now: not behind an earlier item of the same
    /// key, not in backoff. A blocked server's probe rotates: the item refused the
    /// fewest times goes first (then the oldest), so one file the destination refuses
    /// on its own cannot hide the others.
    fn pick(&self, now: Instant) -> Option<u64> {
        if self.running.len() >= self.max_in_flight || self.removed {
            return None;
        }
        if let Some(b) = &self.blocked
            && (b.probing.is_some() || b.next_probe > now)
        {
            return None;
        }
        let rotate = self.blocked.is_some();
        let mut best: Option<(u32, u64)> = None;
        let mut held: HashSet<&str> = HashSet::new();
        for (seq, p) in &self.waiting {
            let key = p.item.order_key();
            if self.running_keys.contains(key) || held.contains(key) {
                continue;
            }
            // Later items of this key wait for this one, whatever it decides.
            held.insert(key);
            // The first of this key by claim number, or an earlier-dropped item taken
            // over from a dead daemon.
            let first = self.first_of_key(p);
            let (seq, p) = match self.waiting.get(&first) {
                Some(q) if first != *seq => (&first, q),
                _ => (seq, p),
            };
            if p.not_before.is_some_and(|t| t > now) {
                continue;
            }
            if !self.last.is_empty() && self.held_back(&p.item) {
                continue;
            }
            if !rotate || p.refusals == 0 {
                return Some(*seq);
            }
            if best.is_none_or(|(r, _)| p.refusals < r) {
                best = Some((p.refusals, *seq));
            }
        }
        best.map(|(_, seq)| seq)
    }

    /// The next moment something of this server becomes startable by time alone: a
    /// backoff or a probe delay *in the future*. What is due already but cannot start
    /// (limits full, a probe in flight, a same-path item running) waits for an event —
    /// an attempt ending or an item arriving — never for a time in the past.
    fn next_wake(&self, now: Instant) -> Option<Instant> {
        use std::ops::Bound::{Excluded, Unbounded};
        if self.removed {
            return None;
        }
        let items = self
            .backoff
            .range((Excluded((now, u64::MAX)), Unbounded))
            .next()
            .map(|(t, _)| *t);
        match &self.blocked {
            Some(b) if b.probing.is_none() && !self.waiting.is_empty() => {
                // The probe may start once it is due *and* some file may go: at once if a
                // waiting file is in no backoff, else when the first backoff ends.
                let in_backoff = self
                    .backoff
                    .range((Excluded((now, u64::MAX)), Unbounded))
                    .count();
                let first_file = if self.waiting.len() > in_backoff {
                    Some(now)
                } else {
                    items
                };
                first_file.map(|t| t.max(b.next_probe)).filter(|t| *t > now)
            }
            Some(_) => None,
            None => items,
        }
    }

    fn stats(&self) -> ServerStats {
        ServerStats {
            queue_files: (self.waiting.len() + self.running.len()) as u64,
            queue_bytes: self.bytes,
            in_flight: self.running.len() as u64,
            oldest_dropped: self.by_age.first().map(|(t, _)| *t),
            blocked: self.blocked.as_ref().map(|b| b.reason.clone()),
            held: self
                .failed_in_group
                .iter()
                .find(|(g, f)| {
                    !f.is_empty()
                        && self
                            .waiting
                            .values()
                            .any(|p| p.item.group() == g.as_str() && self.is_last(&p.item))
                })
                .map(|(g, f)| {
                    let mut failed: Vec<&String> = f.iter().collect();
                    failed.sort();
                    format!(
                        "publish_last files of folder {g:?} wait: {} of that folder failed (in .failed/); requeue it",
                        failed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    )
                }),
        }
    }

    fn forget(&mut self, p: &Pending<I>) {
        self.returned.remove(&p.item.seq());
        self.bytes = self.bytes.saturating_sub(p.item.size());
        self.by_age.remove(&(p.item.dropped_at(), p.item.seq()));
    }
}

/// A finished attempt, reported by its task.
struct Finished {
    server: String,
    seq: u64,
    outcome: Outcome,
    /// Not an attempt: the give-up of `seq` (its move to `.failed/`) is over.
    gave_up: bool,
}

/// Commands into the dispatcher.
#[derive(Debug)]
pub enum Command<I> {
    /// A new item for a server.
    Add {
        /// Server name.
        server: String,
        /// The item.
        item: I,
    },
    /// Adds a server or changes its limits.
    Configure {
        /// Server name.
        server: String,
        /// Files in flight for it.
        max_in_flight: usize,
        /// Its retry policy.
        retry: RetryPolicy,
        /// Globs of items published only after the earlier items of their group.
        last: Vec<String>,
    },
    /// Removes a server once its queue is empty; no new attempt starts for it.
    Remove {
        /// Server name.
        server: String,
    },
    /// A file of the server was moved to `.failed/` (its order key): `publish_last`
    /// items of its group wait until it is requeued or removed.
    Failed {
        /// Server name.
        server: String,
        /// The failed file's order key (relative path).
        key: String,
    },
    /// Every file of the server in `.failed/`, as a scan of the disk found them
    /// (start-up and each rescan): replaces what was known, so a failed file removed by
    /// an operator releases its group.
    FailedScan {
        /// Server name.
        server: String,
        /// Order keys (relative paths) of the failed files.
        keys: Vec<String>,
        /// From discovery, after a scan of the server folder (a requeued file is then
        /// in the queue). One sent before (at start-up, before the claims of the last
        /// run) holds the server's `publish_last` items until the first one after.
        after_scan: bool,
    },
    /// Changes the global limit of attempts in flight.
    SetGlobal(usize),
    /// Does nothing but prove the dispatcher answers (the systemd watchdog).
    Ping,
}

/// The dispatcher.
pub struct Scheduler<I: Item, W: Work<I>> {
    work: Arc<W>,
    global: usize,
    servers: BTreeMap<String, ServerQueue<I>>,
    /// Round-robin position over `servers`.
    cursor: usize,
    running: usize,
    stats: Stats,
    done_tx: mpsc::UnboundedSender<Finished>,
    done_rx: mpsc::UnboundedReceiver<Finished>,
    /// Fired when shutdown's grace ran out: attempts stop and leave their state on disk.
    stop: CancellationToken,
    /// Counts dispatcher loop turns: the watchdog sees the loop is alive.
    heartbeat: Arc<std::sync::atomic::AtomicU64>,
    /// Attempts and give-ups run here, so the daemon can wait for them at shutdown.
    tasks: TaskTracker,
}

impl<I: Item, W: Work<I>> std::fmt::Debug for Scheduler<I, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("global", &self.global)
            .finish()
    }
}

impl<I: Item, W: Work<I>> Scheduler<I, W> {
    /// A dispatcher running at most `global` attempts at once.
    pub fn new(work: Arc<W>, global: usize) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Scheduler {
            work,
            global: global.max(1),
            servers: BTreeMap::new(),
            cursor: 0,
            running: 0,
            stats: Arc::default(),
            done_tx,
            done_rx,
            stop: CancellationToken::new(),
            heartbeat: Arc::default(),
            tasks: TaskTracker::new(),
        }
    }

    /// Spawns attempts and give-ups on `tasks` (the daemon's tracker) instead of a
    /// tracker of its own.
    pub fn with_tracker(mut self, tasks: TaskTracker) -> Self {
        self.tasks = tasks;
        self
    }

    /// A counter that advances every time the dispatcher handles anything (send
    /// [`Command::Ping`] to make it turn).
    pub fn heartbeat(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.heartbeat.clone()
    }

    /// The shared totals, updated as the queues change.
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    fn apply(&mut self, cmd: Command<I>) {
        match cmd {
            Command::Add { server, item } => {
                let Some(q) = self.servers.get_mut(&server) else {
                    tracing::warn!(server, "item for an unknown server ignored");
                    return;
                };
                q.arrive(&item);
                q.bytes += item.size();
                q.by_age.insert((item.dropped_at(), item.seq()));
                q.put_waiting(Pending::new(item));
                self.publish(&server);
            }
            Command::Configure {
                server,
                max_in_flight,
                retry,
                last,
            } => {
                let q = self
                    .servers
                    .entry(server.clone())
                    .or_insert_with(|| ServerQueue::new(max_in_flight, retry));
                q.max_in_flight = max_in_flight.max(1);
                q.retry = retry;
                q.last = Globs::new(&last);
                q.removed = false;
                // Changed settings (a reload: new client, rotated secret) may be the fix:
                // a blocked server probes at once instead of after its probe delay.
                if let Some(b) = q.blocked.as_mut() {
                    b.next_probe = Instant::now();
                }
                self.publish(&server);
            }
            Command::Remove { server } => {
                if let Some(q) = self.servers.get_mut(&server) {
                    q.removed = true;
                }
                self.reap(&server);
            }
            Command::Failed { server, key } => {
                if let Some(q) = self.servers.get_mut(&server) {
                    q.add_failed(&key);
                    self.publish(&server);
                }
            }
            Command::FailedScan {
                server,
                keys,
                after_scan,
            } => {
                if let Some(q) = self.servers.get_mut(&server) {
                    q.set_failed(&keys);
                    q.await_scan = !after_scan;
                    self.publish(&server);
                }
            }
            Command::SetGlobal(n) => self.global = n.max(1),
            Command::Ping => {}
        }
    }

    fn reap(&mut self, server: &str) {
        if self
            .servers
            .get(server)
            .is_some_and(|q| q.removed && q.running.is_empty())
        {
            self.servers.remove(server);
            self.stats
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(server);
        }
    }

    fn publish(&self, server: &str) {
        if let Some(q) = self.servers.get(server) {
            self.stats
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(server.to_owned(), q.stats());
        }
    }

    /// Starts attempts while limits allow, visiting servers round-robin.
    fn dispatch(&mut self) {
        let now = Instant::now();
        let names: Vec<String> = self.servers.keys().cloned().collect();
        if names.is_empty() {
            return;
        }
        while self.running < self.global {
            let mut started = false;
            for i in 0..names.len() {
                let idx = (self.cursor + i) % names.len();
                let name = &names[idx];
                let Some(q) = self.servers.get_mut(name) else {
                    continue;
                };
                let Some(seq) = q.pick(now) else { continue };
                if let Some(b) = q.blocked.as_mut() {
                    b.probing = Some(seq);
                    tracing::info!(server = %name, probe = b.probes + 1, "probing blocked server with one pending file");
                }
                let Some(mut p) = q.take_waiting(seq) else {
                    continue;
                };
                if let Some(at) = p.not_before.take() {
                    q.backoff.remove(&(at, seq));
                }
                let t = SystemTime::now();
                p.first_attempt.get_or_insert(t);
                p.last_attempt = Some(t);
                q.running_keys.insert(p.item.order_key().to_owned());
                let item = p.item.clone();
                let attempt = p.failures + 1;
                q.running.insert(seq, p);
                self.running += 1;
                self.cursor = idx + 1;
                let work = self.work.clone();
                let tx = self.done_tx.clone();
                let server = name.clone();
                let stop = self.stop.clone();
                self.tasks.spawn(async move {
                    let outcome = work.attempt(&server, &item, attempt, stop).await;
                    let _ = tx.send(Finished {
                        server,
                        seq: item.seq(),
                        outcome,
                        gave_up: false,
                    });
                });
                self.publish(name);
                started = true;
                break;
            }
            if !started {
                break;
            }
        }
    }

    fn finished(&mut self, f: Finished) {
        if f.gave_up {
            // The file is in `.failed/` now (or still claimed, if the move failed): the
            // next scan says which.
            if let Some(q) = self.servers.get_mut(&f.server) {
                q.giving_up.remove(&f.seq);
            }
            return;
        }
        self.running = self.running.saturating_sub(1);
        let Some(q) = self.servers.get_mut(&f.server) else {
            return;
        };
        let Some(mut p) = q.running.remove(&f.seq) else {
            return;
        };
        q.running_keys.remove(p.item.order_key());
        if let Some(b) = q.blocked.as_mut() {
            // Only the probe's own end ends the probe (an attempt started before the
            // server was blocked may end meanwhile).
            if b.probing == Some(f.seq) {
                b.probing = None;
            }
        }
        match f.outcome {
            Outcome::Failed => {
                // The worker moved it to `.failed/`: its group's control files wait.
                q.add_failed(p.item.order_key());
                q.forget(&p)
            }
            Outcome::Done | Outcome::Dropped => {
                if matches!(f.outcome, Outcome::Done) {
                    q.accepted += 1;
                    let g = p.item.group().to_owned();
                    if let Some(set) = q.failed_in_group.get_mut(&g) {
                        set.remove(p.item.order_key());
                        if set.is_empty() {
                            q.failed_in_group.remove(&g);
                        }
                    }
                }
                if matches!(f.outcome, Outcome::Done)
                    && let Some(b) = q.blocked.take()
                {
                    tracing::info!(server = %f.server, blocked_seconds = b.since.elapsed().as_secs(), probes = b.probes, "destination accepts uploads again; server unblocked, delivery resumes");
                }
                q.forget(&p)
            }
            Outcome::Blocked(reason)
                if q.blocked.is_none() && p.refused_at.is_some_and(|at| q.accepted > at) =>
            {
                // Refused again although other files of this server were accepted since
                // its last refusal: the destination refuses this object, not us. It
                // counts as a failed attempt, with its own backoff, and goes to
                // `.failed/` after the last one.
                // (`refused_at` stays: once told apart, the file keeps counting even
                // when it is the last one left.)
                tracing::warn!(server = %f.server, seq = f.seq, "the destination refuses this file while it accepts others: {reason}");
                p.refusals += 1;
                self.retry_or_give_up(&f.server, p, reason, true);
            }
            Outcome::Blocked(reason) => {
                // Not the file's fault (yet): it stays pending, its attempt is not
                // counted, and the next probe tries another file first.
                p.refusals += 1;
                p.refused_at = Some(q.accepted);
                q.put_waiting(p);
                let now = Instant::now();
                match q.blocked.as_mut() {
                    None => {
                        tracing::error!(server = %f.server, "server blocked: {reason}");
                        let next = now + q.probe_delay(1);
                        q.blocked = Some(Blocked {
                            reason,
                            since: std::time::Instant::now(),
                            probes: 1,
                            next_probe: next,
                            probing: None,
                        });
                    }
                    Some(_) => {
                        let n = q.blocked.as_ref().map_or(1, |b| b.probes) + 1;
                        let delay = q.probe_delay(n);
                        if let Some(b) = q.blocked.as_mut() {
                            if b.reason != reason {
                                tracing::error!(server = %f.server, "server still blocked, for another reason: {reason}");
                                b.reason = reason;
                            }
                            b.probes = n;
                            b.next_probe = now + delay;
                        }
                    }
                }
            }
            Outcome::Interrupted => {
                // Stays claimed on disk; back in the index in case the run continues.
                q.put_waiting(p);
            }
            Outcome::Retry(err) => self.retry_or_give_up(&f.server, p, err, false),
        }
        self.publish(&f.server);
        self.reap(&f.server);
    }

    /// A failed attempt: back into the index after a backoff, or given up after the
    /// last attempt (`refused`: the destination refused this object itself).
    fn retry_or_give_up(&mut self, server: &str, mut p: Pending<I>, err: String, refused: bool) {
        let Some(q) = self.servers.get_mut(server) else {
            return;
        };
        let seq = p.item.seq();
        p.failures += 1;
        p.last_error = err;
        if p.failures >= q.retry.max_attempts {
            q.forget(&p);
            q.add_failed(p.item.order_key());
            let history = History {
                attempts: p.failures,
                first_attempt: p.first_attempt.unwrap_or_else(SystemTime::now),
                last_attempt: p.last_attempt.unwrap_or_else(SystemTime::now),
                last_error: p.last_error.clone(),
                refused,
            };
            q.giving_up.insert(seq, p.item.order_key().to_owned());
            self.publish(server);
            // Off the dispatcher: giving up may talk to a slow server (abort).
            let work = self.work.clone();
            let server = server.to_owned();
            let tx = self.done_tx.clone();
            self.tasks.spawn(async move {
                work.give_up(&server, p.item, history).await;
                let _ = tx.send(Finished {
                    server,
                    seq,
                    outcome: Outcome::Dropped,
                    gave_up: true,
                });
            });
        } else {
            let delay = q.retry.delay(p.failures);
            let at = Instant::now() + delay;
            p.not_before = Some(at);
            q.backoff.insert((at, seq));
            tracing::debug!(
                server,
                seq,
                failures = p.failures,
                delay_ms = delay.as_millis() as u64,
                "retry scheduled"
            );
            q.put_waiting(p);
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let now = Instant::now();
        self.servers.values().filter_map(|q| q.next_wake(now)).min()
    }

    /// Runs until `shutdown` fires, then gives attempts in flight `grace` to finish and
    /// interrupts the rest.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command<I>>,
        shutdown: CancellationToken,
        grace: Duration,
    ) {
        let mut open = true;
        loop {
            self.dispatch();
            let wake = self.next_wake();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(f) = self.done_rx.recv() => self.finished(f),
                cmd = commands.recv(), if open => match cmd {
                    Some(c) => self.apply(c),
                    None => open = false,
                },
                _ = sleep_until(wake), if wake.is_some() => {}
            }
            self.heartbeat
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        // Draining: no new attempt starts.
        let deadline = Instant::now() + grace;
        if self.running > 0 {
            tracing::info!(
                in_flight = self.running,
                grace_s = grace.as_secs_f64(),
                "waiting for uploads in flight"
            );
        }
        while self.running > 0 {
            tokio::select! {
                Some(f) = self.done_rx.recv() => self.finished(f),
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(in_flight = self.running, "shutdown grace over; interrupting uploads (their state stays recorded)");
                    self.stop.cancel();
                    let hard = Instant::now() + Duration::from_secs(10);
                    while self.running > 0 {
                        tokio::select! {
                            Some(f) = self.done_rx.recv() => self.finished(f),
                            _ = tokio::time::sleep_until(hard) => return,
                        }
                    }
                    return;
                }
            }
        }
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
