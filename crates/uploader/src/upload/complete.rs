//! Step three of a multipart upload: complete it — after checking the file did not
//! change while its parts went, and after the last sweep for uploads its unrecorded
//! requests may have begun (once the file is finished its journal is gone). The fence
//! comes right before the request that makes the object visible. A reader may change
//! what is checked before Complete here.

use std::collections::BTreeMap;

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use crate::upload::journal::Entry;
use crate::upload::multipart::Plan;
use crate::upload::requests::Owned;
use crate::upload::{fence, identity};
use crate::{Destination, ErrorClass, Journal, UploadError};

impl Destination {
    /// Completes `upload_id` with `parts`; the journal is forgotten once it is done.
    pub(super) async fn complete(
        &self,
        file: &std::fs::File,
        plan: &Plan<'_>,
        upload_id: &str,
        mut entry: Entry,
        parts: BTreeMap<i32, CompletedPart>,
        journal: &dyn Journal,
    ) -> Result<(), UploadError> {
        let (s, key) = (&self.server, plan.key);
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
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        match res {
            Ok(_) => {
                tracing::debug!(
                    key,
                    took_ms = t_complete.elapsed().as_millis() as u64,
                    "multipart upload completed"
                );
                journal.clear();
                Ok(())
            }
            Err(e) => {
                let e = UploadError::sdk("CompleteMultipartUpload", e);
                if e.code.as_deref() == Some("NoSuchUpload") {
                    entry.state = entry.state.forget_upload();
                    entry.persist(journal)?;
                }
                Err(e)
            }
        }
    }
}
