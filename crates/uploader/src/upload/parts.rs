//! Step two of a multipart upload: send the parts the store does not hold yet, at most
//! `multipart.concurrency` at once, each read into a buffer of the upload's pool and
//! sent with its checksum (its CRC-64/NVME computed in the same pass, for the
//! whole-object value). A reader may change the concurrency or the part request
//! here; which parts are missing is [`Plan::missing`], where they start and end is
//! [`Plan::offset`] / [`Plan::part_len`].

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::CompletedPart;
use outpost_config::Server;
use tokio::task::JoinSet;

use crate::bandwidth::limits;
use crate::buffers::{BufferPool, read_at};
use crate::checksum::{ObjectDigest, Sums};
use crate::upload::multipart::Plan;
use outpost_config::Checksum;

use crate::upload::requests::{Owned, WithChecksum, send_object, sent_part};
use crate::{Destination, ErrorClass, UploadError};

/// What each part task needs (cloned into it).
#[derive(Clone)]
struct PartJob {
    /// The server's client.
    client: aws_sdk_s3::Client,
    /// Bucket, checksum kind, expected owner, timeouts.
    server: Arc<Server>,
    /// The object's key.
    key: String,
    /// The upload the parts go to.
    upload_id: String,
    /// Payload unsigned (`Integrity::signed`).
    unsigned: bool,
    /// The checksum header each part carries (`Integrity::header`).
    header: Option<Checksum>,
    /// The claimed file, read at each part's offset.
    file: Arc<std::fs::File>,
    /// The upload's own buffers, recycled from part to part.
    pool: Arc<BufferPool>,
    /// Taken while a part acquires its bytes of `max_bandwidth`: the parts of one file
    /// are paced one after the other (staggered, so one is sent while the next is
    /// paced), and chunk by chunk with other uploads' parts.
    pace: Arc<tokio::sync::Mutex<()>>,
}

impl PartJob {
    /// Reads part `n` (`len` bytes at `offset`) and sends it.
    async fn send(
        self,
        n: i32,
        offset: u64,
        len: u64,
    ) -> Result<(i32, CompletedPart, Sums), UploadError> {
        // Paced before the read: a part waiting for its bytes holds no buffer. Parts
        // paced side by side would all be ready at once and then all be sent at once,
        // leaving the limit unused meanwhile: one part of the file is paced at a time.
        {
            let _turn = self.pace.lock().await;
            limits().acquire(&self.server.name, len).await;
        }
        let (data, release) = read_at(self.file, offset, len, Some(self.pool)).await?;
        let mut digest = ObjectDigest::new(self.header, false);
        digest.update(&data);
        let sums = digest.finish();
        let sum = sums.sum.clone();
        let req = self
            .client
            .upload_part()
            .bucket(&self.server.bucket)
            .key(self.key)
            .upload_id(self.upload_id)
            .part_number(n)
            .owner(&self.server)
            .content_length(len as i64)
            .body(ByteStream::from(data))
            .with_checksum(sum.clone());
        let timeouts = &self.server.timeouts;
        let out = send_object!(req, self.unsigned, "UploadPart", timeouts, Some(&release))?;
        Ok((n, sent_part(n, out.e_tag(), sum), sums))
    }
}

impl Destination {
    /// Sends the parts of `plan` not in `done` to `upload_id`; returns every part, by
    /// number, and the checksums of those it sent. The first failure ends it (the
    /// journal stays: a retry resumes).
    pub(super) async fn send_parts(
        &self,
        file: &Arc<std::fs::File>,
        plan: &Plan<'_>,
        upload_id: &str,
        mut done: BTreeMap<i32, CompletedPart>,
    ) -> Result<(BTreeMap<i32, CompletedPart>, BTreeMap<i32, Sums>), UploadError> {
        let mut sums = BTreeMap::new();
        let limit = self.server.multipart.concurrency.max(1);
        let job = PartJob {
            client: (*self.client).clone(),
            server: self.server.clone(),
            key: plan.key.to_owned(),
            upload_id: upload_id.to_owned(),
            unsigned: !self.integrity.signed,
            header: self.integrity.header,
            file: file.clone(),
            // A paced upload keeps no idle buffer: between its parts it waits for
            // tokens, and a kept buffer would hold `max_buffer_memory` from other
            // servers' uploads all that time.
            pool: BufferPool::new(
                plan.part_size,
                if limits().paced(&self.server.name) {
                    0
                } else {
                    limit
                },
            ),
            pace: Arc::default(),
        };
        let mut todo = plan.missing(&done).collect::<Vec<_>>().into_iter();
        let mut tasks: JoinSet<Result<(i32, CompletedPart, Sums), UploadError>> = JoinSet::new();
        loop {
            while tasks.len() < limit
                && let Some(n) = todo.next()
            {
                tasks.spawn(job.clone().send(n, plan.offset(n), plan.part_len(n)));
            }
            match tasks.join_next().await {
                None => break,
                Some(Ok(Ok((n, p, sum)))) => {
                    done.insert(n, p);
                    sums.insert(n, sum);
                }
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(e)) => {
                    return Err(UploadError::new(
                        ErrorClass::Transient,
                        "UploadPart",
                        e.to_string(),
                    ));
                }
            }
        }
        Ok((done, sums))
    }
}
