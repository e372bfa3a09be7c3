//! The one-shot commands — `check`, `status`, `requeue`, `verify`, `policy` — each loads
//! the configuration, does its one job and returns the exit code. Their output goes
//! through [`say!`], which ends quietly when the reader has gone (`outpost check | head
//! -1`) instead of panicking on the broken pipe.

mod check;
mod probe;
mod requeue;
mod status;

pub use check::check;
pub use probe::{policy, verify};
pub use requeue::requeue;
pub use status::status;

use std::path::Path;

use outpost_config::{Config, Server};

/// `println!` for the commands' output: a reader that went away ends the process with
/// 0 (it read what it wanted); any other write error ends it with 1, said on stderr.
macro_rules! say {
    ($($arg:tt)*) => { $crate::commands::say_line(format_args!($($arg)*)) };
}
pub(crate) use say;

/// Writes one line of a command's output (see [`say!`]).
pub(crate) fn say_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
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
