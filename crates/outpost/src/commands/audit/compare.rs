//! What `audit` concludes from one ledger row and one HeadObject answer: identical,
//! missing, changed (which of size, ETag, checksum) or not readable. Pure: change the
//! comparison rules here.

use super::*;

/// What audit found for one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Size, ETag and checksums as delivered.
    Identical,
    /// 404.
    Missing,
    /// Present, but these differ.
    Changed(Vec<Diff>, Option<std::time::SystemTime>),
    /// 403, with the S3 code when the answer had one.
    NotReadable(Option<String>),
    /// Another error.
    Failed(String),
}

/// One property that differs: what, as delivered, as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Diff {
    pub(super) what: String,
    pub(super) old: String,
    pub(super) new: String,
}

/// The verdict on delivery `d` from HeadObject's `answer`.
pub(super) fn judge(d: &Delivered, answer: Result<Head, UploadError>) -> Verdict {
    match answer {
        Ok(Head::Present(o)) => {
            let diffs = diffs(d, &o);
            if diffs.is_empty() {
                Verdict::Identical
            } else {
                Verdict::Changed(diffs, o.last_modified)
            }
        }
        Ok(Head::Missing) => Verdict::Missing,
        Ok(Head::NotReadable { code }) => Verdict::NotReadable(code),
        Err(e) => Verdict::Failed(e.to_string()),
    }
}

/// What differs between delivery `d` and object `o`: size; ETag when both are known;
/// the checksums [`checksum_diffs`] can compare.
pub(super) fn diffs(d: &Delivered, o: &ObjectInfo) -> Vec<Diff> {
    let mut out = Vec::new();
    if d.size != o.size {
        out.push(Diff {
            what: "size".into(),
            old: d.size.to_string(),
            new: o.size.to_string(),
        });
    }
    if let (Some(old), Some(new)) = (&d.etag, &o.etag)
        && !old
            .trim_matches('"')
            .eq_ignore_ascii_case(new.trim_matches('"'))
    {
        out.push(Diff {
            what: "ETag".into(),
            old: old.clone(),
            new: new.clone(),
        });
    }
    out.extend(checksum_diffs(d, &o.checksums));
    out
}

/// The checksums HeadObject returned that differ from what the ledger holds. Each is
/// compared with the ledger's values of the same algorithm and shape:
///
/// - a whole-object value of the algorithm outpost computed (`checksum_algorithm`:
///   crc32c, crc64nvme; never md5, which S3 does not return as a checksum) with the
///   value outpost computed while reading the file;
/// - any value (whole-object, or composite `…-<parts>` of a multipart upload) with the
///   store's own answer at delivery (`store_checksum`) when that is of the same
///   algorithm (told by its length: 4 bytes CRC32C, 8 CRC64NVME, 20 SHA1, 32 SHA256)
///   and shape.
///
/// A checksum the ledger has nothing to compare with (the store's default CRC64NVME of
/// an object sent with MD5, say) is not compared.
pub(super) fn checksum_diffs(d: &Delivered, got: &[StoredChecksum]) -> Vec<Diff> {
    let mut out = Vec::new();
    for h in got {
        let composite = h.checksum_type.as_deref() == Some("COMPOSITE") || h.value.contains('-');
        let mut known: Vec<&str> = Vec::new();
        if !composite
            && !d.checksum.is_empty()
            && d.checksum_algorithm.eq_ignore_ascii_case(h.algorithm)
        {
            known.push(&d.checksum);
        }
        if let Some(sc) = &d.store_checksum
            && sc.contains('-') == composite
            && algorithm_of(sc) == Some(h.algorithm)
        {
            known.push(sc);
        }
        if let Some(first) = known.first()
            && !known.contains(&h.value.as_str())
        {
            out.push(Diff {
                what: format!("checksum {}", h.algorithm),
                old: (*first).to_owned(),
                new: h.value.clone(),
            });
        }
    }
    out
}

/// The algorithm of a base64 checksum as S3 writes it (a composite one ends in
/// `-<parts>`), told by the length of its value.
pub(super) fn algorithm_of(value: &str) -> Option<&'static str> {
    let b64 = value.split('-').next().unwrap_or_default();
    match b64.trim_end_matches('=').len() * 6 / 8 {
        4 => Some("CRC32C"),
        8 => Some("CRC64NVME"),
        20 => Some("SHA1"),
        32 => Some("SHA256"),
        _ => None,
    }
}
