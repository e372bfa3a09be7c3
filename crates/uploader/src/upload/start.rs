//! Step one of a multipart upload: start or resume. The journal's [`State`] decides:
//! requests whose upload may be unrecorded are swept for first; a recorded upload of
//! the same file (size, mtime, part size) is resumed with the parts ListParts shows;
//! anything else is aborted and a new upload is created, journaled as suspect before
//! the request and as recorded after its answer. A reader changing the resume rule
//! starts at [`recorded`] and [`keep_parts`], the pure decisions, tested here.

use std::collections::BTreeMap;

use aws_sdk_s3::types::{CompletedPart, Part};

use crate::upload::journal::{Entry, State, new_token};
use crate::upload::multipart::Plan;
use crate::upload::now_unix;
use crate::upload::requests::{Owned, create_multipart, listed_part};
use crate::{Destination, ErrorClass, Journal, UploadError};

/// Where a multipart upload stands once started or resumed.
#[derive(Debug)]
pub(super) struct Started {
    /// The upload the parts go to.
    pub upload_id: String,
    /// Parts the store already holds (a resumed upload), by number.
    pub done: BTreeMap<i32, CompletedPart>,
    /// Whether an interrupted upload was resumed.
    pub resumed: bool,
    /// The journal as saved; its suspect window is swept before Complete.
    pub entry: Entry,
}

/// What to do with the upload a journal records, for the file `plan` describes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Recorded<'a> {
    /// None recorded: create one.
    None,
    /// Created for this very file: resume it.
    Resume(&'a str),
    /// Created for another size, mtime, part size or parts' checksum header: abort it,
    /// create one.
    Changed(&'a str),
}

/// The decision for `entry`'s recorded upload, for parts sent with the checksum header
/// `check` ([`crate::Integrity::parts_check`]).
pub(super) fn recorded<'a>(entry: &'a Entry, plan: &Plan, check: &str) -> Recorded<'a> {
    let same_check = entry.parts_check.is_empty() || entry.parts_check == check;
    match entry.state.upload_id() {
        None => Recorded::None,
        Some(id)
            if same_check
                && (entry.size, entry.mtime_ns, entry.part_size)
                    == (plan.id.0, plan.id.1, plan.part_size) =>
        {
            Recorded::Resume(id)
        }
        Some(id) => Recorded::Changed(id),
    }
}

/// The parts ListParts showed that belong to `plan` (number in range, exact length):
/// those are not sent again.
pub(super) fn keep_parts(listed: &[Part], plan: &Plan) -> BTreeMap<i32, CompletedPart> {
    listed
        .iter()
        .filter_map(|p| {
            let n = p.part_number().unwrap_or(0);
            let fits = n >= 1 && n <= plan.nparts && p.size() == Some(plan.part_len(n) as i64);
            fits.then(|| (n, listed_part(p)))
        })
        .collect()
}

/// Whether a failed CreateMultipartUpload proves the store began no upload: it
/// answered with a client error (4xx). A lost or cut answer, or a server error that may
/// come after the work was done, proves nothing.
pub(super) fn no_upload_begun(e: &UploadError) -> bool {
    e.code.is_some()
        && !matches!(
            e.code.as_deref(),
            Some("InternalError" | "ServiceUnavailable" | "SlowDown" | "OperationAborted")
        )
        && e.status.is_none_or(|s| s < 500)
}

/// The store answered (HTTP 2xx) but not with parts outpost can read — moto does so for
/// an upload a killed daemon's Complete was finishing. Asking again gets the same
/// answer: the upload is treated as gone (aborted, then started afresh; with
/// `overwrite: never` a 412 over its own object then counts as delivered).
fn answered_unreadably(e: &UploadError) -> bool {
    e.code.is_none() && e.status.is_some_and(|s| (200..300).contains(&s))
}

impl Destination {
    /// Starts the multipart upload of `plan`, or resumes the one its journal records.
    pub(super) async fn start_or_resume(
        &self,
        plan: &Plan<'_>,
        journal: &dyn Journal,
        token: &str,
    ) -> Result<Started, UploadError> {
        let s = &self.server;
        let fresh = || Entry {
            bucket: s.bucket.clone(),
            key: plan.key.to_owned(),
            size: plan.id.0,
            mtime_ns: plan.id.1,
            part_size: plan.part_size,
            parts_check: self.integrity.parts_check().to_owned(),
            token: new_token(),
            state: State::None,
        };
        // What the journal holds for this file: a recorded upload and/or requests whose
        // upload may be unrecorded. Another destination's record is cleaned up whole.
        let mut cur = match Entry::load(journal) {
            Some(r) if r.bucket == s.bucket && r.key == plan.key => r,
            Some(_) => {
                self.abort_recorded(journal).await;
                fresh()
            }
            None => fresh(),
        };
        if cur.ensure_token() {
            cur.persist(journal)?; // a journal of an earlier version
        }
        if cur.state.suspect().is_some() {
            self.sweep_first(&mut cur, journal).await?;
        }
        if let Some(started) = self.resume(plan, &mut cur, journal).await? {
            return Ok(started);
        }
        self.create(plan, cur, journal, token).await
    }

    /// Cleans what can be seen now; the store may still begin an upload for a request
    /// in flight when we died, so the intent stays recorded until a listing made once it
    /// must have answered (at the latest before Complete).
    async fn sweep_first(&self, cur: &mut Entry, journal: &dyn Journal) -> Result<(), UploadError> {
        let listed_at = now_unix();
        let settled_at = cur
            .state
            .suspect()
            .map(|s| s.settled_at(self.answer_within()));
        match self.sweep(cur, journal).await {
            Ok(()) if settled_at.is_some_and(|t| listed_at >= t) => {
                cur.state = cur.state.clone().settled();
                cur.persist(journal)?;
            }
            Ok(()) => {}
            Err(e) if e.class == ErrorClass::Refused => {
                // Listing not allowed: nothing more we can do.
                self.cleanup_failed(journal, &cur.key, &e);
                cur.state = cur.state.clone().settled();
                cur.persist(journal)?;
            }
            Err(e) => {
                tracing::info!(bucket = %self.server.bucket, key = %cur.key, error = %e, "cannot look for an upload a lost CreateMultipartUpload may have begun; trying again before completing");
            }
        }
        Ok(())
    }

    /// Resumes the recorded upload if it was created for this very file and the store
    /// still has it; otherwise aborts it and forgets it (`Ok(None)`: create one).
    async fn resume(
        &self,
        plan: &Plan<'_>,
        cur: &mut Entry,
        journal: &dyn Journal,
    ) -> Result<Option<Started>, UploadError> {
        let (bucket, key) = (&self.server.bucket, plan.key);
        let gone = match recorded(cur, plan, self.integrity.parts_check()) {
            Recorded::None => return Ok(None),
            Recorded::Changed(id) => {
                tracing::info!(%bucket, key, "file changed since its multipart upload began; aborting it");
                id.to_owned()
            }
            Recorded::Resume(id) => match self.list_parts(key, id).await {
                Ok(parts) => {
                    let done = keep_parts(&parts, plan);
                    tracing::info!(%bucket, key, parts_done = done.len(), parts = plan.nparts, "resuming multipart upload");
                    return Ok(Some(Started {
                        upload_id: id.to_owned(),
                        done,
                        resumed: true,
                        entry: cur.clone(),
                    }));
                }
                Err(e)
                    if e.class == ErrorClass::Transient
                        && e.code.as_deref() != Some("NoSuchUpload")
                        && !answered_unreadably(&e) =>
                {
                    // Not known to be gone: keep the journal and try again later.
                    return Err(e);
                }
                Err(e) => {
                    tracing::info!(%bucket, key, error = %e, "recorded multipart upload is gone; starting again");
                    // A store may answer 403 for an upload it no longer has; try to
                    // abort it anyway so nothing is left open.
                    id.to_owned()
                }
            },
        };
        self.abort(key, &gone, journal).await;
        cur.state = cur.state.clone().forget_upload();
        cur.persist(journal)?;
        Ok(None)
    }

    /// CreateMultipartUpload, recorded before the request (a crash or a lost answer
    /// after the store began the upload leaves a trace a later sweep cleans up) and
    /// after its answer.
    async fn create(
        &self,
        plan: &Plan<'_>,
        cur: Entry,
        journal: &dyn Journal,
        token: &str,
    ) -> Result<Started, UploadError> {
        let req = create_multipart(
            &self.client,
            &self.server,
            self.integrity.header,
            plan.key,
            token,
        );
        let before = Entry {
            size: plan.id.0,
            mtime_ns: plan.id.1,
            part_size: plan.part_size,
            parts_check: self.integrity.parts_check().to_owned(),
            ..cur
        };
        let mut cur = before.clone();
        cur.state = cur.state.creating(now_unix());
        cur.persist(journal)?;
        let out = match req.send().await {
            Ok(out) => out,
            Err(e) => {
                let e = UploadError::sdk("CreateMultipartUpload", e);
                if no_upload_begun(&e) {
                    // This request began nothing: only earlier ones may have.
                    let _ = before.persist(journal);
                }
                return Err(e);
            }
        };
        let id = out.upload_id().unwrap_or_default().to_owned();
        journal.upload_begun(&self.server.bucket, plan.key, &id);
        let cur = Entry {
            state: before.state.clone().created(id.clone()),
            ..before
        };
        if let Err(e) = cur.persist(journal) {
            // Not recorded: do not send parts for an upload we could lose track of.
            self.abort(plan.key, &id, journal).await;
            return Err(e);
        }
        Ok(Started {
            upload_id: id,
            done: BTreeMap::new(),
            resumed: false,
            entry: cur,
        })
    }

    /// Every part the store holds of an upload (ListParts, all pages).
    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<Part>, UploadError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_parts()
                .bucket(&self.server.bucket)
                .key(key)
                .upload_id(upload_id)
                .owner(&self.server)
                .set_part_number_marker(marker.clone())
                .send()
                .await
                .map_err(|e| UploadError::sdk("ListParts", e))?;
            out.extend(page.parts().iter().cloned());
            if page.is_truncated() == Some(true) {
                marker = page.next_part_number_marker().map(str::to_owned);
                if marker.is_none() {
                    break;
                }
            } else {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upload::journal::tests::entry;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_recorded_upload_is_resumed_only_for_the_same_file() {
        let plan = Plan::new("k", (12 * MIB, 7), 5 * MIB);
        let mut e = entry("k", "up", None, "t");
        (e.size, e.mtime_ns, e.part_size) = (12 * MIB, 7, 5 * MIB);
        e.parts_check = "crc32c".into();
        assert_eq!(recorded(&e, &plan, "crc32c"), Recorded::Resume("up"));
        // A journal of an earlier version does not say: resumed as before.
        let mut old = e.clone();
        old.parts_check.clear();
        assert_eq!(recorded(&old, &plan, "crc32c"), Recorded::Resume("up"));
        // `checksum` changed across a restart: the upload was created for other part
        // headers (CreateMultipartUpload's algorithm), so it cannot be completed with
        // these; aborted and made afresh rather than refused until `.failed/`.
        assert_eq!(recorded(&e, &plan, "none"), Recorded::Changed("up"));
        for change in [
            |e: &mut Entry| e.size += 1,
            |e: &mut Entry| e.mtime_ns += 1,
            |e: &mut Entry| e.part_size = 6 * MIB,
        ] {
            let mut other = e.clone();
            change(&mut other);
            assert_eq!(recorded(&other, &plan, "crc32c"), Recorded::Changed("up"));
        }
        // Only requests whose upload may be unrecorded, or nothing: a new upload.
        e.state = State::Recorded {
            upload_id: "up".into(),
            suspect: None,
        }
        .forget_upload();
        assert_eq!(recorded(&e, &plan, "crc32c"), Recorded::None);
        let suspect = entry("k", "", Some((1, 2)), "t");
        assert_eq!(recorded(&suspect, &plan, "crc32c"), Recorded::None);
    }

    #[test]
    fn only_whole_parts_of_this_plan_are_kept() {
        let plan = Plan::new("k", (12 * MIB, 0), 5 * MIB);
        let part = |n: i32, len: u64| {
            Part::builder()
                .part_number(n)
                .size(len as i64)
                .e_tag(format!("e{n}"))
                .checksum_crc32_c("c")
                .build()
        };
        let listed = [
            part(1, 5 * MIB),
            part(2, 5 * MIB - 1), // cut short: sent again
            part(3, 2 * MIB),
            part(4, 2 * MIB), // beyond the plan
            part(0, 5 * MIB),
        ];
        let kept = keep_parts(&listed, &plan);
        assert_eq!(kept.keys().copied().collect::<Vec<_>>(), [1, 3]);
        assert_eq!(kept[&3].e_tag(), Some("e3"));
        assert_eq!(kept[&3].checksum_crc32_c(), Some("c"));
        assert_eq!(plan.missing(&kept).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn an_unreadable_answer_to_list_parts_means_the_upload_is_gone() {
        let answered = |status: u16, code: Option<&str>| UploadError {
            status: Some(status),
            code: code.map(str::to_owned),
            ..UploadError::new(ErrorClass::Transient, "ListParts", "error")
        };
        assert!(answered_unreadably(&answered(200, None)));
        assert!(!answered_unreadably(&answered(503, None)));
        assert!(!answered_unreadably(&answered(200, Some("InternalError"))));
        let lost = UploadError::new(ErrorClass::Transient, "ListParts", "timed out");
        assert!(!answered_unreadably(&lost));
    }

    #[test]
    fn only_a_client_error_proves_a_create_began_nothing() {
        let coded = |code: &str, status: u16| UploadError {
            class: ErrorClass::Transient,
            op: "CreateMultipartUpload",
            code: Some(code.into()),
            status: Some(status),
            cause: None,
            existing: None,
            message: format!("{code} (HTTP {status})"),
        };
        assert!(no_upload_begun(&coded("AccessDenied", 403)));
        assert!(!no_upload_begun(&coded("SlowDown", 503)));
        assert!(!no_upload_begun(&coded("InternalError", 500)));
        assert!(!no_upload_begun(&coded("NotImplemented", 501)));
        assert!(!no_upload_begun(&UploadError::new(
            ErrorClass::Transient,
            "CreateMultipartUpload",
            "timed out"
        )));
    }
}
