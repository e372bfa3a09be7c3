//! `outpost requeue`: failed files of a server back to pending (the spool's
//! `Spool::requeue` does the moves).

use std::path::Path;

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
    u8::from(!errors.is_empty())
}
