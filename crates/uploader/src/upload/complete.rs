//! Step three of a multipart upload: complete it — after checking the file did not
//! change while its parts went, and after the last sweep for uploads its unrecorded
//! requests may have begun (once the file is finished its journal is gone). The fence
//! comes right before the request that makes the object visible. With
//! `overwrite: never` the request carries `If-None-Match: *`; on a 412 the upload is
//! aborted (nothing of ours stays open) and what is at the key decides: this very file
//! (delivered) or a conflict. A reader may change what is checked before Complete here.

use std::collections::BTreeMap;

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use crate::upload::journal::Entry;
use crate::upload::multipart::Plan;
use outpost_config::Overwrite;

use crate::upload::Sending;
use crate::upload::existing::{first, precondition_failed, stored_checksums};
use crate::upload::requests::{CreateOnly, Owned};
use crate::upload::{fence, identity};
use crate::{Destination, ErrorClass, ObjectInfo, StoredChecksum, UploadError};

/// How Complete ended.
pub(super) enum Completed {
    /// The store made the object.
    Written {
        /// Its ETag.
        etag: Option<String>,
        /// Its version id (versioned buckets).
        version_id: Option<String>,
        /// The checksum the store returned.
        store_checksum: Option<StoredChecksum>,
    },
    /// `overwrite: never`: this very file was already there (what HeadObject showed).
    AlreadyPresent(Option<ObjectInfo>),
}

impl Destination {
    /// Completes `upload_id` with `parts`; the journal is forgotten once it is done.
    pub(super) async fn complete(
        &self,
        f: &Sending<'_>,
        plan: &Plan<'_>,
        upload_id: &str,
        mut entry: Entry,
        parts: BTreeMap<i32, CompletedPart>,
    ) -> Result<Completed, UploadError> {
        let (s, key, file, journal) = (&self.server, plan.key, &f.file, f.journal);
        if identity(file)? != plan.id {
            self.abort(key, upload_id, journal).await;
            entry.state = entry.state.forget_upload();
            entry.persist(journal)?;
            return Err(UploadError::new(
                ErrorClass::Transient,
                "read",
                "the file changed during its upload; the upload was aborted and will start again",
            ));
        }
        if entry.state.suspect().is_some() {
            // The last chance: once the file is finished its journal is gone.
            self.sweep_when_settled(&entry, journal).await;
            entry.state = entry.state.settled(); // not saved: a crash before Complete sweeps again
        }
        let parts: Vec<CompletedPart> = parts.into_values().collect();
        let t_complete = std::time::Instant::now();
        tracing::debug!(
            key,
            parts = plan.nparts,
            "all parts sent; completing the multipart upload"
        );
        fence(journal)?;
        let res = self
            .client
            .complete_multipart_upload()
            .bucket(&s.bucket)
            .key(key)
            .upload_id(upload_id)
            .owner(s)
            .create_only(s)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        match res {
            Ok(out) => {
                tracing::debug!(
                    key,
                    took_ms = t_complete.elapsed().as_millis() as u64,
                    "multipart upload completed"
                );
                journal.upload_ended(&s.bucket, upload_id);
                journal.clear();
                Ok(Completed::Written {
                    etag: out.e_tag().map(str::to_owned),
                    version_id: out.version_id().map(str::to_owned),
                    store_checksum: first(stored_checksums!(out)),
                })
            }
            Err(e) => {
                let e = UploadError::sdk("CompleteMultipartUpload", e);
                if s.overwrite == Overwrite::Never && precondition_failed(&e) {
                    // Nothing of ours stays open, whatever is at the key.
                    self.abort(key, upload_id, journal).await;
                    entry.state = entry.state.forget_upload();
                    entry.persist(journal)?;
                    let (op, size) = ("CompleteMultipartUpload", plan.id.0);
                    let found = self.after_412(op, key, &f.token, size).await?;
                    journal.clear();
                    return Ok(Completed::AlreadyPresent(found));
                }
                if e.code.as_deref() == Some("NoSuchUpload") {
                    entry.state = entry.state.forget_upload();
                    entry.persist(journal)?;
                }
                Err(e)
            }
        }
    }
}
