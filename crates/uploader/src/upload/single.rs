//! A file as one PutObject: held whole in a budgeted buffer ([`Destination::put_single`])
//! or, when that would take too large a share of the buffer budget, streamed from disk
//! after a first pass computes its checksums ([`Destination::put_streamed`]). Both end in
//! the same request ([`Destination::put_object`], also `put_bytes`'s), which with
//! `overwrite: never` decides a 412 by what is at the key; a reader may change how the
//! body is produced here.

use aws_sdk_s3::primitives::ByteStream;
use outpost_config::Checksum;
use std::os::unix::fs::FileExt;

use outpost_config::Overwrite;

use crate::bandwidth::limits;
use crate::buffers::{Release, read_at};
use crate::checksum::{ObjectDigest, Sums};
use crate::upload::existing::{first, precondition_failed, stored_checksums};
use crate::upload::requests::{CreateOnly, FileToken, ObjectSettings, WithChecksum, send_object};
use crate::upload::{Identity, Sending, fence, identity};
use crate::{Destination, ErrorClass, Journal, UploadError, UploadMode, Uploaded, WriteOutcome};

/// Fails (transiently) when the file is no longer what it was when its upload began.
fn unchanged_since_read(file: &std::fs::File, id: Identity) -> Result<(), UploadError> {
    if identity(file)? == id {
        Ok(())
    } else {
        Err(UploadError::new(
            ErrorClass::Transient,
            "read",
            "the file changed while it was read; it will be read again",
        ))
    }
}

/// Where one PutObject goes and what decides a 412: a file's or an in-memory body's.
pub(super) struct Target<'a> {
    /// The object key.
    pub key: &'a str,
    /// The body's length.
    pub size: u64,
    /// The `x-amz-meta-outpost-file` token (`overwrite: never`).
    pub token: &'a str,
    /// The claim's journal, asked right before the request (the fence); none for a
    /// manifest.
    pub journal: Option<&'a dyn Journal>,
}

impl<'a> Target<'a> {
    /// The target of a file on its way.
    fn of(f: &'a Sending<'a>) -> Target<'a> {
        Target {
            key: f.key,
            size: f.id.0,
            token: &f.token,
            journal: Some(f.journal),
        }
    }
}

impl Destination {
    /// One PutObject from memory.
    pub(super) async fn put_single(&self, f: &Sending<'_>) -> Result<Uploaded, UploadError> {
        limits().acquire(&self.server.name, f.id.0).await;
        let (data, release) = read_at(f.file.clone(), 0, f.id.0, None).await?;
        unchanged_since_read(&f.file, f.id)?;
        let mut digest = ObjectDigest::new(self.integrity.header, f.opts.measure);
        digest.update(&data);
        let sums = digest.finish();
        let body = ByteStream::from(data);
        self.put_object(
            &Target::of(f),
            body,
            sums,
            UploadMode::Single,
            Some(&release),
        )
        .await
    }

    /// One PutObject streamed from disk (bounded memory): the checksums are computed in
    /// a first pass, then the file is sent with them, so the store verifies every byte.
    pub(super) async fn put_streamed(
        &self,
        f: &Sending<'_>,
        mode: UploadMode,
    ) -> Result<Uploaded, UploadError> {
        // A stream is never hashed into the signature: it carries a checksum header.
        let kind = Some(self.integrity.streamed_header());
        let (size, measure) = (f.id.0, f.opts.measure);
        let file = f.file.clone();
        let sums = tokio::task::spawn_blocking(move || digest_range(&file, 0, size, kind, measure))
            .await
            .map_err(|e| UploadError::new(ErrorClass::Transient, "read", e.to_string()))??;
        unchanged_since_read(&f.file, f.id)?;
        limits().acquire(&self.server.name, size).await;
        let mut dup = f
            .file
            .try_clone()
            .map_err(|e| UploadError::io("open", &e))?;
        std::io::Seek::seek(&mut dup, std::io::SeekFrom::Start(0))
            .map_err(|e| UploadError::io("read", &e))?;
        let body = ByteStream::read_from()
            .file(tokio::fs::File::from_std(dup))
            .length(aws_smithy_types::byte_stream::Length::Exact(size))
            .build()
            .await
            .map_err(|e| UploadError::new(ErrorClass::Transient, "read", e.to_string()))?;
        self.put_object(&Target::of(f), body, sums, mode, None)
            .await
    }

    /// The PutObject every single PUT sends, right after the fence; with
    /// `overwrite: never` a 412 is decided by what is at the key.
    pub(super) async fn put_object(
        &self,
        t: &Target<'_>,
        body: ByteStream,
        sums: Sums,
        mode: UploadMode,
        release: Option<&Release>,
    ) -> Result<Uploaded, UploadError> {
        let s = &self.server;
        let req = self
            .client
            .put_object()
            .bucket(&s.bucket)
            .key(t.key)
            .content_length(t.size as i64)
            .body(body)
            .object_settings(s)
            .file_token(s, t.token)
            .create_only(s)
            .with_checksum(sums.sum.clone());
        if let Some(j) = t.journal {
            fence(j)?;
        }
        let sent = send_object!(
            req,
            !self.integrity.signed,
            "PutObject",
            &s.timeouts,
            release
        );
        let mut up = Uploaded {
            bytes: t.size,
            parts: 1,
            resumed: false,
            mode,
            outcome: WriteOutcome::Written,
            etag: None,
            version_id: None,
            crc64nvme: sums.crc64,
            // The header's whole-object value, none for `signed_payload` (a streamed
            // body's Content-MD5 is not recorded: one algorithm per server).
            checksum: sums.sum.filter(|_| self.integrity.header.is_some()),
            store_checksum: None,
            measured: sums.measured,
        };
        match sent {
            Ok(out) => {
                up.etag = out.e_tag().map(str::to_owned);
                up.version_id = out.version_id().map(str::to_owned);
                up.store_checksum = first(stored_checksums!(out));
                Ok(up)
            }
            Err(e) if s.overwrite == Overwrite::Never && precondition_failed(&e) => {
                let found = self.after_412("PutObject", t.key, t.token, t.size).await?;
                Ok(up.already_present(found))
            }
            Err(e) => Err(e),
        }
    }
}

impl Uploaded {
    /// This upload's facts for an object found already there (what HeadObject showed
    /// of it, when it could read it).
    pub(super) fn already_present(mut self, found: Option<crate::ObjectInfo>) -> Uploaded {
        self.outcome = WriteOutcome::AlreadyPresent;
        if let Some(o) = found {
            self.etag = o.etag;
            self.version_id = o.version_id;
            self.store_checksum = first(o.checksums);
        }
        self
    }
}

/// The checksums of `len` bytes of a file from `offset`, read in 8 MiB pieces.
pub(super) fn digest_range(
    file: &std::fs::File,
    offset: u64,
    len: u64,
    kind: Option<Checksum>,
    measure: bool,
) -> Result<Sums, UploadError> {
    let mut buf = vec![0u8; (8 << 20).min(len.max(1)) as usize];
    let mut off = 0u64;
    let mut digest = ObjectDigest::new(kind, measure);
    while off < len {
        let n = (len - off).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], offset + off)
            .map_err(|e| UploadError::io("read", &e))?;
        digest.update(&buf[..n]);
        off += n as u64;
    }
    Ok(digest.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::PartChecksum;

    #[test]
    fn a_file_read_in_pieces_has_the_checksum_of_its_bytes() {
        use std::io::Write;
        let data: Vec<u8> = (0..(9u32 << 20)).map(|i| (i % 251) as u8).collect();
        let mut f = tempfile::tempfile().expect("tempfile");
        f.write_all(&data).expect("write");
        for kind in [Checksum::Crc32c, Checksum::Crc64Nvme, Checksum::Md5] {
            let got = digest_range(&f, 0, data.len() as u64, Some(kind), false).expect("read");
            assert_eq!(
                got.sum,
                Some(PartChecksum::compute(kind, &data)),
                "{kind:?}"
            );
            assert_eq!(got.crc64, crc_fast::crc64_nvme(&data));
            let tail = digest_range(&f, 5, 1 << 20, Some(kind), false).expect("read");
            assert_eq!(
                tail.sum,
                Some(PartChecksum::compute(kind, &data[5..5 + (1 << 20)]))
            );
        }
        let short = digest_range(&f, 0, data.len() as u64 + 1, Some(Checksum::Md5), false);
        assert!(short.is_err());
    }
}
