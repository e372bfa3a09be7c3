//! outpost's delivery notifications (issue 14): each delivery of a server with `notify`
//! targets gets one notification per target, written to the ledger's outbox in the
//! transaction of its `delivered` row ([`notices`], called by the worker), and sent by
//! one loop ([`run`]) that reads what is due, sends it, and answers the ledger: sent,
//! or retried later with backoff. At least once and durable: a kill -9 at any point
//! loses nothing committed, and may send a notification again (receivers deduplicate by
//! event id). A target that is down only grows its backlog: delivery of files never
//! waits for a notification.
//!
//! `event.rs` says what a notification holds, `sign.rs` how a webhook is signed,
//! `target.rs` how each kind of target is sent to, `sender.rs` the loop.

mod event;
mod sender;
mod sign;
mod target;

use std::collections::HashMap;
use std::sync::Arc;

use outpost_config::Server;
use outpost_ledger::{Delivered, Notice};
use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec};

pub use event::{BatchDone, body, url_encode};
pub use sender::{Notifier, run};
pub use sign::{EVENT_ID_HEADER, SIGNATURE_HEADER, signature};

/// The notifications of delivery `d` of `server`: one per target, the same body for
/// all. Empty when the server has no targets.
pub fn notices(server: &Server, d: &Delivered, batch: Option<&BatchDone>) -> Vec<Notice> {
    if server.notify.is_empty() {
        return Vec::new();
    }
    let body = event::body(d, &server.region, batch);
    server
        .notify
        .iter()
        .map(|t| Notice {
            target: t.name.clone(),
            body: body.clone(),
        })
        .collect()
}

/// The notification series (labels `server`, `target`), registered by the daemon.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// `outpost_notifications_sent_total`: notifications a target accepted.
    pub sent: IntCounterVec,
    /// `outpost_notification_failures_total`: attempts that failed (each is retried).
    pub failed: IntCounterVec,
    /// `outpost_notifications_pending`: notifications waiting to be sent.
    pub pending: IntGaugeVec,
    /// `outpost_notification_oldest_pending_age_seconds`: age of the oldest of them.
    pub oldest_age: GaugeVec,
}

impl Metrics {
    /// Creates the series of `server`'s targets at zero.
    pub fn add_targets(&self, server: &Server) {
        for t in &server.notify {
            let l = [server.name.as_str(), t.name.as_str()];
            self.sent.with_label_values(&l);
            self.failed.with_label_values(&l);
            self.pending.with_label_values(&l);
            self.oldest_age.with_label_values(&l);
        }
    }
}

/// The servers by name, as the notifier sees them (replaced on reload).
pub type Servers = HashMap<String, Arc<Server>>;
