//! One function per event: each writes its log line and moves its metric together, so
//! logs and metrics never disagree.

use std::path::Path;
use std::time::{Duration, SystemTime};

use outpost_uploader::{UploadError, Uploaded};
use outpost_watcher::{FailReason, RejectReason, SpoolEvents};

use crate::metrics::Metrics;

/// What follows a failed attempt, as [`Events::upload_error`] says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Interrupted by shutdown: resumed after the restart.
    Resume,
    /// Attempted again after a backoff.
    Retry,
    /// A refusal: the scheduler blocks the server and probes it, or — when the
    /// destination accepts the server's other files — counts it against this file.
    Probe,
    /// This was the file's last attempt: it vanished, or goes to `.failed/`.
    End,
}

/// The event sink shared by every task.
#[derive(Clone)]
pub struct Events {
    /// The metrics the events move.
    pub metrics: Metrics,
}

impl Events {
    /// S3 acknowledged a file.
    pub fn uploaded(&self, server: &str, key: &str, up: &Uploaded, took: Duration) {
        let m = &self.metrics;
        m.files_uploaded.with_label_values(&[server]).inc();
        m.bytes_uploaded
            .with_label_values(&[server])
            .inc_by(up.bytes);
        m.duration
            .with_label_values(&[server])
            .observe(took.as_secs_f64());
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        m.last_success.with_label_values(&[server]).set(now);
        tracing::debug!(
            server,
            key,
            bytes = up.bytes,
            parts = up.parts,
            resumed = up.resumed,
            seconds = took.as_secs_f64(),
            "uploaded"
        );
    }

    /// An attempt failed; `next` says what follows, in the log line's words (the
    /// worker knows: a retry, a blocked server, the file's end).
    pub fn upload_error(&self, server: &str, key: &str, attempt: u32, e: &UploadError, next: Next) {
        self.metrics
            .upload_errors
            .with_label_values(&[server, e.class.as_str()])
            .inc();
        let class = e.class.as_str();
        match next {
            Next::Resume => tracing::info!(
                server,
                key,
                "upload interrupted by shutdown; it resumes after restart"
            ),
            Next::Retry => {
                tracing::warn!(server, key, attempt, class, error = %e, "upload failed; retrying")
            }
            Next::Probe => {
                tracing::warn!(server, key, attempt, error = %e, "destination refused the upload (check the bucket policy and credentials)")
            }
            Next::End => {
                tracing::warn!(server, key, attempt, class, error = %e, "upload failed; no attempt left")
            }
        }
    }

    /// A file moved to `.failed/`.
    pub fn failed(&self, server: &str, reason: &str, dest: &Path, why: &str) {
        self.metrics
            .files_failed
            .with_label_values(&[server, reason])
            .inc();
        tracing::error!(server, reason, path = %dest.display(), error = why, "file can never be published; moved to .failed (see its .error.json; `outpost requeue` puts it back)");
    }

    /// A background verification of `server` ended: `failed` names the failing step,
    /// its cause and the fix; `failed_before` says how the last one ended (`None`:
    /// none yet). Logged only when the verdict changed.
    pub fn verified(
        &self,
        server: &str,
        failed: Option<(&str, &str, &str)>,
        failed_before: Option<bool>,
    ) {
        let m = &self.metrics;
        m.destination_ok
            .with_label_values(&[server])
            .set(i64::from(failed.is_none()));
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        m.verified_at.with_label_values(&[server]).set(now);
        match (failed, failed_before) {
            (Some((step, cause, fix)), None | Some(false)) => tracing::error!(
                server,
                step,
                cause,
                fix,
                "destination verification failed: uploads to this server would be refused"
            ),
            (None, Some(true)) => tracing::info!(server, "destination verification passes again"),
            (None, None) => tracing::debug!(server, "destination verified"),
            _ => {}
        }
    }

    /// Background verification of `server` was switched off (or the server removed):
    /// its verdict series go.
    pub fn verification_off(&self, server: &str) {
        let _ = self.metrics.destination_ok.remove_label_values(&[server]);
        let _ = self.metrics.verified_at.remove_label_values(&[server]);
    }

    /// The orphan sweep aborted an upload outpost began and nothing accounts for.
    pub fn orphan_aborted(&self, server: &str, key: &str, upload_id: &str, began: Option<i64>) {
        self.metrics
            .orphans_aborted
            .with_label_values(&[server])
            .inc();
        tracing::info!(
            server,
            key,
            upload_id,
            initiated_unix = began,
            "aborted an orphaned multipart upload outpost began (older than orphan_age, no claim working on it)"
        );
    }

    /// The store refused to list `server`'s multipart uploads: the orphan sweep skips it
    /// (logged once until listing works again).
    pub fn listing_refused(&self, server: &str, why: &str) {
        tracing::warn!(
            server,
            error = why,
            "orphan sweep: listing multipart uploads is refused; orphaned uploads are left to the bucket's lifecycle rule (allow s3:ListBucketMultipartUploads to let outpost abort them)"
        );
    }

    /// Listing works again after a refusal.
    pub fn listing_allowed(&self, server: &str) {
        tracing::info!(
            server,
            "orphan sweep: listing multipart uploads works again"
        );
    }

    /// A multipart upload outpost began may stay open: an abort failed, or the uploads
    /// of a key could not be listed after a kill or a lost answer.
    pub fn multipart_abort_failed(&self, server: &str, key: &str, why: &str) {
        self.metrics
            .multipart_abort_failures
            .with_label_values(&[server])
            .inc();
        tracing::warn!(
            server,
            key,
            error = why,
            "a multipart upload may stay open (billed as storage) until the bucket's AbortIncompleteMultipartUpload lifecycle rule removes it"
        );
    }

    /// A claimed file disappeared before it was uploaded.
    pub fn vanished(&self, server: &str, rel: &str) {
        self.metrics
            .files_failed
            .with_label_values(&[server, "vanished"])
            .inc();
        tracing::error!(
            server,
            rel,
            "claimed file vanished before upload (removed by someone else); nothing to publish"
        );
    }
}

impl SpoolEvents for Events {
    fn rejected(&self, server: &str, reason: RejectReason, path: &Path) {
        if reason == RejectReason::UnknownServer {
            tracing::warn!(folder = %path.display(), "spool folder for a server that is not configured; its files are left untouched");
            return;
        }
        self.metrics
            .files_rejected
            .with_label_values(&[server, reason.as_str()])
            .inc();
        tracing::warn!(server, reason = reason.as_str(), path = %path.display(), "spool entry refused: only regular files are published, links are never followed; left in place");
    }

    fn failed_at_discovery(&self, server: &str, reason: FailReason, path: &Path) {
        self.failed(server, reason.as_str(), path, reason.as_str());
    }
}
