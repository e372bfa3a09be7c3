//! The daemon's upkeep of its destinations: ONE loop for every server runs each
//! server's `verify` probe every `verify_interval` and its orphan multipart sweep every
//! min(`orphan_age` / 4, 1 h) (`chores.rs`), when `schedule.rs` says they are due — at
//! most [`AT_ONCE`] at a time, never two of one server. Idle servers cost a heap entry
//! each, no task, timer or connection; a chore uses the server's running
//! [`Destination`](outpost_uploader::Destination) (its client and credentials). What
//! the chores find ([`Findings`]) goes to `outpost status` through the live state.
//! Settings come at start and at every SIGHUP through a watch channel ([`plan`]).

mod chores;
mod schedule;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outpost_config::Config;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::worker::Worker;
use schedule::{Chore, Schedule};

/// Chores running at once over all servers.
pub const AT_ONCE: usize = 4;

/// The longest time between two sweeps of a server.
const SWEEP_AT_MOST_EVERY: Duration = Duration::from_secs(3600);

/// Each server's `verify_interval` and `orphan_age` (`None`: off).
pub type Plan = BTreeMap<String, (Option<Duration>, Option<Duration>)>;

/// The upkeep settings of `cfg`.
pub fn plan(cfg: &Config) -> Plan {
    cfg.servers
        .values()
        .map(|s| (s.name.clone(), (s.verify_interval, s.orphan_age)))
        .collect()
}

/// How often a server with `orphan_age` is swept: a quarter of it, at most hourly, at
/// least a second apart.
fn sweep_period(orphan_age: Duration) -> Duration {
    (orphan_age / 4).clamp(Duration::from_secs(1), SWEEP_AT_MOST_EVERY)
}

/// What the chores found, per server.
#[derive(Debug, Default)]
pub struct Findings {
    /// The last verification of each verified server: `None` passed, `Some(why)` failed
    /// (the failing step, its cause and the fix).
    pub verified: HashMap<String, Option<String>>,
    /// Servers whose last listing of multipart uploads was refused.
    pub listing_refused: HashSet<String>,
}

impl Findings {
    /// Why the last verification of each server whose last one failed, failed.
    pub fn verify_failed(&self) -> HashMap<String, String> {
        self.verified
            .iter()
            .filter_map(|(s, why)| why.clone().map(|w| (s.clone(), w)))
            .collect()
    }
}

/// What the chores share: the daemon's destinations, spool, ledger and events.
pub struct Upkeep {
    /// Destinations by server, the spool (journals), the ledger, logs and metrics.
    pub worker: Arc<Worker>,
    /// What the chores found (read by the live-state loop).
    pub findings: Arc<Mutex<Findings>>,
}

impl Upkeep {
    fn findings(&self) -> std::sync::MutexGuard<'_, Findings> {
        self.findings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `new` to the schedule; forgets what was found of servers (or their
    /// verification) no longer configured, and their verification series.
    fn apply(&self, sched: &mut Schedule, new: &Plan, rng: &mut fastrand::Rng) {
        let now = Instant::now();
        for (server, (verify, orphan_age)) in new {
            sched.set(server, Chore::Verify, *verify, now, rng);
            sched.set(server, Chore::Sweep, orphan_age.map(sweep_period), now, rng);
        }
        sched.retain(&new.keys().cloned().collect());
        let verifying = |s: &String| new.get(s).is_some_and(|p| p.0.is_some());
        let mut f = self.findings();
        let gone: Vec<String> = f
            .verified
            .keys()
            .filter(|s| !verifying(s))
            .cloned()
            .collect();
        for s in gone {
            f.verified.remove(&s);
            self.worker.events.verification_off(&s);
        }
        f.listing_refused.retain(|s| new.contains_key(s));
    }
}

/// Runs the chores as they come due until `stop`; chores still running then are
/// cancelled (a cancelled probe may leave its own probe upload open, under the
/// `.outpost-verify` key).
pub async fn run(up: Arc<Upkeep>, mut plans: watch::Receiver<Plan>, stop: CancellationToken) {
    let mut rng = fastrand::Rng::new();
    let mut sched = Schedule::new(AT_ONCE);
    let first = plans.borrow_and_update().clone();
    up.apply(&mut sched, &first, &mut rng);
    let mut running = JoinSet::new();
    let mut names = HashMap::new();
    loop {
        for (server, chore) in sched.take_due(Instant::now()) {
            let (u, s) = (up.clone(), server.clone());
            let id = running.spawn(async move { u.chore(&s, chore).await }).id();
            names.insert(id, (server, chore));
        }
        let wake = sched.next_due().map_or_else(
            || tokio::time::Instant::now() + Duration::from_secs(3600),
            tokio::time::Instant::from_std,
        );
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = plans.changed() => {
                if changed.is_err() {
                    break;
                }
                let new = plans.borrow_and_update().clone();
                up.apply(&mut sched, &new, &mut rng);
            }
            Some(ended) = running.join_next_with_id(), if !running.is_empty() => {
                let id = match &ended {
                    Ok((id, ())) => *id,
                    Err(e) => e.id(),
                };
                if let Some((server, chore)) = names.remove(&id) {
                    if let Err(e) = ended {
                        tracing::error!(server, chore = ?chore, error = %e, "upkeep chore failed");
                    }
                    sched.done(&server, chore, Instant::now(), &mut rng);
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
    running.abort_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_is_swept_every_quarter_of_its_orphan_age_at_most_hourly() {
        let s = |n| Duration::from_secs(n);
        assert_eq!(sweep_period(s(86_400)), s(3600));
        assert_eq!(sweep_period(s(3600)), s(900));
        assert_eq!(sweep_period(s(1)), s(1));
    }
}
