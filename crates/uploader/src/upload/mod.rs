//! Moving one file: a single PutObject below the threshold (`single.rs`), else a
//! multipart upload (`multipart.rs`: start or resume, send parts, complete) whose id is
//! journaled before any part is sent (`journal.rs`), resumed with ListParts after a
//! crash, with at most `multipart.concurrency` parts read into memory at once. This
//! file chooses the way a file goes and holds what every way checks (the file did not
//! change, the claim is still ours); request headers are set in `requests.rs` only.

mod cleanup;
mod complete;
mod existing;
mod journal;
mod multipart;
mod parts;
mod put_bytes;
mod requests;
mod single;
mod start;

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;

use crate::limits::{MAX_OBJECT, MAX_PARTS, MAX_PUT};
use crate::{Destination, ErrorClass, Journal, UploadError, UploadMode, UploadOptions, Uploaded};

pub use cleanup::{Listed as ListedUpload, recorded_upload};
pub use journal::MpuRecord;
pub use requests::FILE_META;
pub(crate) use requests::{
    CreateOnly, FileToken, ObjectSettings, Owned, WithChecksum, create_multipart,
};

/// The part size for a file of `size` bytes: the configured size, grown so the upload
/// needs no more than 10,000 parts, in whole MiB.
pub fn part_size_for(size: u64, configured: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    let min = size.div_ceil(MAX_PARTS);
    configured.max(min).div_ceil(MIB) * MIB
}

/// Size and mtime of an open file: what must not change while it uploads.
type Identity = (u64, i128);

/// The [`Identity`] of an open regular file.
fn identity(file: &std::fs::File) -> Result<Identity, UploadError> {
    let md = file.metadata().map_err(|e| UploadError::io("stat", &e))?;
    if !md.is_file() {
        return Err(UploadError::new(
            ErrorClass::Unreadable,
            "open",
            "not a regular file",
        ));
    }
    Ok((
        md.len(),
        md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
    ))
}

/// One file on its way: what every way of sending it needs.
pub(super) struct Sending<'a> {
    /// The claimed file, opened read-only.
    file: Arc<std::fs::File>,
    /// Its object key.
    key: &'a str,
    /// Its size and mtime when its upload began.
    id: Identity,
    /// Its multipart journal; also asked whether the claim is still ours (the fence).
    journal: &'a dyn Journal,
    /// The token written as `x-amz-meta-outpost-file` with `overwrite: never`.
    token: String,
    /// What the caller asked for.
    opts: &'a UploadOptions,
}

/// Fails when this daemon no longer holds the file (taken over while it was paused):
/// the object is not published from a stale copy.
fn fence(journal: &dyn Journal) -> Result<(), UploadError> {
    if journal.still_ours() {
        Ok(())
    } else {
        Err(UploadError::new(
            ErrorClass::Vanished,
            "fence",
            "the claim was taken over by another daemon while this one was paused; not published from here",
        ))
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Destination {
    /// Uploads `file` (opened read-only from its claim) to `<prefix><rel>`. With
    /// `overwrite: never` the object is created only where none is (a 412 whose object
    /// is this very file is [`crate::WriteOutcome::AlreadyPresent`]; another object is
    /// [`ErrorClass::Exists`]).
    pub async fn upload(
        &self,
        file: std::fs::File,
        rel: &str,
        journal: &dyn Journal,
        opts: &UploadOptions,
        stop: &CancellationToken,
    ) -> Result<Uploaded, UploadError> {
        let (size, mtime_ns) = identity(&file)?;
        if size > MAX_OBJECT {
            return Err(UploadError::new(
                ErrorClass::TooLarge,
                "upload",
                format!("{size} bytes is over S3's 5 TiB object limit"),
            ));
        }
        let key = self.server.key_for(rel);
        let f = Sending {
            file: Arc::new(file),
            key: &key,
            id: (size, mtime_ns),
            journal,
            token: opts
                .token
                .clone()
                .unwrap_or_else(|| crate::file_token(&self.server.name, rel, size, mtime_ns)),
            opts,
        };
        let work = async {
            if size < self.server.multipart.threshold {
                if journal.load().is_some() {
                    self.abort_recorded(journal).await;
                }
                if size > crate::buffers::budget().bytes() / 4 {
                    // Too large a share of the buffer budget to hold whole: streamed
                    // from disk (bounded memory).
                    self.put_streamed(&f, UploadMode::Single).await
                } else {
                    self.put_single(&f).await
                }
            } else if size <= MAX_PUT && self.multipart_refused.load(Ordering::Relaxed) {
                self.abort_recorded(journal).await;
                self.put_streamed(&f, UploadMode::Fallback).await
            } else {
                match self.put_multipart(&f).await {
                    Err(e)
                        if e.class == ErrorClass::Refused
                            && matches!(e.op, "CreateMultipartUpload" | "UploadPart")
                            && size <= MAX_PUT =>
                    {
                        // A policy written for single PUTs: try one PutObject.
                        self.abort_recorded(journal).await;
                        let r = self.put_streamed(&f, UploadMode::Fallback).await;
                        if r.is_ok() && !self.multipart_refused.swap(true, Ordering::Relaxed) {
                            tracing::warn!(
                                server = %self.server.name,
                                bucket = %self.server.bucket,
                                refused = %e,
                                "the destination refuses multipart uploads but accepts single PUTs: files up to 5 GiB now go as one PutObject (slower, no resume); run `outpost policy {}` for statements that admit parts",
                                self.server.name
                            );
                        }
                        r
                    }
                    r => r,
                }
            }
        };
        tokio::select! {
            r = work => r,
            _ = stop.cancelled() => Err(UploadError::new(ErrorClass::Interrupted, "upload", "interrupted by shutdown")),
        }
    }

    /// How long after a CreateMultipartUpload was sent the store may still begin its
    /// upload, in seconds: the read timeout (we wait that long for its answer; a store
    /// slower than that to begin an upload already fails our requests).
    fn answer_within(&self) -> i64 {
        (self.server.timeouts.read.as_secs_f64().ceil() as i64).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes() {
        const MIB: u64 = 1 << 20;
        // (file size, configured part size, expected part size)
        let cases = [
            (100 * MIB, 16 * MIB, 16 * MIB),
            (0, 16 * MIB, 16 * MIB),
            (160_000 * MIB, 16 * MIB, 16 * MIB),
            (160_001 * MIB, 16 * MIB, 17 * MIB),
            (5u64 << 40, 16 * MIB, 525 * MIB),
            (7 * MIB + 1, 5 * MIB, 5 * MIB),
        ];
        for (size, conf, want) in cases {
            let got = part_size_for(size, conf);
            assert_eq!(got, want, "size {size}");
            assert!(size.div_ceil(got) <= MAX_PARTS);
        }
    }
}
