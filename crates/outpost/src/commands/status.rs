//! `outpost status`: per server, what waits in the spool (read from the folders, so it
//! works with the daemon down) and what the running daemons say of it (`live.json`).

use std::path::Path;

use outpost_watcher::Spool;

use super::say;
use crate::preflight::load;

/// `outpost status`.
pub fn status(path: &Path, json: bool) -> u8 {
    let cfg = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut live = Spool::read_live(&cfg.spool_dir);
    // An opening already past (the daemon publishes on its next change): not waiting.
    let now = outpost_watcher::rfc3339(std::time::SystemTime::now());
    live.window.retain(|_, until| *until > now);
    let backlog = notification_backlog(&cfg);
    let mut rows = Vec::new();
    for s in cfg.servers.keys() {
        match Spool::status(&cfg.spool_dir, s, &cfg.servers[s].completion) {
            Ok(st) => rows.push((s.clone(), st)),
            Err(e) => {
                eprintln!("outpost: status of {s}: {e}");
                return 1;
            }
        }
    }
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(s, st)| {
                serde_json::json!({
                    "server": s,
                    "pending_files": st.pending_files,
                    "pending_bytes": st.pending_bytes,
                    "oldest_pending_age_seconds": st.oldest_pending_age_seconds,
                    // live.json is refreshed every second: never more in flight than pending.
                    "in_flight": live.in_flight.get(s).copied().unwrap_or(0).min(st.pending_files),
                    "failed_files": st.failed_files,
                    "waiting_for_marker": st.waiting_for_marker,
                    "blocked": live.blocked.contains_key(s),
                    "blocked_reason": live.blocked.get(s),
                    "held_reason": live.held.get(s),
                    "verify_failed_reason": live.verify_failed.get(s),
                    "window_closed_until": live.window.get(s),
                    "daemon_running": live.running,
                    "notifications_waiting": backlog.iter().filter(|b| &b.server == s).map(|b| serde_json::json!({
                        "target": b.target,
                        "pending": b.count,
                        "oldest_age_seconds": age_seconds(b.oldest),
                        "last_error": b.last_error,
                    })).collect::<Vec<_>>(),
                    "batches_waiting": st.batches_waiting.iter().map(|b| serde_json::json!({
                        "batch": b.batch,
                        "files": b.files,
                        "delivered": b.delivered,
                        "held_by": b.held_by,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        say!("{}", serde_json::Value::Array(v));
        return 0;
    }
    say!(
        "{:<20} {:>10} {:>14} {:>12} {:>10} {:>8}  STATE",
        "SERVER",
        "PENDING",
        "BYTES",
        "OLDEST(s)",
        "IN_FLIGHT",
        "FAILED"
    );
    for (s, st) in rows {
        say!(
            "{:<20} {:>10} {:>14} {:>12.0} {:>10} {:>8}  {}",
            s,
            st.pending_files,
            st.pending_bytes,
            st.oldest_pending_age_seconds,
            live.in_flight
                .get(&s)
                .copied()
                .unwrap_or(0)
                .min(st.pending_files),
            st.failed_files,
            match (live.running, live.blocked.get(&s), live.held.get(&s)) {
                (false, _, _) => "daemon not running".to_owned(),
                (true, Some(why), _) => format!("BLOCKED: {why}"),
                (true, None, Some(why)) => format!("HELD: {why}"),
                (true, None, None) => match (live.verify_failed.get(&s), live.window.get(&s)) {
                    (Some(why), _) => format!("VERIFY FAILED: {why}"),
                    // Files wait for the window (not only uploads finishing past it).
                    (None, Some(until))
                        if st.pending_files > live.in_flight.get(&s).copied().unwrap_or(0) =>
                    {
                        format!("WAITING for its window until {until}")
                    }
                    _ => "ok".to_owned(),
                },
            } + &if st.waiting_for_marker > 0 {
                format!(" ({} waiting for marker)", st.waiting_for_marker)
            } else {
                String::new()
            } + &batches(&st.batches_waiting)
        );
    }
    for b in backlog
        .iter()
        .filter(|b| cfg.servers.contains_key(&b.server))
    {
        say!(
            "notifications {}/{}: {} waiting, oldest {:.0}s{}",
            b.server,
            b.target,
            b.count,
            age_seconds(b.oldest),
            b.last_error
                .as_ref()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default()
        );
    }
    0
}

/// The notifications waiting in the ledger's outbox (none without a ledger).
fn notification_backlog(cfg: &outpost_config::Config) -> Vec<outpost_ledger::Backlog> {
    let path = outpost_ledger::path_in(&cfg.state_dir);
    if !path.exists() {
        return Vec::new();
    }
    match outpost_ledger::OutboxReader::open(&path).and_then(|mut r| r.backlog()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("outpost: cannot read the notification backlog: {e}");
            Vec::new()
        }
    }
}

/// Seconds since `at` (Unix milliseconds).
fn age_seconds(at: outpost_ledger::UnixMillis) -> f64 {
    (outpost_ledger::now_millis().saturating_sub(at)).max(0) as f64 / 1000.0
}

/// The batches whose manifest waits, for the STATE column: the ones a failed file holds
/// by name, the others counted.
fn batches(waiting: &[outpost_watcher::BatchWaiting]) -> String {
    let mut out = String::new();
    for b in waiting {
        if let Some(f) = &b.held_by {
            out += &format!(
                " (batch {}: manifest held by failed file {f}; `outpost requeue` releases it)",
                b.batch
            );
        }
    }
    let open = waiting.iter().filter(|b| b.held_by.is_none()).count();
    if open > 0 {
        out += &format!(" ({open} batch(es) uploading)");
    }
    out
}
