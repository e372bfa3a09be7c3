//! One server's queue: its pending index, limits, retry policy, block state and
//! `publish_last` rules, and the decisions made from them — which file starts next
//! ([`ServerQueue::start_next`]), when something becomes startable by time alone
//! ([`ServerQueue::next_wake`]), and what the end of an attempt does to its file
//! ([`ServerQueue::end`]). A reader changing the order files start in or what an outcome
//! means works here; the dispatcher ([`super`]) only calls these and spawns the work.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::blocked::Blocked;
use super::held::FailedFiles;
use super::pending::{Pending, PendingIndex};
use super::stats::ServerStats;
use super::window::Gate;
use crate::{History, Item, Outcome, RetryPolicy};
use outpost_config::{Globs, Window};

/// What the end of an attempt leaves to the dispatcher.
pub(super) enum Ended<I> {
    /// The attempt was not in flight here: nothing changed.
    Unknown,
    /// The file is delivered, forgotten or waits again.
    Settled,
    /// The last attempt failed: the worker gives the file up (off the dispatcher).
    GiveUp(I, History),
}

/// Whether a failed file (its order key) holds its group: it is no `publish_last` file
/// (a control file that failed holds nothing).
fn holds_group(last: &Globs, key: &str) -> bool {
    !last.any(crate::key_parts(key).1)
}

/// One server's pending index and limits.
pub(super) struct ServerQueue<I> {
    /// Its files not yet acknowledged, waiting or in flight.
    index: PendingIndex<I>,
    /// Files in flight for this server at most.
    max_in_flight: usize,
    /// When a failed attempt is retried, and how often; also paces a blocked server's probes.
    retry: RetryPolicy,
    /// Set when the server was removed by a reload: drain, then forget.
    removed: bool,
    /// Set while the destination refuses us.
    blocked: Option<Blocked>,
    /// Items accepted so far (`Done`): tells a refused object from a refused server.
    accepted: u64,
    /// `publish_last` globs, compiled when the server is configured.
    last: Globs,
    /// Its files in `.failed/`, which hold the `publish_last` files of their group.
    failed: FailedFiles,
    /// Its delivery window: while closed, no file starts.
    gate: Gate,
}

impl<I: Item> ServerQueue<I> {
    pub(super) fn new(max_in_flight: usize, retry: RetryPolicy) -> Self {
        ServerQueue {
            index: PendingIndex::default(),
            max_in_flight,
            retry,
            removed: false,
            blocked: None,
            accepted: 0,
            last: Globs::default(),
            failed: FailedFiles::default(),
            gate: Gate::default(),
        }
    }

    /// New limits, retry policy, `publish_last` globs and window (a start or a reload).
    pub(super) fn configure(
        &mut self,
        max_in_flight: usize,
        retry: RetryPolicy,
        last: &[String],
        window: Option<Window>,
    ) {
        self.max_in_flight = max_in_flight.max(1);
        self.gate.set(window);
        self.retry = retry;
        let last = Globs::new(last);
        if last != self.last {
            self.last = last;
            let globs = &self.last;
            self.index.relabel(|item| globs.any(item.name()));
        }
        self.removed = false;
        // Changed settings (a reload: new client, rotated secret) may be the fix: a
        // blocked server probes at once instead of after its probe delay.
        if let Some(b) = self.blocked.as_mut() {
            b.next_probe = Instant::now();
        }
    }

    /// The server was removed: no new attempt starts; forgotten once drained.
    pub(super) fn remove(&mut self) {
        self.removed = true;
    }

    /// Removed and nothing in flight.
    pub(super) fn drained(&self) -> bool {
        self.removed && self.index.running_len() == 0
    }

    /// A file arrives: if its key was in `.failed/`, it was requeued.
    pub(super) fn add(&mut self, item: I) {
        let returned = self.failed.left(item.group(), item.order_key());
        let last = self.last.any(item.name());
        self.index.insert(item, last, returned);
    }

    /// A file of this server is in `.failed/` (its order key).
    pub(super) fn failed(&mut self, key: &str) {
        if holds_group(&self.last, key) {
            self.failed.add(key);
        }
    }

    /// The files of this server in `.failed/`, as a scan found them; `after_scan`: the
    /// scan of the server folder is done (else `publish_last` files wait for it).
    pub(super) fn failed_scan(&mut self, keys: &[String], after_scan: bool) {
        let last = &self.last;
        self.failed.rescanned(keys, |k| holds_group(last, k));
        self.failed.await_scan = !after_scan;
    }

    /// The give-up of `seq` is over (the file is in `.failed/`, or still claimed).
    pub(super) fn gave_up(&mut self, seq: u64) {
        self.failed.gave_up(seq);
    }

    /// Whether a `publish_last` file must still wait: the first scan is not done, a file
    /// of its group failed, or an earlier file of its group is pending or in flight.
    fn held_back(&self, p: &Pending<I>) -> bool {
        let item = &p.item;
        p.is_last()
            && (self.failed.await_scan
                || self.failed.holds(item.group())
                || self
                    .index
                    .earlier_in_group(item.group(), item.seq(), item.dropped_at()))
    }

    /// The first waiting file that may start now (`wall`: the wall clock, for the
    /// window): not behind an earlier file of the same key, not in backoff. A blocked server's probe rotates: the file refused the fewest
    /// times goes first (then the oldest), so one file the destination refuses on its own
    /// cannot hide the others.
    fn pick(&self, now: Instant, wall: SystemTime) -> Option<u64> {
        if self.index.running_len() >= self.max_in_flight || self.removed {
            return None;
        }
        if self.index.waiting_len() == 0 || self.gate.closed_until(wall).is_some() {
            return None;
        }
        if let Some(b) = &self.blocked
            && (b.probing.is_some() || b.next_probe > now)
        {
            return None;
        }
        let rotate = self.blocked.is_some();
        let mut best: Option<(u32, u64)> = None;
        for (seq, p) in self.index.firsts() {
            if p.in_backoff(now) || self.held_back(p) {
                continue;
            }
            if !rotate || p.refusals == 0 {
                return Some(seq);
            }
            if best.is_none_or(|(r, _)| p.refusals < r) {
                best = Some((p.refusals, seq));
            }
        }
        best.map(|(_, seq)| seq)
    }

    /// Starts the attempt of the file [`Self::pick`] chooses (a blocked server's probe):
    /// the item and its attempt number (1-based).
    pub(super) fn start_next(
        &mut self,
        server: &str,
        now: Instant,
        wall: SystemTime,
    ) -> Option<(I, u32)> {
        let seq = self.pick(now, wall)?;
        if let Some(b) = self.blocked.as_mut() {
            b.probe(server, seq);
        }
        let p = self.index.take(seq)?;
        let t = SystemTime::now();
        p.first_attempt.get_or_insert(t);
        p.last_attempt = Some(t);
        Some((p.item.clone(), p.failures + 1))
    }

    /// The next moment something of this server becomes startable by time alone: the
    /// window's opening (`wall`: the wall clock now) with files waiting, a backoff or a
    /// probe delay *in the future*. What is due already but cannot start
    /// (limits full, a probe in flight, a same-path item running) waits for an event —
    /// an attempt ending or an item arriving — never for a time in the past.
    pub(super) fn next_wake(&self, now: Instant, wall: SystemTime) -> Option<Instant> {
        if self.removed {
            return None;
        }
        if self.index.waiting_len() > 0
            && let Some(opens) = self.gate.closed_until(wall)
        {
            // Whatever else waits, nothing starts before the window opens.
            // Looked at again at least every minute: the wake is a monotonic instant
            // computed from the wall clock, which a step of the clock (or a suspended
            // VM) would leave behind.
            let left = opens.duration_since(wall).unwrap_or_default();
            return Some(now + left.clamp(Duration::from_millis(1), Duration::from_secs(60)));
        }
        let items = self.index.backoffs_after(now).next();
        match &self.blocked {
            Some(b) if b.probing.is_none() && self.index.waiting_len() > 0 => {
                // The probe may start once it is due *and* some file may go: at once if a
                // waiting file is in no backoff, else when the first backoff ends.
                let in_backoff = self.index.backoffs_after(now).count();
                let first_file = if self.index.waiting_len() > in_backoff {
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

    /// The attempt of `seq` ended with `outcome`.
    pub(super) fn end(&mut self, server: &str, seq: u64, outcome: Outcome) -> Ended<I> {
        let Some(refused_at) = self.index.running_mut(seq).map(|p| p.refused_at) else {
            return Ended::Unknown;
        };
        if let Some(b) = self.blocked.as_mut() {
            b.ended(seq);
        }
        match outcome {
            Outcome::Failed => {
                // The worker moved it to `.failed/`: its group's control files wait.
                if let Some(p) = self.index.forget(seq) {
                    self.failed(p.item.order_key());
                }
            }
            Outcome::Done => {
                self.accepted += 1;
                if let Some(p) = self.index.forget(seq) {
                    self.failed.left(p.item.group(), p.item.order_key());
                }
                if let Some(b) = self.blocked.take() {
                    b.lifted(server);
                }
            }
            Outcome::Dropped => {
                self.index.forget(seq);
            }
            Outcome::Blocked(reason)
                if self.blocked.is_none() && refused_at.is_some_and(|at| self.accepted > at) =>
            {
                // Refused again although other files of this server were accepted since
                // its last refusal: the destination refuses this object, not us. It
                // counts as a failed attempt, with its own backoff, and goes to
                // `.failed/` after the last one.
                // (`refused_at` stays: once told apart, the file keeps counting even
                // when it is the last one left.)
                tracing::warn!(
                    server,
                    seq,
                    "the destination refuses this file while it accepts others: {reason}"
                );
                return self.retry_or_give_up(server, seq, reason, true);
            }
            Outcome::Blocked(reason) => {
                // Not the file's fault (yet): it stays pending, its attempt is not
                // counted, and the next probe tries another file first.
                if let Some(p) = self.index.running_mut(seq) {
                    p.refusals += 1;
                    p.refused_at = Some(self.accepted);
                }
                self.index.requeue(seq, None);
                Blocked::refused(&mut self.blocked, server, reason, &self.retry);
            }
            Outcome::Interrupted => {
                // Stays claimed on disk; back in the index in case the run continues.
                self.index.requeue(seq, None);
            }
            Outcome::Retry(err) => return self.retry_or_give_up(server, seq, err, false),
        }
        Ended::Settled
    }

    /// A failed attempt: back into the index after a backoff, or given up after the
    /// last attempt (`refused`: the destination refused this object itself, which counts
    /// as one more refusal).
    fn retry_or_give_up(&mut self, server: &str, seq: u64, err: String, refused: bool) -> Ended<I> {
        let Some(p) = self.index.running_mut(seq) else {
            return Ended::Settled;
        };
        p.refusals += u32::from(refused);
        p.failures += 1;
        p.last_error = err;
        let failures = p.failures;
        if failures < self.retry.max_attempts {
            let delay: Duration = self.retry.delay(failures);
            tracing::debug!(
                server,
                seq,
                failures,
                delay_ms = delay.as_millis() as u64,
                "retry scheduled"
            );
            self.index.requeue(seq, Some(Instant::now() + delay));
            return Ended::Settled;
        }
        let Some(p) = self.index.forget(seq) else {
            return Ended::Settled;
        };
        self.failed(p.item.order_key());
        self.failed.giving_up(seq, p.item.order_key());
        let history = History {
            attempts: p.failures,
            first_attempt: p.first_attempt.unwrap_or_else(SystemTime::now),
            last_attempt: p.last_attempt.unwrap_or_else(SystemTime::now),
            last_error: p.last_error,
            refused,
        };
        Ended::GiveUp(p.item, history)
    }

    pub(super) fn stats(&self, wall: SystemTime) -> ServerStats {
        let (waiting, running) = (self.index.waiting_len(), self.index.running_len());
        ServerStats {
            queue_files: (waiting + running) as u64,
            queue_bytes: self.index.bytes(),
            in_flight: running as u64,
            oldest_dropped: self.index.oldest(),
            blocked: self.blocked.as_ref().map(|b| b.reason.clone()),
            held: self.failed.why_held(|g| self.index.last_waiting_in(g)),
            window_until: self.gate.closed_until(wall),
        }
    }
}
