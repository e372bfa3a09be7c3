//! `outpost requeue`: failed files of a server back to pending (the spool's
//! `Spool::requeue` does the moves), each recorded as `requeued` in the delivery
//! ledger (best effort: a ledger problem is a warning, never a failed requeue).

use std::path::Path;

use outpost_ledger::{Ledger, Requeued};
use outpost_watcher::Spool;

use super::say;

/// `outpost requeue`.
pub fn requeue(path: &Path, server: &str, files: &[String], all: bool) -> u8 {
    let cfg = match super::load_for(path, server) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let s = &cfg.servers[server];
    if !all && files.is_empty() {
        eprintln!("outpost: name the failed files to requeue, or pass --all");
        return 1;
    }
    let only = (!all).then_some(files);
    let marker = match &s.completion {
        outpost_config::Completion::Marker { suffix } => Some(suffix.as_str()),
        _ => None,
    };
    let (done, errors) = Spool::requeue(&cfg.spool_dir, server, only, marker);
    for d in &done {
        match marker {
            Some(m) => say!("requeued {server}/{d} (marker {d}{m} made, so it is published)"),
            None => say!("requeued {server}/{d}"),
        }
    }
    for e in &errors {
        eprintln!("outpost: cannot requeue {e}");
    }
    say!("{} file(s) requeued", done.len());
    record(&cfg.state_dir, server, &done);
    u8::from(!errors.is_empty())
}

/// Records a `requeued` row per file of `done` in the ledger of `state_dir`, and waits
/// until they are stored. Only into a ledger that exists: the daemon creates it, with
/// its own user as owner — made here by another user (`sudo outpost requeue`), the
/// daemon could not write it. Any problem is a warning on stderr.
fn record(state_dir: &Path, server: &str, done: &[String]) {
    if done.is_empty() {
        return;
    }
    let path = outpost_ledger::path_in(state_dir);
    if !path.exists() {
        return;
    }
    let ledger = match Ledger::open(&path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("outpost: warning: the requeues are not recorded in the ledger: {e}");
            return;
        }
    };
    let at = outpost_ledger::now_millis();
    let acks: Vec<_> = done
        .iter()
        .map(|rel| {
            ledger.record(Requeued {
                server: server.to_owned(),
                relative_path: rel.clone(),
                at,
            })
        })
        .collect();
    let lost = acks.into_iter().filter_map(|a| a.wait().err()).last();
    ledger.close();
    if let Some(e) = lost {
        eprintln!("outpost: warning: not every requeue is recorded in the ledger: {e}");
    }
}
