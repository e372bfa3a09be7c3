//! The loop that sends the outbox: it takes what is due (at most [`TURN`] rows), sends
//! up to [`PARALLEL`] at once and at most [`PER_TARGET`] per target, and answers the
//! ledger in one write — sent rows go, a failed row is due again later. Backoff is per
//! target: a target whose send failed is down for 1 s, doubling to [`MAX_BACKOFF`]
//! (with jitter), and all its rows wait that long in one update, so a target that is
//! down costs one attempt per backoff period, not one per row, and never holds up the
//! others for more than one send's timeout. Until the answers of a turn are written,
//! nothing new is sent (a ledger that cannot write would otherwise send the same rows
//! again and again). It sleeps until the next row is due, a delivery nudges it, or the
//! configuration changes. Failures are logged once per target when they start and when
//! they end; rows of a target no longer configured wait an hour at a time, said once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use outpost_ledger::{Ledger, OutboxReader, Pending, UnixMillis, Update, now_millis};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::target::Clients;
use crate::{Metrics, Servers};

/// Rows taken per turn.
const TURN: usize = 256;
/// Sends in flight at once.
const PARALLEL: usize = 16;
/// Sends in flight at once to one target.
const PER_TARGET: usize = 4;
/// How long rows of a target no longer configured wait before they are looked at again.
const ORPHANED_WAIT: Duration = Duration::from_secs(3600);
/// The longest wait between two attempts of one notification.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often the backlog gauges are read again.
const GAUGES_EVERY: Duration = Duration::from_secs(10);
/// The longest sleep with nothing due (the backlog gauges move with time).
const IDLE_WAKE: Duration = Duration::from_secs(60);

/// The notifier's shared state: the servers (targets) and the nudge.
#[derive(Debug)]
pub struct Notifier {
    /// Servers by name; replaced on reload.
    servers: RwLock<Arc<Servers>>,
    /// Whether the servers changed since the loop built its clients.
    changed: std::sync::atomic::AtomicBool,
    /// Wakes the loop: a delivery with notifications was recorded.
    nudge: Notify,
    /// The series.
    metrics: Metrics,
}

impl Notifier {
    /// A notifier for `servers`.
    pub fn new(servers: Servers, metrics: Metrics) -> Arc<Notifier> {
        for s in servers.values() {
            metrics.add_targets(s);
        }
        Arc::new(Notifier {
            servers: RwLock::new(Arc::new(servers)),
            changed: false.into(),
            nudge: Notify::new(),
            metrics,
        })
    }

    /// The configuration changed (SIGHUP).
    pub fn set_servers(&self, servers: Servers) {
        for s in servers.values() {
            self.metrics.add_targets(s);
        }
        *self.servers.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(servers);
        self.changed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.nudge.notify_one();
    }

    /// A delivery with notifications was recorded: send them now.
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }
}

/// A wait that doubles with each failure in a row, from 1 s to [`MAX_BACKOFF`], with
/// jitter (×0.5–1).
fn backoff(failures: u32) -> Duration {
    let base = Duration::from_secs(1).saturating_mul(1 << failures.saturating_sub(1).min(16));
    base.min(MAX_BACKOFF).mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// A server's target, as the loop names it.
type Key = (String, String);

/// What the loop remembers of one target.
#[derive(Debug, Default)]
struct TargetState {
    /// Failed rounds in a row (0: healthy).
    failures: u32,
    /// Down until then (Unix ms); 0: up.
    until: UnixMillis,
}

/// The loop's memory between turns.
#[derive(Default)]
struct Memory {
    /// Targets that failed lately.
    targets: HashMap<Key, TargetState>,
    /// Answers not yet written to the ledger.
    unrecorded: Vec<Update>,
    /// Failed writes of answers in a row.
    write_failures: u32,
    /// Whether reading the outbox fails (said once).
    read_failing: bool,
    /// Targets no longer configured whose rows were seen (said once each).
    orphaned: HashSet<Key>,
}

/// Runs until `stop`: sends the outbox of the ledger at `path` (written by `ledger`).
pub async fn run(
    notifier: Arc<Notifier>,
    ledger: Arc<Ledger>,
    path: PathBuf,
    stop: CancellationToken,
) {
    let reader = Arc::new(Mutex::new(None::<OutboxReader>));
    let clients = Arc::new(Clients::new());
    let mut mem = Memory::default();
    let mut gauges_at: Option<Instant> = None;
    let mut gauged: HashSet<Key> = HashSet::new();
    loop {
        if notifier
            .changed
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            clients.clear().await;
        }
        // The last turn's answers first: nothing is sent again while they are unwritten.
        if !mem.unrecorded.is_empty() {
            let updates = mem.unrecorded.clone();
            let written =
                tokio::time::timeout(Duration::from_secs(10), ledger.outbox_update(updates))
                    .await
                    .unwrap_or(Err(outpost_ledger::LedgerError::QueueFull));
            match written {
                Ok(()) => {
                    mem.unrecorded.clear();
                    mem.write_failures = 0;
                }
                Err(e) => {
                    mem.write_failures += 1;
                    if mem.write_failures == 1 {
                        tracing::warn!(error = %e, "cannot record which notifications were sent; sending waits until it can (they may be sent again after a restart)");
                    }
                    if pause(
                        &stop,
                        &notifier,
                        backoff(mem.write_failures).min(Duration::from_secs(60)),
                    )
                    .await
                    {
                        return;
                    }
                    continue;
                }
            }
        }
        let now = now_millis();
        let due = read(&reader, &path, move |r| r.due(now, TURN)).await;
        match (&due, mem.read_failing) {
            (Err(e), false) => {
                mem.read_failing = true;
                tracing::warn!(error = %e, "cannot read the notification outbox; notifications wait");
            }
            (Ok(_), true) => {
                mem.read_failing = false;
                tracing::info!("the notification outbox can be read again");
            }
            _ => {}
        }
        if gauges_at.is_none_or(|t| t.elapsed() >= GAUGES_EVERY) {
            gauges_at = Some(Instant::now());
            if let Ok(backlog) = read(&reader, &path, |r| r.backlog()).await {
                let m = &notifier.metrics;
                let mut seen = HashSet::new();
                for b in backlog {
                    let l = [b.server.as_str(), b.target.as_str()];
                    m.pending.with_label_values(&l).set(b.count as i64);
                    let age = (now.saturating_sub(b.oldest)).max(0) as f64 / 1000.0;
                    m.oldest_age.with_label_values(&l).set(age);
                    seen.insert((b.server, b.target));
                }
                for (s, t) in gauged.difference(&seen) {
                    let l = [s.as_str(), t.as_str()];
                    m.pending.with_label_values(&l).set(0);
                    m.oldest_age.with_label_values(&l).set(0.0);
                }
                gauged = seen;
            }
        }
        let due = due.unwrap_or_default();
        if due.is_empty() {
            clients.forget_idle(Instant::now()).await;
            let wait = if mem.read_failing {
                Duration::from_secs(5)
            } else {
                let next = read(&reader, &path, |r| r.next_due()).await.ok().flatten();
                next.map_or(IDLE_WAKE, |at| {
                    Duration::from_millis(at.saturating_sub(now_millis()).max(0) as u64)
                        .clamp(Duration::from_millis(50), IDLE_WAKE)
                })
            };
            if pause(&stop, &notifier, wait).await {
                return;
            }
            continue;
        }
        let Some(updates) = send_all(&notifier, &clients, &mut mem, due, &stop).await else {
            return; // stopped
        };
        mem.unrecorded = updates;
    }
}

/// Sleeps `wait`, or until a nudge; true when `stop` came.
async fn pause(stop: &CancellationToken, notifier: &Notifier, wait: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = notifier.nudge.notified() => false,
        _ = tokio::time::sleep(wait) => false,
    }
}

/// Runs `f` on the outbox reader off the runtime's threads (opening it when needed).
async fn read<T: Send + 'static>(
    reader: &Arc<Mutex<Option<OutboxReader>>>,
    path: &std::path::Path,
    f: impl FnOnce(&mut OutboxReader) -> Result<T, outpost_ledger::LedgerError> + Send + 'static,
) -> Result<T, String> {
    let (reader, path) = (reader.clone(), path.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut guard = reader.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(OutboxReader::open(&path)?);
        }
        match guard.as_mut() {
            Some(r) => f(r),
            None => Err(outpost_ledger::LedgerError::WriterGone),
        }
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())
}

/// Sends `due` ([`PARALLEL`] at a time, [`PER_TARGET`] per target; nothing more to a
/// target once it failed in this turn); the answers to write (`None` if `stop` came).
async fn send_all(
    notifier: &Notifier,
    clients: &Arc<Clients>,
    mem: &mut Memory,
    due: Vec<Pending>,
    stop: &CancellationToken,
) -> Option<Vec<Update>> {
    let servers = notifier
        .servers
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let now = now_millis();
    let mut updates = Vec::with_capacity(due.len());
    // Targets whose rows wait, and until when: down ones, and ones no longer configured.
    let mut postpone: HashMap<Key, UnixMillis> = HashMap::new();
    let mut queue: VecDeque<Pending> = VecDeque::with_capacity(due.len());
    for p in due {
        let key = (p.server.clone(), p.target.clone());
        let configured = servers
            .get(&p.server)
            .is_some_and(|s| s.notify.iter().any(|t| t.name == p.target));
        if !configured {
            if mem.orphaned.insert(key.clone()) {
                tracing::warn!(server = %p.server, target = %p.target, "notifications wait for a target that is no longer configured (configure it again, or they are pruned after ledger_retention)");
            }
            postpone.insert(key, later(ORPHANED_WAIT));
        } else if let Some(st) = mem.targets.get(&key).filter(|st| st.until > now) {
            postpone.insert(key, st.until);
        } else {
            queue.push_back(p);
        }
    }
    let mut set = JoinSet::new();
    let mut in_flight: HashMap<Key, usize> = HashMap::new();
    let mut outcome: HashMap<Key, Result<(), String>> = HashMap::new();
    loop {
        while set.len() < PARALLEL {
            let Some(i) = queue.iter().position(|p| {
                let k = (p.server.clone(), p.target.clone());
                !postpone.contains_key(&k) && in_flight.get(&k).copied().unwrap_or(0) < PER_TARGET
            }) else {
                break;
            };
            let Some(p) = queue.remove(i) else { break };
            *in_flight
                .entry((p.server.clone(), p.target.clone()))
                .or_default() += 1;
            let (servers, clients) = (servers.clone(), clients.clone());
            set.spawn(async move {
                let r = send_one(&servers, &clients, &p).await;
                (p, r)
            });
        }
        let next = tokio::select! {
            _ = stop.cancelled() => {
                set.abort_all();
                return None;
            }
            n = set.join_next() => n,
        };
        let Some(joined) = next else { break };
        let Ok((p, r)) = joined else { continue };
        let labels = [p.server.as_str(), p.target.as_str()];
        let key = (p.server.clone(), p.target.clone());
        if let Some(n) = in_flight.get_mut(&key) {
            *n = n.saturating_sub(1);
        }
        match &r {
            Ok(()) => {
                notifier.metrics.sent.with_label_values(&labels).inc();
                updates.push(Update::Sent(p.id));
            }
            Err(e) => {
                notifier.metrics.failed.with_label_values(&labels).inc();
                let st = mem.targets.entry(key.clone()).or_default();
                if !postpone.contains_key(&key) {
                    // The first failure of this turn: the target is down for a while.
                    st.failures += 1;
                    st.until = later(backoff(st.failures));
                    postpone.insert(key.clone(), st.until);
                }
                updates.push(Update::Retry {
                    id: p.id,
                    next_at: st.until,
                    error: e.clone(),
                });
            }
        }
        // A failure this turn outweighs a success (the target is down until it works).
        if r.is_err() || !outcome.get(&key).is_some_and(Result::is_err) {
            outcome.insert(key, r);
        }
    }
    for ((server, target), until) in postpone {
        updates.push(Update::PostponeTarget {
            server,
            target,
            until,
        });
    }
    for ((server, target), r) in outcome {
        let key = (server.clone(), target.clone());
        match r {
            Err(e) if mem.targets.get(&key).is_some_and(|st| st.failures == 1) => {
                tracing::warn!(
                    server,
                    target,
                    error = %e,
                    "notifications cannot be sent; they wait in the outbox and are retried (outpost status shows the backlog)"
                );
            }
            Ok(()) if mem.targets.remove(&key).is_some() => {
                tracing::info!(server, target, "notifications are sent again");
            }
            _ => {}
        }
    }
    Some(updates)
}

/// `now + d` in the ledger's unit.
fn later(d: Duration) -> UnixMillis {
    now_millis().saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Sends one row (its target is configured).
async fn send_one(servers: &Servers, clients: &Clients, p: &Pending) -> Result<(), String> {
    let target = servers
        .get(&p.server)
        .and_then(|s| s.notify.iter().find(|t| t.name == p.target).map(|t| (s, t)));
    let Some((server, target)) = target else {
        return Err(format!(
            "server {} has no notify target {}",
            p.server, p.target
        ));
    };
    let client = clients.get(server, target).await?;
    let event_id = serde_json::from_str::<serde_json::Value>(&p.body)
        .ok()
        .and_then(|v| {
            v["Records"][0]["outpost"]["eventId"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_default();
    clients
        .send(&client, &event_id, &p.body)
        .await
        .map_err(|e| one_line(&e))
}

/// An error as stored and shown: one line, at most 300 characters.
fn one_line(e: &str) -> String {
    let line = e.lines().next().unwrap_or_default();
    match line.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_owned(),
    }
}
