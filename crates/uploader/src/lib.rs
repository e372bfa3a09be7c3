//! outpost uploader: one S3 client per server; a file goes as one PutObject below the
//! multipart threshold, else as a multipart upload with bounded parts in flight. Every
//! PutObject and CreateMultipartUpload carries `x-amz-acl: bucket-owner-full-control`;
//! every PUT and part carries a checksum the store verifies.
//!
//! Architecture Invariant: the uploader opens files only read-only, through the file
//! handle it is given; it never moves or deletes a spool file. It decides *what* an
//! error means ([`ErrorClass`]), never *when* to retry.

pub mod bandwidth;
mod buffers;
mod checksum;
mod client;
mod error;
mod facts;
mod integrity;
mod progress;
mod upload;
mod verify;

/// The SDK configuration type [`server_sdk_config_at`] returns.
pub use aws_config::SdkConfig;
pub use buffers::{
    Budget as BufferBudget, DEFAULT_BUDGET as DEFAULT_BUFFER_BUDGET, budget as buffer_budget,
    set_budget as set_buffer_budget,
};
pub use checksum::PartChecksum;
pub use client::{
    Destination, caller_account, check_secret_file, probe_client, read_secret_file,
    server_sdk_config_at,
};
pub use error::{Cause, ErrorClass, UploadError};
pub use facts::{
    Head, Measured, ObjectInfo, StoredChecksum, UploadMode, UploadOptions, Uploaded, WriteOutcome,
    bytes_token, file_token,
};
pub use integrity::Integrity;
pub use upload::{FILE_META, MpuRecord, part_size_for};
pub use upload::{ListedUpload, recorded_upload};
pub use verify::{
    CONDITIONAL_COMPLETE, CONDITIONAL_WRITE, CONDITIONAL_WRITES_IGNORED, Step, VERIFY_KEY, fix,
};

/// Durable storage for the multipart journal of one file (kept by the spool beside the
/// claim). The upload id is saved here before any part is sent.
pub trait Journal: Send + Sync {
    /// The saved journal, if any.
    fn load(&self) -> Option<Vec<u8>>;
    /// Saves the journal durably.
    fn save(&self, bytes: &[u8]) -> std::io::Result<()>;
    /// Forgets it.
    fn clear(&self);
    /// Every multipart journal on the spool — other claims', other daemons' on a shared
    /// spool, and this one — for the uploads and intents they record: an upload another
    /// journal accounts for is never aborted as ours.
    fn spool_journals(&self) -> std::io::Result<Vec<Vec<u8>>>;
    /// Clean-up that failed: an upload may stay open until the bucket's lifecycle rule
    /// removes it (counted, logged at WARN).
    fn abort_failed(&self, key: &str, why: &str);
    /// CreateMultipartUpload returned `upload_id` for `key` in `bucket`: the daemon
    /// records it (the ledger), so its orphan sweep knows the upload is outpost's.
    fn upload_begun(&self, _bucket: &str, _key: &str, _upload_id: &str) {}
    /// The upload was completed or aborted, or the store no longer has it.
    fn upload_ended(&self, _bucket: &str, _upload_id: &str) {}
    /// Whether this daemon still holds the file: asked right before the request that
    /// makes an object visible (PutObject, CompleteMultipartUpload). A daemon that was
    /// paused past its lease and whose claim another daemon took over must not publish
    /// its stale copy over what the other one publishes.
    fn still_ours(&self) -> bool {
        true
    }
}

/// S3's limits.
pub mod limits {
    /// Largest single PutObject.
    pub const MAX_PUT: u64 = 5 << 30;
    /// Largest object.
    pub const MAX_OBJECT: u64 = 5 << 40;
    /// Most parts in one multipart upload.
    pub const MAX_PARTS: u64 = 10_000;
}
