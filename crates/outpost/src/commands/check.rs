//! `outpost check`: the configuration and the spool as `run` would find them, and a
//! summary of each server in the words of the YAML file.

use std::path::Path;

use outpost_config::{format_duration, format_rate};

use super::say;
use crate::EXIT_CONFIG;
use crate::preflight::{host_problems, load};

/// `outpost check`.
pub fn check(path: &Path) -> u8 {
    let cfg = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let problems = host_problems(&cfg, path);
    for p in &problems {
        eprintln!("outpost: configuration error: {p}");
    }
    if !problems.is_empty() {
        return EXIT_CONFIG;
    }
    say!("configuration {} is valid", path.display());
    say!("spool_dir: {}", cfg.spool_dir.display());
    say!("listen: {}", cfg.listen);
    say!(
        "max_concurrent_uploads: {}, shutdown_grace: {}",
        cfg.max_concurrent_uploads,
        format_duration(cfg.shutdown_grace)
    );
    if cfg.max_bandwidth != 0 {
        say!("max_bandwidth: {}", format_rate(cfg.max_bandwidth));
    }
    for s in cfg.servers.values() {
        let folder = cfg.spool_dir.join(&s.name);
        let endpoint = s
            .endpoint
            .as_deref()
            .map(|e| format!(", endpoint: {e}"))
            .unwrap_or_default();
        let last = if s.publish_last.is_empty() {
            String::new()
        } else {
            format!(", publish_last: [{}]", s.publish_last.join(", "))
        };
        say!(
            "server {}: s3://{}/{} (region: {}{endpoint}), {}, {}, {}, {}{last}; folder {}{}",
            s.name,
            s.bucket,
            s.prefix,
            s.region,
            s.credentials,
            s.completion,
            s.after_upload,
            s.checksum,
            folder.display(),
            if folder.is_dir() {
                ""
            } else {
                " (created at start)"
            }
        );
        if s.overwrite != outpost_config::Overwrite::Always || s.manifest.is_some() {
            let manifest = s.manifest.as_ref().map(ToString::to_string);
            say!(
                "server {}: {}{}",
                s.name,
                s.overwrite,
                manifest.map(|m| format!(", {m}")).unwrap_or_default()
            );
        }
        if s.window.is_some() || s.max_bandwidth != 0 {
            let window = s.window.as_ref().map(|w| format!("window: \"{w}\""));
            let rate = (s.max_bandwidth != 0)
                .then(|| format!("max_bandwidth: {}", format_rate(s.max_bandwidth)));
            let both: Vec<String> = window.into_iter().chain(rate).collect();
            say!("server {}: {}", s.name, both.join(", "));
        }
        if !s.notify.is_empty() {
            let targets: Vec<String> = s.notify.iter().map(ToString::to_string).collect();
            say!("server {}: notify: [{}]", s.name, targets.join(", "));
        }
        if s.overwrite == outpost_config::Overwrite::Never && s.endpoint.is_some() {
            say!(
                "warning: server {}: overwrite: never needs a store that honours If-None-Match (radosgw ignores it on CompleteMultipartUpload); `outpost verify {}` checks it",
                s.name,
                s.name
            );
        }
        if s.expected_bucket_owner.is_none() {
            say!(
                "warning: server {}: no expected_bucket_owner; a mistyped or re-owned bucket name would receive the data",
                s.name
            );
        }
    }
    0
}
