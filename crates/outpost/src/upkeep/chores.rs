//! The two chores of one server: the `verify` probe (the same as `outpost verify`,
//! with the same cause-and-fix wording) and the orphan sweep. The sweep aborts a
//! multipart upload under the server's prefix only when ALL of these hold
//! ([`orphans`], the pure rule): the ledger holds its id as begun by outpost for this
//! server and bucket and not ended; no multipart journal on the spool records it (a
//! claim still working on it, this daemon's or another's on a shared spool); and the
//! store's `Initiated` is older than `orphan_age`. An upload someone else began has no
//! ledger row and is never touched. A reader may change the rule here.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use outpost_ledger::OpenUpload;
use outpost_uploader::{Destination, ErrorClass, ListedUpload, recorded_upload};

use super::Upkeep;
use super::schedule::Chore;
use crate::worker::blocking;

/// The listed uploads to abort: ours by the ledger (`ours`, same key and id), recorded
/// in no journal on the spool (`on_spool`), begun at or before `cutoff` (Unix seconds)
/// by both clocks — the store's `Initiated` and ours in the ledger, so a store whose
/// clock lags ours cannot make a young upload look old (an upload without `Initiated`
/// is left alone).
pub(crate) fn orphans(
    listed: &[ListedUpload],
    ours: &[OpenUpload],
    on_spool: &HashSet<String>,
    cutoff: i64,
) -> Vec<ListedUpload> {
    listed
        .iter()
        .filter(|u| {
            ours.iter().any(|o| {
                o.upload_id == u.upload_id
                    && o.key == u.key
                    && o.begun_at <= cutoff.saturating_mul(1000)
            })
        })
        .filter(|u| !on_spool.contains(&u.upload_id))
        .filter(|u| u.began.is_some_and(|b| b <= cutoff))
        .cloned()
        .collect()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Upkeep {
    /// Runs `chore` for `server` with its current destination (none: removed by a
    /// reload meanwhile; nothing to do).
    pub(super) async fn chore(&self, server: &str, chore: Chore) {
        let Some(dest) = self.worker.dest(server) else {
            return;
        };
        match chore {
            Chore::Verify => self.verify(&dest).await,
            Chore::Sweep => {
                if let Some(age) = dest.server.orphan_age {
                    self.sweep(&dest, age).await;
                }
            }
        }
    }

    /// The probe; its verdict goes to the metrics, the findings and — when it changed —
    /// the log.
    async fn verify(&self, dest: &Destination) {
        let s = &dest.server;
        // The probe writes to the customer's bucket: never outside their window (the
        // verdict stays as it was; the next run comes a period later).
        if s.window_closed(SystemTime::now()) {
            return;
        }
        let steps = dest.verify().await;
        let failed = steps.iter().find_map(|step| match &step.result {
            Err(e) => Some((
                step.op,
                e.message.clone(),
                outpost_uploader::fix(&steps, step, s),
            )),
            Ok(()) => None,
        });
        let why = failed
            .as_ref()
            .map(|(op, cause, fix)| format!("verify failed at {op}: {cause} (fix: {fix})"));
        // Under the findings' lock, which a reload's `apply` takes too: a verdict of a
        // verification switched off (or a server removed) meanwhile is dropped, not kept.
        let mut f = self.findings();
        let on = self.worker.dest(&s.name);
        if on.is_none_or(|d| d.server.verify_interval.is_none()) {
            return;
        }
        let failed_before = f.verified.insert(s.name.clone(), why).map(|w| w.is_some());
        self.worker.events.verified(
            &s.name,
            failed
                .as_ref()
                .map(|(op, c, f)| (*op, c.as_str(), f.as_str())),
            failed_before,
        );
    }

    /// Lists the server's open uploads and aborts the [`orphans`]. Nothing is asked of
    /// the store while the ledger holds no upload of this server old enough to be one
    /// (the usual case: 10,000 idle servers cost no request). Then the listing comes
    /// before the journals are read: an upload listed and still worked on has its
    /// journal on the spool when they are read after.
    async fn sweep(&self, dest: &Destination, age: Duration) {
        let s = &dest.server;
        let Some(ledger) = self.worker.ledger.clone() else {
            return; // without the ledger no upload can be told to be ours
        };
        let cutoff = unix_now().saturating_sub(age.as_secs() as i64);
        let (server, bucket, l) = (s.name.clone(), s.bucket.clone(), ledger.clone());
        match blocking(move || l.open_uploads(&server, &bucket)).await {
            Ok(ours)
                if !ours
                    .iter()
                    .any(|o| o.begun_at <= cutoff.saturating_mul(1000)) =>
            {
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(server = %s.name, error = %e, "orphan sweep: cannot read the ledger; skipped");
                return;
            }
        }
        let listed = dest.list_uploads(&s.prefix).await;
        let refused = matches!(&listed, Err(e) if e.class == ErrorClass::Refused);
        let was_refused = if refused {
            !self.findings().listing_refused.insert(s.name.clone())
        } else {
            self.findings().listing_refused.remove(&s.name)
        };
        let listed = match listed {
            Ok(l) => {
                if was_refused {
                    self.worker.events.listing_allowed(&s.name);
                }
                l
            }
            Err(e) => {
                if refused && !was_refused {
                    self.worker.events.listing_refused(&s.name, &e.to_string());
                } else if !refused {
                    tracing::debug!(server = %s.name, error = %e, "cannot list multipart uploads; the sweep tries again later");
                }
                return;
            }
        };
        if listed.is_empty() {
            return;
        }
        let (server, bucket, spool) = (s.name.clone(), s.bucket.clone(), self.worker.spool.clone());
        let l = ledger.clone();
        let (ours, journals) =
            blocking(move || (l.open_uploads(&server, &bucket), spool.journals_on_spool())).await;
        let (ours, journals) = match (ours, journals) {
            (Ok(o), Ok(j)) => (o, j),
            (Err(e), _) => {
                tracing::warn!(server = %s.name, error = %e, "orphan sweep: cannot read the ledger; skipped");
                return;
            }
            (_, Err(e)) => {
                tracing::warn!(server = %s.name, error = %e, "orphan sweep: cannot read the spool's journals; skipped");
                return;
            }
        };
        let on_spool: HashSet<String> =
            journals.iter().filter_map(|b| recorded_upload(b)).collect();
        for u in orphans(&listed, &ours, &on_spool, cutoff) {
            match dest.abort_unrecorded(&u.key, &u.upload_id).await {
                Ok(aborted) => {
                    ledger.upload_ended(&s.bucket, &u.upload_id);
                    if aborted {
                        self.worker
                            .events
                            .orphan_aborted(&s.name, &u.key, &u.upload_id, u.began);
                    }
                }
                Err(e) => self.worker.events.multipart_abort_failed(
                    &s.name,
                    &u.key,
                    &format!("cannot abort orphan upload {}: {e}", u.upload_id),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(key: &str, id: &str, began: Option<i64>) -> ListedUpload {
        ListedUpload {
            key: key.into(),
            upload_id: id.into(),
            began,
        }
    }

    fn ours(key: &str, id: &str) -> OpenUpload {
        OpenUpload {
            key: key.into(),
            upload_id: id.into(),
            begun_at: 0,
        }
    }

    #[test]
    fn only_old_uploads_the_ledger_says_are_ours_and_no_journal_records_are_orphans() {
        let listed = [
            listed("p/a", "old-ours", Some(100)),
            listed("p/b", "foreign", Some(100)), // no ledger row: never ours
            listed("p/c", "young-ours", Some(500)), // younger than orphan_age
            listed("p/d", "in-journal", Some(100)), // a claim still works on it
            listed("p/e", "no-time", None),      // cannot tell its age
            listed("p/other", "old-ours-2", Some(100)), // ledger says another key
            listed("p/g", "store-clock-behind", Some(100)), // our clock: begun just now
        ];
        let ours = [
            ours("p/a", "old-ours"),
            ours("p/c", "young-ours"),
            ours("p/d", "in-journal"),
            ours("p/e", "no-time"),
            ours("p/f", "old-ours-2"),
            OpenUpload {
                begun_at: 500_000,
                ..ours("p/g", "store-clock-behind")
            },
        ];
        let on_spool = HashSet::from(["in-journal".to_owned()]);
        let ids: Vec<String> = orphans(&listed, &ours, &on_spool, 200)
            .into_iter()
            .map(|u| u.upload_id)
            .collect();
        assert_eq!(ids, ["old-ours"]);
    }
}
