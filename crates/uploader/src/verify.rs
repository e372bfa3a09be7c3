//! `outpost verify`: a live probe of one destination with exactly the requests uploads
//! make — a PutObject with the ACL of a fixed probe key, and a multipart
//! create/part/abort — so a missing grant shows before real data does.

use aws_sdk_s3::primitives::ByteStream;

use crate::upload::{ObjectSettings, Owned, WithChecksum, create_multipart};
use crate::{Destination, PartChecksum, UploadError};

/// The probe key below the server's prefix (overwritten by every verify).
pub const VERIFY_KEY: &str = ".outpost-verify";

/// One step of the probe and how it went.
#[derive(Debug)]
pub struct Step {
    /// S3 operation.
    pub op: &'static str,
    /// Its result.
    pub result: Result<(), UploadError>,
}

impl Destination {
    /// Runs the probe; stops at the first failing step (an open multipart upload is
    /// always aborted).
    pub async fn verify(&self) -> Vec<Step> {
        let s = &self.server;
        let key = s.key_for(VERIFY_KEY);
        let body = format!(
            "outpost verify probe for server {}; safe to delete\n",
            s.name
        )
        .into_bytes();
        let sum = PartChecksum::compute(s.checksum, &body);
        let mut steps = Vec::new();

        let req = self
            .client
            .put_object()
            .bucket(&s.bucket)
            .key(&key)
            .content_length(body.len() as i64)
            .body(ByteStream::from(body.clone()))
            .object_settings(s)
            .with_checksum(sum.clone());
        let r = req
            .send()
            .await
            .map(|_| ())
            .map_err(|e| UploadError::sdk("PutObject", e));
        let ok = r.is_ok();
        steps.push(Step {
            op: "PutObject",
            result: r,
        });
        if !ok {
            return steps;
        }

        let create = create_multipart(&self.client, s, &key);
        let id = match create.send().await {
            Ok(out) => {
                steps.push(Step {
                    op: "CreateMultipartUpload",
                    result: Ok(()),
                });
                out.upload_id().unwrap_or_default().to_owned()
            }
            Err(e) => {
                steps.push(Step {
                    op: "CreateMultipartUpload",
                    result: Err(UploadError::sdk("CreateMultipartUpload", e)),
                });
                return steps;
            }
        };
        let part = self
            .client
            .upload_part()
            .bucket(&s.bucket)
            .key(&key)
            .upload_id(&id)
            .part_number(1)
            .owner(s)
            .content_length(body.len() as i64)
            .body(ByteStream::from(body))
            .with_checksum(sum);
        let r = part
            .send()
            .await
            .map(|_| ())
            .map_err(|e| UploadError::sdk("UploadPart", e));
        let part_ok = r.is_ok();
        steps.push(Step {
            op: "UploadPart",
            result: r,
        });
        let r = self
            .client
            .abort_multipart_upload()
            .bucket(&s.bucket)
            .key(&key)
            .upload_id(&id)
            .owner(s)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| UploadError::sdk("AbortMultipartUpload", e));
        if part_ok || r.is_err() {
            steps.push(Step {
                op: "AbortMultipartUpload",
                result: r,
            });
        }
        steps
    }
}
