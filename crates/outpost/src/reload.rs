//! SIGHUP: re-read the configuration and apply it server by server. Servers added,
//! changed or removed never disturb the others; uploads in flight finish to the
//! destination they started with; a file that fails validation changes nothing.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use outpost_config::Config;
use outpost_scheduler::{Command, RetryPolicy};
use outpost_uploader::Destination;
use outpost_watcher::{DiscoveryHandle, Spool};
use tokio::sync::mpsc;

use crate::commands::host_problems;
use crate::metrics::Metrics;
use crate::worker::{Job, Worker};

/// What a reload touches.
pub struct Live<'a> {
    /// The spool (new server folders).
    pub spool: &'a Spool,
    /// Destinations.
    pub worker: &'a Worker,
    /// Scheduler commands.
    pub scheduler: &'a mpsc::Sender<Command<Job>>,
    /// Discovery.
    pub discovery: &'a DiscoveryHandle,
    /// Series for new servers.
    pub metrics: &'a Metrics,
}

/// The scheduler's settings of a server.
pub fn configure(s: &outpost_config::Server) -> Command<Job> {
    Command::Configure {
        server: s.name.clone(),
        max_in_flight: s.max_concurrent_uploads,
        retry: RetryPolicy {
            initial: s.retry.initial_backoff,
            max: s.retry.max_backoff,
            max_attempts: s.retry.max_attempts,
        },
        last: s.publish_last.clone(),
    }
}

/// Applies `path` over `current`; on any error logs it and keeps `current` as it is.
pub async fn reload(path: &Path, current: &mut Config, live: &Live<'_>) {
    let mut new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: new configuration refused; the running one is kept");
            return;
        }
    };
    // Keys that shape the process itself apply at the next start: the running values
    // stay (and the spool is checked as it runs).
    let restart_only: Vec<&str> = [
        ("spool_dir", new.spool_dir != current.spool_dir),
        ("listen", new.listen != current.listen),
        (
            "shutdown_grace",
            new.shutdown_grace != current.shutdown_grace,
        ),
        (
            "rescan_interval",
            new.rescan_interval != current.rescan_interval,
        ),
        ("instance", new.instance != current.instance),
        ("lease_ttl", new.lease_ttl != current.lease_ttl),
        (
            "max_buffer_memory",
            new.max_buffer_memory != current.max_buffer_memory,
        ),
    ]
    .into_iter()
    .filter_map(|(key, differs)| differs.then_some(key))
    .collect();
    new.spool_dir = current.spool_dir.clone();
    new.listen = current.listen;
    new.shutdown_grace = current.shutdown_grace;
    new.rescan_interval = current.rescan_interval;
    new.instance = current.instance.clone();
    new.lease_ttl = current.lease_ttl;
    new.max_buffer_memory = current.max_buffer_memory;
    let problems = host_problems(&new);
    if !problems.is_empty() {
        tracing::error!(problems = ?problems, "SIGHUP: new configuration refused; the running one is kept");
        return;
    }
    for key in restart_only {
        tracing::warn!(key, "SIGHUP: this key applies at the next restart");
    }
    // Servers whose settings are the same but whose secret file now holds another
    // secret (a rotation): their client is built again.
    let rotated: Vec<String> = {
        let dests = live.worker.dests.read().unwrap_or_else(|e| e.into_inner());
        new.servers
            .iter()
            .filter(|(name, s)| {
                current.servers.get(*name) == Some(*s)
                    && dests.get(*name).is_some_and(|d| d.secret_changed())
            })
            .map(|(name, _)| name.clone())
            .collect()
    };
    for name in &rotated {
        tracing::info!(server = %name, "SIGHUP: secret_access_key_file changed; building the server's client again");
    }
    if new == *current && rotated.is_empty() {
        tracing::info!("SIGHUP: configuration unchanged");
        return;
    }

    // Build every new or changed destination before touching anything.
    let mut built = HashMap::new();
    for (name, s) in &new.servers {
        if current.servers.get(name) != Some(s) || rotated.contains(name) {
            match Destination::new(Arc::new(s.clone())).await {
                Ok(d) => {
                    built.insert(name.clone(), d);
                }
                Err(e) => {
                    tracing::error!(server = %name, error = %e, "SIGHUP: new configuration refused; the running one is kept");
                    return;
                }
            }
        }
    }
    let added: Vec<String> = new
        .servers
        .keys()
        .filter(|n| !current.servers.contains_key(*n))
        .cloned()
        .collect();
    let removed: Vec<String> = current
        .servers
        .keys()
        .filter(|n| !new.servers.contains_key(*n))
        .cloned()
        .collect();
    let changed: Vec<String> = built
        .keys()
        .filter(|n| !added.contains(n))
        .cloned()
        .collect();
    for name in &added {
        if let Err(e) = live.spool.add_server(name) {
            tracing::error!(server = %name, error = %e, "SIGHUP: cannot create the server folder; the running configuration is kept");
            return;
        }
        live.metrics.add_server(name);
    }
    {
        let mut dests = live.worker.dests.write().unwrap_or_else(|e| e.into_inner());
        for (name, d) in built {
            dests.insert(name, d);
        }
        for name in &removed {
            dests.remove(name);
        }
    }
    for name in added.iter().chain(changed.iter()) {
        let _ = live.scheduler.send(configure(&new.servers[name])).await;
    }
    for name in &removed {
        let _ = live
            .scheduler
            .send(Command::Remove {
                server: name.clone(),
            })
            .await;
        // Its series go once its last upload in flight has ended (the next scrape).
        live.metrics.remove_server(name);
    }
    if new.max_concurrent_uploads != current.max_concurrent_uploads {
        let _ = live
            .scheduler
            .send(Command::SetGlobal(new.max_concurrent_uploads))
            .await;
    }
    // Failed files of added servers, before their claims (`publish_last`).
    // (Disk reads: the runtime is told this thread blocks.)
    for name in &added {
        let scan = tokio::task::block_in_place(|| crate::run::failed_scan(live.spool, name));
        let _ = live.scheduler.send(scan).await;
    }
    // Claims left by an earlier run for a server configured again.
    match tokio::task::block_in_place(|| live.spool.recover_servers(&added)) {
        Ok(claims) => {
            for c in claims {
                let _ = live
                    .scheduler
                    .send(Command::Add {
                        server: c.server.clone(),
                        item: Job(Arc::new(c)),
                    })
                    .await;
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: cannot read earlier claims of added servers")
        }
    }
    live.discovery.reconfigure(crate::run::rules(&new));
    tracing::info!(added = ?added, changed = ?changed, removed = ?removed, "SIGHUP: configuration reloaded");
    *current = new;
}
