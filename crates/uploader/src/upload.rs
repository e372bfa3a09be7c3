//! Moving one file: a single PutObject below the threshold, else a multipart upload
//! whose id is journaled before any part is sent, resumed with ListParts after a crash,
//! with at most `multipart.concurrency` parts read into memory at once.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ObjectCannedAcl,
    ServerSideEncryption, StorageClass,
};
use outpost_config::{Checksum, Sse};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::buffers::{BufferPool, read_at};
use crate::limits::{MAX_OBJECT, MAX_PARTS, MAX_PUT};
use crate::{Destination, ErrorClass, Journal, PartChecksum, UploadError, Uploaded};
use std::sync::atomic::Ordering;

/// The journal of a multipart upload in progress.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MpuRecord {
    /// Upload id from CreateMultipartUpload.
    pub upload_id: String,
    /// Bucket it was created in.
    pub bucket: String,
    /// Key it was created for.
    pub key: String,
    /// File size it was created for.
    pub size: u64,
    /// File mtime it was created for.
    pub mtime_ns: i128,
    /// Part size used.
    pub part_size: u64,
    /// Set (with an empty `upload_id`) when a CreateMultipartUpload's answer was lost:
    /// the store may hold an upload begun at or after this time that nobody recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspect_since_unix: Option<i64>,
}

/// The part size for a file of `size` bytes: the configured size, grown so the upload
/// needs no more than 10,000 parts, in whole MiB.
pub fn part_size_for(size: u64, configured: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    let min = size.div_ceil(MAX_PARTS);
    configured.max(min).div_ceil(MIB) * MIB
}

/// Size and mtime of an open file: what must not change while it uploads.
fn identity(file: &std::fs::File) -> Result<(u64, i128), UploadError> {
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

/// Sets the headers every object write carries: the ACL, the expected owner,
/// encryption and storage class.
macro_rules! object_settings {
    ($req:expr, $server:expr) => {{
        let s = $server;
        let mut r = $req
            .acl(ObjectCannedAcl::BucketOwnerFullControl)
            .set_expected_bucket_owner(s.expected_bucket_owner.clone());
        match &s.sse {
            Some(Sse::Aes256) => r = r.server_side_encryption(ServerSideEncryption::Aes256),
            Some(Sse::Kms { kms_key_id }) => {
                r = r
                    .server_side_encryption(ServerSideEncryption::AwsKms)
                    .ssekms_key_id(kms_key_id.clone())
            }
            None => {}
        }
        if let Some(c) = &s.storage_class {
            r = r.storage_class(StorageClass::from(c.as_str()));
        }
        r
    }};
}

pub(crate) use object_settings;

/// Adds the checksum header of `sum` to a PutObject or UploadPart request.
macro_rules! with_checksum {
    ($req:expr, $sum:expr) => {{
        match $sum {
            PartChecksum::Crc32c(v) => $req.checksum_crc32_c(v),
            PartChecksum::Crc64Nvme(v) => $req.checksum_crc64_nvme(v),
            PartChecksum::Md5(v) => $req.content_md5(v),
        }
    }};
}

pub(crate) use with_checksum;

/// Sends a PutObject or UploadPart, without payload signing where the endpoint is TLS.
macro_rules! send_object {
    ($req:expr, $unsigned:expr) => {{
        let op = $req.customize();
        if $unsigned {
            op.disable_payload_signing().send().await
        } else {
            op.send().await
        }
    }};
}

impl Destination {
    /// Uploads `file` (opened read-only from its claim) to `<prefix><rel>`.
    pub async fn upload(
        &self,
        file: std::fs::File,
        rel: &str,
        journal: &dyn Journal,
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
        let file = Arc::new(file);
        let work = async {
            if size < self.server.multipart.threshold {
                if journal.load().is_some() {
                    self.abort_recorded(journal).await;
                }
                if size > crate::buffers::budget().bytes() / 4 {
                    // Too large a share of the buffer budget to hold whole: streamed
                    // from disk (bounded memory).
                    self.put_streamed(file, &key, size, mtime_ns).await
                } else {
                    self.put_single(file, &key, size, mtime_ns).await
                }
            } else if size <= MAX_PUT && self.multipart_refused.load(Ordering::Relaxed) {
                self.abort_recorded(journal).await;
                self.put_streamed(file, &key, size, mtime_ns).await
            } else {
                match self
                    .put_multipart(file.clone(), &key, size, mtime_ns, journal)
                    .await
                {
                    Err(e)
                        if e.class == ErrorClass::Refused
                            && matches!(e.op, "CreateMultipartUpload" | "UploadPart")
                            && size <= MAX_PUT =>
                    {
                        // A policy written for single PUTs: try one PutObject.
                        self.abort_recorded(journal).await;
                        let r = self.put_streamed(file, &key, size, mtime_ns).await;
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

    async fn put_single(
        &self,
        file: Arc<std::fs::File>,
        key: &str,
        size: u64,
        mtime_ns: i128,
    ) -> Result<Uploaded, UploadError> {
        let data = read_at(file.clone(), 0, size, None).await?;
        if identity(&file)? != (size, mtime_ns) {
            return Err(UploadError::new(
                ErrorClass::Transient,
                "read",
                "the file changed while it was read; it will be read again",
            ));
        }
        let sum = PartChecksum::compute(self.server.checksum, &data);
        let req = self
            .client
            .put_object()
            .bucket(&self.server.bucket)
            .key(key)
            .content_length(size as i64)
            .body(ByteStream::from(data));
        let req = object_settings!(req, &self.server);
        let req = with_checksum!(req, sum);
        send_object!(req, self.unsigned_payload).map_err(|e| UploadError::sdk("PutObject", e))?;
        Ok(Uploaded {
            bytes: size,
            parts: 1,
            resumed: false,
        })
    }

    /// One PutObject streamed from disk (bounded memory): the checksum is computed in a
    /// first pass, then the file is sent with it, so the store verifies every byte.
    async fn put_streamed(
        &self,
        file: Arc<std::fs::File>,
        key: &str,
        size: u64,
        mtime_ns: i128,
    ) -> Result<Uploaded, UploadError> {
        let kind = self.server.checksum;
        let f = file.clone();
        let sum = tokio::task::spawn_blocking(move || checksum_of_file(&f, kind, size))
            .await
            .map_err(|e| UploadError::new(ErrorClass::Transient, "read", e.to_string()))??;
        if identity(&file)? != (size, mtime_ns) {
            return Err(UploadError::new(
                ErrorClass::Transient,
                "read",
                "the file changed while it was read; it will be read again",
            ));
        }
        let mut dup = file.try_clone().map_err(|e| UploadError::io("open", &e))?;
        std::io::Seek::seek(&mut dup, std::io::SeekFrom::Start(0))
            .map_err(|e| UploadError::io("read", &e))?;
        let body = ByteStream::read_from()
            .file(tokio::fs::File::from_std(dup))
            .length(aws_smithy_types::byte_stream::Length::Exact(size))
            .build()
            .await
            .map_err(|e| UploadError::new(ErrorClass::Transient, "read", e.to_string()))?;
        let req = self
            .client
            .put_object()
            .bucket(&self.server.bucket)
            .key(key)
            .content_length(size as i64)
            .body(body);
        let req = object_settings!(req, &self.server);
        let req = with_checksum!(req, sum);
        send_object!(req, self.unsigned_payload).map_err(|e| UploadError::sdk("PutObject", e))?;
        Ok(Uploaded {
            bytes: size,
            parts: 1,
            resumed: false,
        })
    }

    async fn put_multipart(
        &self,
        file: Arc<std::fs::File>,
        key: &str,
        size: u64,
        mtime_ns: i128,
        journal: &dyn Journal,
    ) -> Result<Uploaded, UploadError> {
        let s = &self.server;
        let part_size = part_size_for(size, s.multipart.part_size);
        let nparts = size.div_ceil(part_size).max(1) as i32;
        let mut done: BTreeMap<i32, CompletedPart> = BTreeMap::new();
        let mut resumed = false;
        let record = journal
            .load()
            .and_then(|b| serde_json::from_slice::<MpuRecord>(&b).ok());
        let mut upload_id = None;
        let record = match record {
            Some(r) if r.upload_id.is_empty() => {
                if let Some(since) = r.suspect_since_unix {
                    self.abort_orphans(&r.key, since).await;
                }
                journal.clear();
                None
            }
            other => other,
        };
        if let Some(r) = record {
            let same = r.bucket == s.bucket
                && r.key == key
                && r.size == size
                && r.mtime_ns == mtime_ns
                && r.part_size == part_size;
            if same {
                match self.list_parts(key, &r.upload_id).await {
                    Ok(parts) => {
                        for p in parts {
                            let n = p.part_number().unwrap_or(0);
                            let want = if n == nparts {
                                size - part_size * (nparts as u64 - 1)
                            } else {
                                part_size
                            };
                            if n >= 1 && n <= nparts && p.size() == Some(want as i64) {
                                done.insert(n, completed(&p));
                            }
                        }
                        resumed = true;
                        tracing::info!(bucket = %s.bucket, key, parts_done = done.len(), parts = nparts, "resuming multipart upload");
                        upload_id = Some(r.upload_id.clone());
                    }
                    Err(e)
                        if e.class == ErrorClass::Transient
                            && e.code.as_deref() != Some("NoSuchUpload") =>
                    {
                        // Not known to be gone: keep the journal and try again later.
                        return Err(e);
                    }
                    Err(e) => {
                        tracing::info!(bucket = %s.bucket, key, error = %e, "recorded multipart upload is gone; starting again");
                        // A store may answer 403 for an upload it no longer has; try to
                        // abort it anyway so nothing is left open.
                        self.abort(key, &r.upload_id).await;
                        journal.clear();
                    }
                }
            } else {
                tracing::info!(bucket = %s.bucket, key, "file changed since its multipart upload began; aborting it");
                self.abort_recorded(journal).await;
            }
        }
        let upload_id = match upload_id {
            Some(id) => id,
            None => {
                let mut req = s.client_create(&self.client, key);
                req = object_settings!(req, s);
                // Recorded before the request: a crash or a lost answer after the store
                // began the upload leaves a trace that the next attempt cleans up.
                let since = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64)
                    - 2;
                let suspect = MpuRecord {
                    upload_id: String::new(),
                    bucket: s.bucket.clone(),
                    key: key.to_owned(),
                    size,
                    mtime_ns,
                    part_size,
                    suspect_since_unix: Some(since),
                };
                journal
                    .save(&serde_json::to_vec(&suspect).unwrap_or_default())
                    .map_err(|e| UploadError::io("journal", &e))?;
                let out = match req.send().await {
                    Ok(out) => out,
                    Err(e) => {
                        let e = UploadError::sdk("CreateMultipartUpload", e);
                        if e.code.is_some() {
                            // The store answered: no upload was begun.
                            journal.clear();
                        }
                        return Err(e);
                    }
                };
                let id = out.upload_id().unwrap_or_default().to_owned();
                let rec = MpuRecord {
                    upload_id: id.clone(),
                    bucket: s.bucket.clone(),
                    key: key.to_owned(),
                    size,
                    mtime_ns,
                    part_size,
                    suspect_since_unix: None,
                };
                let bytes = serde_json::to_vec(&rec).unwrap_or_default();
                if let Err(e) = journal.save(&bytes) {
                    // Not recorded: do not send parts for an upload we could lose track of.
                    self.abort(key, &id).await;
                    return Err(UploadError::io("journal", &e));
                }
                id
            }
        };
        let mut tasks: JoinSet<Result<(i32, CompletedPart), UploadError>> = JoinSet::new();
        let mut next = 1;
        let limit = s.multipart.concurrency.max(1);
        let pool = BufferPool::new(part_size, limit);
        loop {
            while tasks.len() < limit && next <= nparts {
                let n = next;
                next += 1;
                if done.contains_key(&n) {
                    continue;
                }
                let offset = part_size * (n as u64 - 1);
                let len = part_size.min(size - offset);
                let file = file.clone();
                let client = self.client.clone();
                let bucket = s.bucket.clone();
                let key = key.to_owned();
                let id = upload_id.clone();
                let kind = s.checksum;
                let owner = s.expected_bucket_owner.clone();
                let unsigned = self.unsigned_payload;
                let pool = pool.clone();
                tasks.spawn(async move {
                    let data = read_at(file, offset, len, Some(pool)).await?;
                    let sum = PartChecksum::compute(kind, &data);
                    let req = client
                        .upload_part()
                        .bucket(bucket)
                        .key(key)
                        .upload_id(id)
                        .part_number(n)
                        .set_expected_bucket_owner(owner)
                        .content_length(len as i64)
                        .body(ByteStream::from(data));
                    let req = with_checksum!(req, sum.clone());
                    let out = send_object!(req, unsigned)
                        .map_err(|e| UploadError::sdk("UploadPart", e))?;
                    let mut p = CompletedPart::builder()
                        .part_number(n)
                        .set_e_tag(out.e_tag().map(str::to_owned));
                    match sum {
                        PartChecksum::Crc32c(v) => p = p.checksum_crc32_c(v),
                        PartChecksum::Crc64Nvme(v) => p = p.checksum_crc64_nvme(v),
                        PartChecksum::Md5(_) => {}
                    }
                    Ok((n, p.build()))
                });
            }
            match tasks.join_next().await {
                None => break,
                Some(Ok(Ok((n, p)))) => {
                    done.insert(n, p);
                }
                Some(Ok(Err(e))) if resumed && e.class == ErrorClass::Refused => {
                    // A resumed upload that no longer takes parts (completed or gone on
                    // a store that answers 403 rather than NoSuchUpload): start afresh.
                    journal.clear();
                    return Err(UploadError::new(
                        ErrorClass::Transient,
                        "UploadPart",
                        format!(
                            "the recorded multipart upload no longer accepts parts ({e}); starting a new one"
                        ),
                    ));
                }
                Some(Ok(Err(e))) => return Err(e), // the journal stays: the retry resumes
                Some(Err(e)) => {
                    return Err(UploadError::new(
                        ErrorClass::Transient,
                        "UploadPart",
                        e.to_string(),
                    ));
                }
            }
        }
        if identity(&file)? != (size, mtime_ns) {
            self.abort(key, &upload_id).await;
            journal.clear();
            return Err(UploadError::new(
                ErrorClass::Transient,
                "read",
                "the file changed during its upload; the upload was aborted and will start again",
            ));
        }
        let parts: Vec<CompletedPart> = done.into_values().collect();
        let t_complete = std::time::Instant::now();
        tracing::debug!(
            key,
            parts = nparts,
            "all parts sent; completing the multipart upload"
        );
        let res = self
            .client
            .complete_multipart_upload()
            .bucket(&s.bucket)
            .key(key)
            .upload_id(&upload_id)
            .set_expected_bucket_owner(s.expected_bucket_owner.clone())
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        match res {
            Ok(_) => {
                tracing::debug!(
                    key,
                    took_ms = t_complete.elapsed().as_millis() as u64,
                    "multipart upload completed"
                );
                journal.clear();
                Ok(Uploaded {
                    bytes: size,
                    parts: nparts as u32,
                    resumed,
                })
            }
            Err(e) => {
                let e = UploadError::sdk("CompleteMultipartUpload", e);
                if e.code.as_deref() == Some("NoSuchUpload") {
                    journal.clear();
                }
                Err(e)
            }
        }
    }

    async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<aws_sdk_s3::types::Part>, UploadError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_parts()
                .bucket(&self.server.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_expected_bucket_owner(self.server.expected_bucket_owner.clone())
                .set_part_number_marker(marker.clone())
                .send()
                .await
                .map_err(|e| UploadError::sdk("ListParts", e))?;
            out.extend(page.parts().iter().cloned());
            if page.is_truncated() == Some(true) {
                marker = page.next_part_number_marker().map(str::to_owned);
                if marker.is_none() {
                    break;
                }
            } else {
                break;
            }
        }
        Ok(out)
    }

    /// Aborts an upload, retrying transient failures a few times: an upload left open
    /// costs the customer storage until their lifecycle rule runs.
    async fn abort(&self, key: &str, upload_id: &str) {
        let r = quick_retries(|| async {
            self.client
                .abort_multipart_upload()
                .bucket(&self.server.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_expected_bucket_owner(self.server.expected_bucket_owner.clone())
                .send()
                .await
                .map_err(|e| UploadError::sdk("AbortMultipartUpload", e))
        })
        .await;
        match r {
            Ok(_) => tracing::info!(bucket = %self.server.bucket, key, "aborted multipart upload"),
            Err(e) if e.code.as_deref() == Some("NoSuchUpload") => {}
            Err(e) => {
                tracing::warn!(bucket = %self.server.bucket, key, error = %e, "cannot abort multipart upload; the bucket's lifecycle rule will clean it")
            }
        }
    }

    /// After a CreateMultipartUpload whose answer was lost (the store may have created
    /// the upload anyway): aborts uploads of `key` begun since `since_unix`, when the
    /// policy lets us list them; otherwise the bucket's lifecycle rule cleans them.
    async fn abort_orphans(&self, key: &str, since_unix: i64) {
        let listed = quick_retries(|| async {
            self.client
                .list_multipart_uploads()
                .bucket(&self.server.bucket)
                .prefix(key)
                .set_expected_bucket_owner(self.server.expected_bucket_owner.clone())
                .send()
                .await
                .map_err(|e| UploadError::sdk("ListMultipartUploads", e))
        })
        .await;
        match listed {
            Ok(out) => {
                for u in out.uploads() {
                    let began = u.initiated().map_or(0, |t| t.secs());
                    if u.key() == Some(key)
                        && began >= since_unix
                        && let Some(id) = u.upload_id()
                    {
                        self.abort(key, id).await;
                    }
                }
            }
            Err(e) => {
                tracing::debug!(key, error = %e, "cannot list uploads to clean an unrecorded one; left to the lifecycle rule")
            }
        }
    }

    /// Aborts the multipart upload recorded in `journal`, if any, and forgets it.
    pub async fn abort_recorded(&self, journal: &dyn Journal) {
        if let Some(r) = journal
            .load()
            .and_then(|b| serde_json::from_slice::<MpuRecord>(&b).ok())
            && r.bucket == self.server.bucket
        {
            if r.upload_id.is_empty() {
                if let Some(since) = r.suspect_since_unix {
                    self.abort_orphans(&r.key, since).await;
                }
            } else {
                self.abort(&r.key, &r.upload_id).await;
            }
        }
        journal.clear();
    }
}

/// The checksum of a whole file, read in 8 MiB pieces.
fn checksum_of_file(
    file: &std::fs::File,
    kind: Checksum,
    size: u64,
) -> Result<PartChecksum, UploadError> {
    use md5::Digest;
    let mut buf = vec![0u8; 8 << 20];
    let mut off = 0u64;
    let mut crc32 = 0u32;
    let mut crc64 = crc64fast_nvme::Digest::new();
    let mut md5 = md5::Md5::new();
    while off < size {
        let n = (size - off).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], off)
            .map_err(|e| UploadError::io("read", &e))?;
        match kind {
            Checksum::Crc32c => crc32 = crc32c::crc32c_append(crc32, &buf[..n]),
            Checksum::Crc64Nvme => crc64.write(&buf[..n]),
            Checksum::Md5 => md5.update(&buf[..n]),
        }
        off += n as u64;
    }
    Ok(PartChecksum::from_digest(
        kind,
        crc32,
        crc64.sum64(),
        md5.finalize().as_slice(),
    ))
}

/// Runs `op` up to 6 times while it fails transiently (NoSuchUpload is an answer, not a
/// failure), 100 ms … 1.6 s apart: for clean-up calls that must not be left undone.
async fn quick_retries<T, F, Fut>(mut op: F) -> Result<T, UploadError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, UploadError>>,
{
    let mut attempt = 0u32;
    loop {
        match op().await {
            Err(e)
                if e.class == ErrorClass::Transient
                    && e.code.as_deref() != Some("NoSuchUpload")
                    && attempt < 5 =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
                attempt += 1;
            }
            r => return r,
        }
    }
}

fn completed(p: &aws_sdk_s3::types::Part) -> CompletedPart {
    CompletedPart::builder()
        .set_part_number(p.part_number())
        .set_e_tag(p.e_tag().map(str::to_owned))
        .set_checksum_crc32_c(p.checksum_crc32_c().map(str::to_owned))
        .set_checksum_crc64_nvme(p.checksum_crc64_nvme().map(str::to_owned))
        .build()
}

/// CreateMultipartUpload with the server's checksum algorithm.
pub(crate) trait CreateExt {
    fn client_create(
        &self,
        client: &aws_sdk_s3::Client,
        key: &str,
    ) -> aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder;
}

impl CreateExt for outpost_config::Server {
    fn client_create(
        &self,
        client: &aws_sdk_s3::Client,
        key: &str,
    ) -> aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder
    {
        let req = client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key);
        match self.checksum {
            Checksum::Crc32c => req.checksum_algorithm(ChecksumAlgorithm::Crc32C),
            Checksum::Crc64Nvme => req.checksum_algorithm(ChecksumAlgorithm::Crc64Nvme),
            Checksum::Md5 => req,
        }
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
