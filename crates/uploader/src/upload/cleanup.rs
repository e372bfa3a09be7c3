//! Leaving nothing open: aborting a recorded upload, and finding and aborting the
//! uploads an unrecorded CreateMultipartUpload may have begun ([`orphans`], the pure
//! rule; [`Destination::sweep`], the listing and the aborts). A reader may change here
//! which listed upload counts as ours; never abort one another journal accounts for.

use crate::upload::journal::{CLOCK_SLACK, Entry};
use crate::upload::now_unix;
use crate::upload::requests::Owned;
use crate::{Destination, ErrorClass, Journal, UploadError};

/// One upload as ListMultipartUploads shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its key.
    pub key: String,
    /// Its upload id.
    pub upload_id: String,
    /// `Initiated`, Unix seconds (the store's clock).
    pub began: Option<i64>,
}

/// The uploads that an unrecorded CreateMultipartUpload of `own` may have begun and that
/// nothing else accounts for — ours, left open by a kill or a lost answer: uploads of
/// its key begun within its suspect window, except its own recorded upload, an upload
/// recorded in any other journal on the spool (`others`: other claims, other daemons on
/// a shared spool), and an upload begun within the window of another journal's own
/// unrecorded request for the same key (it may be that daemon's, between its create and
/// its journal entry: that journal's owner, which sees it too, decides).
pub(crate) fn orphans(
    own: &Entry,
    listed: &[Listed],
    others: &[Entry],
    answer_within: i64,
) -> Vec<String> {
    let Some((from, to)) = own.state.suspect().map(|s| s.window(answer_within)) else {
        return Vec::new();
    };
    let within = |b: i64, (f, t): (i64, i64)| f <= b && b <= t;
    let recorded = |e: &Entry, id: &str| e.state.upload_id().unwrap_or_default() == id;
    listed
        .iter()
        .filter(|u| u.key == own.key && !recorded(own, &u.upload_id))
        .filter(|u| u.began.is_some_and(|b| within(b, (from, to))))
        .filter(|u| !others.iter().any(|o| recorded(o, &u.upload_id)))
        .filter(|u| {
            !others.iter().any(|o| {
                o.bucket == own.bucket
                    && o.key == own.key
                    && o.state.suspect().is_some_and(|s| {
                        u.began.is_some_and(|b| within(b, s.window(answer_within)))
                    })
            })
        })
        .map(|u| u.upload_id.clone())
        .collect()
}

/// The upload a saved multipart journal records (`None`: none, or a damaged journal):
/// the orphan sweep never aborts an upload a journal on the spool records.
pub fn recorded_upload(journal: &[u8]) -> Option<String> {
    Entry::parse(journal).and_then(|e| e.state.upload_id().map(str::to_owned))
}

/// Runs `op` up to 6 times while it fails transiently (NoSuchUpload is an answer, not a
/// failure), 100 ms … 1.6 s apart: for clean-up calls that must not be left undone.
pub(crate) async fn quick_retries<T, F, Fut>(mut op: F) -> Result<T, UploadError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, UploadError>>,
{
    let mut attempt = 0u32;
    loop {
        match op().await {
            Err(e)
                if e.class == ErrorClass::Transient
                    && e.code.as_deref() != Some("NoSuchUpload")
                    && attempt < 5 =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
                attempt += 1;
            }
            r => return r,
        }
    }
}

impl Destination {
    /// Aborts an upload, retrying transient failures a few times: `Ok(false)` when the
    /// store no longer had it (the orphan sweep calls it directly).
    pub async fn abort_unrecorded(&self, key: &str, upload_id: &str) -> Result<bool, UploadError> {
        let r = quick_retries(|| async {
            self.client
                .abort_multipart_upload()
                .bucket(&self.server.bucket)
                .key(key)
                .upload_id(upload_id)
                .owner(&self.server)
                .send()
                .await
                .map_err(|e| UploadError::sdk("AbortMultipartUpload", e))
        })
        .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if e.code.as_deref() == Some("NoSuchUpload") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Aborts an upload, retrying transient failures a few times: an upload left open
    /// costs the customer storage until their lifecycle rule runs. A failure is reported
    /// through `journal` (counted, WARN); an end, to `journal` too.
    pub(crate) async fn abort(&self, key: &str, upload_id: &str, journal: &dyn Journal) {
        match self.abort_unrecorded(key, upload_id).await {
            Ok(aborted) => {
                journal.upload_ended(&self.server.bucket, upload_id);
                if aborted {
                    tracing::info!(bucket = %self.server.bucket, key, upload_id, "aborted multipart upload");
                }
            }
            Err(e) => journal.abort_failed(key, &format!("cannot abort upload {upload_id}: {e}")),
        }
    }

    /// Reports that an upload a lost CreateMultipartUpload may have begun could not be
    /// looked for.
    pub(crate) fn cleanup_failed(&self, journal: &dyn Journal, key: &str, e: &UploadError) {
        journal.abort_failed(
            key,
            &format!(
                "cannot look for an upload a CreateMultipartUpload may have begun unrecorded (kill or lost answer): {e}{}",
                if e.op == "ListMultipartUploads" {
                    "; allow s3:ListBucketMultipartUploads to let outpost clean it"
                } else {
                    ""
                }
            ),
        );
    }

    /// Every upload whose key begins with `prefix` (ListMultipartUploads, all pages).
    pub async fn list_uploads(&self, prefix: &str) -> Result<Vec<Listed>, UploadError> {
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        for _ in 0..1000 {
            let page = quick_retries(|| async {
                self.client
                    .list_multipart_uploads()
                    .bucket(&self.server.bucket)
                    .prefix(prefix)
                    .set_key_marker(key_marker.clone())
                    .set_upload_id_marker(id_marker.clone())
                    .owner(&self.server)
                    .send()
                    .await
                    .map_err(|e| UploadError::sdk("ListMultipartUploads", e))
            })
            .await?;
            for u in page.uploads() {
                if let (Some(k), Some(id)) = (u.key(), u.upload_id()) {
                    out.push(Listed {
                        key: k.to_owned(),
                        upload_id: id.to_owned(),
                        began: u.initiated().map(|t| t.secs()),
                    });
                }
            }
            let next = (
                page.next_key_marker().map(str::to_owned),
                page.next_upload_id_marker().map(str::to_owned),
            );
            if page.is_truncated() != Some(true)
                || next.0.is_none()
                || next == (key_marker.clone(), id_marker.clone())
            {
                break;
            }
            (key_marker, id_marker) = next;
        }
        Ok(out)
    }

    /// After a CreateMultipartUpload whose upload may be unrecorded (a kill or a lost
    /// answer): lists the uploads of the key and aborts the [`orphans`] — only uploads
    /// this journal's requests may have begun, never one another journal on the spool
    /// accounts for. The listing comes first: a daemon journals its intent before its
    /// request, so every upload listed is accounted for in the journals read after.
    pub(crate) async fn sweep(
        &self,
        own: &Entry,
        journal: &dyn Journal,
    ) -> Result<(), UploadError> {
        let listed = self.list_uploads(&own.key).await?;
        let others: Vec<Entry> = journal
            .spool_journals()
            .map_err(|e| {
                UploadError::new(
                    ErrorClass::Transient,
                    "journal",
                    format!("cannot read the spool's journals: {e}"),
                )
            })?
            .iter()
            .filter_map(|b| Entry::parse(b))
            .filter(|o| o.token != own.token)
            .collect();
        let found = orphans(own, &listed, &others, self.answer_within());
        tracing::debug!(bucket = %self.server.bucket, key = %own.key, listed = listed.len(), orphans = found.len(), "looked for uploads begun unrecorded");
        for id in found {
            self.abort(&own.key, &id, journal).await;
        }
        Ok(())
    }

    /// [`Destination::sweep`] once a listing shows every upload the journal's
    /// unrecorded requests may have begun (waits for that); a failure is reported.
    pub(crate) async fn sweep_when_settled(&self, own: &Entry, journal: &dyn Journal) {
        let answer_within = self.answer_within();
        if let Some(at) = own.state.suspect().map(|s| s.settled_at(answer_within)) {
            // Never longer than a request made now would need (a clock stepped back, a
            // damaged journal).
            let wait = at
                .saturating_sub(now_unix())
                .min(answer_within + CLOCK_SLACK + 1);
            if wait > 0 {
                tracing::info!(bucket = %self.server.bucket, key = %own.key, wait_s = wait, "a CreateMultipartUpload of an earlier attempt got no recorded answer (kill or lost answer); waiting until the store must have answered, to abort the upload it may have begun");
                tokio::time::sleep(std::time::Duration::from_secs(wait as u64)).await;
            }
        }
        if let Err(e) = self.sweep(own, journal).await {
            self.cleanup_failed(journal, &own.key, &e);
        }
    }

    /// Aborts the multipart upload recorded in `journal`, and any its unrecorded
    /// requests may have begun, then forgets it.
    pub async fn abort_recorded(&self, journal: &dyn Journal) {
        let Some(mut r) = Entry::load(journal) else {
            journal.clear();
            return;
        };
        if r.bucket != self.server.bucket {
            if r.state != crate::upload::journal::State::None {
                journal.abort_failed(
                    &r.key,
                    &format!(
                        "recorded for bucket {}, but the server now publishes to {}: left to that bucket's lifecycle rule",
                        r.bucket, self.server.bucket
                    ),
                );
            }
            journal.clear();
            return;
        }
        if let Some(id) = r.state.upload_id() {
            self.abort(&r.key, id, journal).await;
        }
        if r.state.suspect().is_some() {
            // A journal of an earlier version: named first, so the sweep knows it.
            if r.ensure_token()
                && let Err(e) = r.persist(journal)
            {
                self.cleanup_failed(journal, &r.key, &e);
                journal.clear();
                return;
            }
            self.sweep_when_settled(&r, journal).await;
        }
        journal.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upload::journal::tests::entry;

    fn up(key: &str, id: &str, began: Option<i64>) -> Listed {
        Listed {
            key: key.into(),
            upload_id: id.into(),
            began,
        }
    }

    #[test]
    fn only_uploads_our_unrecorded_requests_may_have_begun_are_orphans() {
        // Our journal: a request at 1000 (window 998..=1062 with a 60 s answer window),
        // and our current upload "mine".
        let own = entry("k", "mine", Some((998, 1000)), "ours");
        let listed = [
            up("k", "mine", Some(1001)),  // our recorded upload
            up("k", "lost", Some(1000)),  // begun by our unrecorded request
            up("k", "late", Some(1015)),  // begun late by a slow store: still ours
            up("k", "before", Some(990)), // before our request
            up("k", "after", Some(1070)), // after the store must have answered
            up("k", "unknown", None),     // no Initiated: cannot tell
            up("k2", "other-key", Some(1000)),
            up("k", "theirs", Some(1000)), // recorded in another daemon's journal
            up("k", "pending", Some(1020)), // within another journal's unrecorded request
        ];
        let others = [
            entry("k", "theirs", None, "a"),
            entry("k", "", Some((1018, 1020)), "b"),
            // Another key's intent covers nothing of ours.
            entry("k2", "", Some((990, 1050)), "c"),
        ];
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(orphans(&own, &listed, &others, 60), ids(&["lost", "late"]));
        // Nothing is an orphan without an unrecorded request.
        assert!(orphans(&entry("k", "mine", None, "ours"), &listed, &[], 60).is_empty());
        // Without other journals, every upload of the key within the window goes.
        assert_eq!(
            orphans(&own, &listed, &[], 60),
            ids(&["lost", "late", "theirs", "pending"])
        );
        // Another daemon's intent in another bucket does not protect this bucket's.
        let mut elsewhere = entry("k", "", Some((1018, 1020)), "b");
        elsewhere.bucket = "other".into();
        assert_eq!(
            orphans(&own, &listed[8..], &[elsewhere], 60),
            ids(&["pending"])
        );
    }
}
