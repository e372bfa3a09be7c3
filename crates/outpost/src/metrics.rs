//! The Prometheus registry: every series of SPEC §5, created at start-up at zero for
//! each configured server and each known class and reason.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Registers `c` (the registry checks its name and labels) and keeps a handle to render.
fn add<C: Collector + Clone + 'static>(
    registry: &Registry,
    kept: &RefCell<Vec<Box<dyn Collector>>>,
    c: &C,
) -> prometheus::Result<()> {
    registry.register(Box::new(c.clone()))?;
    kept.borrow_mut().push(Box::new(c.clone()));
    Ok(())
}

/// Removes every series of one server from one vector (all its label sets).
type Sweep = Arc<dyn Fn(&str) + Send + Sync>;

fn sweeper<T: MetricVecBuilder + 'static>(v: MetricVec<T>) -> Sweep {
    Arc::new(move |server| {
        for family in v.collect() {
            for m in family.get_metric() {
                let labels: HashMap<&str, &str> = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name(), l.value()))
                    .collect();
                if labels.get("server") == Some(&server) {
                    let _ = v.remove(&labels);
                }
            }
        }
    })
}

/// All metrics of the daemon.
#[derive(Clone)]
pub struct Metrics {
    /// What `/metrics` renders, one family at a time ([`Metrics::render`]).
    collectors: Arc<Vec<Box<dyn Collector>>>,
    /// The registry that checked every name and label at start-up; its own gathering
    /// is what the tests compare [`Metrics::render`] with.
    #[cfg_attr(not(test), allow(dead_code, reason = "read by the tests only"))]
    registry: Registry,
    /// `outpost_files_uploaded_total{server}`: files S3 acknowledged whole.
    pub files_uploaded: IntCounterVec,
    /// `outpost_bytes_uploaded_total{server}`: their bytes.
    pub bytes_uploaded: IntCounterVec,
    /// `outpost_upload_errors_total{server,class}`: failed attempts by error class.
    pub upload_errors: IntCounterVec,
    /// `outpost_files_failed_total{server,reason}`: files moved to `.failed/`.
    pub files_failed: IntCounterVec,
    /// `outpost_files_rejected_total{server,reason}`: spool entries refused (links…).
    pub files_rejected: IntCounterVec,
    /// Multipart uploads that may stay open (an abort or listing failed): billed parts.
    pub multipart_abort_failures: IntCounterVec,
    /// Pending files per server, copied from the scheduler at each scrape.
    pub queue_files: IntGaugeVec,
    /// Their bytes.
    pub queue_bytes: IntGaugeVec,
    /// Uploads in flight per server.
    pub in_flight: IntGaugeVec,
    /// Age of the oldest pending file (from its drop time): the delivery-lag alert.
    pub oldest_age: GaugeVec,
    /// 1 while a server refuses every file (probing), else 0.
    pub blocked: IntGaugeVec,
    /// 0 while files of a server wait for its delivery window to open, else 1.
    pub window_open: IntGaugeVec,
    /// Unix time of the server's last acknowledged upload.
    pub last_success: GaugeVec,
    /// `outpost_destination_ok{server}`: 1 when the last background verification
    /// passed, 0 when it failed; absent before the first (and with it off).
    pub destination_ok: IntGaugeVec,
    /// `outpost_destination_verified_timestamp_seconds{server}`: Unix time the last
    /// background verification ended, whatever its verdict.
    pub verified_at: GaugeVec,
    /// `outpost_orphan_uploads_aborted_total{server}`: orphaned multipart uploads of
    /// ours the sweep aborted.
    pub orphans_aborted: IntCounterVec,
    /// Seconds from an attempt's start to S3's acknowledgement.
    pub duration: HistogramVec,
    /// `outpost_ledger_errors_total`: ledger rows a database error lost, and failed
    /// prune steps (copied from the ledger at each scrape).
    pub ledger_errors: IntCounter,
    /// `outpost_ledger_dropped_total`: ledger rows never queued (queue full, writer gone,
    /// or no ledger this run). Moved by the ledger's own count and by the worker.
    pub ledger_dropped: IntCounter,
    /// The notification series (`server`, `target`).
    pub notify: outpost_notify::Metrics,
    /// One sweep per vector with a `server` label.
    sweeps: Arc<Vec<Sweep>>,
    /// Servers removed by a reload (and not added again): their series are dropped
    /// once the scheduler has forgotten them, and again if a late event made one anew.
    removed: Arc<Mutex<HashSet<String>>>,
}

/// Known failure reasons beyond the watcher's (a claimed file that vanished).
pub const EXTRA_FAIL_REASONS: [&str; 1] = ["vanished"];

impl Metrics {
    /// Registers everything.
    pub fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let kept: RefCell<Vec<Box<dyn Collector>>> = RefCell::default();
        let sweeps: RefCell<Vec<Sweep>> = RefCell::default();
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                add(&registry, &kept, &c)?;
                sweeps.borrow_mut().push(sweeper(c.clone()));
                Ok(c)
            };
        let igauge = |name: &str, help: &str| -> prometheus::Result<IntGaugeVec> {
            let g = IntGaugeVec::new(Opts::new(name, help), &["server"])?;
            add(&registry, &kept, &g)?;
            sweeps.borrow_mut().push(sweeper(g.clone()));
            Ok(g)
        };
        let fgauge = |name: &str, help: &str| -> prometheus::Result<GaugeVec> {
            let g = GaugeVec::new(Opts::new(name, help), &["server"])?;
            add(&registry, &kept, &g)?;
            sweeps.borrow_mut().push(sweeper(g.clone()));
            Ok(g)
        };
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "outpost_upload_duration_seconds",
                "Time per file from the start of its upload to S3's acknowledgement.",
            )
            .buckets(vec![
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                600.0, 1800.0, 3600.0,
            ]),
            &["server"],
        )?;
        add(&registry, &kept, &duration)?;
        sweeps.borrow_mut().push(sweeper(duration.clone()));
        let build_info = Gauge::with_opts(
            Opts::new(
                "outpost_build_info",
                "Always 1; the version label says which build runs.",
            )
            .const_label("version", env!("CARGO_PKG_VERSION")),
        )?;
        build_info.set(1.0);
        add(&registry, &kept, &build_info)?;
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        kept.borrow_mut().push(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        let plain = |name: &str, help: &str| -> prometheus::Result<IntCounter> {
            let c = IntCounter::new(name, help)?;
            add(&registry, &kept, &c)?;
            Ok(c)
        };
        let ledger_errors = plain(
            "outpost_ledger_errors_total",
            "Delivery-ledger rows lost to a database error, and failed prune steps (deliveries go on).",
        )?;
        let ledger_dropped = plain(
            "outpost_ledger_dropped_total",
            "Delivery-ledger rows never queued (queue full or writer gone).",
        )?;
        let target_gauge = |name: &str, help: &str| -> prometheus::Result<GaugeVec> {
            let g = GaugeVec::new(Opts::new(name, help), &["server", "target"])?;
            add(&registry, &kept, &g)?;
            sweeps.borrow_mut().push(sweeper(g.clone()));
            Ok(g)
        };
        let pending = IntGaugeVec::new(
            Opts::new(
                "outpost_notifications_pending",
                "Delivery notifications waiting in the outbox, per target.",
            ),
            &["server", "target"],
        )?;
        add(&registry, &kept, &pending)?;
        sweeps.borrow_mut().push(sweeper(pending.clone()));
        let notify = outpost_notify::Metrics {
            sent: counter(
                "outpost_notifications_sent_total",
                "Delivery notifications a target accepted.",
                &["server", "target"],
            )?,
            failed: counter(
                "outpost_notification_failures_total",
                "Attempts to send a delivery notification that failed (each is retried).",
                &["server", "target"],
            )?,
            pending,
            oldest_age: target_gauge(
                "outpost_notification_oldest_pending_age_seconds",
                "Age of the oldest delivery notification not yet sent, from its delivery.",
            )?,
        };
        let mut metrics = Metrics {
            notify,
            ledger_errors,
            ledger_dropped,
            files_uploaded: counter(
                "outpost_files_uploaded_total",
                "Files acknowledged by S3.",
                &["server"],
            )?,
            bytes_uploaded: counter(
                "outpost_bytes_uploaded_total",
                "Bytes of files acknowledged by S3.",
                &["server"],
            )?,
            upload_errors: counter(
                "outpost_upload_errors_total",
                "Failed upload attempts, by error class.",
                &["server", "class"],
            )?,
            files_failed: counter(
                "outpost_files_failed_total",
                "Files moved to .failed/, by reason.",
                &["server", "reason"],
            )?,
            files_rejected: counter(
                "outpost_files_rejected_total",
                "Spool entries refused (symlinks, special files, unreadable), by reason.",
                &["server", "reason"],
            )?,
            multipart_abort_failures: counter(
                "outpost_multipart_abort_failures_total",
                "Multipart uploads outpost began and could not abort (or look for), left to the bucket's lifecycle rule.",
                &["server"],
            )?,
            queue_files: igauge(
                "outpost_queue_files",
                "Files not yet acknowledged (waiting or in flight).",
            )?,
            queue_bytes: igauge(
                "outpost_queue_bytes",
                "Bytes of files not yet acknowledged.",
            )?,
            in_flight: igauge("outpost_uploads_in_flight", "Files being uploaded now.")?,
            oldest_age: fgauge(
                "outpost_oldest_pending_age_seconds",
                "Age of the oldest file not yet acknowledged, from its modification time.",
            )?,
            blocked: igauge(
                "outpost_server_blocked",
                "1 while the destination refuses us and uploads to it are paused.",
            )?,
            window_open: igauge(
                "outpost_server_window_open",
                "0 while files of the server wait for its delivery window to open, else 1.",
            )?,
            last_success: fgauge(
                "outpost_last_success_timestamp_seconds",
                "Unix time of the last acknowledged file since start (0 before the first).",
            )?,
            destination_ok: igauge(
                "outpost_destination_ok",
                "1 when the last background verification of the destination passed, 0 when it failed.",
            )?,
            verified_at: fgauge(
                "outpost_destination_verified_timestamp_seconds",
                "Unix time the last background verification ended, whatever its result.",
            )?,
            orphans_aborted: counter(
                "outpost_orphan_uploads_aborted_total",
                "Multipart uploads outpost began and left open (older than orphan_age, no claim working on them) that the sweep aborted.",
                &["server"],
            )?,
            duration,
            collectors: Arc::new(kept.into_inner()),
            registry,
            sweeps: Arc::default(),
            removed: Arc::default(),
        };
        metrics.sweeps = Arc::new(sweeps.into_inner());
        Ok(metrics)
    }

    /// Creates every series of `server` at zero.
    pub fn add_server(&self, server: &str) {
        self.removed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(server);
        self.files_uploaded.with_label_values(&[server]);
        self.bytes_uploaded.with_label_values(&[server]);
        for c in outpost_uploader::ErrorClass::ALL {
            self.upload_errors.with_label_values(&[server, c.as_str()]);
        }
        for r in outpost_watcher::FailReason::ALL {
            self.files_failed.with_label_values(&[server, r.as_str()]);
        }
        for r in EXTRA_FAIL_REASONS {
            self.files_failed.with_label_values(&[server, r]);
        }
        for r in outpost_watcher::RejectReason::ALL {
            if r != outpost_watcher::RejectReason::UnknownServer {
                self.files_rejected.with_label_values(&[server, r.as_str()]);
            }
        }
        self.multipart_abort_failures.with_label_values(&[server]);
        self.orphans_aborted.with_label_values(&[server]);
        self.queue_files.with_label_values(&[server]);
        self.queue_bytes.with_label_values(&[server]);
        self.in_flight.with_label_values(&[server]);
        self.oldest_age.with_label_values(&[server]);
        self.blocked.with_label_values(&[server]);
        self.window_open.with_label_values(&[server]).set(1);
        self.last_success.with_label_values(&[server]);
        self.duration.with_label_values(&[server]);
    }

    /// Drops every series of `server` (a reload removed it) as soon as the scheduler
    /// has forgotten it — its uploads in flight ended — at the next [`Metrics::refresh`].
    pub fn remove_server(&self, server: &str) {
        self.removed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(server.to_owned());
    }

    /// Copies the ledger's error counts into their counters (with a ledger, every
    /// dropped row is the ledger's to count).
    pub fn refresh_ledger(&self, ledger: &outpost_ledger::Ledger) {
        for (c, now) in [
            (&self.ledger_errors, ledger.errors()),
            (&self.ledger_dropped, ledger.dropped()),
        ] {
            c.inc_by(now.saturating_sub(c.get()));
        }
    }

    /// Copies the scheduler's live totals into the gauges; drops the series of removed
    /// servers the scheduler no longer knows.
    pub fn refresh(&self, stats: &outpost_scheduler::Stats) {
        let now = std::time::SystemTime::now();
        let stats = stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
        {
            let removed = self.removed.lock().unwrap_or_else(|e| e.into_inner());
            for server in removed.iter().filter(|s| !stats.contains_key(*s)) {
                for sweep in self.sweeps.iter() {
                    sweep(server);
                }
            }
        }
        for (server, s) in stats {
            self.queue_files
                .with_label_values(&[&server])
                .set(s.queue_files as i64);
            self.queue_bytes
                .with_label_values(&[&server])
                .set(s.queue_bytes as i64);
            self.in_flight
                .with_label_values(&[&server])
                .set(s.in_flight as i64);
            let age = s
                .oldest_dropped
                .and_then(|t| now.duration_since(t).ok())
                .map_or(0.0, |d| d.as_secs_f64());
            self.oldest_age.with_label_values(&[&server]).set(age);
            self.blocked
                .with_label_values(&[&server])
                .set(i64::from(s.blocked.is_some()));
            let closed = s.window_until.is_some_and(|t| t > now) && s.queue_files > s.in_flight;
            self.window_open
                .with_label_values(&[&server])
                .set(i64::from(!closed));
        }
    }

    /// The text exposition, as `Registry::gather` orders it (families by name, series
    /// by label values, empty families left out) but gathered and written one family
    /// at a time: 10,000 servers' 510,000 series gathered at once would hold ~100 MB
    /// of descriptors until the page is written, memory the allocator keeps after.
    pub fn render(&self) -> Vec<u8> {
        let mut order: Vec<(&str, &dyn Collector)> = self
            .collectors
            .iter()
            .map(|c| {
                let name = c.desc().first().map_or("", |d| d.fq_name.as_str());
                (name, c.as_ref())
            })
            .collect();
        order.sort_by_key(|(name, _)| *name);
        let mut out = Vec::new();
        for (_, c) in order {
            let mut families = c.collect();
            families.sort_by(|a, b| a.name().cmp(b.name()));
            for mut family in families {
                if family.get_metric().is_empty() {
                    continue;
                }
                family.mut_metric().sort_by(|a, b| {
                    let (a, b) = (a.get_label(), b.get_label());
                    a.iter().map(|l| l.value()).cmp(b.iter().map(|l| l.value()))
                });
                let _ = TextEncoder::new().encode(&[family], &mut out);
            }
        }
        out
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
