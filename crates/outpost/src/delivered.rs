//! The end of a file, either way. Delivered: its batch's facts (before anything else
//! forgets it), its ledger row (acknowledged, within a bound), the spool's finish, the
//! event, and a nudge to the manifest loop when it completed its batch. Given up: its
//! record and move to `.failed/`, its ledger row, the event. Every disk step runs off
//! the runtime's threads; the ledger never blocks or loses a delivery.

use std::time::{Duration, SystemTime};

use outpost_config::AfterUpload;
use outpost_ledger::{Delivered, Failed, Mode, Outcome, unix_millis};
use outpost_scheduler::History;
use outpost_uploader::{Destination, ObjectInfo, PartChecksum, UploadMode, Uploaded, WriteOutcome};
use outpost_watcher::{Claim, ExistingObject, FailReason, FailRecord, rfc3339};

use crate::manifest::FileFacts;
use crate::worker::{Job, Worker, blocking};

/// How long a delivery waits for its ledger row to be committed before the spool
/// forgets the file. Past it the file is finished anyway (the row may still come);
/// a delivery is never held up by the ledger for longer.
const LEDGER_WAIT: Duration = Duration::from_secs(2);

/// Why a file ends in `.failed/`, and what to say of it.
pub(crate) struct Ended {
    /// The reason class (record, metric label, ledger).
    pub reason: FailReason,
    /// Its attempts, when the scheduler gave up on it.
    pub history: Option<History>,
    /// The error, in words.
    pub why: String,
    /// `exists`: the object already at the key.
    pub existing: Option<ExistingObject>,
}

impl Ended {
    /// An end without an object already at the key.
    pub fn new(reason: FailReason, history: Option<&History>, why: String) -> Ended {
        Ended {
            reason,
            history: history.cloned(),
            why,
            existing: None,
        }
    }
}

/// The object the store reported at a key (`overwrite: never`), for a failure record.
pub(crate) fn existing_object(o: &ObjectInfo) -> ExistingObject {
    ExistingObject {
        size: o.size,
        etag: o.etag.clone(),
        last_modified: o.last_modified.map(rfc3339),
    }
}

/// The whole-object checksum a delivery is recorded with: the configured one where it
/// is computable, else CRC64NVME (always computed while reading).
fn checksum_of(up: &Uploaded) -> (&'static str, String) {
    match &up.checksum {
        Some(PartChecksum::Crc32c(v)) => ("crc32c", v.clone()),
        Some(PartChecksum::Crc64Nvme(v)) => ("crc64nvme", v.clone()),
        Some(PartChecksum::Md5(v)) => ("md5", v.clone()),
        None => ("crc64nvme", up.crc64nvme_base64()),
    }
}

impl Worker {
    /// S3 acknowledged `job`'s file (`up`) on `attempt`, which took `took`. An error
    /// (the facts its batch's manifest needs could not be kept) leaves the file claimed:
    /// the worker tries this step again on the next attempt, without sending the file
    /// again — its manifest must never miss it.
    pub(crate) async fn delivered(
        &self,
        dest: &Destination,
        job: &Job,
        up: &Uploaded,
        attempt: u32,
        took: Duration,
    ) -> Result<(), String> {
        let claim = &job.claim;
        let server = claim.server.as_str();
        let key = dest.server.key_for(&claim.rel);
        let now = SystemTime::now();
        let (algorithm, checksum) = checksum_of(up);
        // The batch's facts first: once the spool forgets the file, nothing else knows
        // what its manifest must say.
        let batch = match dest.server.manifest {
            Some(_) => {
                let (spool, s, r) = (self.spool.clone(), server.to_owned(), claim.rel.clone());
                blocking(move || spool.batch_of(&s, &r))
                    .await
                    .map_err(|e| format!("cannot read its batch's record: {e}"))?
            }
            None => None,
        };
        if let Some(b) = &batch {
            let facts = FileFacts {
                key: key.clone(),
                relative_path: claim.rel.clone(),
                size: up.bytes,
                crc64nvme: up.crc64nvme_base64(),
                checksum_algorithm: algorithm.to_owned(),
                checksum: checksum.clone(),
                etag: up.etag.clone().unwrap_or_default(),
                version_id: up.version_id.clone(),
                delivered_at: rfc3339(now),
                seq: claim.seq,
                md5_hex: up.measured.as_ref().map(|m| m.md5_hex.clone()),
                lines: up.measured.as_ref().map(|m| m.lines),
            }
            .to_bytes();
            let (spool, s, r, bn) = (
                self.spool.clone(),
                server.to_owned(),
                claim.rel.clone(),
                b.clone(),
            );
            let complete = blocking(move || spool.batch_file_delivered(&s, &bn, &r, &facts))
                .await
                .map_err(|e| format!("cannot keep its facts for batch {b}'s manifest: {e}"))?;
            if complete {
                self.manifests.notify_one();
            }
        }
        if let Some(ledger) = &self.ledger {
            let row = Delivered {
                server: server.to_owned(),
                bucket: dest.server.bucket.clone(),
                key: key.clone(),
                size: up.bytes,
                checksum_algorithm: algorithm.to_owned(),
                checksum,
                store_checksum: up.store_checksum.as_ref().map(|c| c.value.clone()),
                etag: up.etag.clone(),
                version_id: up.version_id.clone(),
                relative_path: claim.rel.clone(),
                dropped_at: unix_millis(claim.dropped_at()),
                first_attempt: unix_millis(job.first_attempt()),
                delivered_at: unix_millis(now),
                attempts: attempt,
                duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                mode: match up.mode {
                    UploadMode::Single => Mode::Single,
                    UploadMode::Multipart => Mode::Multipart,
                    UploadMode::Fallback => Mode::Fallback,
                },
                outcome: match up.outcome {
                    WriteOutcome::Written => Outcome::Written,
                    WriteOutcome::AlreadyPresent => Outcome::AlreadyPresent,
                },
                instance: self.instance.clone(),
                seq: claim.seq,
                batch,
            };
            // Committed before the spool forgets the file, so a kill -9 cannot leave a
            // delivery without its row (nor its notifications, written with it); a slow
            // or broken ledger only costs the wait.
            let notices = outpost_notify::notices(&dest.server, &row, None);
            let notify = !notices.is_empty();
            let _ = tokio::time::timeout(LEDGER_WAIT, ledger.record_with(row, notices)).await;
            if notify {
                self.notifier.nudge();
            }
        } else {
            // No ledger this run (it could not be opened): the row is lost, and counted.
            self.events.metrics.ledger_dropped.inc();
        }
        let archive = dest.server.after_upload == AfterUpload::Archive;
        if let Err(e) = self.finish(claim, archive).await {
            // Delivered; the claim stays and is published again after a restart
            // (at-least-once), so say so loudly.
            tracing::error!(server, rel = %claim.rel, error = %e, "uploaded but cannot finish the file in the spool");
        }
        self.events.uploaded(server, &key, up, took);
        Ok(())
    }

    /// Deletes or archives a delivered claim, off the runtime's threads.
    pub(crate) async fn finish(
        &self,
        claim: &Claim,
        archive: bool,
    ) -> Result<Option<std::path::PathBuf>, outpost_watcher::SpoolError> {
        let (spool, c) = (self.spool.clone(), claim.clone());
        blocking(move || spool.finish(&c, archive)).await
    }

    /// Moves a claim to `.failed/` with its record (fsyncs: off the runtime's threads);
    /// records, logs and counts it.
    pub(crate) async fn fail(&self, dest: &Destination, claim: &Claim, ended: Ended) {
        let reason = ended.reason.as_str();
        let history = ended.history.as_ref();
        let key = dest.server.key_for(&claim.rel);
        let attempts = history.map_or(1, |h| h.attempts);
        let record = FailRecord {
            server: claim.server.clone(),
            relative_path: claim.rel.clone(),
            file: String::new(),
            reason: reason.to_owned(),
            bucket: dest.server.bucket.clone(),
            key: key.clone(),
            attempts,
            first_attempt: history.map(|h| rfc3339(h.first_attempt)),
            last_attempt: Some(rfc3339(
                history.map_or_else(SystemTime::now, |h| h.last_attempt),
            )),
            last_error: ended.why.clone(),
            failed_at: rfc3339(SystemTime::now()),
            file_bytes: None,
            relative_path_bytes: None,
            existing_object: ended.existing,
        };
        let (spool, c) = (self.spool.clone(), claim.clone());
        match blocking(move || spool.fail(&c, record)).await {
            Ok(path) => {
                if self.ledger.is_none() {
                    self.events.metrics.ledger_dropped.inc();
                }
                if let Some(ledger) = &self.ledger {
                    // Best effort, not waited for: the file is safe in `.failed/`.
                    drop(ledger.record(Failed {
                        server: claim.server.clone(),
                        bucket: dest.server.bucket.clone(),
                        key,
                        relative_path: claim.rel.clone(),
                        reason: reason.to_owned(),
                        record_path: path.display().to_string(),
                        at: unix_millis(SystemTime::now()),
                        attempts,
                        instance: self.instance.clone(),
                    }));
                }
                self.events.failed(&claim.server, reason, &path, &ended.why)
            }
            Err(e) => {
                tracing::error!(server = %claim.server, rel = %claim.rel, error = %e, "cannot move file to .failed; it stays claimed and is retried after restart")
            }
        }
    }
}
