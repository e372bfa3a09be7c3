//! `outpost`: the command line (SPEC §3) — `run`, `check`, `status`, `requeue`, `verify`,
//! `policy`, `deliveries`, `audit`.

mod background;
mod commands;
mod daemon;
mod delivered;
mod events;
mod host;
mod http;
mod logging;
mod manifest;
mod manifests;
mod metrics;
mod policy;
mod preflight;
mod reload;
mod sdnotify;
mod upkeep;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Exit code for a configuration error (EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;

/// outpost publishes batch files from a spool directory to customers' S3 buckets, with
/// the ACL bucket-owner-full-control on every object.
#[derive(Parser, Debug)]
#[command(name = "outpost", version, about, long_about = None)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// Log line format.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (journald, log shippers).
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon in the foreground (SIGTERM/SIGINT stop it gracefully, SIGHUP reloads).
    Run {
        /// Configuration file [default: $OUTPOST_CONFIG, then /etc/outpost/outpost.yaml].
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
    /// Validate the configuration and the spool; print a summary.
    Check {
        /// Configuration file [default: $OUTPOST_CONFIG, then /etc/outpost/outpost.yaml].
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
    /// Per server: pending files and bytes, oldest pending age, in flight, failed files.
    /// Works with the daemon down.
    Status {
        /// Configuration file [default: $OUTPOST_CONFIG, then /etc/outpost/outpost.yaml].
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Live probe per server with the permissions uploads need: PutObject of the probe key
    /// `<prefix>.outpost-verify` with the ACL, and a multipart create/part/abort.
    Verify {
        /// Configuration file [default: $OUTPOST_CONFIG, then /etc/outpost/outpost.yaml].
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// Servers to probe (default: all).
        servers: Vec<String>,
    },
    /// Print, as JSON, what the customer and the publisher must grant for SERVER.
    Policy {
        /// Configuration file [default: $OUTPOST_CONFIG, then /etc/outpost/outpost.yaml].
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// The server.
        server: String,
    },
    /// Move failed files of SERVER back to pending.
    Requeue {
        /// Configuration file [default: $OUTPOST_CONFIG, then /etc/outpost/outpost.yaml].
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// The server whose failed files to requeue.
        server: String,
        /// Paths relative to .failed/SERVER/ (or the original relative paths).
        files: Vec<String>,
        /// Requeue every failed file of SERVER.
        #[arg(long, conflicts_with = "files")]
        all: bool,
    },
    /// What the delivery ledger holds: deliveries, failures and requeues, newest first.
    /// Works with the daemon running or stopped.
    Deliveries {
        /// Configuration file [default: $OUTPOST_CONFIG, then /etc/outpost/outpost.yaml].
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// Only this server (default: all).
        server: Option<String>,
        /// How far back: 30m, 24h, 7d … or `all`.
        #[arg(long, default_value = "24h")]
        since: String,
        /// Only keys starting with PREFIX (the server's prefix included).
        #[arg(long, value_name = "PREFIX")]
        key: Option<String>,
        /// Only failed files.
        #[arg(long)]
        failed: bool,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check SERVER's delivered objects against the ledger (HeadObject each): identical,
    /// missing, changed or not readable. Exit 0 only when every one is identical.
    Audit {
        /// Configuration file [default: $OUTPOST_CONFIG, then /etc/outpost/outpost.yaml].
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// The server.
        server: String,
        /// How far back: 30m, 24h, 7d … or `all`.
        #[arg(long, default_value = "7d")]
        since: String,
    },
}

fn config_path(c: Option<PathBuf>) -> PathBuf {
    c.unwrap_or_else(outpost_config::default_config_path)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format, matches!(cli.command, Command::Run { .. }));
    let code = match cli.command {
        Command::Run { config } => daemon::run(&config_path(config)),
        Command::Check { config } => commands::check(&config_path(config)),
        Command::Status { config, json } => commands::status(&config_path(config), json),
        Command::Verify { config, servers } => commands::verify(&config_path(config), &servers),
        Command::Policy { config, server } => commands::policy(&config_path(config), &server),
        Command::Requeue {
            config,
            server,
            files,
            all,
        } => commands::requeue(&config_path(config), &server, &files, all),
        Command::Deliveries {
            config,
            server,
            since,
            key,
            failed,
            json,
        } => commands::deliveries(
            &config_path(config),
            &commands::DeliveriesArgs {
                server,
                since,
                key,
                failed,
                json,
            },
        ),
        Command::Audit {
            config,
            server,
            since,
        } => commands::audit(&config_path(config), &server, &since),
    };
    ExitCode::from(code)
}
