//! The typed value of each server setting that is more than a string or a number:
//! what `Server` holds after `defaults` were merged and everything was checked. Their
//! YAML form (for `outpost check`) is in `display.rs`; how they are read, in
//! `server.rs`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A server's batch manifest (`manifest`, `manifest_name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// What the manifest says, and in which shape.
    pub format: ManifestFormat,
    /// Its file name template: a plain file name, `{batch}` standing for the batch
    /// folder's name. The manifest's key is `<prefix><batch>/<name>`.
    pub name: String,
}

impl Manifest {
    /// The manifest's file name for the batch folder `batch`.
    pub fn name_for(&self, batch: &str) -> String {
        self.name.replace("{batch}", batch)
    }
}

/// The shape of a batch manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestFormat {
    /// outpost's JSON: per file key, size, checksums, ETag, version id, delivery time and
    /// sequence; totals (default name `_manifest.json`).
    Json,
    /// Adobe Audience Manager's transfer-control file (default name `{batch}.info`).
    AamInfo,
}

impl ManifestFormat {
    /// The default file name template of this format.
    pub fn default_name(self) -> &'static str {
        match self {
            ManifestFormat::Json => "_manifest.json",
            ManifestFormat::AamInfo => "{batch}.info",
        }
    }
}

/// Whether a write may replace an object already at its key (`overwrite`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overwrite {
    /// A later drop of the same path replaces the object (today's behaviour).
    #[default]
    Always,
    /// Create-only: PutObject and CompleteMultipartUpload carry `If-None-Match: *`; an
    /// object already there that is not this very file is a conflict (`exists`).
    Never,
}

/// Integrity check sent with every PUT and part (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// `x-amz-checksum-crc32c` (AWS, most stores).
    Crc32c,
    /// `x-amz-checksum-crc64nvme` (AWS).
    Crc64Nvme,
    /// `Content-MD5` (stores that verify only that, such as Ceph radosgw).
    Md5,
    /// No checksum header: the SigV4 signed payload (`x-amz-content-sha256`, the SHA-256
    /// of every byte) is the check, for stores that recompute it (Ceph radosgw does).
    /// outpost's addition to SPEC §2's list.
    SignedPayload,
}

/// Credentials mode (SPEC §2).
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Credentials {
    /// The daemon's own identity through the standard AWS chain.
    Internal,
    /// An access key whose secret lives in a file only the daemon can read.
    Static {
        /// The access key id (not a secret).
        access_key_id: String,
        /// The file holding the secret access key.
        secret_access_key_file: PathBuf,
    },
    /// STS AssumeRole into the customer's role.
    AssumeRole {
        /// The role to assume.
        role_arn: String,
        /// `sts:ExternalId` the customer's trust policy requires.
        external_id: Option<String>,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Internal => f.write_str("internal"),
            Credentials::Static { access_key_id, .. } => write!(f, "static({access_key_id})"),
            Credentials::AssumeRole { role_arn, .. } => write!(f, "assume_role({role_arn})"),
        }
    }
}

/// Server-side encryption (SPEC §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    /// SSE-S3.
    Aes256,
    /// SSE-KMS with the customer's key (a full key ARN).
    Kms {
        /// Full ARN of the key.
        kms_key_id: String,
    },
}

/// When a file in the spool counts as complete (SPEC §1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Complete once renamed into place under a name that is not in-progress.
    Rename,
    /// Complete once `<name><suffix>` exists.
    Marker {
        /// Marker suffix, default `.ready`.
        suffix: String,
    },
    /// Complete once size and mtime have not changed for `period`.
    Quiet {
        /// How long the file must stay unchanged.
        period: Duration,
    },
}

/// What happens to a file after S3 acknowledged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterUpload {
    /// Remove it.
    Delete,
    /// Move it under `.archive/<server>/`.
    Archive,
}

/// Multipart settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Multipart {
    /// Files of this size or more go by multipart upload.
    pub threshold: u64,
    /// Size of each part (grown so that no upload needs more than 10,000 parts).
    pub part_size: u64,
    /// Parts in flight per file.
    pub concurrency: usize,
}

/// Retry limits of the per-file retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// First backoff.
    pub initial_backoff: Duration,
    /// Cap of the backoff.
    pub max_backoff: Duration,
    /// Attempts before a file goes to `.failed/`.
    pub max_attempts: u32,
}

/// Request timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP/TLS connect.
    pub connect: Duration,
    /// Time without a byte read from the server.
    pub read: Duration,
}
