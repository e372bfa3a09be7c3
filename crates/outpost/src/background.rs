//! The daemon's background loops, one function each: the systemd watchdog, the live
//! state for `outpost status`, and the lease (renew ours, take over expired ones). Each
//! runs on the daemon's task tracker until `stop` is cancelled.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost_scheduler::{Command, Stats};
use outpost_watcher::{DiscoveryHandle, LiveState, Spool, rfc3339};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::sdnotify::notify;
use crate::upkeep::Findings;
use crate::worker::{Job, blocking};

/// Waits for the next tick, or returns false once `stop` is cancelled.
async fn tick(t: &mut tokio::time::Interval, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = t.tick() => true,
    }
}

/// Sends `WATCHDOG=1` every `every` only while both loops answer: a wedged dispatcher
/// or discovery thread stops the pings and systemd restarts the daemon.
pub async fn watchdog(
    every: Duration,
    discovery: DiscoveryHandle,
    dispatcher_beat: Arc<AtomicU64>,
    scheduler: mpsc::Sender<Command<Job>>,
    stop: CancellationToken,
) {
    let mut t = tokio::time::interval(every);
    while tick(&mut t, &stop).await {
        let (d0, s0) = (
            discovery.heartbeat(),
            dispatcher_beat.load(Ordering::Relaxed),
        );
        discovery.ping();
        let _ = scheduler.try_send(Command::Ping);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep((every / 4).min(Duration::from_secs(2))) => {}
        }
        let (d1, s1) = (
            discovery.heartbeat(),
            dispatcher_beat.load(Ordering::Relaxed),
        );
        if d1 != d0 && s1 != s0 {
            notify("WATCHDOG=1");
        } else {
            tracing::error!(
                discovery_alive = d1 != d0,
                scheduler_alive = s1 != s0,
                "a loop does not answer; withholding the watchdog ping"
            );
        }
    }
}

/// Once a second: writes what only the running daemon knows (files in flight, blocked
/// and held servers, failing verifications) for `outpost status` when it changed, and tells systemd a status
/// line.
pub async fn live_state(
    spool: Arc<Spool>,
    stats: Stats,
    findings: Arc<Mutex<Findings>>,
    stop: CancellationToken,
) {
    let mut last = LiveState::default();
    let mut t = tokio::time::interval(Duration::from_secs(1));
    while tick(&mut t, &stop).await {
        let mut now = snapshot(&stats);
        now.verify_failed = findings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .verify_failed();
        if now == last {
            continue;
        }
        // A file write: off the runtime's threads.
        let (s, state) = (spool.clone(), now.clone());
        if let Err(e) = blocking(move || s.write_live(&state)).await {
            tracing::debug!(error = %e, "cannot write live state");
        }
        notify(&format!("STATUS={}", status_line(&stats)));
        last = now;
    }
}

/// The scheduler's live figures as the spool's live state.
fn snapshot(stats: &Stats) -> LiveState {
    let s = stats.lock().unwrap_or_else(|e| e.into_inner());
    LiveState {
        pid: std::process::id(),
        // Only servers with uploads in flight (a missing one reads as 0): the state is
        // compared every second, and 10,000 idle servers must not be copied each time.
        in_flight: s
            .iter()
            .filter(|(_, v)| v.in_flight > 0)
            .map(|(k, v)| (k.clone(), v.in_flight))
            .collect(),
        blocked: s
            .iter()
            .filter_map(|(k, v)| v.blocked.clone().map(|b| (k.clone(), b)))
            .collect(),
        held: s
            .iter()
            .filter_map(|(k, v)| v.held.clone().map(|b| (k.clone(), b)))
            .collect(),
        verify_failed: Default::default(),
        window: s
            .iter()
            .filter_map(|(k, v)| v.window_until.map(|t| (k.clone(), rfc3339(t))))
            .collect(),
    }
}

/// systemd's one-line status.
fn status_line(stats: &Stats) -> String {
    let s = stats.lock().unwrap_or_else(|e| e.into_inner());
    let (files, bytes, inflight) = s.values().fold((0, 0, 0), |a, v| {
        (a.0 + v.queue_files, a.1 + v.queue_bytes, a.2 + v.in_flight)
    });
    format!("{files} files ({bytes} bytes) pending, {inflight} uploading")
}

/// Every `ttl / 3`: renews this daemon's lease and takes over the claims of daemons on
/// this spool whose lease expired (a shared spool, SPEC §1), handing them to the
/// scheduler.
pub async fn lease(
    spool: Arc<Spool>,
    ttl: Duration,
    scheduler: mpsc::Sender<Command<Job>>,
    stop: CancellationToken,
) {
    let mut t = tokio::time::interval(ttl / 3);
    while tick(&mut t, &stop).await {
        let s = spool.clone();
        let taken = tokio::task::spawn_blocking(move || {
            if let Err(e) = s.renew_lease() {
                tracing::error!(error = %e, "cannot renew this daemon's lease");
            }
            s.take_over_expired(ttl)
        })
        .await
        .unwrap_or_default();
        for c in taken {
            let _ = scheduler.send(Job::add(c)).await;
        }
    }
}
