//! Text to [`Config`]: the syntax first, then the keys (`raw.rs`, located by the parser),
//! then the top-level checks and every server merged over `defaults` (`server.rs`). A
//! check that fails names a key path; this file decides whether the value was written
//! under the server or inherited from `defaults`, and `locate.rs` finds it there.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::IgnoredAny;

use crate::keys::Field;
use crate::locate::locate;
use crate::raw::{RawConfig, RawServer};
use crate::units::format_duration;
use crate::{Config, ConfigError, Credentials, Origin};

pub(crate) const HOUR: Duration = Duration::from_secs(3600);
pub(crate) const DAY: Duration = Duration::from_secs(86_400);
/// Files in flight at most, over all servers or for one (descriptors, memory).
pub(crate) const MAX_UPLOADS: usize = 1024;

/// Every duration has a documented range (docs/configuration.md): beyond it a value is
/// a typo (`0s` rescans in a loop, `99999999d` overflows a deadline).
pub(crate) fn in_range(key: &str, d: Duration, min: Duration, max: Duration) -> Result<(), String> {
    if d < min || d > max {
        let (min, max) = (format_duration(min), format_duration(max));
        return Err(format!("{key} must be between {min} and {max}"));
    }
    Ok(())
}

/// Whether `id` is a 12-digit AWS account id.
pub(crate) fn is_account_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())
}

/// A located error of the file at `path`.
fn error(path: &Path, (line, column): (usize, usize), reason: String) -> ConfigError {
    ConfigError {
        file: path.to_owned(),
        line: Some(line),
        column: Some(column),
        reason,
    }
}

/// serde_norway's error, its position taken from the parser, `prefix` before the reason.
fn yaml_error(path: &Path, e: &serde_norway::Error, prefix: &str) -> ConfigError {
    let loc = e.location();
    let text = e.to_string();
    let mut reason = text.lines().next().unwrap_or_default().to_owned();
    // The parser writes " at line L column C" after each part; the location is printed
    // separately.
    while let Some(i) = reason.find(" at line ") {
        let rest = &reason[i + " at line ".len()..];
        let end = rest.find(" column ").map_or(rest.len(), |c| {
            let col = &rest[c + " column ".len()..];
            c + " column ".len()
                + col
                    .find(|ch: char| !ch.is_ascii_digit())
                    .unwrap_or(col.len())
        });
        reason = format!("{}{}", &reason[..i], &rest[end..]);
    }
    if reason.contains("more than one document") {
        reason = "the file must hold one YAML document (a second `---` was found)".into();
    }
    ConfigError {
        file: path.to_owned(),
        line: loc.as_ref().map(|l| l.line()),
        column: loc.as_ref().map(|l| l.column()),
        reason: format!("{prefix}{reason}"),
    }
}

/// Where a value of server `name` at `key` (below the server) was written: under the
/// server, else under `defaults`, else (a default value, or a missing key) at the
/// deepest key that was written, at worst the server's name.
fn origin<'a>(
    name: &'a str,
    server: &RawServer,
    defaults: Option<&RawServer>,
    key: &[&'a str],
) -> Vec<&'a str> {
    for n in (1..=key.len()).rev() {
        if server.has(&key[..n]) {
            return [&["servers", name], &key[..n]].concat();
        }
        if defaults.is_some_and(|d| d.has(&key[..n])) {
            return [&["defaults"], &key[..n]].concat();
        }
    }
    vec!["servers", name]
}

/// Validates `text` as read from `path`.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    if text.trim().is_empty() {
        return Err(ConfigError {
            file: path.to_owned(),
            line: None,
            column: None,
            reason: "configuration is empty".into(),
        });
    }
    // The whole text is parsed before any key is read: a syntax error further down is
    // reported as what it is, not as whatever key came first.
    serde_norway::from_str::<IgnoredAny>(text)
        .map_err(|e| yaml_error(path, &e, "YAML syntax error: "))?;
    let raw: RawConfig = serde_norway::from_str(text).map_err(|e| yaml_error(path, &e, ""))?;
    let at = |keys: &[&str], reason: String| error(path, locate(text, keys), reason);

    let max_concurrent_uploads = raw.max_concurrent_uploads.map_or(32, |n| n.0);
    if !(1..=MAX_UPLOADS).contains(&max_concurrent_uploads) {
        let reason = format!("max_concurrent_uploads must be between 1 and {MAX_UPLOADS}");
        return Err(at(&["max_concurrent_uploads"], reason));
    }
    let shutdown_grace = raw.shutdown_grace.map_or(Duration::from_secs(30), |d| d.0);
    in_range("shutdown_grace", shutdown_grace, Duration::ZERO, HOUR)
        .map_err(|r| at(&["shutdown_grace"], r))?;
    let rescan_interval = raw.rescan_interval.map_or(Duration::from_secs(30), |d| d.0);
    in_range(
        "rescan_interval",
        rescan_interval,
        Duration::from_secs(1),
        DAY,
    )
    .map_err(|r| at(&["rescan_interval"], r))?;
    if let Some(id) = &raw.publisher_account_id
        && !is_account_id(id)
    {
        let reason = format!("publisher_account_id {id:?} is not a 12-digit AWS account id");
        return Err(at(&["publisher_account_id"], reason));
    }
    let raw_servers = raw.servers.unwrap_or_default().0;
    if raw_servers.is_empty() {
        return Err(at(&["servers"], "no servers are configured".into()));
    }
    let mut servers = BTreeMap::new();
    let mut secret_files = BTreeMap::new();
    for (name, server) in &raw_servers {
        let defaults = raw.defaults.as_ref().map(|d| &d.0);
        let merged = Field::merge(Some(server.clone()), defaults.cloned()).unwrap_or_default();
        let resolved = crate::server::resolve(name, merged).map_err(|(key, reason)| {
            at(
                &origin(name, server, defaults, &key),
                format!("server {name}: {reason}"),
            )
        })?;
        if let Credentials::Static { .. } = resolved.credentials {
            let key = ["credentials", "secret_access_key_file"];
            let path = origin(name, server, defaults, &key);
            secret_files.insert(name.clone(), path.into_iter().map(str::to_owned).collect());
        }
        servers.insert(name.clone(), resolved);
    }
    if let Some(i) = &raw.instance
        && !crate::valid_server_name(i)
    {
        let reason = format!("instance {i:?} must match [A-Za-z0-9_][A-Za-z0-9_.-]*");
        return Err(at(&["instance"], reason));
    }
    let max_buffer_memory = raw.max_buffer_memory.map_or(256 << 20, |v| v.0);
    if !(16 << 20..=64 << 30).contains(&max_buffer_memory) {
        let reason = "max_buffer_memory must be between 16MiB and 64GiB".into();
        return Err(at(&["max_buffer_memory"], reason));
    }
    let lease_ttl = raw.lease_ttl.map_or(Duration::from_secs(60), |d| d.0);
    in_range("lease_ttl", lease_ttl, Duration::from_secs(1), DAY)
        .map_err(|r| at(&["lease_ttl"], r))?;
    let spool_dir = raw
        .spool_dir
        .unwrap_or_else(|| PathBuf::from("/var/spool/outpost"));
    if !spool_dir.is_absolute() {
        let reason = format!("spool_dir {spool_dir:?} must be an absolute path");
        return Err(at(&["spool_dir"], reason));
    }
    let state_dir = raw
        .state_dir
        .unwrap_or_else(|| PathBuf::from("/var/lib/outpost"));
    if !state_dir.is_absolute() {
        let reason = format!("state_dir {state_dir:?} must be an absolute path");
        return Err(at(&["state_dir"], reason));
    }
    let ledger_retention = raw.ledger_retention.map_or(30 * DAY, |d| d.0);
    in_range("ledger_retention", ledger_retention, HOUR, 3650 * DAY)
        .map_err(|r| at(&["ledger_retention"], r))?;
    Ok(Config {
        spool_dir,
        listen: raw
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9464))),
        publisher_account_id: raw.publisher_account_id,
        max_concurrent_uploads,
        shutdown_grace,
        rescan_interval,
        instance: raw.instance,
        lease_ttl,
        max_buffer_memory,
        state_dir,
        ledger_retention,
        max_bandwidth: raw.max_bandwidth.map_or(0, |r| r.0),
        servers,
        origin: Origin {
            file: path.to_owned(),
            secret_files,
            text: text.into(),
        },
    })
}
