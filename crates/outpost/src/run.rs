//! `outpost run`: wires the spool, discovery, the scheduler, the uploader, the HTTP
//! endpoint, signals and systemd notifications together.
//!
//! Data flow: discovery (thread) --claims--> scheduler (task) --attempts--> worker
//! tasks --> S3; a worker finishes or fails the file through the spool.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use outpost_config::Config;
use outpost_scheduler::{Command, Scheduler};
use outpost_uploader::Destination;
use outpost_watcher::{
    Discovery, FailedFiles, ServerRule, Spool, SpoolError, default_instance, run_discovery,
};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::EXIT_CONFIG;
use crate::commands::{host_problems, load};
use crate::events::Events;
use crate::http::{HttpState, serve};
use crate::metrics::Metrics;
use crate::sdnotify::{notify, watchdog_interval};
use crate::worker::{Job, Worker};

/// Runs the daemon; returns the exit code.
pub fn run(path: &Path) -> u8 {
    let cfg = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let problems = host_problems(&cfg);
    if !problems.is_empty() {
        for p in problems {
            tracing::error!(config = %path.display(), "configuration error: {p}");
        }
        return EXIT_CONFIG;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("outpost")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return 1;
        }
    };
    let code = rt.block_on(daemon(cfg, path));
    // Whatever `daemon` left running (it logged what) is cancelled here.
    rt.shutdown_timeout(Duration::from_secs(1));
    code
}

/// Whether the spool refused to open for a reason of its layout or of this daemon's
/// configuration, which a restart cannot cure (exit 78): a link or a file where a
/// folder belongs, no permission (or a read-only file system: `ReadWritePaths=`),
/// another daemon with this `instance` on the spool. Out of memory, descriptors or
/// space, an I/O error or a stale NFS handle may pass: exit 1, restarted.
fn spool_error_is_config(e: &SpoolError) -> bool {
    use rustix::io::Errno;
    match e {
        SpoolError::Locked { .. }
        | SpoolError::NotRegular { .. }
        | SpoolError::UnknownServer(_) => true,
        SpoolError::Io { source, .. } => [
            Errno::ACCESS,
            Errno::PERM,
            Errno::ROFS,
            Errno::NOTDIR,
            Errno::ISDIR,
            Errno::LOOP,
            Errno::XDEV,
            Errno::NAMETOOLONG,
        ]
        .iter()
        .any(|n| source.raw_os_error() == Some(n.raw_os_error())),
    }
}

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
        })
        .collect()
}

async fn daemon(mut cfg: Config, path: &Path) -> u8 {
    tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %path.display(), servers = cfg.servers.len(), "starting");
    let metrics = match Metrics::new() {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "cannot register metrics");
            return 1;
        }
    };
    let names: Vec<String> = cfg.servers.keys().cloned().collect();
    for n in &names {
        metrics.add_server(n);
    }
    // One byte budget for every part and body buffer of every upload.
    outpost_uploader::set_buffer_budget(cfg.max_buffer_memory);
    let instance = cfg.instance.clone().unwrap_or_else(default_instance);
    let spool = match Spool::open(&cfg.spool_dir, &instance, &names) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(error = %e, "cannot open the spool");
            return if spool_error_is_config(&e) {
                EXIT_CONFIG
            } else {
                1
            };
        }
    };
    let mut dests = HashMap::new();
    for s in cfg.servers.values() {
        match Destination::new(Arc::new(s.clone())).await {
            Ok(d) => {
                dests.insert(s.name.clone(), d);
            }
            Err(e) => {
                tracing::error!(server = %s.name, error = %e, "configuration error");
                return EXIT_CONFIG;
            }
        }
    }
    let listener = match tokio::net::TcpListener::bind(cfg.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listen = %cfg.listen, error = %e, "cannot listen");
            // Not this host's address, a privileged port, a port another service holds:
            // `listen` must change (a restart cannot help).
            use std::io::ErrorKind::{AddrInUse, AddrNotAvailable, PermissionDenied};
            return if matches!(e.kind(), AddrInUse | AddrNotAvailable | PermissionDenied) {
                EXIT_CONFIG
            } else {
                1
            };
        }
    };
    let events = Events {
        metrics: metrics.clone(),
    };
    let worker = Arc::new(Worker {
        spool: spool.clone(),
        dests: RwLock::new(dests),
        events: events.clone(),
    });
    // Every task of the daemon — the dispatcher, its attempts and give-ups, the HTTP
    // endpoint, the watchdog, live state and lease loops — runs on this tracker, so
    // shutdown knows what is still running.
    let tasks = TaskTracker::new();
    let scheduler =
        Scheduler::new(worker.clone(), cfg.max_concurrent_uploads).with_tracker(tasks.clone());
    let stats = scheduler.stats();
    let heartbeat = scheduler.heartbeat();
    let (tx, rx) = mpsc::channel(4096);
    for s in cfg.servers.values() {
        let _ = tx.send(crate::reload::configure(s)).await;
        // Before any claim: a control file must not go out ahead of a failed sibling.
        let _ = tx.send(failed_scan(&spool, &s.name)).await;
    }
    let shutdown = CancellationToken::new();
    let sched_task = tasks.spawn(scheduler.run(rx, shutdown.clone(), cfg.shutdown_grace));
    match spool.recover() {
        Ok(claims) => {
            if !claims.is_empty() {
                tracing::info!(
                    files = claims.len(),
                    "resuming files claimed before the last stop"
                );
            }
            for c in claims {
                let _ = tx
                    .send(Command::Add {
                        server: c.server.clone(),
                        item: Job(Arc::new(c)),
                    })
                    .await;
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read the claims of the last run");
            return if spool_error_is_config(&e) {
                EXIT_CONFIG
            } else {
                1
            };
        }
    }
    let http_state = Arc::new(HttpState {
        metrics: metrics.clone(),
        stats: stats.clone(),
        ready: Default::default(),
    });
    let http_stop = CancellationToken::new();
    tasks.spawn(serve(listener, http_state.clone(), http_stop.clone()));
    tracing::info!(listen = %cfg.listen, "serving /metrics, /healthz, /readyz");

    let sink_tx = tx.clone();
    let ready_state = http_state.clone();
    let discovery = Discovery {
        spool: spool.clone(),
        servers: rules(&cfg),
        rescan_interval: cfg.rescan_interval,
        events: Arc::new(events.clone()),
        sink: Box::new(move |c| {
            sink_tx
                .blocking_send(Command::Add {
                    server: c.server.clone(),
                    item: Job(Arc::new(c)),
                })
                .is_ok()
        }),
        on_ready: Box::new(move || {
            ready_state.ready.store(true, Ordering::SeqCst);
            tracing::info!("start-up scan done; ready");
            notify("READY=1");
        }),
        on_failed: {
            let tx = tx.clone();
            Box::new(move |f| {
                let cmd = match f {
                    FailedFiles::One { server, rel } => Command::Failed { server, key: rel },
                    FailedFiles::All { server, rels } => Command::FailedScan {
                        server,
                        keys: rels,
                        after_scan: true,
                    },
                };
                let _ = tx.blocking_send(cmd);
            })
        },
    };
    let (disc, disc_thread) = match run_discovery(discovery) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "cannot start discovery");
            return 1;
        }
    };
    let bg = CancellationToken::new();
    if let Some(every) = watchdog_interval() {
        // WATCHDOG=1 only while both loops answer: a wedged dispatcher or discovery
        // thread stops the pings and systemd restarts the daemon.
        let bg = bg.clone();
        let disc = disc.clone();
        let beat = heartbeat.clone();
        let ping_tx = tx.clone();
        tasks.spawn(async move {
            let mut t = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = bg.cancelled() => return,
                    _ = t.tick() => {}
                }
                let (d0, s0) = (disc.heartbeat(), beat.load(Ordering::Relaxed));
                disc.ping();
                let _ = ping_tx.try_send(Command::Ping);
                tokio::select! {
                    _ = bg.cancelled() => return,
                    _ = tokio::time::sleep((every / 4).min(Duration::from_secs(2))) => {}
                }
                let (d1, s1) = (disc.heartbeat(), beat.load(Ordering::Relaxed));
                if d1 != d0 && s1 != s0 {
                    notify("WATCHDOG=1");
                } else {
                    tracing::error!(
                        discovery_alive = d1 != d0,
                        scheduler_alive = s1 != s0,
                        "a loop does not answer; withholding the watchdog ping"
                    );
                }
            }
        });
    }
    {
        let bg = bg.clone();
        let stats = stats.clone();
        let spool = spool.clone();
        tasks.spawn(async move {
            let mut last = String::new();
            let mut t = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = bg.cancelled() => return,
                    _ = t.tick() => {}
                }
                // A file write: off the runtime's threads.
                let now = {
                    let (spool, stats, last) = (spool.clone(), stats.clone(), last.clone());
                    crate::worker::blocking(move || write_live_state(&spool, &stats, &last)).await
                };
                if now != last {
                    notify(&format!("STATUS={}", status_line(&stats)));
                    last = now;
                }
            }
        });
    }

    {
        // Lease: renew ours; take over the claims of daemons on this spool whose lease
        // expired (a shared spool, SPEC §1).
        let bg = bg.clone();
        let spool = spool.clone();
        let ttl = cfg.lease_ttl;
        let tx = tx.clone();
        tasks.spawn(async move {
            let mut t = tokio::time::interval(ttl / 3);
            loop {
                tokio::select! {
                    _ = bg.cancelled() => return,
                    _ = t.tick() => {}
                }
                let s = spool.clone();
                let taken = tokio::task::spawn_blocking(move || {
                    if let Err(e) = s.renew_lease() {
                        tracing::error!(error = %e, "cannot renew this daemon's lease");
                    }
                    s.take_over_expired(ttl)
                })
                .await
                .unwrap_or_default();
                for c in taken {
                    let _ = tx
                        .send(Command::Add {
                            server: c.server.clone(),
                            item: Job(Arc::new(c)),
                        })
                        .await;
                }
            }
        });
    }
    let (mut term, mut int, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        _ => {
            tracing::error!("cannot install signal handlers");
            return 1;
        }
    };
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = hup.recv() => {
                notify("RELOADING=1");
                let live = crate::reload::Live {
                    spool: &spool,
                    worker: &worker,
                    scheduler: &tx,
                    discovery: &disc,
                    metrics: &metrics,
                };
                crate::reload::reload(path, &mut cfg, &live).await;
                notify("READY=1");
            }
        }
    }
    notify("STOPPING=1");
    let stopping = Instant::now();
    disc.stop();
    let _ = tokio::task::spawn_blocking(move || disc_thread.join()).await;
    drop(tx);
    // The dispatcher gives uploads in flight `shutdown_grace`, then interrupts them.
    shutdown.cancel();
    let _ = sched_task.await;
    bg.cancel();
    http_stop.cancel();
    tasks.close();
    // Left: give-ups (an abort, then the move to `.failed/`), attempts that did not end
    // when interrupted, the loops above ending. They get what remains of the grace, at
    // least 10 s; whatever still runs then is cancelled when the runtime stops — safe,
    // as each step is: the file stays claimed (with its multipart journal) and is taken
    // up again at the next start.
    let wait = cfg
        .shutdown_grace
        .saturating_sub(stopping.elapsed())
        .max(Duration::from_secs(10));
    if tokio::time::timeout(wait, tasks.wait()).await.is_err() {
        tracing::warn!(
            tasks = tasks.len(),
            "tasks still running at exit are cancelled; their files stay claimed and are taken up at the next start"
        );
    }
    spool.remove_state(LIVE);
    tracing::info!("stopped");
    0
}

/// The scheduler's command naming every file of `server` now in `.failed/`.
pub(crate) fn failed_scan(spool: &Spool, server: &str) -> Command<Job> {
    Command::FailedScan {
        server: server.to_owned(),
        keys: spool.failed_files(server),
        // Before discovery's scan: `publish_last` files wait for it.
        after_scan: false,
    }
}

/// The live state's file in the instance folder.
const LIVE: &str = "live.json";

fn status_line(stats: &outpost_scheduler::Stats) -> String {
    let s = stats.lock().unwrap_or_else(|e| e.into_inner());
    let (files, bytes, inflight) = s.values().fold((0, 0, 0), |a, v| {
        (a.0 + v.queue_files, a.1 + v.queue_bytes, a.2 + v.in_flight)
    });
    format!("{files} files ({bytes} bytes) pending, {inflight} uploading")
}

/// Writes what only the running daemon knows (files in flight, blocked servers) for
/// `outpost status`.
fn write_live_state(
    spool: &outpost_watcher::Spool,
    stats: &outpost_scheduler::Stats,
    last: &str,
) -> String {
    let s = stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let in_flight: HashMap<String, u64> = s.iter().map(|(k, v)| (k.clone(), v.in_flight)).collect();
    let blocked: HashMap<String, String> = s
        .iter()
        .filter_map(|(k, v)| v.blocked.clone().map(|b| (k.clone(), b)))
        .collect();
    let held: HashMap<String, String> = s
        .iter()
        .filter_map(|(k, v)| v.held.clone().map(|b| (k.clone(), b)))
        .collect();
    let body = serde_json::json!({
        "pid": std::process::id(),
        "in_flight": in_flight,
        "blocked": blocked,
        "held": held,
    })
    .to_string();
    if body != last
        && let Err(e) = spool.write_state(LIVE, body.as_bytes())
    {
        tracing::debug!(error = %e, "cannot write live state");
    }
    body
}

/// What running daemons on this spool report.
#[derive(Debug, Default)]
pub struct LiveState {
    /// Whether any daemon is running on this spool.
    pub running: bool,
    /// Files in flight per server.
    pub in_flight: HashMap<String, u64>,
    /// Why a server is blocked, per blocked server.
    pub blocked: HashMap<String, String>,
    /// Why `publish_last` files of a server wait, per server.
    pub held: HashMap<String, String>,
}

/// The live state of every daemon running on this spool.
pub fn read_live_state(spool: &Path) -> LiveState {
    let mut out = LiveState::default();
    // Read beneath the spool: no link followed, no FIFO waited on.
    for bytes in Spool::live_states(spool) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let alive = v["pid"]
            .as_u64()
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            continue;
        }
        out.running = true;
        if let Some(m) = v["in_flight"].as_object() {
            for (k, n) in m {
                *out.in_flight.entry(k.clone()).or_insert(0) += n.as_u64().unwrap_or(0);
            }
        }
        for (field, map) in [("blocked", &mut out.blocked), ("held", &mut out.held)] {
            if let Some(m) = v[field].as_object() {
                for (k, r) in m {
                    map.insert(k.clone(), r.as_str().unwrap_or_default().to_owned());
                }
            }
        }
    }
    out
}
