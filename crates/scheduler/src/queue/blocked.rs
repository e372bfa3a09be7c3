//! A server the destination refuses: no upload starts, one probe at a time tries a
//! pending file after a growing delay, and the first file accepted unblocks it. A reader
//! changing the probe schedule or what a refusal does to the server works here; which
//! file the probe tries is [`super::server`]'s `pick`.

use std::time::Duration;

use tokio::time::Instant;

use crate::RetryPolicy;

/// Longest wait between two probes of a blocked server.
pub const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(300);

/// A server the destination refuses: no uploads start but one probe at a time.
#[derive(Debug, Clone)]
pub(super) struct Blocked {
    /// The worker's explanation (causes and fix).
    pub(super) reason: String,
    /// When the block began, for the log line when it ends.
    since: std::time::Instant,
    /// Probes that failed so far.
    probes: u32,
    /// No probe before this.
    pub(super) next_probe: Instant,
    /// The file being tried as the probe, while one is in flight.
    pub(super) probing: Option<u64>,
}

/// Delay before the `n`-th probe of a blocked server: the retry schedule capped at
/// [`MAX_PROBE_INTERVAL`], drawn in `[d/2, d]` so probes never bunch up at zero.
fn probe_delay(retry: &RetryPolicy, n: u32) -> Duration {
    let cap = retry.max.min(MAX_PROBE_INTERVAL);
    let policy = RetryPolicy {
        max: cap.max(retry.initial),
        ..*retry
    };
    let d = policy.base_delay(n.max(1));
    d / 2 + crate::full_jitter(d / 2)
}

impl Blocked {
    /// The destination refused a file of `server` (`blocked`: the server's state, `None`
    /// if it was not blocked yet): block it, or schedule the next probe.
    pub(super) fn refused(
        blocked: &mut Option<Blocked>,
        server: &str,
        reason: String,
        retry: &RetryPolicy,
    ) {
        let now = Instant::now();
        match blocked {
            None => {
                tracing::error!(server, "server blocked: {reason}");
                *blocked = Some(Blocked {
                    reason,
                    since: std::time::Instant::now(),
                    probes: 1,
                    next_probe: now + probe_delay(retry, 1),
                    probing: None,
                });
            }
            Some(b) => {
                let n = b.probes + 1;
                if b.reason != reason {
                    tracing::error!(server, "server still blocked, for another reason: {reason}");
                    b.reason = reason;
                }
                b.probes = n;
                b.next_probe = now + probe_delay(retry, n);
            }
        }
    }

    /// The probe tries file `seq`.
    pub(super) fn probe(&mut self, server: &str, seq: u64) {
        self.probing = Some(seq);
        tracing::info!(
            server,
            probe = self.probes + 1,
            "probing blocked server with one pending file"
        );
    }

    /// The attempt of `seq` ended: if it was the probe, the next may start (an attempt
    /// started before the server was blocked may end meanwhile; it ends nothing).
    pub(super) fn ended(&mut self, seq: u64) {
        if self.probing == Some(seq) {
            self.probing = None;
        }
    }

    /// A file was accepted: the block is over.
    pub(super) fn lifted(self, server: &str) {
        tracing::info!(
            server,
            blocked_seconds = self.since.elapsed().as_secs(),
            probes = self.probes,
            "destination accepts uploads again; server unblocked, delivery resumes"
        );
    }
}
