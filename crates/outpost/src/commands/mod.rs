//! The one-shot commands — `check`, `status`, `requeue`, `verify`, `policy`,
//! `deliveries`, `audit` — each loads the configuration, does its one job and returns
//! the exit code. Their output goes through [`say!`], which stops writing when the
//! reader has gone (`outpost check | head -1`) instead of panicking on the broken pipe;
//! the command still exits with its own code.

mod audit;
mod check;
mod deliveries;
mod probe;
mod requeue;
mod status;

pub use audit::audit;
pub use check::check;
pub use deliveries::{DeliveriesArgs, deliveries};
pub use probe::{policy, verify};
pub use requeue::requeue;
pub use status::status;

use std::path::Path;

use outpost_config::{Config, Server};

/// `println!` for the commands' output. A reader that went away (`| head -1`) ends
/// the output, not the command: it finishes its work and exits with its own code
/// (a failed `verify` still exits 1). Any other write error ends the command with 1,
/// said on stderr.
macro_rules! say {
    ($($arg:tt)*) => { $crate::commands::say_line(format_args!($($arg)*)) };
}
pub(crate) use say;

/// Set once stdout's reader has gone: nothing more is written.
static READER_GONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Writes one line of a command's output (see [`say!`]).
pub(crate) fn say_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    if READER_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            READER_GONE.store(true, Ordering::Relaxed);
            return;
        }
        eprintln!("outpost: cannot write the output: {e}");
        std::process::exit(1);
    }
}

/// The configuration, for a command about the server `name`: an unknown server is the
/// error a user sees (exit 1).
fn load_for(path: &Path, name: &str) -> Result<Config, u8> {
    let cfg = crate::preflight::load(path)?;
    server(&cfg, path, name)?;
    Ok(cfg)
}

/// The configured server `name`, or the error a user sees (exit 1).
fn server<'a>(cfg: &'a Config, path: &Path, name: &str) -> Result<&'a Server, u8> {
    cfg.servers.get(name).ok_or_else(|| {
        eprintln!(
            "outpost: server {name:?} is not configured in {}",
            path.display()
        );
        1
    })
}

/// The ledger rows `filter` selects, newest first, from the ledger of `cfg.state_dir`;
/// a missing, unreadable or newer ledger is the one-line error a user sees (exit 1).
fn ledger_rows(
    cfg: &Config,
    filter: &outpost_ledger::Filter,
) -> Result<Vec<outpost_ledger::Row>, u8> {
    let path = outpost_ledger::path_in(&cfg.state_dir);
    outpost_ledger::query(&path, filter).map_err(|e| {
        eprintln!("outpost: {e}");
        1
    })
}

/// A runtime for the commands that talk to S3 or STS.
fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("outpost: cannot start the runtime: {e}");
            1
        })
}
