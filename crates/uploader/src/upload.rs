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
    /// Set while a CreateMultipartUpload of this file may have begun an upload nobody
    /// recorded (a kill, or a lost answer, between the request and its journal entry):
    /// the earliest such request's time, minus [`CLOCK_SLACK`]. Kept, beside a recorded
    /// `upload_id` too, until a listing made once the store must have answered showed
    /// every upload those requests could have begun (see [`orphans`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspect_since_unix: Option<i64>,
    /// The latest such request's time (journals of earlier versions lack it:
    /// `suspect_since_unix` + [`CLOCK_SLACK`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspect_last_unix: Option<i64>,
    /// Random; tells this journal apart from every other one on the spool (other claims,
    /// other daemons), whose recorded uploads and intents are never taken for ours.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
}

/// Seconds of difference allowed between our clock and the store's `Initiated` times.
pub(crate) const CLOCK_SLACK: i64 = 2;

impl MpuRecord {
    /// The `Initiated` times (Unix seconds, inclusive) of the uploads an unrecorded
    /// CreateMultipartUpload of this journal may have begun: from the first such request
    /// to `answer_within` seconds after the last (the store begins an upload before it
    /// answers, and we wait `answer_within` for an answer).
    pub fn suspect_window(&self, answer_within: i64) -> Option<(i64, i64)> {
        let since = self.suspect_since_unix?;
        Some((
            since,
            self.last_suspect()?
                .saturating_add(answer_within)
                .saturating_add(CLOCK_SLACK),
        ))
    }

    fn last_suspect(&self) -> Option<i64> {
        let since = self.suspect_since_unix?;
        Some(
            self.suspect_last_unix
                .unwrap_or(since.saturating_add(CLOCK_SLACK)),
        )
    }

    /// From when a listing shows every upload in [`MpuRecord::suspect_window`].
    fn settled_at(&self, answer_within: i64) -> Option<i64> {
        Some(
            self.last_suspect()?
                .saturating_add(answer_within)
                .saturating_add(1),
        )
    }

    /// Records a CreateMultipartUpload about to be sent at `now`.
    fn add_suspect(&mut self, now: i64) {
        let since = now - CLOCK_SLACK;
        let last = self.suspect_last_unix.unwrap_or(i64::MIN);
        self.suspect_since_unix = Some(self.suspect_since_unix.map_or(since, |s| s.min(since)));
        self.suspect_last_unix = Some(last.max(now));
    }

    fn clear_suspect(&mut self) {
        self.suspect_since_unix = None;
        self.suspect_last_unix = None;
    }

    /// Whether there is anything left to remember.
    fn is_empty(&self) -> bool {
        self.upload_id.is_empty() && self.suspect_since_unix.is_none()
    }
}

/// One upload as ListMultipartUploads shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    /// Its key.
    pub key: String,
    /// Its upload id.
    pub upload_id: String,
    /// `Initiated`, Unix seconds (the store's clock).
    pub began: Option<i64>,
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

/// The uploads that an unrecorded CreateMultipartUpload of `own` may have begun and that
/// nothing else accounts for — ours, left open by a kill or a lost answer: uploads of
/// its key begun within its [`MpuRecord::suspect_window`], except its own recorded
/// upload, an upload recorded in any other journal on the spool (`others`: other claims,
/// other daemons on a shared spool), and an upload begun within the window of another
/// journal's own unrecorded request for the same key (it may be that daemon's, between
/// its create and its journal entry: that journal's owner, which sees it too, decides).
pub(crate) fn orphans(
    own: &MpuRecord,
    listed: &[Listed],
    others: &[MpuRecord],
    answer_within: i64,
) -> Vec<String> {
    let Some((from, to)) = own.suspect_window(answer_within) else {
        return Vec::new();
    };
    let within = |b: i64, (f, t): (i64, i64)| f <= b && b <= t;
    listed
        .iter()
        .filter(|u| u.key == own.key && u.upload_id != own.upload_id)
        .filter(|u| u.began.is_some_and(|b| within(b, (from, to))))
        .filter(|u| !others.iter().any(|o| o.upload_id == u.upload_id))
        .filter(|u| {
            !others.iter().any(|o| {
                o.bucket == own.bucket
                    && o.key == own.key
                    && o.suspect_window(answer_within)
                        .is_some_and(|w| u.began.is_some_and(|b| within(b, w)))
            })
        })
        .map(|u| u.upload_id.clone())
        .collect()
}

/// A random token for a new journal.
fn new_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    // RandomState is seeded from the OS once per thread and differs per instance.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(N.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", h.finish())
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn load_record(journal: &dyn Journal) -> Option<MpuRecord> {
    journal
        .load()
        .and_then(|b| serde_json::from_slice::<MpuRecord>(&b).ok())
}

/// Saves `rec`, or forgets the journal when nothing is left to remember.
fn persist(journal: &dyn Journal, rec: &MpuRecord) -> Result<(), UploadError> {
    if rec.is_empty() {
        journal.clear();
        return Ok(());
    }
    journal
        .save(&serde_json::to_vec(rec).unwrap_or_default())
        .map_err(|e| UploadError::io("journal", &e))
}

/// Whether a failed CreateMultipartUpload proves the store began no upload: it
/// answered with a client error (4xx). A lost or cut answer, or a server error that may
/// come after the work was done, proves nothing.
fn no_upload_begun(e: &UploadError) -> bool {
    e.code.is_some()
        && !matches!(
            e.code.as_deref(),
            Some("InternalError" | "ServiceUnavailable" | "SlowDown" | "OperationAborted")
        )
        && !e.message.contains("(HTTP 5")
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
/// Sends a request that carries an object's bytes (PutObject, UploadPart), payload
/// unsigned over TLS, with `timeouts.read` as time without progress
/// (`progress.rs`) rather than the SDK's limit on the whole call.
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
                    self.put_streamed(file, &key, size, mtime_ns, journal).await
                } else {
                    self.put_single(file, &key, size, mtime_ns, journal).await
                }
            } else if size <= MAX_PUT && self.multipart_refused.load(Ordering::Relaxed) {
                self.abort_recorded(journal).await;
                self.put_streamed(file, &key, size, mtime_ns, journal).await
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
                        let r = self.put_streamed(file, &key, size, mtime_ns, journal).await;
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
        journal: &dyn Journal,
    ) -> Result<Uploaded, UploadError> {
        let (data, release) = read_at(file.clone(), 0, size, None).await?;
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
        fence(journal)?;
        send_object!(
            req,
            self.unsigned_payload,
            "PutObject",
            &self.server.timeouts,
            Some(&release)
        )?;
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
        journal: &dyn Journal,
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
        fence(journal)?;
        send_object!(
            req,
            self.unsigned_payload,
            "PutObject",
            &self.server.timeouts,
            None
        )?;
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
        let answer_within = self.answer_within();
        let fresh = || MpuRecord {
            upload_id: String::new(),
            bucket: s.bucket.clone(),
            key: key.to_owned(),
            size,
            mtime_ns,
            part_size,
            suspect_since_unix: None,
            suspect_last_unix: None,
            token: new_token(),
        };
        // What the journal holds for this file: a recorded upload and/or requests whose
        // upload may be unrecorded. Another destination's record is cleaned up whole.
        let mut cur = match load_record(journal) {
            Some(r) if r.bucket == s.bucket && r.key == key => r,
            Some(_) => {
                self.abort_recorded(journal).await;
                fresh()
            }
            None => fresh(),
        };
        if cur.token.is_empty() {
            cur.token = new_token(); // a journal of an earlier version
            persist(journal, &cur)?;
        }
        if cur.suspect_since_unix.is_some() {
            // Clean what we can see now; the store may still begin an upload for a
            // request in flight when we died, so the intent stays recorded until a
            // listing made once it must have answered (at the latest before Complete).
            let listed_at = now_unix();
            match self.sweep(&cur, journal).await {
                Ok(())
                    if cur
                        .settled_at(answer_within)
                        .is_some_and(|t| listed_at >= t) =>
                {
                    cur.clear_suspect();
                    persist(journal, &cur)?;
                }
                Ok(()) => {}
                Err(e) if e.class == ErrorClass::Refused => {
                    // Listing not allowed: nothing more we can do.
                    self.cleanup_failed(journal, key, &e);
                    cur.clear_suspect();
                    persist(journal, &cur)?;
                }
                Err(e) => {
                    tracing::info!(bucket = %s.bucket, key, error = %e, "cannot look for an upload a lost CreateMultipartUpload may have begun; trying again before completing");
                }
            }
        }
        let mut upload_id = None;
        if !cur.upload_id.is_empty() {
            let same = cur.size == size && cur.mtime_ns == mtime_ns && cur.part_size == part_size;
            if same {
                match self.list_parts(key, &cur.upload_id).await {
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
                        upload_id = Some(cur.upload_id.clone());
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
                        self.abort(key, &cur.upload_id, journal).await;
                        cur.upload_id.clear();
                        persist(journal, &cur)?;
                    }
                }
            } else {
                tracing::info!(bucket = %s.bucket, key, "file changed since its multipart upload began; aborting it");
                self.abort(key, &cur.upload_id, journal).await;
                cur.upload_id.clear();
                persist(journal, &cur)?;
            }
        }
        let upload_id = match upload_id {
            Some(id) => id,
            None => {
                let mut req = s.client_create(&self.client, key);
                req = object_settings!(req, s);
                // Recorded before the request: a crash or a lost answer after the store
                // began the upload leaves a trace that a later sweep cleans up.
                let before = MpuRecord {
                    size,
                    mtime_ns,
                    part_size,
                    ..cur.clone()
                };
                cur = before.clone();
                cur.add_suspect(now_unix());
                persist(journal, &cur)?;
                let out = match req.send().await {
                    Ok(out) => out,
                    Err(e) => {
                        let e = UploadError::sdk("CreateMultipartUpload", e);
                        if no_upload_begun(&e) {
                            // This request began nothing: only earlier ones may have.
                            let _ = persist(journal, &before);
                        }
                        return Err(e);
                    }
                };
                let id = out.upload_id().unwrap_or_default().to_owned();
                cur = MpuRecord {
                    upload_id: id.clone(),
                    ..before
                };
                if let Err(e) = persist(journal, &cur) {
                    // Not recorded: do not send parts for an upload we could lose track of.
                    self.abort(key, &id, journal).await;
                    return Err(e);
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
                let timeouts = s.timeouts;
                let pool = pool.clone();
                tasks.spawn(async move {
                    let (data, release) = read_at(file, offset, len, Some(pool)).await?;
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
                    let out = send_object!(req, unsigned, "UploadPart", &timeouts, Some(&release))?;
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
                    cur.upload_id.clear();
                    persist(journal, &cur)?;
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
            self.abort(key, &upload_id, journal).await;
            cur.upload_id.clear();
            persist(journal, &cur)?;
            return Err(UploadError::new(
                ErrorClass::Transient,
                "read",
                "the file changed during its upload; the upload was aborted and will start again",
            ));
        }
        if cur.suspect_since_unix.is_some() {
            // The last chance: once the file is finished its journal is gone.
            self.sweep_when_settled(&cur, journal).await;
            cur.clear_suspect(); // not saved: a crash before Complete sweeps again
        }
        let parts: Vec<CompletedPart> = done.into_values().collect();
        let t_complete = std::time::Instant::now();
        tracing::debug!(
            key,
            parts = nparts,
            "all parts sent; completing the multipart upload"
        );
        fence(journal)?;
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
                    cur.upload_id.clear();
                    persist(journal, &cur)?;
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

    /// How long after a CreateMultipartUpload was sent the store may still begin its
    /// upload, in seconds: the read timeout (we wait that long for its answer; a store
    /// slower than that to begin an upload already fails our requests).
    fn answer_within(&self) -> i64 {
        (self.server.timeouts.read.as_secs_f64().ceil() as i64).max(1)
    }

    /// Aborts an upload, retrying transient failures a few times: an upload left open
    /// costs the customer storage until their lifecycle rule runs. A failure is reported
    /// through `journal` (counted, WARN).
    async fn abort(&self, key: &str, upload_id: &str, journal: &dyn Journal) {
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
            Ok(_) => {
                tracing::info!(bucket = %self.server.bucket, key, upload_id, "aborted multipart upload")
            }
            Err(e) if e.code.as_deref() == Some("NoSuchUpload") => {}
            Err(e) => journal.abort_failed(key, &format!("cannot abort upload {upload_id}: {e}")),
        }
    }

    /// Reports that an upload a lost CreateMultipartUpload may have begun could not be
    /// looked for.
    fn cleanup_failed(&self, journal: &dyn Journal, key: &str, e: &UploadError) {
        journal.abort_failed(
            key,
            &format!(
                "cannot look for an upload a CreateMultipartUpload may have begun unrecorded (kill or lost answer): {e}{}",
                if e.op == "ListMultipartUploads" {
                    "; allow s3:ListBucketMultipartUploads to let outpost clean it"
                } else {
                    ""
                }
            ),
        );
    }

    /// Every upload of `key` (ListMultipartUploads, all pages).
    async fn list_uploads(&self, key: &str) -> Result<Vec<Listed>, UploadError> {
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        for _ in 0..1000 {
            let page = quick_retries(|| async {
                self.client
                    .list_multipart_uploads()
                    .bucket(&self.server.bucket)
                    .prefix(key)
                    .set_key_marker(key_marker.clone())
                    .set_upload_id_marker(id_marker.clone())
                    .set_expected_bucket_owner(self.server.expected_bucket_owner.clone())
                    .send()
                    .await
                    .map_err(|e| UploadError::sdk("ListMultipartUploads", e))
            })
            .await?;
            for u in page.uploads() {
                if let (Some(k), Some(id)) = (u.key(), u.upload_id()) {
                    out.push(Listed {
                        key: k.to_owned(),
                        upload_id: id.to_owned(),
                        began: u.initiated().map(|t| t.secs()),
                    });
                }
            }
            let next = (
                page.next_key_marker().map(str::to_owned),
                page.next_upload_id_marker().map(str::to_owned),
            );
            if page.is_truncated() != Some(true)
                || next.0.is_none()
                || next == (key_marker.clone(), id_marker.clone())
            {
                break;
            }
            (key_marker, id_marker) = next;
        }
        Ok(out)
    }

    /// After a CreateMultipartUpload whose upload may be unrecorded (a kill or a lost
    /// answer): lists the uploads of the key and aborts the [`orphans`] — only uploads
    /// this journal's requests may have begun, never one another journal on the spool
    /// accounts for. The listing comes first: a daemon journals its intent before its
    /// request, so every upload listed is accounted for in the journals read after.
    async fn sweep(&self, own: &MpuRecord, journal: &dyn Journal) -> Result<(), UploadError> {
        let listed = self.list_uploads(&own.key).await?;
        let others: Vec<MpuRecord> = journal
            .spool_journals()
            .map_err(|e| {
                UploadError::new(
                    ErrorClass::Transient,
                    "journal",
                    format!("cannot read the spool's journals: {e}"),
                )
            })?
            .iter()
            .filter_map(|b| serde_json::from_slice::<MpuRecord>(b).ok())
            .filter(|o| o.token != own.token)
            .collect();
        let found = orphans(own, &listed, &others, self.answer_within());
        tracing::debug!(bucket = %self.server.bucket, key = %own.key, listed = listed.len(), orphans = found.len(), "looked for uploads begun unrecorded");
        for id in found {
            self.abort(&own.key, &id, journal).await;
        }
        Ok(())
    }

    /// [`Destination::sweep`] once a listing shows every upload the journal's
    /// unrecorded requests may have begun (waits for that); a failure is reported.
    async fn sweep_when_settled(&self, own: &MpuRecord, journal: &dyn Journal) {
        let answer_within = self.answer_within();
        if let Some(at) = own.settled_at(answer_within) {
            // Never longer than a request made now would need (a clock stepped back, a
            // damaged journal).
            let wait = at
                .saturating_sub(now_unix())
                .min(answer_within + CLOCK_SLACK + 1);
            if wait > 0 {
                tracing::info!(bucket = %self.server.bucket, key = %own.key, wait_s = wait, "a CreateMultipartUpload of an earlier attempt got no recorded answer (kill or lost answer); waiting until the store must have answered, to abort the upload it may have begun");
                tokio::time::sleep(std::time::Duration::from_secs(wait as u64)).await;
            }
        }
        if let Err(e) = self.sweep(own, journal).await {
            self.cleanup_failed(journal, &own.key, &e);
        }
    }

    /// Aborts the multipart upload recorded in `journal`, and any its unrecorded
    /// requests may have begun, then forgets it.
    pub async fn abort_recorded(&self, journal: &dyn Journal) {
        let Some(mut r) = load_record(journal) else {
            journal.clear();
            return;
        };
        if r.bucket != self.server.bucket {
            if !r.is_empty() {
                journal.abort_failed(
                    &r.key,
                    &format!(
                        "recorded for bucket {}, but the server now publishes to {}: left to that bucket's lifecycle rule",
                        r.bucket, self.server.bucket
                    ),
                );
            }
            journal.clear();
            return;
        }
        if !r.upload_id.is_empty() {
            self.abort(&r.key, &r.upload_id, journal).await;
        }
        if r.suspect_since_unix.is_some() {
            if r.token.is_empty() {
                // A journal of an earlier version: named first, so the sweep knows it.
                r.token = new_token();
                if let Err(e) = persist(journal, &r) {
                    self.cleanup_failed(journal, &r.key, &e);
                    journal.clear();
                    return;
                }
            }
            self.sweep_when_settled(&r, journal).await;
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
    let mut buf = vec![0u8; 8 << 20];
    let mut off = 0u64;
    let mut digest = crate::checksum::FileDigest::new(kind);
    while off < size {
        let n = (size - off).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], off)
            .map_err(|e| UploadError::io("read", &e))?;
        digest.update(&buf[..n]);
        off += n as u64;
    }
    Ok(digest.finish())
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

    fn record(key: &str, upload_id: &str, suspect: Option<(i64, i64)>, token: &str) -> MpuRecord {
        MpuRecord {
            upload_id: upload_id.into(),
            bucket: "b".into(),
            key: key.into(),
            size: 1,
            mtime_ns: 2,
            part_size: 3,
            suspect_since_unix: suspect.map(|s| s.0),
            suspect_last_unix: suspect.map(|s| s.1),
            token: token.into(),
        }
    }

    fn up(key: &str, id: &str, began: Option<i64>) -> Listed {
        Listed {
            key: key.into(),
            upload_id: id.into(),
            began,
        }
    }

    #[test]
    fn intents_merge_and_settle_after_the_answer_window() {
        let mut r = record("k", "", None, "t");
        assert_eq!(r.suspect_window(60), None);
        assert_eq!(r.settled_at(60), None);
        assert!(!r.is_empty() || r.upload_id.is_empty());
        r.add_suspect(1000);
        assert_eq!(r.suspect_window(60), Some((998, 1062)));
        assert_eq!(r.settled_at(60), Some(1061));
        // A later request widens the window forward, an earlier one backward.
        r.add_suspect(1100);
        assert_eq!(r.suspect_window(60), Some((998, 1162)));
        r.add_suspect(900);
        assert_eq!(r.suspect_window(60), Some((898, 1162)));
        assert!(!r.is_empty());
        r.clear_suspect();
        assert!(r.is_empty());
        // A journal of the previous version: an intent without its last time or token.
        let old: MpuRecord = serde_json::from_str(
            r#"{"upload_id":"","bucket":"b","key":"k","size":1,"mtime_ns":2,"part_size":3,"suspect_since_unix":998}"#,
        )
        .expect("old journal");
        assert_eq!(old.suspect_window(60), Some((998, 1062)));
        assert_eq!(old.settled_at(60), Some(1061));
        assert!(old.token.is_empty());
        // A damaged journal cannot overflow the window.
        let far = record("k", "", Some((i64::MAX - 1, i64::MAX - 1)), "t");
        assert_eq!(far.suspect_window(60), Some((i64::MAX - 1, i64::MAX)));
        assert_eq!(far.settled_at(60), Some(i64::MAX));
        // The id is always written (tests and operators look for `"upload_id":""`).
        let text = serde_json::to_string(&record("k", "", Some((1, 3)), "t")).expect("json");
        assert!(text.contains(r#""upload_id":"""#), "{text}");
    }

    #[test]
    fn only_uploads_our_unrecorded_requests_may_have_begun_are_orphans() {
        // Our journal: a request at 1000 (window 998..=1062 with a 60 s answer window),
        // and our current upload "mine".
        let own = record("k", "mine", Some((998, 1000)), "ours");
        let listed = [
            up("k", "mine", Some(1001)),  // our recorded upload
            up("k", "lost", Some(1000)),  // begun by our unrecorded request
            up("k", "late", Some(1015)),  // begun late by a slow store: still ours
            up("k", "before", Some(990)), // before our request
            up("k", "after", Some(1070)), // after the store must have answered
            up("k", "unknown", None),     // no Initiated: cannot tell
            up("k2", "other-key", Some(1000)),
            up("k", "theirs", Some(1000)), // recorded in another daemon's journal
            up("k", "pending", Some(1020)), // within another journal's unrecorded request
        ];
        let others = [
            record("k", "theirs", None, "a"),
            record("k", "", Some((1018, 1020)), "b"),
            // Another key's intent covers nothing of ours.
            record("k2", "", Some((990, 1050)), "c"),
        ];
        assert_eq!(
            orphans(&own, &listed, &others, 60),
            vec!["lost".to_owned(), "late".to_owned()]
        );
        // Nothing is an orphan without an unrecorded request.
        assert!(orphans(&record("k", "mine", None, "ours"), &listed, &[], 60).is_empty());
        // Without other journals, every upload of the key within the window goes.
        assert_eq!(
            orphans(&own, &listed, &[], 60),
            vec![
                "lost".to_owned(),
                "late".to_owned(),
                "theirs".to_owned(),
                "pending".to_owned()
            ]
        );
        // Another daemon's intent in another bucket does not protect this bucket's.
        let mut elsewhere = record("k", "", Some((1018, 1020)), "b");
        elsewhere.bucket = "other".into();
        assert_eq!(
            orphans(&own, &listed[8..], &[elsewhere], 60),
            vec!["pending".to_owned()]
        );
    }

    /// Journals exactly as this version writes them: a later version must read them and
    /// write them back byte for byte (the spool keeps them across upgrades).
    const JOURNALS: [&str; 4] = [
        r#"{"upload_id":"","bucket":"b","key":"k","size":1,"mtime_ns":2,"part_size":3,"suspect_since_unix":998,"suspect_last_unix":1000,"token":"00ff"}"#,
        r#"{"upload_id":"up-1","bucket":"b","key":"k","size":1,"mtime_ns":-2,"part_size":3,"token":"00ff"}"#,
        r#"{"upload_id":"up-1","bucket":"b","key":"k","size":1,"mtime_ns":2,"part_size":3,"suspect_since_unix":998,"suspect_last_unix":1000,"token":"00ff"}"#,
        // An earlier version's: no last time, no token.
        r#"{"upload_id":"up-1","bucket":"b","key":"k","size":1,"mtime_ns":2,"part_size":3,"suspect_since_unix":998}"#,
    ];

    #[test]
    fn journals_of_this_version_read_and_write_back_unchanged() {
        for text in JOURNALS {
            let r: MpuRecord = serde_json::from_str(text).expect(text);
            assert_eq!(serde_json::to_string(&r).expect("json"), text);
        }
        let r: MpuRecord = serde_json::from_str(JOURNALS[2]).expect("journal");
        assert_eq!(r, record("k", "up-1", Some((998, 1000)), "00ff"));
    }

    #[test]
    fn only_a_client_error_proves_a_create_began_nothing() {
        let coded = |code: &str, status: u16| UploadError {
            class: ErrorClass::Transient,
            op: "CreateMultipartUpload",
            code: Some(code.into()),
            message: format!("{code} (HTTP {status})"),
        };
        assert!(no_upload_begun(&coded("AccessDenied", 403)));
        assert!(!no_upload_begun(&coded("SlowDown", 503)));
        assert!(!no_upload_begun(&coded("InternalError", 500)));
        assert!(!no_upload_begun(&UploadError::new(
            ErrorClass::Transient,
            "CreateMultipartUpload",
            "timed out"
        )));
    }
}
