//! What an upload tells its caller beyond success — the facts the delivery ledger, the
//! batch manifests and `outpost audit` record: how the object went ([`UploadMode`]),
//! whether it was written or found already there ([`WriteOutcome`]), the checksums
//! computed while reading, the store's own answer ([`StoredChecksum`], ETag, version
//! id), and what HeadObject shows of an object ([`ObjectInfo`], [`Head`]). Plain data
//! without SDK types; a reader may add a fact here and fill it in `upload/`.

use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::PartChecksum;

/// What the caller tells an upload beyond the file itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadOptions {
    /// Also compute the file's MD5 and line count while reading (manifest format
    /// `aam-info`); off by default, as it costs a sequential pass.
    pub measure: bool,
    /// The `x-amz-meta-outpost-file` token to write with `overwrite: never`; `None`
    /// derives it ([`file_token`] for files, [`bytes_token`] for [`put_bytes`]).
    ///
    /// [`put_bytes`]: crate::Destination::put_bytes
    pub token: Option<String>,
}

/// How an object went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadMode {
    /// One PutObject below the multipart threshold (from memory, or streamed from disk
    /// when large against the buffer budget).
    Single,
    /// A multipart upload.
    Multipart,
    /// One streamed PutObject of a file at or above the multipart threshold, because
    /// the destination refuses multipart uploads.
    Fallback,
}

impl UploadMode {
    /// `single`, `multipart` or `fallback`.
    pub fn as_str(self) -> &'static str {
        match self {
            UploadMode::Single => "single",
            UploadMode::Multipart => "multipart",
            UploadMode::Fallback => "fallback",
        }
    }
}

/// Whether the object was written by this upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The store took our bytes.
    Written,
    /// `overwrite: never`: the key already held this very file (an earlier attempt that
    /// completed before a crash or a lost answer); nothing was written again.
    AlreadyPresent,
}

impl WriteOutcome {
    /// `written` or `already_present`.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteOutcome::Written => "written",
            WriteOutcome::AlreadyPresent => "already_present",
        }
    }
}

/// A checksum as the store reports it (PutObject / CompleteMultipartUpload answer,
/// HeadObject with checksum mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChecksum {
    /// `CRC32C`, `CRC32`, `CRC64NVME`, `SHA1` or `SHA256`.
    pub algorithm: &'static str,
    /// Base64 as S3 sends it; a composite multipart checksum ends in `-<parts>`.
    pub value: String,
    /// `FULL_OBJECT` or `COMPOSITE` when the store says.
    pub checksum_type: Option<String>,
}

/// The file's MD5 and line count, computed in one sequential pass while reading (only
/// when [`UploadOptions::measure`] asked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measured {
    /// MD5 of the whole file, lowercase hex.
    pub md5_hex: String,
    /// Number of `\n` bytes.
    pub lines: u64,
}

/// What an upload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// Bytes sent as object content (the file's size).
    pub bytes: u64,
    /// Number of parts (1 for a single PUT).
    pub parts: u32,
    /// Whether an interrupted multipart upload was resumed.
    pub resumed: bool,
    /// Single, multipart or fallback.
    pub mode: UploadMode,
    /// Written, or already present (`overwrite: never`).
    pub outcome: WriteOutcome,
    /// The object's ETag as the store answered (or HeadObject showed, when already
    /// present and readable).
    pub etag: Option<String>,
    /// The object's version id, when the bucket is versioned.
    pub version_id: Option<String>,
    /// CRC-64/NVME of the whole file, computed while reading (for multipart: the parts'
    /// values combined in order).
    pub crc64nvme: u64,
    /// The configured checksum's whole-object value, base64 as S3 writes it, where it is
    /// computable: crc32c and crc64nvme always (parts combined), md5 only for a single
    /// PUT.
    pub checksum: Option<PartChecksum>,
    /// The checksum the store returned, when its answer had one.
    pub store_checksum: Option<StoredChecksum>,
    /// MD5 and line count, when [`UploadOptions::measure`] asked.
    pub measured: Option<Measured>,
}

impl Uploaded {
    /// [`Uploaded::crc64nvme`] base64-encoded as S3 writes `x-amz-checksum-crc64nvme`.
    pub fn crc64nvme_base64(&self) -> String {
        B64.encode(self.crc64nvme.to_be_bytes())
    }
}

/// An object as HeadObject (checksum mode on) shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Content length.
    pub size: u64,
    /// ETag, quoted as S3 sends it.
    pub etag: Option<String>,
    /// Last-Modified.
    pub last_modified: Option<SystemTime>,
    /// Version id, when the bucket is versioned.
    pub version_id: Option<String>,
    /// Every checksum the store returned.
    pub checksums: Vec<StoredChecksum>,
    /// Its `x-amz-meta-outpost-file` token, when outpost wrote it with
    /// `overwrite: never`.
    pub token: Option<String>,
}

/// What HeadObject found at a key ([`crate::Destination::head`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// The object is there.
    Present(ObjectInfo),
    /// 404: no such key (only told apart from "not readable" with `s3:ListBucket`).
    Missing,
    /// 403: the publisher may not read it (no `s3:GetObject`, or a missing key without
    /// `s3:ListBucket`).
    NotReadable {
        /// The S3 code, when the answer had one (HeadObject answers have no body).
        code: Option<String>,
    },
}

/// The token naming one version of one spooled file, stable across restarts and
/// take-over: hex MD5 of the server, the relative path, the size and the mtime in
/// nanoseconds (a claim keeps its inode, so its mtime, through every rename).
pub fn file_token(server: &str, rel: &str, size: u64, mtime_ns: i128) -> String {
    token_of(&[
        "file",
        server,
        rel,
        &size.to_string(),
        &mtime_ns.to_string(),
    ])
}

/// The token of an in-memory object (a manifest): hex MD5 of the server, the relative
/// key and the content's size and CRC-64/NVME — the same bytes give the same token.
pub fn bytes_token(server: &str, rel: &str, bytes: &[u8]) -> String {
    let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, bytes);
    token_of(&[
        "bytes",
        server,
        rel,
        &bytes.len().to_string(),
        &format!("{crc:016x}"),
    ])
}

/// Hex MD5 of `fields`, each length-prefixed (no two lists give the same input).
fn token_of(fields: &[&str]) -> String {
    use md5::Digest;
    let mut h = md5::Md5::new();
    for f in fields {
        h.update((f.len() as u64).to_be_bytes());
        h.update(f.as_bytes());
    }
    hex(&h.finalize())
}

/// `t` as RFC 3339 in UTC (`2026-11-30T01:02:03Z`).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    aws_smithy_types::DateTime::from(t)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default()
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_one_version_of_one_file() {
        let t = file_token("acme", "a/b.csv", 10, 1_700_000_000_123_456_789);
        assert_eq!(t.len(), 32);
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        // Stable: the same inputs give the same token (a pinned value: the token is
        // written into objects and compared after restarts and upgrades).
        assert_eq!(
            t,
            file_token("acme", "a/b.csv", 10, 1_700_000_000_123_456_789)
        );
        assert_eq!(
            file_token("s", "r", 1, 2),
            "040005e9657851e79638212541700078"
        );
        for other in [
            file_token("acme2", "a/b.csv", 10, 1_700_000_000_123_456_789),
            file_token("acme", "a/b.csv2", 10, 1_700_000_000_123_456_789),
            file_token("acme", "a/b.csv", 11, 1_700_000_000_123_456_789),
            file_token("acme", "a/b.csv", 10, 1_700_000_000_123_456_790),
            // Fields cannot run into each other.
            file_token("acm", "ea/b.csv", 10, 1_700_000_000_123_456_789),
        ] {
            assert_ne!(t, other);
        }
        let m = bytes_token("acme", "batch/_manifest.json", b"{}");
        assert_eq!(m, bytes_token("acme", "batch/_manifest.json", b"{}"));
        assert_ne!(m, bytes_token("acme", "batch/_manifest.json", b"{ }"));
        assert_ne!(m, file_token("acme", "batch/_manifest.json", 2, 0));
    }

    #[test]
    fn crc64_is_written_as_s3_does() {
        let up = Uploaded {
            bytes: 9,
            parts: 1,
            resumed: false,
            mode: UploadMode::Single,
            outcome: WriteOutcome::Written,
            etag: None,
            version_id: None,
            crc64nvme: 0xAE8B_1486_0A79_9888,
            checksum: None,
            store_checksum: None,
            measured: None,
        };
        assert_eq!(
            up.crc64nvme_base64(),
            B64.encode(0xAE8B_1486_0A79_9888u64.to_be_bytes())
        );
    }
}
