//! Failure records (`.<name>.error.json` beside a file in `.failed/`): their fields,
//! their names, the %-escaping that keeps a name that is not UTF-8 exactly, and the
//! RFC 3339 times written in them. Pure: no file-system access. Touch this to change
//! what a record says.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub(super) use crate::claimname::pct_decode;

/// Why a file went to `.failed/`: written beside it as `.<name>.error.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FailRecord {
    /// Server it was dropped for.
    pub server: String,
    /// Its relative path in the server folder (where `requeue` puts it back).
    pub relative_path: String,
    /// Name of the failed file in this folder (differs from the original when an earlier
    /// failure of the same path is kept).
    pub file: String,
    /// Reason class.
    pub reason: String,
    /// Destination bucket.
    pub bucket: String,
    /// Destination key.
    pub key: String,
    /// Upload attempts made.
    pub attempts: u32,
    /// First attempt (RFC 3339), if any.
    pub first_attempt: Option<String>,
    /// Last attempt (RFC 3339), if any.
    pub last_attempt: Option<String>,
    /// The last error, in words.
    pub last_error: String,
    /// When it was moved here (RFC 3339).
    pub failed_at: String,
    /// `file`'s exact bytes, %-escaped, when the name is not UTF-8 (`file` then holds
    /// a lossy rendering for people).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_bytes: Option<String>,
    /// `relative_path`'s exact bytes, %-escaped, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative_path_bytes: Option<String>,
    /// Reason `exists`: the object already at the key, which was left untouched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_object: Option<ExistingObject>,
}

/// The object that already held a key (`overwrite: never`), as the store described it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExistingObject {
    /// Its size in bytes.
    pub size: u64,
    /// Its ETag, as the store sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Its Last-Modified (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

/// Formats a time as RFC 3339 UTC, whole seconds (`2024-02-29T23:59:59Z`): sub-second
/// parts are cut, a time before the epoch is the epoch, one past year 9999 is the last
/// second of 9999.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let t = i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or_else(|| time::PrimitiveDateTime::MAX.assume_utc());
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `Some(%-escaped bytes)` for a name that is not UTF-8 (its record keeps it exactly).
pub(super) fn pct_if_not_utf8(name: &OsStr) -> Option<String> {
    if name.to_str().is_some() {
        return None;
    }
    let mut out = String::new();
    for b in name.as_bytes() {
        if b.is_ascii_graphic() && *b != b'%' || *b == b' ' {
            out.push(*b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Some(out)
}

/// Name of the record beside a failed file: starts with a dot, so it can never be an
/// exporter's published file, and fits in 255 bytes.
pub(super) fn record_name(file: &OsStr) -> OsString {
    let mut n = OsString::from(".");
    n.push(file);
    n.push(".error.json");
    if n.as_bytes().len() <= 255 {
        return n;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in file.as_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    }
    OsString::from(format!(".{h:016x}.error.json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_format_is_pinned() {
        let at = |secs: u64, nanos: u32| SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
        let cases = [
            (at(0, 0), "1970-01-01T00:00:00Z"),
            // Leap day of a year divisible by 400, first and last second.
            (at(951_782_400, 0), "2000-02-29T00:00:00Z"),
            (at(951_868_799, 999_999_999), "2000-02-29T23:59:59Z"),
            // Sub-second parts are cut, never rounded up.
            (at(1_234_567_890, 500_000_000), "2009-02-13T23:31:30Z"),
            (at(1_709_251_199, 999_999_999), "2024-02-29T23:59:59Z"),
            // 2100 is not a leap year.
            (at(4_107_456_000, 1), "2100-02-28T00:00:00Z"),
            (at(4_107_542_400, 0), "2100-03-01T00:00:00Z"),
            (at(253_402_300_799, 0), "9999-12-31T23:59:59Z"),
            (at(253_402_300_800, 0), "9999-12-31T23:59:59Z"),
            (at(1 << 40, 0), "9999-12-31T23:59:59Z"),
            // Before the epoch: the epoch.
            (
                SystemTime::UNIX_EPOCH - Duration::from_secs(1),
                "1970-01-01T00:00:00Z",
            ),
        ];
        for (t, want) in cases {
            assert_eq!(rfc3339(t), want);
        }
    }

    #[test]
    fn names_round_trip_through_pct() {
        use std::os::unix::ffi::OsStrExt;
        let name = OsStr::from_bytes(b"a b%\xff.csv");
        let esc = pct_if_not_utf8(name).expect("not UTF-8");
        assert_eq!(esc, "a b%25%FF.csv");
        assert_eq!(pct_decode(&esc).as_deref(), Some(name.as_bytes()));
        assert_eq!(pct_if_not_utf8(OsStr::new("ok.csv")), None);
        assert_eq!(pct_decode("%F"), None);
    }

    #[test]
    fn record_names_fit() {
        assert_eq!(record_name(OsStr::new("a.csv")), ".a.csv.error.json");
        let long = "x".repeat(255);
        let n = record_name(OsStr::new(&long));
        assert_eq!(n.len(), ".0123456789abcdef.error.json".len());
    }
}
