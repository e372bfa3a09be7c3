//! When each server's chores are due: one heap of next-due times for every server and
//! chore, pure code with the clock and the random source passed in (unit-tested without
//! sleeping). A chore's first run falls at a random time within its first period (so a
//! start or a reload spreads 10,000 servers over the period instead of probing them at
//! once), each next run one period ± 10 % after the last one ended. At most `limit`
//! chores run at once overall, and never two of the same server. Nothing is kept per
//! server but its heap entries and periods. A reader may change the jitter here.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// What the upkeep loop does for a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Chore {
    /// The `verify` probe (`verify_interval`).
    Verify,
    /// The orphan multipart sweep (every min(`orphan_age` / 4, 1 h)).
    Sweep,
}

/// The next run of a chore of a server; `generation` tells a stale entry (the period
/// changed since) from the live one.
type Entry = Reverse<(Instant, u64, String, Chore)>;

/// Every server's chores and when each is next due.
#[derive(Debug)]
pub struct Schedule {
    /// Next runs, earliest first; stale entries are skipped when they come up.
    heap: BinaryHeap<Entry>,
    /// The period of each scheduled chore and the generation of its live entry.
    periods: HashMap<(String, Chore), (Duration, u64)>,
    /// Servers with a chore running now.
    running: HashSet<String>,
    /// Due entries of servers that were busy when they came up: back in the heap when
    /// the server's running chore is done (so a wake-up never waits on them).
    parked: HashMap<String, Vec<Entry>>,
    /// Chores that may run at once overall.
    limit: usize,
    /// The next generation number.
    next_gen: u64,
}

/// `d` scaled by a random factor in [`lo`, `hi`).
fn scaled(d: Duration, lo: f64, hi: f64, rng: &mut fastrand::Rng) -> Duration {
    d.mul_f64(lo + (hi - lo) * rng.f64())
}

impl Schedule {
    /// An empty schedule running at most `limit` chores at once.
    pub fn new(limit: usize) -> Schedule {
        Schedule {
            heap: BinaryHeap::new(),
            periods: HashMap::new(),
            running: HashSet::new(),
            parked: HashMap::new(),
            limit: limit.max(1),
            next_gen: 0,
        }
    }

    /// Sets the period of `server`'s `chore` (`None`: not run). A new or changed period
    /// schedules the first run at a random time within it; the same period changes
    /// nothing.
    pub fn set(
        &mut self,
        server: &str,
        chore: Chore,
        period: Option<Duration>,
        now: Instant,
        rng: &mut fastrand::Rng,
    ) {
        let key = (server.to_owned(), chore);
        let Some(period) = period else {
            self.periods.remove(&key);
            return;
        };
        if self.periods.get(&key).is_some_and(|(p, _)| *p == period) {
            return;
        }
        let at = now + scaled(period, 0.0, 1.0, rng);
        self.push(key, period, at);
    }

    /// Forgets every chore of servers not in `keep`.
    pub fn retain(&mut self, keep: &HashSet<String>) {
        self.periods.retain(|(s, _), _| keep.contains(s));
    }

    fn push(&mut self, key: (String, Chore), period: Duration, at: Instant) {
        let generation = self.next_gen;
        self.next_gen += 1;
        self.heap
            .push(Reverse((at, generation, key.0.clone(), key.1)));
        self.periods.insert(key, (period, generation));
    }

    fn live(&self, e: &Entry) -> bool {
        let Reverse((_, generation, server, chore)) = e;
        self.periods
            .get(&(server.clone(), *chore))
            .is_some_and(|(_, g)| g == generation)
    }

    /// The chores due at `now` that may start (within the limit, one per server); they
    /// count as running until [`Schedule::done`]. A due chore of a busy server waits.
    pub fn take_due(&mut self, now: Instant) -> Vec<(String, Chore)> {
        let mut out = Vec::new();
        while self.running.len() < self.limit {
            let Some(top) = self.heap.peek() else { break };
            if top.0.0 > now {
                break;
            }
            let Some(e) = self.heap.pop() else { break };
            if !self.live(&e) {
                continue;
            }
            let Reverse((_, _, server, chore)) = &e;
            if self.running.contains(server) {
                self.parked.entry(server.clone()).or_default().push(e);
                continue;
            }
            self.running.insert(server.clone());
            // Leaves the period known (a reload during the run compares against it).
            if let Some(p) = self.periods.get_mut(&(server.clone(), *chore)) {
                p.1 = u64::MAX;
            }
            out.push((server.clone(), *chore));
        }
        out
    }

    /// `server`'s `chore` ended at `now`: its next run is one period ± 10 % later
    /// (unless the chore was switched off, or rescheduled by a reload, meanwhile).
    pub fn done(&mut self, server: &str, chore: Chore, now: Instant, rng: &mut fastrand::Rng) {
        self.running.remove(server);
        if let Some(parked) = self.parked.remove(server) {
            self.heap.extend(parked);
        }
        let key = (server.to_owned(), chore);
        if let Some((period, u64::MAX)) = self.periods.get(&key).copied() {
            let at = now + scaled(period, 0.9, 1.1, rng);
            self.push(key, period, at);
        }
    }

    /// When the earliest chore that could start is due (stale entries dropped);
    /// `None`: nothing is, or the limit is reached (a chore's end wakes the loop then).
    pub fn next_due(&mut self) -> Option<Instant> {
        if self.running.len() >= self.limit {
            return None;
        }
        while let Some(top) = self.heap.peek() {
            if self.live(top) {
                return Some(top.0.0);
            }
            self.heap.pop();
        }
        None
    }

    /// Whether a chore of `server` runs now.
    #[cfg(test)]
    pub fn is_running(&self, server: &str) -> bool {
        self.running.contains(server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Duration = Duration::from_secs(3600);

    #[test]
    fn first_runs_spread_over_the_first_period_and_next_runs_come_a_period_plus_minus_ten_percent_later()
     {
        let mut rng = fastrand::Rng::with_seed(7);
        let t0 = Instant::now();
        let mut s = Schedule::new(10_000);
        for i in 0..1000 {
            s.set(&format!("s{i}"), Chore::Verify, Some(6 * H), t0, &mut rng);
        }
        let mut firsts = Vec::new();
        while let Some(at) = s.next_due() {
            firsts.extend(s.take_due(at).into_iter().map(|d| (d, at - t0)));
        }
        assert_eq!(firsts.len(), 1000);
        assert!(
            firsts.iter().all(|(_, d)| *d < 6 * H),
            "a first run after its period"
        );
        // Spread: every hour of the six gets some of them.
        for h in 0..6 {
            let n = firsts
                .iter()
                .filter(|(_, d)| d.as_secs() / 3600 == h)
                .count();
            assert!(n > 100, "hour {h}: {n} first runs");
        }
        // Each ends at `end`: the next runs fall 5.4 h … 6.6 h later.
        let end = t0 + 7 * H;
        for ((server, chore), _) in &firsts {
            s.done(server, *chore, end, &mut rng);
        }
        let mut next = Vec::new();
        while let Some(at) = s.next_due() {
            next.extend(s.take_due(at).into_iter().map(|_| at - end));
        }
        assert_eq!(next.len(), 1000);
        for d in next {
            assert!(d >= H * 54 / 10 && d <= H * 66 / 10, "next run after {d:?}");
        }
    }

    #[test]
    fn never_two_chores_of_one_server_at_once_and_never_more_than_the_limit() {
        let mut rng = fastrand::Rng::with_seed(1);
        let t0 = Instant::now();
        let mut s = Schedule::new(2);
        for name in ["a", "b", "c"] {
            s.set(
                name,
                Chore::Verify,
                Some(Duration::from_secs(10)),
                t0,
                &mut rng,
            );
            s.set(
                name,
                Chore::Sweep,
                Some(Duration::from_secs(10)),
                t0,
                &mut rng,
            );
        }
        let later = t0 + Duration::from_secs(60); // everything is due
        let first = s.take_due(later);
        assert_eq!(first.len(), 2, "the limit: {first:?}");
        assert_ne!(first[0].0, first[1].0, "one chore per server: {first:?}");
        assert!(s.take_due(later).is_empty(), "nothing more while two run");
        // One ends: the next may start, but never a second chore of a running server.
        let (server, chore) = first[0].clone();
        s.done(&server, chore, later, &mut rng);
        let next = s.take_due(later);
        assert_eq!(next.len(), 1);
        assert!(!s.is_running(&server) || next[0].0 == server);
        assert_ne!(next[0].0, first[1].0, "{next:?} while {first:?} runs");
        // Draining: a server's two chores never overlap.
        let mut running: Vec<(String, Chore)> = vec![first[1].clone(), next[0].clone()];
        let mut ran = 3;
        while ran < 6 {
            let (server, chore) = running.remove(0);
            s.done(&server, chore, later, &mut rng);
            for d in s.take_due(later) {
                assert!(!running.iter().any(|r| r.0 == d.0), "{d:?} twice");
                running.push(d);
                ran += 1;
            }
        }
    }

    #[test]
    fn a_chore_switched_off_or_changed_by_a_reload_keeps_no_stale_run() {
        let mut rng = fastrand::Rng::with_seed(3);
        let t0 = Instant::now();
        let mut s = Schedule::new(4);
        s.set("a", Chore::Verify, Some(H), t0, &mut rng);
        s.set("a", Chore::Verify, Some(H), t0, &mut rng); // unchanged: one run
        s.set("b", Chore::Sweep, Some(H), t0, &mut rng);
        s.set("b", Chore::Sweep, None, t0, &mut rng); // off
        assert_eq!(
            s.take_due(t0 + 2 * H),
            vec![("a".to_owned(), Chore::Verify)]
        );
        // Switched off while running: no next run.
        s.set("a", Chore::Verify, None, t0, &mut rng);
        s.done("a", Chore::Verify, t0 + 2 * H, &mut rng);
        assert_eq!(s.next_due(), None);
        // A server removed by a reload.
        s.set("c", Chore::Verify, Some(H), t0, &mut rng);
        s.retain(&HashSet::new());
        assert_eq!(s.next_due(), None);
    }

    /// The loop sleeps until `next_due`: an entry that cannot start (the limit is
    /// reached, or its server is busy) must not make that instant the past — the loop
    /// would spin until the running chore ends.
    #[test]
    fn a_chore_that_cannot_start_never_makes_the_loop_wake_at_once() {
        let mut rng = fastrand::Rng::with_seed(3);
        let t0 = Instant::now();
        let mut s = Schedule::new(2);
        for chore in [Chore::Verify, Chore::Sweep] {
            s.set("a", chore, Some(Duration::from_secs(10)), t0, &mut rng);
        }
        let later = t0 + Duration::from_secs(60);
        let started = s.take_due(later);
        assert_eq!(started.len(), 1, "one chore of `a` at a time");
        // `a`'s other chore is due but parked: nothing else is due.
        assert_eq!(s.next_due(), None);
        s.done(&started[0].0, started[0].1, later, &mut rng);
        assert!(
            s.next_due().is_some_and(|t| t <= later),
            "the parked chore is due again"
        );
        // At the limit, no wake-up either.
        let mut full = Schedule::new(1);
        full.set(
            "a",
            Chore::Verify,
            Some(Duration::from_secs(10)),
            t0,
            &mut rng,
        );
        full.set(
            "b",
            Chore::Verify,
            Some(Duration::from_secs(10)),
            t0,
            &mut rng,
        );
        assert_eq!(full.take_due(later).len(), 1);
        assert_eq!(full.next_due(), None);
    }
}
