//! A multipart upload in three steps, each its own function and file: start or resume
//! (`start.rs`: the journal's state decides), send the missing parts (`parts.rs`),
//! complete (`complete.rs`). This file only runs them in order and holds the [`Plan`]
//! they share; a reader changing the resume rule reads `journal.rs` then `start.rs`.

use std::collections::BTreeMap;

use aws_sdk_s3::types::CompletedPart;

use outpost_config::Checksum;

use crate::PartChecksum;
use crate::checksum::{Sums, combine_crc32c, combine_crc64};
use crate::upload::complete::Completed;
use crate::upload::part_size_for;
use crate::upload::single::digest_range;
use crate::upload::{Identity, Sending};
use crate::{Destination, ErrorClass, UploadError, UploadMode, Uploaded, WriteOutcome};

/// How one file is cut into parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Plan<'a> {
    /// The object's key.
    pub key: &'a str,
    /// Size and mtime the file had when its upload began.
    pub id: Identity,
    /// Bytes per part (all but the last).
    pub part_size: u64,
    /// Number of parts (at least 1: an empty file is one empty part).
    pub nparts: i32,
}

impl<'a> Plan<'a> {
    /// The plan for a file of `id` with the configured part size.
    pub fn new(key: &'a str, id: Identity, configured_part_size: u64) -> Plan<'a> {
        let part_size = part_size_for(id.0, configured_part_size);
        Plan {
            key,
            id,
            part_size,
            nparts: id.0.div_ceil(part_size).max(1) as i32,
        }
    }

    /// Where part `n` (1-based) begins in the file.
    pub fn offset(&self, n: i32) -> u64 {
        self.part_size * (n as u64 - 1)
    }

    /// The length of part `n`.
    pub fn part_len(&self, n: i32) -> u64 {
        self.part_size.min(self.id.0 - self.offset(n))
    }

    /// The parts not in `done`, in order.
    pub fn missing<'d>(
        &self,
        done: &'d BTreeMap<i32, CompletedPart>,
    ) -> impl Iterator<Item = i32> + 'd {
        (1..=self.nparts).filter(move |n| !done.contains_key(n))
    }
}

impl Destination {
    /// Uploads `file` as a multipart upload, resuming the one its journal records.
    pub(super) async fn put_multipart(&self, f: &Sending<'_>) -> Result<Uploaded, UploadError> {
        let (file, journal) = (&f.file, f.journal);
        let plan = Plan::new(f.key, f.id, self.server.multipart.part_size);
        let mut started = self.start_or_resume(&plan, journal, &f.token).await?;
        let done = std::mem::take(&mut started.done);
        let held: Vec<i32> = done.keys().copied().collect();
        // The MD5 and line count (only when asked) need the bytes in order: one
        // sequential pass beside the parts, mostly from the page cache.
        let measuring = f.opts.measure.then(|| {
            let (file, size, kind) = (file.clone(), plan.id.0, self.integrity.header);
            tokio::task::spawn_blocking(move || digest_range(&file, 0, size, kind, true))
        });
        let sent = self.send_parts(file, &plan, &started.upload_id, done).await;
        let (parts, mut sums) = match sent {
            Ok(parts) => parts,
            Err(e) if started.resumed && e.class == ErrorClass::Refused => {
                // A resumed upload that no longer takes parts (completed or gone on a
                // store that answers 403 rather than NoSuchUpload): start afresh.
                let mut entry = started.entry;
                entry.state = entry.state.forget_upload();
                entry.persist(journal)?;
                return Err(UploadError::new(
                    ErrorClass::Transient,
                    "UploadPart",
                    format!(
                        "the recorded multipart upload no longer accepts parts ({e}); starting a new one"
                    ),
                ));
            }
            Err(e) => return Err(e), // the journal stays: the retry resumes
        };
        // Parts the store already held (a resumed upload) are read again for their
        // checksums: the whole-object values combine every part's.
        if !held.is_empty() {
            let (file, kind, plan_c) = (file.clone(), self.integrity.header, plan);
            let ranges: Vec<(i32, u64, u64)> = held
                .iter()
                .map(|&n| (n, plan_c.offset(n), plan_c.part_len(n)))
                .collect();
            let read = tokio::task::spawn_blocking(move || {
                ranges
                    .into_iter()
                    .map(|(n, off, len)| Ok((n, digest_range(&file, off, len, kind, false)?)))
                    .collect::<Result<Vec<(i32, Sums)>, UploadError>>()
            })
            .await
            .map_err(|e| UploadError::new(ErrorClass::Transient, "read", e.to_string()))??;
            sums.extend(read);
        }
        let measured =
            match measuring {
                Some(task) => Some(task.await.map_err(|e| {
                    UploadError::new(ErrorClass::Transient, "read", e.to_string())
                })??),
                None => None,
            };
        let upload_id = started.upload_id.clone();
        let completed = self
            .complete(f, &plan, &upload_id, started.entry, parts)
            .await?;
        let up = Uploaded {
            bytes: f.id.0,
            parts: plan.nparts as u32,
            resumed: started.resumed,
            mode: UploadMode::Multipart,
            outcome: WriteOutcome::Written,
            etag: None,
            version_id: None,
            crc64nvme: combine_crc64(sums.values().map(|s| (s.crc64, s.len))),
            checksum: self.integrity.header.and_then(|k| whole_checksum(k, &sums)),
            store_checksum: None,
            measured: measured.and_then(|m| m.measured),
        };
        Ok(match completed {
            Completed::Written {
                etag,
                version_id,
                store_checksum,
            } => Uploaded {
                etag,
                version_id,
                store_checksum,
                ..up
            },
            Completed::AlreadyPresent(found) => up.already_present(found),
        })
    }
}

/// The configured checksum of the whole object from its parts' (in order): CRC-32C and
/// CRC-64/NVME combine; an MD5 does not.
fn whole_checksum(kind: Checksum, sums: &BTreeMap<i32, Sums>) -> Option<PartChecksum> {
    match kind {
        Checksum::Crc64Nvme => Some(PartChecksum::from_digest(
            kind,
            0,
            combine_crc64(sums.values().map(|s| (s.crc64, s.len))),
            &[],
        )),
        Checksum::Crc32c => {
            let parts: Option<Vec<(u32, u64)>> = sums
                .values()
                .map(|s| s.crc32c.map(|v| (v, s.len)))
                .collect();
            Some(PartChecksum::from_digest(
                kind,
                combine_crc32c(parts?),
                0,
                &[],
            ))
        }
        Checksum::Md5 | Checksum::SignedPayload => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn parts_cover_the_file_once() {
        // (file size, configured part size, expected lengths)
        let cases: [(u64, u64, &[u64]); 4] = [
            (0, 5 * MIB, &[0]),
            (5 * MIB, 5 * MIB, &[5 * MIB]),
            (5 * MIB + 1, 5 * MIB, &[5 * MIB, 1]),
            (12 * MIB, 5 * MIB, &[5 * MIB, 5 * MIB, 2 * MIB]),
        ];
        for (size, conf, want) in cases {
            let plan = Plan::new("k", (size, 0), conf);
            let lens: Vec<u64> = (1..=plan.nparts).map(|n| plan.part_len(n)).collect();
            assert_eq!(lens, want, "size {size}");
            for n in 2..=plan.nparts {
                assert_eq!(plan.offset(n), plan.offset(n - 1) + plan.part_len(n - 1));
            }
        }
    }

    #[test]
    fn only_missing_parts_are_sent() {
        let plan = Plan::new("k", (12 * MIB, 0), 5 * MIB);
        let mut done = BTreeMap::new();
        assert_eq!(plan.missing(&done).collect::<Vec<_>>(), [1, 2, 3]);
        done.insert(2, CompletedPart::builder().part_number(2).build());
        assert_eq!(plan.missing(&done).collect::<Vec<_>>(), [1, 3]);
    }
}
