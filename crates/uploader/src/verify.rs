//! `outpost verify`: a live probe of one destination with exactly the requests uploads
//! make — a PutObject with the ACL of a fixed probe key, and a multipart
//! create/part/abort — so a missing grant shows before real data does. With
//! `overwrite: never` the writes carry `If-None-Match: *` like uploads', and the probe
//! also checks the store honours it: a PutObject, and a CompleteMultipartUpload, over
//! the existing probe object must answer 412 (step "conditional write"; radosgw 16,
//! for one, honours it on PutObject but not on Complete). The requests' settings come
//! from `upload/requests.rs`, the same as uploads'; a reader may change the order of
//! the probe here.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use outpost_config::Overwrite;

use crate::upload::{CreateOnly, FileToken, ObjectSettings, Owned, WithChecksum, create_multipart};
use crate::{Destination, ErrorClass, PartChecksum, UploadError};

/// The probe key below the server's prefix (overwritten by every verify).
pub const VERIFY_KEY: &str = ".outpost-verify";

/// The code of a verify step whose store ignored `If-None-Match: *`.
pub const CONDITIONAL_WRITES_IGNORED: &str = "ConditionalWritesIgnored";

/// The step that checks the store honours `If-None-Match: *` (`overwrite: never`).
pub const CONDITIONAL_WRITE: &str = "conditional write";

/// The same for CompleteMultipartUpload.
pub const CONDITIONAL_COMPLETE: &str = "conditional write (multipart)";

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

    /// The conditional-write step `op` after a write over the existing probe object
    /// answered `r` (`write` names the request): a 412 is what must come.
    fn conditional<T>(op: &'static str, write: &str, r: Result<T, UploadError>) -> Step {
        let result = match r {
            Err(e) if is_412(&e) => Ok(()),
            Err(e) => Err(e),
            Ok(_) => Err(UploadError {
                code: Some(CONDITIONAL_WRITES_IGNORED.to_owned()),
                ..UploadError::new(
                    ErrorClass::Object,
                    op,
                    format!(
                        "NOT HONOURED: the store accepted a {write} with If-None-Match: * over an existing object; overwrite: never cannot be promised on this store"
                    ),
                )
            }),
        };
        Step { op, result }
    }
}

/// The operator's fix for the failing `step` of a probe that took `steps` on `server`:
/// what `outpost verify` prints and the daemon's background verification logs and
/// shows in `outpost status`.
pub fn fix(steps: &[Step], step: &Step, server: &outpost_config::Server) -> String {
    let Err(e) = &step.result else {
        return String::new();
    };
    if step.op != "PutObject"
        && e.class == ErrorClass::Refused
        && steps.first().is_some_and(|f| f.result.is_ok())
    {
        format!(
            "single PUTs are allowed but multipart is refused: the bucket policy must allow s3:PutObject without an s3:x-amz-acl condition on parts (plus s3:AbortMultipartUpload, s3:ListMultipartUploadParts) — run `outpost policy {}` and send it to the customer",
            server.name
        )
    } else {
        e.explain(server)
    }
}

/// Whether `e` answers a conditional write on an existing key.
fn is_412(e: &UploadError) -> bool {
    e.status == Some(412) || e.code.as_deref() == Some("PreconditionFailed")
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
        let sum = self
            .integrity
            .header
            .map(|k| PartChecksum::compute(k, &body));
        let mut steps = Vec::new();

        let never = s.overwrite == Overwrite::Never;
        let token = crate::bytes_token(&s.name, VERIFY_KEY, &body);
        let put = || {
            self.client
                .put_object()
                .bucket(&s.bucket)
                .key(&key)
                .content_length(body.len() as i64)
                .body(ByteStream::from(body.clone()))
                .object_settings(s)
                .file_token(s, &token)
                .create_only(s)
                .with_checksum(sum.clone())
        };
        let first = put()
            .send()
            .await
            .map_err(|e| UploadError::sdk("PutObject", e));
        match first {
            // With `overwrite: never` a 412 means the probe object is there from an
            // earlier verify: the write was admitted, and the condition honoured.
            Err(e) if never && is_412(&e) => {
                steps.push(Step {
                    op: "PutObject",
                    result: Ok(()),
                });
                steps.push(Step::conditional(
                    CONDITIONAL_WRITE,
                    "PutObject",
                    Err::<(), _>(e),
                ));
            }
            r => {
                let ok = r.is_ok();
                steps.push(Step {
                    op: "PutObject",
                    result: r.map(|_| ()),
                });
                if ok && never {
                    let again = put()
                        .send()
                        .await
                        .map_err(|e| UploadError::sdk("PutObject", e));
                    steps.push(Step::conditional(CONDITIONAL_WRITE, "PutObject", again));
                }
            }
        }
        if steps.iter().any(|s| s.result.is_err()) {
            return steps;
        }

        let created = create_multipart(&self.client, s, self.integrity.header, &key, &token)
            .send()
            .await;
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
        let part = part.send().await;
        let e_tag = part
            .as_ref()
            .ok()
            .and_then(|p| p.e_tag().map(str::to_owned));
        let part = Step::of("UploadPart", part);
        let part_ok = part.result.is_ok();
        steps.push(part);
        if part_ok && never {
            // The probe object exists now: Complete must answer 412 too.
            let done = self
                .client
                .complete_multipart_upload()
                .bucket(&s.bucket)
                .key(&key)
                .upload_id(&id)
                .owner(s)
                .create_only(s)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .parts(
                            CompletedPart::builder()
                                .part_number(1)
                                .set_e_tag(e_tag)
                                .build(),
                        )
                        .build(),
                )
                .send()
                .await
                .map_err(|e| UploadError::sdk("CompleteMultipartUpload", e));
            let completed = done.is_ok();
            steps.push(Step::conditional(
                CONDITIONAL_COMPLETE,
                "CompleteMultipartUpload",
                done,
            ));
            if completed {
                return steps; // nothing left open to abort
            }
        }
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
