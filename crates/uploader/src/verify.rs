//! `outpost verify`: a live probe of one destination with exactly the requests uploads
//! make — a PutObject with the ACL of a fixed probe key, and a multipart
//! create/part/abort — so a missing grant shows before real data does. The requests'
//! settings come from `upload/requests.rs`, the same as uploads'; a reader may change
//! the order of the probe here.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
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

impl Step {
    /// The step `op` that answered `r`.
    fn of<T, E>(op: &'static str, r: Result<T, SdkError<E, HttpResponse>>) -> Step
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        Step {
            op,
            result: r.map(|_| ()).map_err(|e| UploadError::sdk(op, e)),
        }
    }
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
        steps.push(Step::of("PutObject", req.send().await));
        if steps.iter().any(|s| s.result.is_err()) {
            return steps;
        }

        let created = create_multipart(&self.client, s, &key).send().await;
        let id = match &created {
            Ok(out) => out.upload_id().unwrap_or_default().to_owned(),
            Err(_) => String::new(),
        };
        steps.push(Step::of("CreateMultipartUpload", created));
        if steps.iter().any(|s| s.result.is_err()) {
            return steps;
        }
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
        let part = Step::of("UploadPart", part.send().await);
        let part_ok = part.result.is_ok();
        steps.push(part);
        let abort = self
            .client
            .abort_multipart_upload()
            .bucket(&s.bucket)
            .key(&key)
            .upload_id(&id)
            .owner(s)
            .send()
            .await;
        let abort = Step::of("AbortMultipartUpload", abort);
        if part_ok || abort.result.is_err() {
            steps.push(abort);
        }
        steps
    }
}
