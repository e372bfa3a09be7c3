//! What is at a key: HeadObject with checksum mode ([`Destination::head`], also for
//! `outpost audit`), and the `overwrite: never` rule after a 412 PreconditionFailed
//! ([`decide`], pure and tested here): the object is ours when its
//! `x-amz-meta-outpost-file` token and size are this file's; when HeadObject is refused
//! (no `s3:GetObject`) it is ours only if the caller says the file may have been sent
//! before; anything else is a conflict ([`ErrorClass::Exists`]) and the object is left
//! untouched. A reader changing when an existing object counts as delivered changes
//! [`decide`].

use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::types::ChecksumMode;

use crate::upload::requests::{FILE_META, Owned};
use crate::{Destination, ErrorClass, Head, ObjectInfo, StoredChecksum, UploadError};

/// The checksums a response carries (PutObject, CompleteMultipartUpload, HeadObject
/// outputs share no trait: a macro reads the same getters of each).
macro_rules! stored_checksums {
    ($out:expr) => {{
        let out = &$out;
        let kind = out.checksum_type().map(|t| t.as_str().to_owned());
        [
            ("CRC64NVME", out.checksum_crc64_nvme()),
            ("CRC32C", out.checksum_crc32_c()),
            ("CRC32", out.checksum_crc32()),
            ("SHA256", out.checksum_sha256()),
            ("SHA1", out.checksum_sha1()),
        ]
        .into_iter()
        .filter_map(|(algorithm, v)| {
            v.map(|v| crate::StoredChecksum {
                algorithm,
                value: v.to_owned(),
                checksum_type: kind.clone(),
            })
        })
        .collect::<Vec<crate::StoredChecksum>>()
    }};
}
pub(crate) use stored_checksums;

/// How often an object of our size without a token is looked at before it is judged a
/// conflict, and the pause between looks.
const TOKEN_LOOKS: u32 = 5;
const TOKEN_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// What a 412 means for this file.
#[derive(Debug)]
pub(super) enum Found {
    /// This very file is there: delivered (what HeadObject showed, when it could read).
    Ours(Option<ObjectInfo>),
    /// Another object is there: a conflict.
    Conflict(Option<ObjectInfo>),
    /// An object of our size without a token: perhaps ours with its metadata not visible
    /// yet (moto makes an object visible before its metadata). Looked at again.
    NoTokenYet(ObjectInfo),
    /// Nothing can be said now (the object went away, HeadObject failed): try again.
    Retry(UploadError),
}

/// Whether `e` is S3's answer to `If-None-Match: *` on an existing key.
pub(super) fn precondition_failed(e: &UploadError) -> bool {
    e.status == Some(412) || e.code.as_deref() == Some("PreconditionFailed")
}

/// The decision after a 412, given what HeadObject answered and this file's `token`
/// and `size`. Only the token proves an object is ours: without `s3:GetObject`
/// (HeadObject refused) a 412 is a conflict — the file waits in `.failed/`, never
/// deleted on a guess. An object of our size that shows no token yet is looked at again
/// (a store may make an object visible before its metadata: moto does), not judged.
pub(super) fn decide(head: Result<Head, UploadError>, token: &str, size: u64) -> Found {
    match head {
        Ok(Head::Present(o)) if o.token.as_deref() == Some(token) && o.size == size => {
            Found::Ours(Some(o))
        }
        Ok(Head::Present(o)) if o.token.is_none() && o.size == size => Found::NoTokenYet(o),
        Ok(Head::Present(o)) => Found::Conflict(Some(o)),
        Ok(Head::NotReadable { .. }) => Found::Conflict(None),
        Ok(Head::Missing) => Found::Retry(UploadError::new(
            ErrorClass::Transient,
            "HeadObject",
            "the object that answered 412 PreconditionFailed is gone; trying again",
        )),
        Err(e) => Found::Retry(e),
    }
}

/// The [`ErrorClass::Exists`] error of a conflict at `key`.
pub(super) fn conflict(op: &'static str, key: &str, o: Option<ObjectInfo>) -> UploadError {
    let what = match &o {
        Some(o) => format!(
            "{} bytes, ETag {}, last modified {}",
            o.size,
            o.etag.as_deref().unwrap_or("?"),
            o.last_modified
                .map_or_else(|| "?".to_owned(), crate::facts::rfc3339)
        ),
        None => "not readable by the publisher".to_owned(),
    };
    UploadError {
        code: Some("PreconditionFailed".to_owned()),
        status: Some(412),
        existing: o.map(Box::new),
        ..UploadError::new(
            ErrorClass::Exists,
            op,
            format!(
                "overwrite: never and {key} already holds another object ({what}); left untouched"
            ),
        )
    }
}

impl Destination {
    /// HeadObject of `key` (the full object key, prefix included), checksum mode on:
    /// present, missing (404), or not readable (403).
    pub async fn head(&self, key: &str) -> Result<Head, UploadError> {
        let r = self
            .client
            .head_object()
            .bucket(&self.server.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .owner(&self.server)
            .send()
            .await;
        match r {
            Ok(out) => Ok(Head::Present(ObjectInfo {
                size: out.content_length().unwrap_or(0).max(0) as u64,
                etag: out.e_tag().map(str::to_owned),
                last_modified: out
                    .last_modified()
                    .and_then(|t| std::time::SystemTime::try_from(*t).ok()),
                version_id: out.version_id().map(str::to_owned),
                checksums: stored_checksums!(out),
                token: out
                    .metadata()
                    .and_then(|m| m.get(FILE_META))
                    .map(|t| t.to_owned()),
            })),
            Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 404 => {
                Ok(Head::Missing)
            }
            Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 403 => {
                use aws_sdk_s3::error::ProvideErrorMetadata;
                Ok(Head::NotReadable {
                    code: se.err().code().map(str::to_owned),
                })
            }
            Err(e) => Err(UploadError::sdk("HeadObject", e)),
        }
    }

    /// After a 412 on `op` for `key`: what is there is this file (`Ok`, with what
    /// HeadObject showed when it could read it), or the conflict / retry error.
    pub(super) async fn after_412(
        &self,
        op: &'static str,
        key: &str,
        token: &str,
        size: u64,
    ) -> Result<Option<ObjectInfo>, UploadError> {
        // An object of our size without a token may be ours with its metadata not
        // visible yet: looked at a few more times, then judged a conflict (another
        // tool's copy of the same bytes is not proof either).
        for look in 1..=TOKEN_LOOKS {
            let head = self.head(key).await;
            match decide(head, token, size) {
                Found::Ours(o) => {
                    tracing::info!(bucket = %self.server.bucket, key, "overwrite: never: the object at the key is this very file (an earlier attempt completed); counted as delivered");
                    return Ok(o);
                }
                Found::Conflict(o) => return Err(conflict(op, key, o)),
                Found::NoTokenYet(_) if look < TOKEN_LOOKS => tokio::time::sleep(TOKEN_PAUSE).await,
                Found::NoTokenYet(o) => return Err(conflict(op, key, Some(o))),
                Found::Retry(e) => return Err(e),
            }
        }
        Err(conflict(op, key, None))
    }
}

/// The store's checksum among `all`: the first it returned.
pub(super) fn first(all: Vec<StoredChecksum>) -> Option<StoredChecksum> {
    all.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(token: Option<&str>, size: u64) -> ObjectInfo {
        ObjectInfo {
            size,
            etag: Some("\"e\"".into()),
            last_modified: Some(std::time::UNIX_EPOCH),
            version_id: None,
            checksums: Vec::new(),
            token: token.map(str::to_owned),
        }
    }

    #[test]
    fn a_412_is_ours_only_for_this_very_file() {
        let ours = object(Some("tok"), 5);
        // (what HeadObject answered, expected)
        let cases = [
            (
                Ok(Head::Present(ours.clone())),
                Found::Ours(Some(ours.clone())),
            ),
            // Another version of the file, another file, an object not ours.
            (
                Ok(Head::Present(object(Some("other"), 5))),
                Found::Conflict(Some(object(Some("other"), 5))),
            ),
            (
                Ok(Head::Present(object(None, 6))),
                Found::Conflict(Some(object(None, 6))),
            ),
            (
                Ok(Head::Present(object(Some("tok"), 6))),
                Found::Conflict(Some(object(Some("tok"), 6))),
            ),
            // Not readable: never proof, whatever happened before (a restart, a lost
            // answer): the file waits in .failed/, never deleted on a guess.
            (Ok(Head::NotReadable { code: None }), Found::Conflict(None)),
        ];
        for (head, want) in cases {
            let what = format!("{head:?}");
            let got = decide(head, "tok", 5);
            assert_eq!(format!("{got:?}"), format!("{want:?}"), "{what}");
        }
        // Our size without a token yet (a store showing the object before its
        // metadata): looked at again, not judged at once.
        let early = decide(Ok(Head::Present(object(None, 5))), "tok", 5);
        assert!(matches!(early, Found::NoTokenYet(o) if o.size == 5));
        let gone = decide(Ok(Head::Missing), "tok", 5);
        assert!(matches!(gone, Found::Retry(e) if e.class == ErrorClass::Transient));
        let failed = UploadError::new(ErrorClass::Transient, "HeadObject", "timed out");
        assert!(matches!(
            decide(Err(failed), "tok", 5),
            Found::Retry(e) if e.message == "timed out"
        ));
    }

    #[test]
    fn a_conflict_is_never_retried_and_names_the_object() {
        let e = conflict("PutObject", "p/a.csv", Some(object(Some("x"), 3)));
        assert_eq!(e.class, ErrorClass::Exists);
        assert!(!e.class.is_retryable());
        assert_eq!(e.existing.as_deref().map(|o| o.size), Some(3));
        assert!(
            e.message
                .contains("3 bytes, ETag \"e\", last modified 1970-01-01T00:00:00Z"),
            "{e}"
        );
        let unreadable = conflict("CompleteMultipartUpload", "k", None);
        assert!(unreadable.existing.is_none());
        assert!(precondition_failed(&e));
        let lost = UploadError::new(ErrorClass::Transient, "PutObject", "timed out");
        assert!(!precondition_failed(&lost));
    }
}
