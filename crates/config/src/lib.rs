//! outpost configuration: the YAML schema of SPEC §2, parsed with exact error locations,
//! `defaults` merged into every server, and validated into typed settings.
//!
//! Architecture Invariant: this crate does no networking and knows nothing about AWS or
//! tokio; it turns text into [`Config`] or into a [`ConfigError`] naming file, line and
//! column.
//!
//! This file holds the typed settings other crates use. A key is declared once in
//! `raw.rs` (with the `section!` machinery of `keys.rs`), resolved with its default and
//! range in `resolve.rs` (top level) or `server.rs` (one function per server section),
//! located through the parser by `locate.rs`, and written back as YAML by `display.rs`.

mod credentials;
mod display;
mod glob;
mod keys;
mod locate;
mod notify;
mod raw;
mod resolve;
mod scalar;
mod server;
mod settings;
mod units;
mod window;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use glob::{Glob, Globs, glob_match};
pub use notify::{Target, TargetKind};
pub use settings::{
    AfterUpload, Checksum, Completion, Credentials, Manifest, ManifestFormat, Multipart, Overwrite,
    Retry, Sse, Timeouts,
};
pub use units::{
    format_duration, format_rate, format_size, parse_duration, parse_rate, parse_size,
};
pub use window::{Phase, Window};

/// The default configuration file, used when neither `-c` nor `$OUTPOST_CONFIG` is given.
pub const DEFAULT_PATH: &str = "/etc/outpost/outpost.yaml";

/// The canned ACL on every PutObject and CreateMultipartUpload (SPEC §2). Not configurable.
pub const ENFORCED_ACL: &str = "bucket-owner-full-control";

/// A configuration error: where it was written and why it is wrong, in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The configuration file.
    pub file: PathBuf,
    /// 1-based line of the offending value, when known.
    pub line: Option<usize>,
    /// 1-based column of the offending value, when known.
    pub column: Option<usize>,
    /// One-line reason.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, ":{l}:{c}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The spool: one folder per server, plus `.outpost/`, `.failed/`, `.archive/`.
    pub spool_dir: PathBuf,
    /// Address of the HTTP endpoint (`/metrics`, `/healthz`, `/readyz`).
    pub listen: SocketAddr,
    /// The publisher's AWS account, used by `outpost policy`; else found through STS.
    pub publisher_account_id: Option<String>,
    /// Files in flight over all servers.
    pub max_concurrent_uploads: usize,
    /// Time SIGTERM gives uploads in flight.
    pub shutdown_grace: Duration,
    /// How often the whole spool is rescanned to catch events the kernel missed.
    pub rescan_interval: Duration,
    /// This daemon's name in `.outpost/` (default: the host name); daemons sharing a
    /// spool need distinct names.
    pub instance: Option<String>,
    /// A daemon whose lease is older than this is taken for dead, and its claims taken
    /// over by another daemon on the same spool.
    pub lease_ttl: Duration,
    /// Bytes all part and single-PUT body buffers may hold at once (`max_buffer_memory`).
    pub max_buffer_memory: u64,
    /// The daemon's own state outside the spool (`state_dir`): the delivery ledger
    /// `ledger.sqlite` lives here. Applies at the next start.
    pub state_dir: PathBuf,
    /// Age after which rows of the delivery ledger are pruned (`ledger_retention`).
    pub ledger_retention: Duration,
    /// Bytes per second sent over all servers together (`max_bandwidth`); 0: unlimited.
    pub max_bandwidth: u64,
    /// Servers by name (= spool folder name).
    pub servers: BTreeMap<String, Server>,
    /// Where keys were written, for errors found later on this host.
    origin: Origin,
}

/// Where a [`Config`] was written: the file, and the position of each server's
/// `secret_access_key_file`. Layout is not configuration: two configurations that differ
/// only in where keys were written are equal (a reload compares them).
#[derive(Debug, Clone, Default)]
struct Origin {
    /// The configuration file.
    file: PathBuf,
    /// The key path of `secret_access_key_file` by server (under the server or in
    /// `defaults`, wherever it was written): located in `text` only when an error needs
    /// it (locating walks the whole text: once per server would be quadratic).
    secret_files: BTreeMap<String, Vec<String>>,
    /// The configuration's text, for those positions.
    text: std::sync::Arc<str>,
}

impl PartialEq for Origin {
    fn eq(&self, _: &Origin) -> bool {
        true
    }
}

/// One destination after `defaults` were merged in.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// Name, which is also the spool folder.
    pub name: String,
    /// Destination bucket.
    pub bucket: String,
    /// Prepended to the relative path to form the key.
    pub prefix: String,
    /// AWS region of the bucket.
    pub region: String,
    /// Custom endpoint (S3-compatible services, tests).
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`).
    pub path_style: bool,
    /// The integrity check the store verifies on every PUT and part.
    pub checksum: Checksum,
    /// Whose identity writes the objects.
    pub credentials: Credentials,
    /// Sent as `x-amz-expected-bucket-owner` when set.
    pub expected_bucket_owner: Option<String>,
    /// Server-side encryption.
    pub sse: Option<Sse>,
    /// Storage class of the objects.
    pub storage_class: Option<String>,
    /// Whether a later drop may replace an existing object.
    pub overwrite: Overwrite,
    /// Globs of control files published after the data beside them.
    pub publish_last: Vec<String>,
    /// Batch manifests: each folder directly under the server folder is a batch, and
    /// its manifest is uploaded once every file of it was delivered. `None`: off.
    pub manifest: Option<Manifest>,
    /// When a dropped file counts as complete.
    pub completion: Completion,
    /// What happens to a file once S3 acknowledged it.
    pub after_upload: AfterUpload,
    /// Age after which archived files are pruned.
    pub archive_retention: Option<Duration>,
    /// How often the daemon runs the `verify` probe in the background; `None`: never.
    pub verify_interval: Option<Duration>,
    /// Age (from `Initiated`) after which an open multipart upload that outpost began
    /// and nothing on the spool accounts for is aborted; `None`: never.
    pub orphan_age: Option<Duration>,
    /// Files in flight for this server.
    pub max_concurrent_uploads: usize,
    /// When files of this server may start (`window`); `None`: always.
    pub window: Option<Window>,
    /// Bytes per second sent to this server (`max_bandwidth`); 0: unlimited.
    pub max_bandwidth: u64,
    /// Multipart settings.
    pub multipart: Multipart,
    /// Retry limits.
    pub retry: Retry,
    /// Request timeouts.
    pub timeouts: Timeouts,
    /// Where delivery notifications go (empty: none).
    pub notify: Vec<Target>,
}

impl Server {
    /// Whether the server's delivery window is closed at `t` (never, without one).
    pub fn window_closed(&self, t: std::time::SystemTime) -> bool {
        self.window.as_ref().is_some_and(|w| !w.is_open(t))
    }

    /// The object key of a file at `rel` (relative path with `/` separators).
    pub fn key_for(&self, rel: &str) -> String {
        format!("{}{}", self.prefix, rel)
    }
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: None,
            column: None,
            reason: format!("cannot read configuration: {e}"),
        })?;
        Config::parse(path, &text)
    }

    /// Validates `text` as read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        resolve::parse(path, text)
    }

    /// A problem with the secret file of `server` found on this host (unreadable, loose
    /// mode, empty), located at the `secret_access_key_file` key that names the file and
    /// prefixed `server NAME: ` like the other errors of a server.
    pub fn secret_file_error(&self, server: &str, reason: &str) -> ConfigError {
        let pos = self.origin.secret_files.get(server).map(|key| {
            let key: Vec<&str> = key.iter().map(String::as_str).collect();
            locate::locate(&self.origin.text, &key)
        });
        ConfigError {
            file: self.origin.file.clone(),
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            reason: format!("server {server}: {reason}"),
        }
    }
}

/// Where `-c` points when not given: `$OUTPOST_CONFIG`, then [`DEFAULT_PATH`].
pub fn default_config_path() -> PathBuf {
    std::env::var_os("OUTPOST_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

/// Whether `name` is a valid server name: `[A-Za-z0-9_][A-Za-z0-9_.-]*`.
pub fn valid_server_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod yaml_tests;

/// S3's storage classes (the `x-amz-storage-class` values); `storage_class` must be one.
pub const STORAGE_CLASSES: &[&str] = &[
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "OUTPOSTS",
    "GLACIER_IR",
    "SNOW",
    "EXPRESS_ONEZONE",
    "FSX_OPENZFS",
    "FSX_ONTAP",
    "AWS_BACKUP_WARM",
    "AWS_BACKUP_LOW_COST_WARM",
];

/// Why `name` breaks S3's bucket naming rules (general purpose buckets; directory
/// buckets end in `--x-s3` and follow the same character rules), if it does.
pub fn bucket_name_problem(name: &str) -> Result<(), &'static str> {
    let b = name.as_bytes();
    if !(3..=63).contains(&b.len()) {
        return Err("must be 3 to 63 characters long");
    }
    if !b
        .iter()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
    {
        return Err("only lowercase letters, digits, '.' and '-' are allowed");
    }
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !edge(b[0]) || !edge(b[b.len() - 1]) {
        return Err("must begin and end with a letter or digit");
    }
    if name.contains("..") {
        return Err("must not contain two adjacent periods");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("must not be formatted as an IP address");
    }
    if ["xn--", "sthree-", "amzn-s3-demo-"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        return Err("must not begin with a reserved prefix (xn--, sthree-, amzn-s3-demo-)");
    }
    // Access point aliases (`…-s3alias`, `…--ol-s3`) are valid wherever object calls
    // take a bucket name: accepted.
    if name.ends_with(".mrap") {
        return Err("must not end with the reserved suffix .mrap");
    }
    Ok(())
}
