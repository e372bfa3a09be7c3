//! The loop that sends the outbox: it takes what is due (at most [`TURN`] rows), sends
//! up to [`PARALLEL`] at once, and answers the ledger in one write — sent rows go,
//! failed rows are due again after a backoff (1 s doubling to [`MAX_BACKOFF`], with
//! jitter). It sleeps until the next row is due, a delivery nudges it, or the
//! configuration changes. Failures are logged once per target when they start and when
//! they end.

use std::collections::{HashMap, HashSet};
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

/// Backoff before attempt `attempts + 1` (after `attempts` failures), with jitter.
fn backoff(attempts: u32) -> Duration {
    let base = Duration::from_secs(1).saturating_mul(1 << attempts.min(16));
    base.min(MAX_BACKOFF).mul_f64(0.5 + fastrand::f64() / 2.0)
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
    let mut failing: HashSet<(String, String)> = HashSet::new();
    let mut gauges_at: Option<Instant> = None;
    let mut gauged: HashSet<(String, String)> = HashSet::new();
    loop {
        if notifier
            .changed
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            clients.clear().await;
        }
        let now = now_millis();
        let due = read(&reader, &path, move |r| r.due(now, TURN)).await;
        if gauges_at.is_none_or(|t| t.elapsed() >= GAUGES_EVERY) {
            gauges_at = Some(Instant::now());
            if let Some(backlog) = read(&reader, &path, |r| r.backlog()).await {
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
            let next = read(&reader, &path, |r| r.next_due()).await.flatten();
            let wait = next.map_or(IDLE_WAKE, |at| {
                Duration::from_millis(at.saturating_sub(now_millis()).max(0) as u64)
                    .clamp(Duration::from_millis(50), IDLE_WAKE)
            });
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = notifier.nudge.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        let Some(updates) = send_all(&notifier, &clients, &mut failing, due, &stop).await else {
            return; // stopped
        };
        // The rows stay due until this write lands; a lost write only sends them again.
        if let Err(e) = tokio::time::timeout(Duration::from_secs(10), ledger.outbox_update(updates))
            .await
            .unwrap_or(Err(outpost_ledger::LedgerError::QueueFull))
        {
            tracing::warn!(error = %e, "cannot record which notifications were sent; they may be sent again");
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// Runs `f` on the outbox reader off the runtime's threads (opening it when needed);
/// `None` on an error, logged at debug (the ledger's own errors are logged by it).
async fn read<T: Send + 'static>(
    reader: &Arc<Mutex<Option<OutboxReader>>>,
    path: &std::path::Path,
    f: impl FnOnce(&mut OutboxReader) -> Result<T, outpost_ledger::LedgerError> + Send + 'static,
) -> Option<T> {
    let (reader, path) = (reader.clone(), path.to_owned());
    let r = tokio::task::spawn_blocking(move || {
        let mut guard = reader.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(OutboxReader::open(&path)?);
        }
        match guard.as_mut() {
            Some(r) => f(r),
            None => Err(outpost_ledger::LedgerError::WriterGone),
        }
    })
    .await;
    match r {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "cannot read the notification outbox");
            None
        }
        Err(_) => None,
    }
}

/// Sends `due`, [`PARALLEL`] at a time; the answer for each row (`None` if `stop` came).
async fn send_all(
    notifier: &Notifier,
    clients: &Arc<Clients>,
    failing: &mut HashSet<(String, String)>,
    due: Vec<Pending>,
    stop: &CancellationToken,
) -> Option<Vec<Update>> {
    let servers = notifier
        .servers
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut set = JoinSet::new();
    let mut updates = Vec::with_capacity(due.len());
    let mut results: HashMap<(String, String), Result<(), String>> = HashMap::new();
    let mut rows = due.into_iter();
    // Targets that failed in this turn: their other rows are not tried now (one target
    // that times out must not hold up the others' notifications for a whole turn).
    let mut down: HashMap<(String, String), Duration> = HashMap::new();
    loop {
        while set.len() < PARALLEL {
            let Some(p) = rows.next() else { break };
            if let Some(wait) = down.get(&(p.server.clone(), p.target.clone())) {
                updates.push(Update::Postpone {
                    id: p.id,
                    next_at: later(*wait),
                });
                continue;
            }
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
        match &r {
            Ok(()) => {
                notifier.metrics.sent.with_label_values(&labels).inc();
                updates.push(Update::Sent(p.id));
            }
            Err(e) => {
                notifier.metrics.failed.with_label_values(&labels).inc();
                let wait = backoff(p.attempts);
                down.entry(key.clone()).or_insert(wait);
                updates.push(Update::Retry {
                    id: p.id,
                    next_at: later(wait),
                    error: e.clone(),
                });
            }
        }
        // The last result per target decides whether it is failing now.
        results.insert(key, r);
    }
    for ((server, target), r) in results {
        let key = (server.clone(), target.clone());
        match r {
            Err(e) if failing.insert(key.clone()) => tracing::warn!(
                server,
                target,
                error = %e,
                "notifications cannot be sent; they wait in the outbox and are retried (outpost status shows the backlog)"
            ),
            Ok(()) if failing.remove(&key) => {
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

/// Sends one row.
async fn send_one(servers: &Servers, clients: &Clients, p: &Pending) -> Result<(), String> {
    let Some(server) = servers.get(&p.server) else {
        return Err(format!("server {} is no longer configured", p.server));
    };
    let Some(target) = server.notify.iter().find(|t| t.name == p.target) else {
        return Err(format!(
            "server {} has no notify target {} any more",
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
    clients.send(&client, &event_id, &p.body).await
}
