//! A file as one PutObject: held whole in a budgeted buffer ([`Destination::put_single`])
//! or, when that would take too large a share of the buffer budget, streamed from disk
//! after a first pass computes its checksum ([`Destination::put_streamed`]). Both end in
//! the same request; a reader may change how the body is produced here.

use aws_sdk_s3::primitives::ByteStream;
use outpost_config::Checksum;
use std::os::unix::fs::FileExt;

use crate::buffers::{Release, read_at};
use crate::checksum::FileDigest;
use crate::upload::requests::{ObjectSettings, WithChecksum, send_object};
use crate::upload::{Identity, Sending, fence, identity};
use crate::{Destination, ErrorClass, PartChecksum, UploadError, Uploaded};

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

impl Destination {
    /// One PutObject from memory.
    pub(super) async fn put_single(&self, f: &Sending<'_>) -> Result<Uploaded, UploadError> {
        let (data, release) = read_at(f.file.clone(), 0, f.id.0, None).await?;
        unchanged_since_read(&f.file, f.id)?;
        let sum = PartChecksum::compute(self.server.checksum, &data);
        let body = ByteStream::from(data);
        self.put_object(f, body, sum, Some(&release)).await
    }

    /// One PutObject streamed from disk (bounded memory): the checksum is computed in a
    /// first pass, then the file is sent with it, so the store verifies every byte.
    pub(super) async fn put_streamed(&self, f: &Sending<'_>) -> Result<Uploaded, UploadError> {
        let (kind, size) = (self.server.checksum, f.id.0);
        let file = f.file.clone();
        let sum = tokio::task::spawn_blocking(move || checksum_of_file(&file, kind, size))
            .await
            .map_err(|e| UploadError::new(ErrorClass::Transient, "read", e.to_string()))??;
        unchanged_since_read(&f.file, f.id)?;
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
        self.put_object(f, body, sum, None).await
    }

    /// The PutObject both send, right after the fence.
    async fn put_object(
        &self,
        f: &Sending<'_>,
        body: ByteStream,
        sum: PartChecksum,
        release: Option<&Release>,
    ) -> Result<Uploaded, UploadError> {
        let (s, size) = (&self.server, f.id.0);
        let req = self
            .client
            .put_object()
            .bucket(&s.bucket)
            .key(f.key)
            .content_length(size as i64)
            .body(body)
            .object_settings(s)
            .with_checksum(sum);
        fence(f.journal)?;
        send_object!(
            req,
            self.unsigned_payload,
            "PutObject",
            &s.timeouts,
            release
        )?;
        Ok(Uploaded {
            bytes: size,
            parts: 1,
            resumed: false,
        })
    }
}

/// The checksum of a whole file, read in 8 MiB pieces.
fn checksum_of_file(
    file: &std::fs::File,
    kind: Checksum,
    size: u64,
) -> Result<PartChecksum, UploadError> {
    let mut buf = vec![0u8; 8 << 20];
    let mut off = 0u64;
    let mut digest = FileDigest::new(kind);
    while off < size {
        let n = (size - off).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], off)
            .map_err(|e| UploadError::io("read", &e))?;
        digest.update(&buf[..n]);
        off += n as u64;
    }
    Ok(digest.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_read_in_pieces_has_the_checksum_of_its_bytes() {
        use std::io::Write;
        let data: Vec<u8> = (0..(9u32 << 20)).map(|i| (i % 251) as u8).collect();
        let mut f = tempfile::tempfile().expect("tempfile");
        f.write_all(&data).expect("write");
        for kind in [Checksum::Crc32c, Checksum::Crc64Nvme, Checksum::Md5] {
            let got = checksum_of_file(&f, kind, data.len() as u64).expect("read");
            assert_eq!(got, PartChecksum::compute(kind, &data), "{kind:?}");
        }
        let short = checksum_of_file(&f, Checksum::Md5, data.len() as u64 + 1);
        assert!(short.is_err());
    }
}
