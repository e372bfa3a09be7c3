//! `outpost deliveries`: what the delivery ledger holds — deliveries, failures and
//! requeues, newest first — as a table for people or JSON lines for scripts. Reads the
//! ledger with a read-only connection of its own, so it works with the daemon running
//! (WAL) or stopped.

use std::path::Path;
use std::time::{Duration, SystemTime};

use outpost_ledger::{Filter, render};

use super::say;

/// What `outpost deliveries` was asked.
#[derive(Debug, Clone, Default)]
pub struct DeliveriesArgs {
    /// Only this server's rows.
    pub server: Option<String>,
    /// How far back: a duration as in the configuration (`24h`, `7d`), or `all`.
    pub since: String,
    /// Only keys starting with this.
    pub key: Option<String>,
    /// Only failed files.
    pub failed: bool,
    /// JSON lines instead of a table.
    pub json: bool,
}

/// `outpost deliveries`.
pub fn deliveries(path: &Path, args: &DeliveriesArgs) -> u8 {
    let cfg = match &args.server {
        Some(name) => super::load_for(path, name),
        None => crate::preflight::load(path),
    };
    let cfg = match cfg {
        Ok(c) => c,
        Err(code) => return code,
    };
    let since = match parse_since(&args.since) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let filter = Filter {
        server: args.server.clone(),
        since,
        key_prefix: args.key.clone(),
        failed: args.failed,
        limit: None,
    };
    let rows = match super::ledger_rows(&cfg, &filter) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let text = if args.json {
        render::json_lines(&rows)
    } else {
        render::table(&rows, SystemTime::now())
    };
    for line in text.lines() {
        say!("{line}");
    }
    0
}

/// `--since`: a configuration duration (`30m`, `24h`, `7d`), or `all` for no bound.
pub(super) fn parse_since(s: &str) -> Result<Option<Duration>, u8> {
    if s.trim().eq_ignore_ascii_case("all") {
        return Ok(None);
    }
    outpost_config::parse_duration(s).map(Some).map_err(|e| {
        eprintln!("outpost: --since: {e} (or `all`)");
        1
    })
}
