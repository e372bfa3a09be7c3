//! The rows the ledger stores, with plain fields the daemon fills in, and the time
//! representation they share: **milliseconds since the Unix epoch, UTC, as `i64`**
//! (exact, sortable as SQLite integers, no float rounding in comparisons). The JSON
//! form writes the same instants as RFC 3339 strings (`2026-03-01T12:03:04.123Z`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

/// An instant as the ledger stores it: milliseconds since the Unix epoch (UTC).
pub type UnixMillis = i64;

/// `t` as [`UnixMillis`] (times before 1970 count as 0; after year 292 million, as
/// the largest value).
pub fn unix_millis(t: SystemTime) -> UnixMillis {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The current time as [`UnixMillis`].
pub fn now_millis() -> UnixMillis {
    unix_millis(SystemTime::now())
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// How the object was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One PutObject.
    Single,
    /// CreateMultipartUpload, parts, CompleteMultipartUpload.
    Multipart,
    /// Multipart was refused by the store and the file went as one PutObject.
    Fallback,
}

/// Whether this delivery wrote the object or found it already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The object was written by this delivery.
    Written,
    /// The object was already there: a `412` on a create-only write that was ours, or a
    /// second row for a delivery the ledger already holds (a re-upload after a crash
    /// between the store's acknowledgement and the spool's finish).
    AlreadyPresent,
}

impl Mode {
    /// The word stored in the database and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Single => "single",
            Mode::Multipart => "multipart",
            Mode::Fallback => "fallback",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Mode> {
        [Mode::Single, Mode::Multipart, Mode::Fallback]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

impl Outcome {
    /// The word stored in the database and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Written => "written",
            Outcome::AlreadyPresent => "already_present",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Outcome> {
        [Outcome::Written, Outcome::AlreadyPresent]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// A file the store acknowledged, recorded before the spool finishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivered {
    /// Server name (= spool folder).
    pub server: String,
    /// Destination bucket.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Object size in bytes.
    pub size: u64,
    /// `crc32c`, `crc64nvme` or `md5`: the algorithm of `checksum`.
    pub checksum_algorithm: String,
    /// The whole-object value outpost computed while reading the file (base64, as S3
    /// writes checksums).
    pub checksum: String,
    /// The store's own checksum where it returned one (a multipart object's is a
    /// checksum of part checksums, so it may differ from `checksum`).
    pub store_checksum: Option<String>,
    /// The ETag the store returned (with its quotes, as S3 sends it).
    pub etag: Option<String>,
    /// The version id when the bucket is versioned.
    pub version_id: Option<String>,
    /// Path below the server folder as dropped.
    pub relative_path: String,
    /// When the file was found complete in the spool.
    #[serde(serialize_with = "rfc3339")]
    pub dropped_at: UnixMillis,
    /// When the first upload attempt started.
    #[serde(serialize_with = "rfc3339")]
    pub first_attempt: UnixMillis,
    /// When the store acknowledged the object.
    #[serde(serialize_with = "rfc3339")]
    pub delivered_at: UnixMillis,
    /// Attempts it took, the successful one included.
    pub attempts: u32,
    /// Duration of the successful attempt.
    pub duration_ms: u64,
    /// How the object was sent.
    pub mode: Mode,
    /// Written now or found already there; the ledger turns `written` into
    /// `already_present` for a row it already holds.
    pub outcome: Outcome,
    /// The daemon (`instance`) that delivered it.
    pub instance: String,
    /// The claim's sequence number within `instance`: with it, a re-upload of the same
    /// claim after a crash is known for what it is.
    pub seq: u64,
    /// The batch folder this file belongs to, when it came in one.
    pub batch: Option<String>,
}

/// A file given up on and moved to `.failed/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failed {
    /// Server name.
    pub server: String,
    /// Destination bucket.
    pub bucket: String,
    /// The key it would have had.
    pub key: String,
    /// Path below the server folder as dropped.
    pub relative_path: String,
    /// The reason written in its failure record (`exists`, `denied`, …).
    pub reason: String,
    /// The failure record beside the file in `.failed/`.
    pub record_path: String,
    /// When it was given up on.
    #[serde(serialize_with = "rfc3339")]
    pub at: UnixMillis,
    /// Attempts made.
    pub attempts: u32,
    /// The daemon that gave up.
    pub instance: String,
}

/// A failed file put back into its server folder by `outpost requeue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requeued {
    /// Server name.
    pub server: String,
    /// Path below the server folder.
    pub relative_path: String,
    /// When it was requeued.
    #[serde(serialize_with = "rfc3339")]
    pub at: UnixMillis,
}

/// One outcome, as recorded and as read back; JSON adds `"kind": "delivered"` (or
/// `failed`, `requeued`) to the row's fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Row {
    /// A delivery.
    Delivered(Delivered),
    /// A file moved to `.failed/`.
    Failed(Failed),
    /// A failed file requeued.
    Requeued(Requeued),
}

impl Row {
    /// The row's instant: delivered at, failed at, requeued at.
    pub fn time(&self) -> UnixMillis {
        match self {
            Row::Delivered(d) => d.delivered_at,
            Row::Failed(f) => f.at,
            Row::Requeued(r) => r.at,
        }
    }

    /// The server the row belongs to.
    pub fn server(&self) -> &str {
        match self {
            Row::Delivered(d) => &d.server,
            Row::Failed(f) => &f.server,
            Row::Requeued(r) => &r.server,
        }
    }
}

impl From<Delivered> for Row {
    fn from(d: Delivered) -> Row {
        Row::Delivered(d)
    }
}

impl From<Failed> for Row {
    fn from(f: Failed) -> Row {
        Row::Failed(f)
    }
}

impl From<Requeued> for Row {
    fn from(r: Requeued) -> Row {
        Row::Requeued(r)
    }
}

/// `ms` as an RFC 3339 UTC time with milliseconds: `2026-03-01T12:03:04.123Z`.
pub fn format_rfc3339(ms: UnixMillis) -> String {
    let (date, time) = civil(ms);
    format!("{date}T{time}.{:03}Z", ms.rem_euclid(1000))
}

/// `ms` as `2026-03-01 12:03:04` (UTC), for the table.
pub(crate) fn format_utc(ms: UnixMillis) -> String {
    let (date, time) = civil(ms);
    format!("{date} {time}")
}

/// Date and time of day (UTC) of `ms`, each as text.
fn civil(ms: UnixMillis) -> (String, String) {
    let secs = ms.div_euclid(1000);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => (
            format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()),
            format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second()),
        ),
        Err(_) => ("????-??-??".into(), "??:??:??".into()),
    }
}

fn rfc3339<S: Serializer>(ms: &UnixMillis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_rfc3339(*ms))
}
