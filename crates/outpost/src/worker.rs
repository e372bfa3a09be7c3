//! The scheduler's [`Work`]: one attempt opens the claimed file, uploads it, and on
//! success finishes it in the spool; a file that can never go is moved to `.failed/`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime};

use outpost_ledger::Ledger;
use outpost_scheduler::{History, Item, Outcome, Work};
use outpost_uploader::{Destination, ErrorClass, Journal, UploadError, UploadOptions, Uploaded};
use outpost_watcher::{Claim, FailReason, Spool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::delivered::{Ended, existing_object};
use crate::events::{Events, Next};

/// A claimed file as the scheduler sees it, with what its attempts learn about it.
#[derive(Debug, Clone)]
pub struct Job {
    /// The claim.
    pub claim: Arc<Claim>,
    /// Shared by the scheduler's copies of this job.
    state: Arc<JobState>,
}

/// What attempts of one job learn and later attempts need.
#[derive(Debug, Default)]
struct JobState {
    /// When its first attempt of this run started (the ledger's `first_attempt`).
    first_attempt: OnceLock<SystemTime>,
    /// S3 acknowledged the file but what follows (its batch's facts) could not be done:
    /// the next attempt takes up from there instead of sending the file again.
    acked: Mutex<Option<(Uploaded, Duration)>>,
}

impl Job {
    /// The scheduler's command adding a claim (new, resumed after a restart, or taken
    /// over from a dead daemon).
    pub fn add(c: Claim) -> outpost_scheduler::Command<Job> {
        outpost_scheduler::Command::Add {
            server: c.server.clone(),
            item: Job {
                claim: Arc::new(c),
                state: Arc::new(JobState::default()),
            },
        }
    }

    /// When this run first attempted it.
    pub(crate) fn first_attempt(&self) -> SystemTime {
        *self.state.first_attempt.get_or_init(SystemTime::now)
    }
}

impl Item for Job {
    fn order_key(&self) -> &str {
        &self.claim.rel
    }
    fn seq(&self) -> u64 {
        self.claim.seq
    }
    fn size(&self) -> u64 {
        self.claim.size
    }
    fn dropped_at(&self) -> SystemTime {
        self.claim.dropped_at()
    }
    fn group(&self) -> &str {
        self.claim.rel.rsplit_once('/').map_or("", |x| x.0)
    }
    fn name(&self) -> &str {
        let rel = &self.claim.rel;
        rel.rsplit_once('/').map_or(rel.as_str(), |x| x.1)
    }
    fn taken_over(&self) -> bool {
        self.claim.taken
    }
}

/// What an error opening a claimed file means: gone (`Vanished`), never readable by
/// this daemon (`Unreadable`: EACCES, EPERM, a link), or the daemon's own passing
/// trouble (`Transient`: EMFILE, ENFILE, EIO, ESTALE, ENOMEM, …) — never a reason to
/// move a good file to `.failed/`.
fn open_error_class(e: &outpost_watcher::SpoolError) -> ErrorClass {
    match e.io_error() {
        Some(io) => UploadError::io("open", io).class,
        // Not an OS error (e.g. the server was removed by a reload): try again later.
        None => ErrorClass::Transient,
    }
}

/// What follows a passing failure: a retry, or — on the last attempt the server's
/// `retry.max_attempts` allows — the file's end (`.failed/`).
fn retry_or_end(dest: &Destination, attempt: u32) -> Next {
    if attempt >= dest.server.retry.max_attempts {
        Next::End
    } else {
        Next::Retry
    }
}

/// The spool-kept journal of one claim.
struct ClaimJournal<'a> {
    spool: &'a Spool,
    claim: &'a Claim,
    events: &'a Events,
    /// Where the uploads begun and ended are recorded (the orphan sweep's knowledge).
    ledger: Option<&'a Ledger>,
}

/// The journal is read and written (with fsyncs) from inside an upload; the runtime is
/// told this thread blocks, so it moves its other tasks elsewhere meanwhile.
impl Journal for ClaimJournal<'_> {
    fn load(&self) -> Option<Vec<u8>> {
        tokio::task::block_in_place(|| self.spool.journal(self.claim))
    }
    fn save(&self, bytes: &[u8]) -> std::io::Result<()> {
        tokio::task::block_in_place(|| {
            self.spool
                .save_journal(self.claim, bytes)
                .map_err(std::io::Error::other)
        })
    }
    fn clear(&self) {
        tokio::task::block_in_place(|| self.spool.clear_journal(self.claim))
    }
    fn spool_journals(&self) -> std::io::Result<Vec<Vec<u8>>> {
        tokio::task::block_in_place(|| self.spool.journals_on_spool())
    }
    fn abort_failed(&self, key: &str, why: &str) {
        self.events
            .multipart_abort_failed(&self.claim.server, key, why);
    }
    fn still_ours(&self) -> bool {
        tokio::task::block_in_place(|| self.spool.holds(self.claim))
    }
    fn upload_begun(&self, bucket: &str, key: &str, upload_id: &str) {
        if let Some(l) = self.ledger {
            l.upload_begun(&self.claim.server, bucket, key, upload_id);
        }
    }
    fn upload_ended(&self, bucket: &str, upload_id: &str) {
        if let Some(l) = self.ledger {
            l.upload_ended(bucket, upload_id);
        }
    }
}

/// Uploads claimed files to their server's destination.
pub struct Worker {
    /// The spool, for opening claims and moving them after.
    pub spool: Arc<Spool>,
    /// Destinations by server name (replaced whole on reload).
    pub dests: RwLock<HashMap<String, Destination>>,
    /// Logs and metrics.
    pub events: Events,
    /// The delivery ledger; `None` when it could not be opened (deliveries go on).
    pub ledger: Option<Arc<Ledger>>,
    /// Delivery notifications: nudged when a delivery's are recorded.
    pub notifier: Arc<outpost_notify::Notifier>,
    /// This daemon's instance name (ledger rows).
    pub instance: String,
    /// Wakes the manifest loop when a delivery completed a batch.
    pub manifests: Arc<Notify>,
}

/// Runs file-system work (opens, renames, fsyncs) on the blocking pool, so a slow disk
/// or a stalled NFS server never holds a runtime thread (uploads, the HTTP endpoint).
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

impl Worker {
    pub(crate) fn dest(&self, server: &str) -> Option<Destination> {
        self.dests
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(server)
            .cloned()
    }
}

impl Worker {
    /// What follows S3's acknowledgement of `up`; when it cannot be done (its batch's
    /// facts), the file stays claimed and the next attempt takes up from here — the
    /// file is not sent again.
    async fn after_ack(
        &self,
        dest: &Destination,
        job: &Job,
        up: Uploaded,
        attempt: u32,
        took: Duration,
    ) -> Outcome {
        match self.delivered(dest, job, &up, attempt, took).await {
            Ok(()) => Outcome::Done,
            Err(why) => {
                tracing::error!(server = %job.claim.server, rel = %job.claim.rel, error = %why, "delivered, but what follows failed; the file stays claimed and this step is tried again");
                *job.state.acked.lock().unwrap_or_else(|e| e.into_inner()) = Some((up, took));
                Outcome::Retry(why)
            }
        }
    }
}

impl Work<Job> for Worker {
    async fn attempt(
        &self,
        server: &str,
        job: &Job,
        attempt: u32,
        stop: CancellationToken,
    ) -> Outcome {
        let claim = &job.claim;
        let Some(dest) = self.dest(server) else {
            return Outcome::Retry(format!("server {server} has no destination"));
        };
        job.first_attempt();
        let acked = job
            .state
            .acked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((up, took)) = acked {
            return self.after_ack(&dest, job, up, attempt, took).await;
        }
        let key = dest.server.key_for(&claim.rel);
        let journal = ClaimJournal {
            spool: &self.spool,
            claim,
            events: &self.events,
            ledger: self.ledger.as_deref(),
        };
        let opened = {
            let (spool, c) = (self.spool.clone(), job.claim.clone());
            blocking(move || spool.open_claimed(&c)).await
        };
        let file = match opened {
            Ok(f) => f,
            Err(e) => match open_error_class(&e) {
                ErrorClass::Vanished => {
                    // The file's journal goes with it: abort what it recorded first.
                    dest.abort_recorded(&journal).await;
                    self.events.vanished(server, &claim.rel);
                    self.finish(claim, false).await.ok();
                    return Outcome::Dropped;
                }
                ErrorClass::Unreadable => {
                    dest.abort_recorded(&journal).await;
                    let ended = Ended::new(FailReason::Unreadable, None, e.to_string());
                    self.fail(&dest, claim, ended).await;
                    return Outcome::Failed;
                }
                class => {
                    // The daemon's own trouble (out of descriptors, an I/O error, a stale
                    // NFS handle): the file is not at fault; retried, counted, logged.
                    let err = UploadError::new(class, "open", e.to_string());
                    let next = retry_or_end(&dest, attempt);
                    self.events.upload_error(server, &key, attempt, &err, next);
                    return Outcome::Retry(err.to_string());
                }
            },
        };
        let started = Instant::now();
        let opts = UploadOptions {
            measure: dest
                .server
                .manifest
                .as_ref()
                .is_some_and(|m| crate::manifest::needs_md5_and_lines(m.format)),
            token: None,
        };
        match dest.upload(file, &claim.rel, &journal, &opts, &stop).await {
            Ok(up) => {
                self.after_ack(&dest, job, up, attempt, started.elapsed())
                    .await
            }
            Err(e) => {
                let next = match e.class {
                    ErrorClass::Interrupted => Next::Resume,
                    ErrorClass::Transient => retry_or_end(&dest, attempt),
                    ErrorClass::Refused => Next::Probe,
                    _ => Next::End,
                };
                self.events.upload_error(server, &key, attempt, &e, next);
                match e.class {
                    ErrorClass::Interrupted => Outcome::Interrupted,
                    ErrorClass::Transient => Outcome::Retry(e.to_string()),
                    ErrorClass::Refused => Outcome::Blocked(e.explain(&dest.server)),
                    ErrorClass::Vanished => {
                        // The file's journal goes with it: abort what it recorded first,
                        // unless another daemon took the claim over (the fence): the
                        // upload is the new owner's to resume.
                        if e.op != "fence" {
                            dest.abort_recorded(&journal).await;
                        }
                        self.events.vanished(server, &claim.rel);
                        self.finish(claim, false).await.ok();
                        Outcome::Dropped
                    }
                    class @ (ErrorClass::Unreadable
                    | ErrorClass::TooLarge
                    | ErrorClass::Object
                    | ErrorClass::Exists) => {
                        let reason = match class {
                            ErrorClass::Unreadable => FailReason::Unreadable,
                            ErrorClass::TooLarge => FailReason::TooLarge,
                            // overwrite: never, another object at the key.
                            ErrorClass::Exists => FailReason::Exists,
                            _ => FailReason::Rejected,
                        };
                        dest.abort_recorded(&journal).await;
                        let ended = Ended {
                            reason,
                            history: None,
                            why: e.to_string(),
                            existing: e.existing.as_deref().map(existing_object),
                        };
                        self.fail(&dest, claim, ended).await;
                        Outcome::Failed
                    }
                }
            }
        }
    }

    async fn give_up(&self, server: &str, job: Job, history: History) {
        let claim = &job.claim;
        let Some(dest) = self.dest(server) else {
            // A reload removed the server: like its other claims, the file stays claimed
            // (with its multipart journal) and is attempted again, afresh, when the
            // server is configured again (SIGHUP or restart).
            tracing::warn!(server, rel = %claim.rel, attempts = history.attempts, last_error = %history.last_error, "server removed while giving up a file; it stays claimed until the server is configured again");
            return;
        };
        let journal = ClaimJournal {
            spool: &self.spool,
            claim,
            events: &self.events,
            ledger: self.ledger.as_deref(),
        };
        dest.abort_recorded(&journal).await;
        let (reason, why) = if history.refused {
            (
                FailReason::Refused,
                format!(
                    "refused on each of {} attempts while other files of the server were accepted: {}",
                    history.attempts, history.last_error
                ),
            )
        } else {
            (
                FailReason::RetriesExhausted,
                format!(
                    "gave up after {} attempts: {}",
                    history.attempts, history.last_error
                ),
            )
        };
        self.fail(&dest, claim, Ended::new(reason, Some(&history), why))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_error(errno: i32) -> outpost_watcher::SpoolError {
        outpost_watcher::SpoolError::Io {
            op: "open",
            path: "claims/x.data".into(),
            source: std::io::Error::from_raw_os_error(errno),
        }
    }

    #[test]
    fn only_permission_errors_make_a_claimed_file_unreadable() {
        // (errno, class): the daemon's own trouble is retried, never `.failed/`.
        let cases = [
            (24, ErrorClass::Transient),  // EMFILE: out of descriptors
            (23, ErrorClass::Transient),  // ENFILE: the system is
            (5, ErrorClass::Transient),   // EIO
            (116, ErrorClass::Transient), // ESTALE: NFS
            (12, ErrorClass::Transient),  // ENOMEM
            (13, ErrorClass::Unreadable), // EACCES
            (1, ErrorClass::Unreadable),  // EPERM
            (40, ErrorClass::Unreadable), // ELOOP: a link
            (2, ErrorClass::Vanished),    // ENOENT
        ];
        for (errno, want) in cases {
            assert_eq!(open_error_class(&open_error(errno)), want, "errno {errno}");
        }
        assert_eq!(
            open_error_class(&outpost_watcher::SpoolError::UnknownServer("x".into())),
            ErrorClass::Transient
        );
    }
}
