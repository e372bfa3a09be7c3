//! `outpost run`: one [`Daemon`] value owns the spool, the worker (destinations), the
//! scheduler's command channel, discovery and one task tracker. [`Daemon::start`] wires
//! them in order, [`Daemon::serve`] answers signals (SIGHUP: `reload.rs`), and
//! [`Daemon::stop`] ends them in the reverse order.
//!
//! Data flow: discovery (thread) --claims--> scheduler (task) --attempts--> worker
//! tasks --> S3; a worker finishes or fails the file through the spool. The background
//! loops (watchdog, live state, lease) are in `background.rs`; verification and the
//! orphan sweep in `upkeep/`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use outpost_config::Config;
use outpost_ledger::Ledger;
use outpost_scheduler::{Command, Scheduler};
use outpost_uploader::Destination;
use outpost_watcher::{
    Discovery, DiscoveryHandle, FailedFiles, Spool, SpoolError, default_instance, run_discovery,
};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::EXIT_CONFIG;
use crate::events::Events;
use crate::http::{HttpState, serve};
use crate::metrics::Metrics;
use crate::preflight::{host_problems, load};
use crate::reload::{configure, failed_scan, rules};
use crate::sdnotify::{notify, watchdog_interval};
use crate::worker::{Job, Worker};

/// Runs the daemon; returns the exit code.
pub fn run(path: &Path) -> u8 {
    let cfg = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let problems = host_problems(&cfg, path);
    if !problems.is_empty() {
        for p in problems {
            tracing::error!("configuration error: {p}");
        }
        return EXIT_CONFIG;
    }
    crate::host::raise_descriptor_limit(cfg.servers.len());
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
    let code = rt.block_on(async {
        match Daemon::start(cfg, path).await {
            Ok(d) => d.serve().await,
            Err(code) => code,
        }
    });
    // Whatever the daemon left running (it logged what) is cancelled here.
    rt.shutdown_timeout(Duration::from_secs(1));
    code
}

/// The running daemon.
pub struct Daemon {
    /// The running configuration: a reload replaces it whole or not at all.
    pub(crate) cfg: Config,
    /// The configuration file, read again at SIGHUP.
    pub(crate) path: PathBuf,
    pub(crate) spool: Arc<Spool>,
    /// Destinations by server, and the attempts' work.
    pub(crate) worker: Arc<Worker>,
    pub(crate) metrics: Metrics,
    /// The dispatcher's commands (claims, server settings, failures).
    pub(crate) scheduler: mpsc::Sender<Command<Job>>,
    pub(crate) discovery: DiscoveryHandle,
    /// The upkeep loop's settings (verification, orphan sweep): a reload sends them.
    pub(crate) upkeep: tokio::sync::watch::Sender<crate::upkeep::Plan>,
    /// Every task of the daemon — the dispatcher, its attempts and give-ups, the HTTP
    /// endpoint, the background loops — so shutdown knows what is still running.
    tasks: TaskTracker,
    /// Ends the dispatcher, which gives uploads in flight `shutdown_grace`.
    shutdown: CancellationToken,
    /// Ends the background loops and the HTTP endpoint, once the dispatcher has ended.
    background: CancellationToken,
    dispatcher: JoinHandle<()>,
    discovery_thread: std::thread::JoinHandle<()>,
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

/// The exit code for a spool that cannot be opened or read.
fn spool_exit(e: &SpoolError) -> u8 {
    if spool_error_is_config(e) {
        EXIT_CONFIG
    } else {
        1
    }
}

/// The servers as the notifier sees them.
pub(crate) fn notify_servers(cfg: &Config) -> outpost_notify::Servers {
    cfg.servers
        .iter()
        .map(|(n, s)| (n.clone(), Arc::new(s.clone())))
        .collect()
}

/// The delivery ledger in `state_dir`, with its retention. A ledger that cannot be
/// opened is logged and done without: deliveries never wait for it.
fn open_ledger(cfg: &Config) -> Option<Arc<Ledger>> {
    let path = outpost_ledger::path_in(&cfg.state_dir);
    match Ledger::open(&path) {
        Ok(l) => {
            l.set_retention(cfg.ledger_retention);
            Some(Arc::new(l))
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot open the delivery ledger; delivering without it (`outpost deliveries` and `audit` will not know these deliveries)");
            None
        }
    }
}

impl Daemon {
    /// Opens the spool, builds every destination, binds the endpoint, starts the
    /// dispatcher, hands it the claims of the last run, then starts discovery and the
    /// background loops. On an error: logged, and the exit code.
    pub async fn start(cfg: Config, path: &Path) -> Result<Daemon, u8> {
        tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %path.display(), servers = cfg.servers.len(), "starting");
        let metrics = Metrics::new().map_err(|e| {
            tracing::error!(error = %e, "cannot register metrics");
            1
        })?;
        let names: Vec<String> = cfg.servers.keys().cloned().collect();
        for n in &names {
            metrics.add_server(n);
        }
        // One byte budget for every part and body buffer of every upload.
        outpost_uploader::set_buffer_budget(cfg.max_buffer_memory);
        crate::reload::set_bandwidth(&cfg);
        let instance = cfg.instance.clone().unwrap_or_else(default_instance);
        let spool = Spool::open(&cfg.spool_dir, &instance, &names).map_err(|e| {
            tracing::error!(error = %e, "cannot open the spool");
            spool_exit(&e)
        })?;
        let spool = Arc::new(spool);
        let mut dests = HashMap::new();
        for s in cfg.servers.values() {
            let d = Destination::new(Arc::new(s.clone())).await.map_err(|e| {
                tracing::error!(server = %s.name, error = %e, "configuration error");
                EXIT_CONFIG
            })?;
            dests.insert(s.name.clone(), d);
        }
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| {
                tracing::error!(listen = %cfg.listen, error = %e, "cannot listen");
                // Not this host's address, a privileged port, a port another service
                // holds: `listen` must change (a restart cannot help).
                use std::io::ErrorKind::{AddrInUse, AddrNotAvailable, PermissionDenied};
                if matches!(e.kind(), AddrInUse | AddrNotAvailable | PermissionDenied) {
                    EXIT_CONFIG
                } else {
                    1
                }
            })?;
        let events = Events {
            metrics: metrics.clone(),
        };
        let ledger = open_ledger(&cfg);
        let manifests = Arc::new(Notify::new());
        let notifier = outpost_notify::Notifier::new(notify_servers(&cfg), metrics.notify.clone());
        let worker = Arc::new(Worker {
            spool: spool.clone(),
            dests: RwLock::new(dests),
            events: events.clone(),
            ledger: ledger.clone(),
            instance: instance.clone(),
            manifests: manifests.clone(),
            notifier: notifier.clone(),
        });
        let tasks = TaskTracker::new();
        let scheduler =
            Scheduler::new(worker.clone(), cfg.max_concurrent_uploads).with_tracker(tasks.clone());
        let stats = scheduler.stats();
        let dispatcher_beat = scheduler.heartbeat();
        let (tx, rx) = mpsc::channel(4096);
        // The dispatcher runs before the servers are sent: two commands per server fill
        // the queue at 2,048 servers, and nothing would take them (the start hung).
        let shutdown = CancellationToken::new();
        let dispatcher = tasks.spawn(scheduler.run(rx, shutdown.clone(), cfg.shutdown_grace));
        for s in cfg.servers.values() {
            let _ = tx.send(configure(s)).await;
            // Before any claim: a control file must not go out ahead of a failed sibling.
            let _ = tx.send(failed_scan(&spool, &s.name)).await;
        }
        let claims = spool.recover().map_err(|e| {
            tracing::error!(error = %e, "cannot read the claims of the last run");
            spool_exit(&e)
        })?;
        if !claims.is_empty() {
            tracing::info!(
                files = claims.len(),
                "resuming files claimed before the last stop"
            );
        }
        for c in claims {
            let _ = tx.send(Job::add(c)).await;
        }
        let background = CancellationToken::new();
        let http_state = Arc::new(HttpState {
            metrics: metrics.clone(),
            stats: stats.clone(),
            ledger: ledger.clone(),
            ready: Default::default(),
        });
        tasks.spawn(serve(listener, http_state.clone(), background.clone()));
        tracing::info!(listen = %cfg.listen, "serving /metrics, /healthz, /readyz");

        let discovery = Discovery {
            spool: spool.clone(),
            servers: rules(&cfg),
            rescan_interval: cfg.rescan_interval,
            events: Arc::new(events),
            sink: {
                let tx = tx.clone();
                Box::new(move |c| tx.blocking_send(Job::add(c)).is_ok())
            },
            on_ready: Box::new(move || {
                http_state.ready.store(true, Ordering::SeqCst);
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
        let (disc, discovery_thread) = run_discovery(discovery).map_err(|e| {
            tracing::error!(error = %e, "cannot start discovery");
            1
        })?;
        if let Some(every) = watchdog_interval() {
            let (d, b, t, s) = (
                disc.clone(),
                dispatcher_beat,
                tx.clone(),
                background.clone(),
            );
            tasks.spawn(crate::background::watchdog(every, d, b, t, s));
        }
        let upkeep = Arc::new(crate::upkeep::Upkeep {
            worker: worker.clone(),
            findings: Arc::default(),
        });
        tasks.spawn(crate::background::live_state(
            spool.clone(),
            stats,
            upkeep.findings.clone(),
            background.clone(),
        ));
        let (plans, plan_rx) = tokio::sync::watch::channel(crate::upkeep::plan(&cfg));
        tasks.spawn(crate::upkeep::run(upkeep, plan_rx, background.clone()));
        tasks.spawn(crate::manifests::run(
            worker.clone(),
            manifests,
            background.clone(),
        ));
        if let Some(l) = &ledger {
            tasks.spawn(outpost_notify::run(
                notifier,
                l.clone(),
                l.path().to_owned(),
                background.clone(),
            ));
        }
        tasks.spawn(crate::background::lease(
            spool.clone(),
            cfg.lease_ttl,
            tx.clone(),
            background.clone(),
        ));
        Ok(Daemon {
            cfg,
            path: path.to_owned(),
            spool,
            worker,
            metrics,
            scheduler: tx,
            discovery: disc,
            upkeep: plans,
            tasks,
            shutdown,
            background,
            dispatcher,
            discovery_thread,
        })
    }

    /// Answers signals until SIGTERM or SIGINT, then stops; returns the exit code.
    pub async fn serve(mut self) -> u8 {
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
                    self.reload().await;
                    notify("READY=1");
                }
            }
        }
        self.stop().await;
        0
    }

    /// Stops discovery, then the dispatcher (uploads in flight get `shutdown_grace`),
    /// then the loops; waits for what remains.
    async fn stop(self) {
        notify("STOPPING=1");
        let stopping = Instant::now();
        self.discovery.stop();
        let thread = self.discovery_thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        drop(self.scheduler);
        self.shutdown.cancel();
        let _ = self.dispatcher.await;
        self.background.cancel();
        self.tasks.close();
        // Left: give-ups (an abort, then the move to `.failed/`), attempts that did not
        // end when interrupted, the loops ending. They get what remains of the grace, at
        // least 10 s; whatever still runs then is cancelled when the runtime stops —
        // safe, as each step is: the file stays claimed (with its multipart journal)
        // and is taken up again at the next start.
        let wait = self
            .cfg
            .shutdown_grace
            .saturating_sub(stopping.elapsed())
            .max(Duration::from_secs(10));
        if tokio::time::timeout(wait, self.tasks.wait()).await.is_err() {
            tracing::warn!(
                tasks = self.tasks.len(),
                "tasks still running at exit are cancelled; their files stay claimed and are taken up at the next start"
            );
        }
        self.spool.remove_live();
        // What is queued for the ledger is committed before the process ends.
        if let Some(ledger) = &self.worker.ledger {
            let _ = tokio::time::timeout(Duration::from_secs(5), ledger.sync()).await;
        }
        tracing::info!("stopped");
    }
}
