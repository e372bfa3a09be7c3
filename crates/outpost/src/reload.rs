//! A server's configuration as the scheduler and discovery take it (at start and at
//! SIGHUP), and the SIGHUP reload: re-read the configuration and apply it server by
//! server. Servers added, changed or removed never disturb the others; uploads in
//! flight finish to the destination they started with; a file that fails validation
//! changes nothing.

use std::collections::HashMap;
use std::sync::Arc;

use outpost_config::Config;
use outpost_scheduler::{Command, RetryPolicy};
use outpost_uploader::Destination;
use outpost_watcher::{ServerRule, Spool};

use crate::daemon::Daemon;
use crate::preflight::host_problems;
use crate::worker::Job;

/// Discovery's view of the servers.
pub fn rules(cfg: &Config) -> Vec<ServerRule> {
    cfg.servers
        .values()
        .map(|s| ServerRule {
            name: s.name.clone(),
            prefix: s.prefix.clone(),
            bucket: s.bucket.clone(),
            completion: s.completion.clone(),
            archive_retention: s.archive_retention,
            publish_last: s.publish_last.clone(),
            batches: s.manifest.is_some(),
        })
        .collect()
}

/// The scheduler's command naming every file of `server` now in `.failed/`.
pub fn failed_scan(spool: &Spool, server: &str) -> Command<Job> {
    Command::FailedScan {
        server: server.to_owned(),
        keys: spool.failed_files(server),
        // Before discovery's scan: `publish_last` files wait for it.
        after_scan: false,
    }
}

/// The bandwidth limits of `cfg` (global and per server), for the reads to come.
pub fn set_bandwidth(cfg: &Config) {
    let servers = cfg
        .servers
        .values()
        .map(|s| (s.name.as_str(), s.max_bandwidth));
    outpost_uploader::bandwidth::limits().configure(cfg.max_bandwidth, servers);
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
        window: s.window.clone(),
    }
}

impl Daemon {
    /// Applies the configuration file over the running configuration; on any error logs
    /// it and keeps the running one as it is.
    pub async fn reload(&mut self) {
        let current = &self.cfg;
        let mut new = match Config::load(&self.path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: new configuration refused; the running one is kept");
                return;
            }
        };
        // Keys that shape the process itself apply at the next start: the running values
        // stay (and the spool is checked as it runs).
        let mut restart_only = Vec::new();
        macro_rules! keep_running {
        ($($key:ident),*) => {$(
            if new.$key != current.$key {
                restart_only.push(stringify!($key));
                new.$key = current.$key.clone();
            }
        )*};
    }
        keep_running!(
            spool_dir,
            listen,
            shutdown_grace,
            rescan_interval,
            instance,
            lease_ttl,
            max_buffer_memory,
            state_dir
        );
        let problems = host_problems(&new, &self.path);
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
            let dests = self.worker.dests.read().unwrap_or_else(|e| e.into_inner());
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
            // Notification targets are built again all the same: a webhook's secret
            // file is read again (rotate it by rewriting the file and reloading).
            self.worker
                .notifier
                .set_servers(crate::daemon::notify_servers(&new));
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
            if let Err(e) = self.spool.add_server(name) {
                tracing::error!(server = %name, error = %e, "SIGHUP: cannot create the server folder; the running configuration is kept");
                return;
            }
            self.metrics.add_server(name);
        }
        {
            let mut dests = self.worker.dests.write().unwrap_or_else(|e| e.into_inner());
            for (name, d) in built {
                dests.insert(name, d);
            }
            for name in &removed {
                dests.remove(name);
            }
        }
        for name in added.iter().chain(changed.iter()) {
            let _ = self.scheduler.send(configure(&new.servers[name])).await;
        }
        self.worker
            .notifier
            .set_servers(crate::daemon::notify_servers(&new));
        for name in &removed {
            let _ = self
                .scheduler
                .send(Command::Remove {
                    server: name.clone(),
                })
                .await;
            // Its series go once its last upload in flight has ended (the next scrape).
            self.metrics.remove_server(name);
        }
        if new.max_concurrent_uploads != current.max_concurrent_uploads {
            let _ = self
                .scheduler
                .send(Command::SetGlobal(new.max_concurrent_uploads))
                .await;
        }
        // Failed files of added servers, before their claims (`publish_last`).
        // (Disk reads: the runtime is told this thread blocks.)
        for name in &added {
            let scan = tokio::task::block_in_place(|| failed_scan(&self.spool, name));
            let _ = self.scheduler.send(scan).await;
        }
        // Claims left by an earlier run for a server configured again.
        match tokio::task::block_in_place(|| self.spool.recover_servers(&added)) {
            Ok(claims) => {
                for c in claims {
                    let _ = self.scheduler.send(Job::add(c)).await;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: cannot read earlier claims of added servers")
            }
        }
        if new.ledger_retention != current.ledger_retention
            && let Some(ledger) = &self.worker.ledger
        {
            ledger.set_retention(new.ledger_retention);
        }
        self.discovery.reconfigure(rules(&new));
        self.upkeep.send_replace(crate::upkeep::plan(&new));
        set_bandwidth(&new);
        tracing::info!(added = ?added, changed = ?changed, removed = ?removed, "SIGHUP: configuration reloaded");
        self.cfg = new;
    }
}
