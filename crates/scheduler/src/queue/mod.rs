//! The dispatcher: one task owns every server's queue and starts attempts round-robin
//! across servers within the per-server and global limits; attempts and give-ups run as
//! tasks and report back here. A reader changing how servers share the global limit or
//! how shutdown drains works here; what one server does with its files is
//! [`server`], the index of its files [`pending`].

mod blocked;
mod command;
mod held;
mod pending;
mod server;
mod stats;
mod window;

pub use command::Command;
pub use stats::{ServerStats, Stats};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{History, Item, Outcome, Work};
use server::{Ended, ServerQueue};

/// A finished attempt, reported by its task.
struct Finished {
    server: String,
    /// The file's [`Item::seq`].
    seq: u64,
    /// The worker's verdict ([`Outcome::Dropped`] for a give-up).
    outcome: Outcome,
    /// Not an attempt: the give-up of `seq` (its move to `.failed/`) is over.
    gave_up: bool,
}

/// The dispatcher.
pub struct Scheduler<I: Item, W: Work<I>> {
    /// What an attempt and a give-up do (the daemon's worker).
    work: Arc<W>,
    /// Attempts in flight across all servers at most.
    global: usize,
    /// By name: the order round-robin visits them in.
    servers: BTreeMap<String, ServerQueue<I>>,
    /// Round-robin position over `servers`.
    cursor: usize,
    /// Attempts in flight across all servers (give-ups not counted).
    running: usize,
    /// Shared with metrics and `status`, replaced per server after each change.
    stats: Stats,
    /// Attempt and give-up tasks report their end here.
    done_tx: mpsc::UnboundedSender<Finished>,
    done_rx: mpsc::UnboundedReceiver<Finished>,
    /// Fired when shutdown's grace ran out: attempts stop and leave their state on disk.
    stop: CancellationToken,
    /// Counts dispatcher loop turns: the watchdog sees the loop is alive.
    heartbeat: Arc<std::sync::atomic::AtomicU64>,
    /// Attempts and give-ups run here, so the daemon can wait for them at shutdown.
    tasks: TaskTracker,
    /// The wall clock, for delivery windows (tests set their own).
    clock: Clock,
}

/// A wall clock.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

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
            clock: Arc::new(SystemTime::now),
        }
    }

    /// Reads the wall clock (delivery windows) from `clock` instead of the system's.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
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
        let server = match cmd {
            Command::Add { server, item } => {
                let Some(q) = self.servers.get_mut(&server) else {
                    tracing::warn!(server, "item for an unknown server ignored");
                    return;
                };
                q.add(item);
                server
            }
            Command::Configure {
                server,
                max_in_flight,
                retry,
                last,
                window,
            } => {
                self.servers
                    .entry(server.clone())
                    .or_insert_with(|| ServerQueue::new(max_in_flight, retry))
                    .configure(max_in_flight, retry, &last, window);
                server
            }
            Command::Remove { server } => {
                if let Some(q) = self.servers.get_mut(&server) {
                    q.remove();
                }
                return self.reap(&server);
            }
            Command::Failed { server, key } => {
                let Some(q) = self.servers.get_mut(&server) else {
                    return;
                };
                q.failed(&key);
                server
            }
            Command::FailedScan {
                server,
                keys,
                after_scan,
            } => {
                let Some(q) = self.servers.get_mut(&server) else {
                    return;
                };
                q.failed_scan(&keys, after_scan);
                server
            }
            Command::SetGlobal(n) => {
                self.global = n.max(1);
                return;
            }
            Command::Ping => return,
        };
        self.publish(&server);
    }

    /// Forgets a removed server once nothing of it is in flight.
    fn reap(&mut self, server: &str) {
        if self.servers.get(server).is_some_and(ServerQueue::drained) {
            self.servers.remove(server);
            stats::set(&self.stats, server, None);
        }
    }

    /// Shares the server's totals.
    fn publish(&self, server: &str) {
        if let Some(q) = self.servers.get(server) {
            stats::set(&self.stats, server, Some(q.stats((self.clock)())));
        }
    }

    /// Starts attempts while limits allow, visiting servers round-robin.
    fn dispatch(&mut self) {
        let (now, wall) = (Instant::now(), (self.clock)());
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
                let Some((item, attempt)) = q.start_next(name, now, wall) else {
                    continue;
                };
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
                q.gave_up(f.seq);
            }
            return;
        }
        self.running = self.running.saturating_sub(1);
        let Some(q) = self.servers.get_mut(&f.server) else {
            return;
        };
        match q.end(&f.server, f.seq, f.outcome) {
            Ended::Unknown => return,
            Ended::Settled => {}
            Ended::GiveUp(item, history) => {
                self.publish(&f.server);
                self.give_up(&f.server, f.seq, item, history);
            }
        }
        self.publish(&f.server);
        self.reap(&f.server);
    }

    /// Hands a file whose last attempt failed to the worker, off the dispatcher: giving
    /// up may talk to a slow server (abort). Its end comes back as a `gave_up` report.
    fn give_up(&self, server: &str, seq: u64, item: I, history: History) {
        let work = self.work.clone();
        let server = server.to_owned();
        let tx = self.done_tx.clone();
        self.tasks.spawn(async move {
            work.give_up(&server, item, history).await;
            let _ = tx.send(Finished {
                server,
                seq,
                outcome: Outcome::Dropped,
                gave_up: true,
            });
        });
    }

    fn next_wake(&self) -> Option<Instant> {
        let (now, wall) = (Instant::now(), (self.clock)());
        self.servers
            .values()
            .filter_map(|q| q.next_wake(now, wall))
            .min()
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
                    Some(c) => {
                        self.apply(c);
                        // What else is queued goes in the same turn: a turn looks at
                        // every server, so one turn per command would cost O(servers)
                        // each (20,000 start-up commands of 10,000 servers took minutes).
                        for _ in 0..BATCH {
                            match commands.try_recv() {
                                Ok(c) => self.apply(c),
                                Err(mpsc::error::TryRecvError::Empty) => break,
                                Err(mpsc::error::TryRecvError::Disconnected) => {
                                    open = false;
                                    break;
                                }
                            }
                        }
                    }
                    None => open = false,
                },
                _ = sleep_until(wake), if wake.is_some() => {}
            }
            while let Ok(f) = self.done_rx.try_recv() {
                self.finished(f);
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

/// Commands applied at most in one turn of the dispatcher besides the first.
const BATCH: usize = 4096;

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
