//! Every S3 request's settings, written once: the expected bucket owner ([`Owned`],
//! on every request), the ACL, encryption and storage class of object writes
//! ([`ObjectSettings`]), the checksum header of a body ([`WithChecksum`]), the
//! CreateMultipartUpload an upload and `outpost verify` send ([`create_multipart`]), the
//! create-only settings of `overwrite: never` ([`CreateOnly`]: `If-None-Match: *` on
//! PutObject and CompleteMultipartUpload, [`FileToken`]: `x-amz-meta-outpost-file` on
//! PutObject and CreateMultipartUpload), and
//! how a request carrying object bytes is sent ([`send_object!`]). A reader may change
//! a header here and every request that must carry it does; the fluent builders share
//! no trait, so a small macro lists the request types each setting applies to.

use aws_sdk_s3::operation::abort_multipart_upload::builders::AbortMultipartUploadFluentBuilder;
use aws_sdk_s3::operation::complete_multipart_upload::builders::CompleteMultipartUploadFluentBuilder;
use aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder;
use aws_sdk_s3::operation::head_object::builders::HeadObjectFluentBuilder;
use aws_sdk_s3::operation::list_multipart_uploads::builders::ListMultipartUploadsFluentBuilder;
use aws_sdk_s3::operation::list_parts::builders::ListPartsFluentBuilder;
use aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder;
use aws_sdk_s3::operation::upload_part::builders::UploadPartFluentBuilder;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedPart, ObjectCannedAcl, Part, ServerSideEncryption, StorageClass,
};
use outpost_config::{Checksum, Overwrite, Server, Sse};

use crate::PartChecksum;

/// Requests that name the account expected to own the bucket (`expected_bucket_owner`):
/// all of them.
pub(crate) trait Owned: Sized {
    /// Sets `x-amz-expected-bucket-owner` when the server configures one.
    fn owner(self, s: &Server) -> Self;
}

/// Requests that write an object: PutObject and CreateMultipartUpload.
pub(crate) trait ObjectSettings: Owned {
    /// The ACL (`bucket-owner-full-control`, always), the expected owner, encryption
    /// and storage class.
    fn object_settings(self, s: &Server) -> Self;
}

/// The object metadata (`x-amz-meta-…`) naming the file version an object holds, written
/// with `overwrite: never`: a 412 finds out whether the object there is this very file.
pub const FILE_META: &str = "outpost-file";

/// Requests that make an object visible: PutObject and CompleteMultipartUpload.
pub(crate) trait CreateOnly: Sized {
    /// `If-None-Match: *` with `overwrite: never` (S3 then answers 412 when the key
    /// holds an object); nothing with `always`.
    fn create_only(self, s: &Server) -> Self;
}

/// Requests that set an object's metadata: PutObject and CreateMultipartUpload.
pub(crate) trait FileToken: Sized {
    /// `x-amz-meta-outpost-file: <token>` with `overwrite: never`.
    fn file_token(self, s: &Server, token: &str) -> Self;
}

macro_rules! create_only {
    ($($t:ty),*) => {$(
        impl CreateOnly for $t {
            fn create_only(self, s: &Server) -> Self {
                match s.overwrite {
                    Overwrite::Never => self.if_none_match("*"),
                    Overwrite::Always => self,
                }
            }
        }
    )*};
}

create_only!(PutObjectFluentBuilder, CompleteMultipartUploadFluentBuilder);

macro_rules! file_token {
    ($($t:ty),*) => {$(
        impl FileToken for $t {
            fn file_token(self, s: &Server, token: &str) -> Self {
                match s.overwrite {
                    Overwrite::Never => self.metadata(FILE_META, token),
                    Overwrite::Always => self,
                }
            }
        }
    )*};
}

file_token!(PutObjectFluentBuilder, CreateMultipartUploadFluentBuilder);

/// Requests that carry bytes the store verifies: PutObject and UploadPart.
pub(crate) trait WithChecksum: Sized {
    /// Adds the checksum header of `sum`.
    fn with_checksum(self, sum: Option<PartChecksum>) -> Self;
}

macro_rules! owned {
    ($($t:ty),*) => {$(
        impl Owned for $t {
            fn owner(self, s: &Server) -> Self {
                self.set_expected_bucket_owner(s.expected_bucket_owner.clone())
            }
        }
    )*};
}

owned!(
    PutObjectFluentBuilder,
    CreateMultipartUploadFluentBuilder,
    UploadPartFluentBuilder,
    CompleteMultipartUploadFluentBuilder,
    AbortMultipartUploadFluentBuilder,
    ListPartsFluentBuilder,
    ListMultipartUploadsFluentBuilder,
    HeadObjectFluentBuilder
);

macro_rules! object_settings {
    ($($t:ty),*) => {$(
        impl ObjectSettings for $t {
            fn object_settings(self, s: &Server) -> Self {
                let r = self.acl(ObjectCannedAcl::BucketOwnerFullControl).owner(s);
                let r = match &s.sse {
                    Some(Sse::Aes256) => r.server_side_encryption(ServerSideEncryption::Aes256),
                    Some(Sse::Kms { kms_key_id }) => r
                        .server_side_encryption(ServerSideEncryption::AwsKms)
                        .ssekms_key_id(kms_key_id.clone()),
                    None => r,
                };
                match &s.storage_class {
                    Some(c) => r.storage_class(StorageClass::from(c.as_str())),
                    None => r,
                }
            }
        }
    )*};
}

object_settings!(PutObjectFluentBuilder, CreateMultipartUploadFluentBuilder);

macro_rules! with_checksum {
    ($($t:ty),*) => {$(
        impl WithChecksum for $t {
            fn with_checksum(self, sum: Option<PartChecksum>) -> Self {
                match sum {
                    Some(PartChecksum::Crc32c(v)) => self.checksum_crc32_c(v),
                    Some(PartChecksum::Crc64Nvme(v)) => self.checksum_crc64_nvme(v),
                    Some(PartChecksum::Md5(v)) => self.content_md5(v),
                    None => self,
                }
            }
        }
    )*};
}

with_checksum!(PutObjectFluentBuilder, UploadPartFluentBuilder);

/// CreateMultipartUpload of `key` with the algorithm of the parts' checksum header
/// (`header`), the settings of every object write and the file's token.
pub(crate) fn create_multipart(
    client: &aws_sdk_s3::Client,
    s: &Server,
    header: Option<Checksum>,
    key: &str,
    token: &str,
) -> CreateMultipartUploadFluentBuilder {
    let req = client.create_multipart_upload().bucket(&s.bucket).key(key);
    let req = match header {
        Some(Checksum::Crc32c) => req.checksum_algorithm(ChecksumAlgorithm::Crc32C),
        Some(Checksum::Crc64Nvme) => req.checksum_algorithm(ChecksumAlgorithm::Crc64Nvme),
        Some(Checksum::Md5 | Checksum::SignedPayload) | None => req,
    };
    req.object_settings(s).file_token(s, token)
}

/// The entry CompleteMultipartUpload needs for a part just sent with `sum`.
pub(crate) fn sent_part(n: i32, e_tag: Option<&str>, sum: Option<PartChecksum>) -> CompletedPart {
    let p = CompletedPart::builder()
        .part_number(n)
        .set_e_tag(e_tag.map(str::to_owned));
    match sum {
        Some(PartChecksum::Crc32c(v)) => p.checksum_crc32_c(v),
        Some(PartChecksum::Crc64Nvme(v)) => p.checksum_crc64_nvme(v),
        Some(PartChecksum::Md5(_)) | None => p,
    }
    .build()
}

/// The entry CompleteMultipartUpload needs for a part ListParts showed.
pub(crate) fn listed_part(p: &Part) -> CompletedPart {
    CompletedPart::builder()
        .set_part_number(p.part_number())
        .set_e_tag(p.e_tag().map(str::to_owned))
        .set_checksum_crc32_c(p.checksum_crc32_c().map(str::to_owned))
        .set_checksum_crc64_nvme(p.checksum_crc64_nvme().map(str::to_owned))
        .build()
}

/// Sends a request that carries an object's bytes (PutObject, UploadPart), payload
/// unsigned over TLS, with `timeouts.read` as time without progress (`progress.rs`)
/// rather than the SDK's limit on the whole call. A macro: the SDK's customizable
/// operations share no trait to send through.
macro_rules! send_object {
    ($req:expr, $unsigned:expr, $op:expr, $timeouts:expr, $release:expr) => {{
        let timeouts: &outpost_config::Timeouts = $timeouts;
        let release: Option<&crate::buffers::Release> = $release;
        let progress = crate::progress::Progress::new();
        let op = $req
            .customize()
            .config_override(
                aws_sdk_s3::config::Builder::default()
                    .timeout_config(
                        aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                            .connect_timeout(timeouts.connect)
                            .disable_read_timeout()
                            .build(),
                    )
                    // Ours is the only stall rule (the SDK's would cut a streamed body
                    // after a 5 s pause whatever `timeouts.read` says).
                    .stalled_stream_protection(
                        aws_sdk_s3::config::StalledStreamProtectionConfig::disabled(),
                    ),
            )
            .interceptor(crate::progress::MarkProgress(progress.clone()));
        let op = if $unsigned {
            op.disable_payload_signing()
        } else {
            op
        };
        match crate::progress::guard($op, &progress, timeouts.read, op.send()).await {
            Ok(r) => r.map_err(|e| UploadError::sdk($op, e)),
            Err(stalled) => {
                // The connection may hold the body until its socket dies: its buffer's
                // budget is given back now, so a dead link never starves the others.
                if let Some(r) = release {
                    r.now();
                }
                Err(stalled)
            }
        }
    }};
}

pub(crate) use send_object;
