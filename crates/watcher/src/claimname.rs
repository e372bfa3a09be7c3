//! Names of claimed files. A claim is `<seq>~<relative path, %-encoded>.data`: the file
//! carries its identity in its name, so taking it over is one atomic rename with nothing
//! to write first. Paths too long for a name (and marker-rule claims, which must
//! remember their marker) use `<seq>.data` plus a record `<seq>.json`, written and
//! fsynced before the rename. `<seq>.upload` is the uploader's journal.

use std::ffi::{OsStr, OsString};

/// Longest file name (bytes) most filesystems accept.
const NAME_MAX: usize = 255;

/// The short-form name, if the path fits.
pub fn short(seq: u64, rel: &str) -> Option<OsString> {
    let enc = encode(rel);
    let name = format!("{seq:020}~{enc}.data");
    (name.len() <= NAME_MAX).then(|| OsString::from(name))
}

/// `<seq>.<ext>`: the long-form data (`data`), its record (`json`), the journal (`upload`).
pub fn seq_name(seq: u64, ext: &str) -> OsString {
    OsString::from(format!("{seq:020}.{ext}"))
}

/// A data file name taken apart.
#[derive(Debug, PartialEq, Eq)]
pub enum Data {
    /// `<seq>~<rel>.data`.
    Short {
        /// Claim order.
        seq: u64,
        /// Relative path.
        rel: String,
    },
    /// `<seq>.data` (its record holds the path).
    Long {
        /// Claim order.
        seq: u64,
    },
}

/// Parses a data file name; `None` for anything else.
pub fn parse(name: &OsStr) -> Option<Data> {
    let s = name.to_str()?.strip_suffix(".data")?;
    let (seq, rest) = s.split_at_checked(20)?;
    let seq: u64 = seq.parse().ok()?;
    match rest.strip_prefix('~') {
        Some(enc) => Some(Data::Short {
            seq,
            rel: decode(enc)?,
        }),
        None if rest.is_empty() => Some(Data::Long { seq }),
        None => None,
    }
}

/// The sequence number a claims-folder entry belongs to (data, record, journal).
pub fn seq_of(name: &OsStr) -> Option<u64> {
    name.to_str()?.get(..20)?.parse().ok()
}

fn encode(rel: &str) -> String {
    let mut out = String::with_capacity(rel.len());
    for b in rel.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode(enc: &str) -> Option<String> {
    String::from_utf8(pct_decode(enc)?).ok()
}

/// The bytes of a %-escaped name (`%XX` for a byte, anything else as it is); `None`
/// for a malformed escape. Also decodes the escapes in failure records.
pub(crate) fn pct_decode(enc: &str) -> Option<Vec<u8>> {
    let b = enc.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for rel in [
            "a.csv",
            "d/e/f g+h%i.csv",
            "ünï/cødé €.csv",
            "~tilde",
            "x..y",
        ] {
            let n = short(42, rel).expect("fits");
            assert!(!n.to_string_lossy().contains('/'));
            assert_eq!(
                parse(&n),
                Some(Data::Short {
                    seq: 42,
                    rel: rel.into()
                })
            );
            assert_eq!(seq_of(&n), Some(42));
        }
        assert_eq!(parse(&seq_name(7, "data")), Some(Data::Long { seq: 7 }));
        assert_eq!(parse(&seq_name(7, "json")), None);
        assert_eq!(seq_of(&seq_name(7, "upload")), Some(7));
        assert!(short(1, &"x".repeat(229)).is_some());
        assert!(short(1, &"x".repeat(230)).is_none());
        assert!(short(1, &"é".repeat(100)).is_none()); // 600 bytes encoded
    }
}
