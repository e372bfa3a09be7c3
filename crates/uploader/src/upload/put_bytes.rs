//! An in-memory object (a batch manifest) as one PutObject with every setting a file's
//! single PUT has — ACL, expected owner, encryption, storage class, checksum, and with
//! `overwrite: never` `If-None-Match: *`, the object's token and the 412 rule. A reader
//! may change what an in-memory object's token is made of here.

use aws_sdk_s3::primitives::ByteStream;

use crate::checksum::ObjectDigest;
use crate::upload::single::Target;
use crate::{Destination, UploadError, UploadMode, UploadOptions, Uploaded};

impl Destination {
    /// Puts `bytes` at `<prefix><rel>` as one PutObject. The token written with
    /// `overwrite: never` is `opts.token`, else [`crate::bytes_token`] (the same bytes
    /// at the same key give the same token, so a retried manifest that reached the
    /// store before counts as [`crate::WriteOutcome::AlreadyPresent`]).
    pub async fn put_bytes(
        &self,
        rel: &str,
        bytes: Vec<u8>,
        opts: &UploadOptions,
    ) -> Result<Uploaded, UploadError> {
        let key = self.server.key_for(rel);
        let token = opts
            .token
            .clone()
            .unwrap_or_else(|| crate::bytes_token(&self.server.name, rel, &bytes));
        let mut digest = ObjectDigest::new(self.integrity.header, opts.measure);
        digest.update(&bytes);
        let sums = digest.finish();
        let t = Target {
            key: &key,
            size: bytes.len() as u64,
            token: &token,
            journal: None,
        };
        self.put_object(&t, ByteStream::from(bytes), sums, UploadMode::Single, None)
            .await
    }
}
