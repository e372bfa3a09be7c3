//! `outpost audit SERVER`: are the objects the ledger says were delivered still there,
//! as delivered? For the newest delivery of each key within `--since`, one HeadObject
//! (checksum mode on, a few in flight) and a verdict:
//!
//! - **identical**: the size is equal; the ETag is equal where the ledger and the store
//!   both have one; every checksum the store returned that the ledger can be compared
//!   with is equal (see [`checksum_diffs`]);
//! - **missing**: 404;
//! - **changed**: which of size, ETag, checksum differ, old → new;
//! - **not readable**: 403 — no `s3:GetObject`, or a missing key without
//!   `s3:ListBucket` (S3 then answers 403, not 404);
//! - **failed**: any other answer (network, 5xx, credentials).
//!
//! One line per object that is not identical, then a summary; exit 0 only when every
//! object checked is identical.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use outpost_config::Server;
use outpost_ledger::{Delivered, Filter, Row, format_rfc3339, unix_millis};
use outpost_uploader::{Destination, Head, ObjectInfo, StoredChecksum, UploadError};

use super::deliveries::parse_since;
use super::{runtime, say};

/// HeadObject requests in flight at once.
const IN_FLIGHT: usize = 8;

/// `outpost audit SERVER [--since 7d]`.
pub fn audit(path: &Path, server: &str, since: &str) -> u8 {
    let cfg = match super::load_for(path, server) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let s = &cfg.servers[server];
    let window = match parse_since(since) {
        Ok(w) => w,
        Err(code) => return code,
    };
    let filter = Filter {
        server: Some(server.to_owned()),
        since: window,
        key_prefix: None,
        failed: false,
        limit: None,
    };
    let rows = match super::ledger_rows(&cfg, &filter) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let span = match window {
        Some(_) => format!("in the last {}", since.trim()),
        None => "in the ledger".to_owned(),
    };
    let latest = newest_deliveries(rows);
    if latest.is_empty() {
        say!("{server}: no deliveries {span}: nothing to audit");
        return 0;
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let answers = match rt.block_on(head_all(s, &latest)) {
        Ok(a) => a,
        Err(e) => {
            say!("{server}: FAILED at credentials: {}", e.message);
            return 1;
        }
    };
    let mut tally = Tally::default();
    for (d, answer) in latest.iter().zip(answers) {
        let verdict = judge(d, answer);
        tally.count(&verdict);
        if let Some(line) = describe(d, &verdict) {
            say!("{line}");
        }
    }
    if tally.not_readable > 0 {
        say!(
            "note: HeadObject answered 403 for {} object(s). Without s3:ListBucket on the bucket S3 answers 403, not 404, for a missing key, so these are missing or not readable; the optional audit part of `outpost policy {server}` (s3:GetObject on the prefix, s3:ListBucket on the bucket) lets audit tell them apart. A ListBucket limited by an s3:prefix condition does not: HeadObject carries no prefix.",
            tally.not_readable
        );
    }
    say!(
        "{server}: {} checked ({span}, newest delivery of each key): {} identical, {} missing, {} changed, {} not readable{}",
        latest.len(),
        tally.identical,
        tally.missing,
        tally.changed,
        tally.not_readable,
        if tally.failed > 0 {
            format!(", {} failed", tally.failed)
        } else {
            String::new()
        }
    );
    u8::from(tally.identical != latest.len())
}

/// The delivered rows of `rows` (newest first), only the newest of each bucket and key.
fn newest_deliveries(rows: Vec<Row>) -> Vec<Delivered> {
    let mut seen = HashSet::new();
    rows.into_iter()
        .filter_map(|r| match r {
            Row::Delivered(d) => Some(d),
            Row::Failed(_) | Row::Requeued(_) => None,
        })
        .filter(|d| seen.insert((d.bucket.clone(), d.key.clone())))
        .collect()
}

/// HeadObject of every row's key in its bucket, [`IN_FLIGHT`] at a time; the answers in
/// the rows' order. `Err` when a client cannot be built (credentials).
async fn head_all(
    server: &Server,
    rows: &[Delivered],
) -> Result<Vec<Result<Head, UploadError>>, UploadError> {
    // One client per bucket: a row of a bucket the server wrote to before a change of
    // configuration is checked where it was delivered.
    let mut dests: HashMap<&str, Destination> = HashMap::new();
    for d in rows {
        if !dests.contains_key(d.bucket.as_str()) {
            let mut s = server.clone();
            s.bucket.clone_from(&d.bucket);
            dests.insert(&d.bucket, Destination::new(Arc::new(s)).await?);
        }
    }
    let mut answers: Vec<Option<Result<Head, UploadError>>> = vec![None; rows.len()];
    let mut set = tokio::task::JoinSet::new();
    let mut next = 0;
    while next < rows.len() || !set.is_empty() {
        while set.len() < IN_FLIGHT && next < rows.len() {
            let d = &rows[next];
            let dest = dests[d.bucket.as_str()].clone();
            let key = d.key.clone();
            let i = next;
            set.spawn(async move { (i, dest.head(&key).await) });
            next += 1;
        }
        match set.join_next().await {
            Some(Ok((i, answer))) => answers[i] = Some(answer),
            Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Some(Err(_)) | None => {}
        }
    }
    Ok(answers
        .into_iter()
        .map(|a| {
            a.unwrap_or_else(|| {
                Err(UploadError::new(
                    outpost_uploader::ErrorClass::Transient,
                    "HeadObject",
                    "the request was cancelled",
                ))
            })
        })
        .collect())
}

/// What audit found for one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
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
struct Diff {
    what: String,
    old: String,
    new: String,
}

/// The verdict on delivery `d` from HeadObject's `answer`.
fn judge(d: &Delivered, answer: Result<Head, UploadError>) -> Verdict {
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
fn diffs(d: &Delivered, o: &ObjectInfo) -> Vec<Diff> {
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
fn checksum_diffs(d: &Delivered, got: &[StoredChecksum]) -> Vec<Diff> {
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
fn algorithm_of(value: &str) -> Option<&'static str> {
    let b64 = value.split('-').next().unwrap_or_default();
    match b64.trim_end_matches('=').len() * 6 / 8 {
        4 => Some("CRC32C"),
        8 => Some("CRC64NVME"),
        20 => Some("SHA1"),
        32 => Some("SHA256"),
        _ => None,
    }
}

/// The line for an object that is not identical.
fn describe(d: &Delivered, v: &Verdict) -> Option<String> {
    let at = format!("s3://{}/{}", d.bucket, printable(&d.key));
    let delivered = format_rfc3339(d.delivered_at);
    Some(match v {
        Verdict::Identical => return None,
        Verdict::Missing => {
            format!("MISSING       {at}: HeadObject 404 (delivered {delivered})")
        }
        Verdict::Changed(diffs, modified) => {
            let what: Vec<String> = diffs
                .iter()
                .map(|x| format!("{} {} → {}", x.what, x.old, x.new))
                .collect();
            let modified = modified
                .map(|t| format!(", last modified {}", format_rfc3339(unix_millis(t))))
                .unwrap_or_default();
            format!(
                "CHANGED       {at}: {} (delivered {delivered}{modified})",
                what.join(", ")
            )
        }
        Verdict::NotReadable(code) => format!(
            "NOT READABLE  {at}: HeadObject 403 {} (delivered {delivered})",
            code.as_deref().unwrap_or("Forbidden")
        ),
        Verdict::Failed(e) => format!("FAILED        {at}: {}", printable(e)),
    })
}

/// Counts of each verdict.
#[derive(Debug, Default)]
struct Tally {
    identical: usize,
    missing: usize,
    changed: usize,
    not_readable: usize,
    failed: usize,
}

impl Tally {
    fn count(&mut self, v: &Verdict) {
        match v {
            Verdict::Identical => self.identical += 1,
            Verdict::Missing => self.missing += 1,
            Verdict::Changed(..) => self.changed += 1,
            Verdict::NotReadable(_) => self.not_readable += 1,
            Verdict::Failed(_) => self.failed += 1,
        }
    }
}

/// `s` with control characters escaped, so that a hostile key cannot drive the
/// terminal.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_ledger::{Mode, Outcome};

    fn delivered(key: &str, at: i64) -> Delivered {
        Delivered {
            server: "acme".into(),
            bucket: "b".into(),
            key: key.into(),
            size: 10,
            checksum_algorithm: "crc32c".into(),
            checksum: "AAAAAA==".into(),
            store_checksum: None,
            etag: Some("\"e1\"".into()),
            version_id: None,
            relative_path: key.into(),
            dropped_at: at,
            first_attempt: at,
            delivered_at: at,
            attempts: 1,
            duration_ms: 1,
            mode: Mode::Single,
            outcome: Outcome::Written,
            instance: "i".into(),
            seq: 1,
            batch: None,
        }
    }

    fn object(size: u64, etag: Option<&str>, checksums: &[(&'static str, &str)]) -> ObjectInfo {
        ObjectInfo {
            size,
            etag: etag.map(str::to_owned),
            last_modified: None,
            version_id: None,
            checksums: checksums
                .iter()
                .map(|(a, v)| StoredChecksum {
                    algorithm: a,
                    value: (*v).to_owned(),
                    checksum_type: None,
                })
                .collect(),
            token: None,
        }
    }

    fn whats(d: &Delivered, o: &ObjectInfo) -> Vec<String> {
        diffs(d, o).into_iter().map(|x| x.what).collect()
    }

    #[test]
    fn only_the_newest_delivery_of_a_key_counts() {
        let rows = vec![
            Row::Delivered(delivered("a", 30)),
            Row::Requeued(outpost_ledger::Requeued {
                server: "acme".into(),
                relative_path: "a".into(),
                at: 25,
            }),
            Row::Delivered(delivered("b", 20)),
            Row::Delivered(delivered("a", 10)),
        ];
        let got: Vec<(String, i64)> = newest_deliveries(rows)
            .into_iter()
            .map(|d| (d.key, d.delivered_at))
            .collect();
        assert_eq!(got, [("a".to_owned(), 30), ("b".to_owned(), 20)]);
    }

    #[test]
    fn size_etag_and_checksums_are_compared() {
        let d = delivered("k", 1);
        // Identical, quotes and case of the ETag aside; unknown ETag not compared.
        assert!(whats(&d, &object(10, Some("\"E1\""), &[])).is_empty());
        assert!(whats(&d, &object(10, None, &[])).is_empty());
        assert!(whats(&d, &object(10, Some("e1"), &[("CRC32C", "AAAAAA==")])).is_empty());
        // Each difference named.
        assert_eq!(whats(&d, &object(11, Some("\"e1\""), &[])), ["size"]);
        assert_eq!(whats(&d, &object(10, Some("\"e2\""), &[])), ["ETag"]);
        assert_eq!(
            whats(&d, &object(10, Some("\"e1\""), &[("CRC32C", "AQAAAA==")])),
            ["checksum CRC32C"]
        );
        // The store's CRC64NVME of an object sent with CRC32C: nothing to compare with.
        assert!(
            whats(
                &d,
                &object(10, Some("\"e1\""), &[("CRC64NVME", "AAAAAAAAAAA=")])
            )
            .is_empty()
        );
        // ... unless the store returned one at delivery.
        let mut with_store = d.clone();
        with_store.store_checksum = Some("AAAAAAAAAAA=".into());
        assert!(
            whats(
                &with_store,
                &object(10, None, &[("CRC64NVME", "AAAAAAAAAAA=")])
            )
            .is_empty()
        );
        assert_eq!(
            whats(
                &with_store,
                &object(10, None, &[("CRC64NVME", "AQAAAAAAAAA=")])
            ),
            ["checksum CRC64NVME"]
        );
        // A composite multipart checksum is compared with the store's composite answer
        // only, never with the whole-file value.
        assert!(whats(&d, &object(10, None, &[("CRC32C", "AQAAAA==-3")])).is_empty());
        let mut mpu = d.clone();
        mpu.store_checksum = Some("AAAAAA==-3".into());
        assert!(whats(&mpu, &object(10, None, &[("CRC32C", "AAAAAA==-3")])).is_empty());
        assert_eq!(
            whats(&mpu, &object(10, None, &[("CRC32C", "AQAAAA==-3")])),
            ["checksum CRC32C"]
        );
    }

    #[test]
    fn verdicts() {
        let d = delivered("k", 1);
        assert_eq!(
            judge(&d, Ok(Head::Present(object(10, Some("\"e1\""), &[])))),
            Verdict::Identical
        );
        assert_eq!(judge(&d, Ok(Head::Missing)), Verdict::Missing);
        let v = judge(
            &d,
            Ok(Head::NotReadable {
                code: Some("AccessDenied".into()),
            }),
        );
        assert_eq!(v, Verdict::NotReadable(Some("AccessDenied".into())));
        let line = describe(&d, &v).unwrap_or_default();
        assert!(line.contains("403 AccessDenied"), "{line}");
        let v = judge(&d, Ok(Head::Present(object(12, Some("\"e2\""), &[]))));
        let line = describe(&d, &v).unwrap_or_default();
        assert!(
            line.contains("size 10 → 12") && line.contains("ETag \"e1\" → \"e2\""),
            "{line}"
        );
        assert_eq!(describe(&d, &Verdict::Identical), None);
    }

    #[test]
    fn algorithms_by_length() {
        assert_eq!(algorithm_of("AAAAAA=="), Some("CRC32C"));
        assert_eq!(algorithm_of("AAAAAA==-12"), Some("CRC32C"));
        assert_eq!(algorithm_of("AAAAAAAAAAA="), Some("CRC64NVME"));
        assert_eq!(algorithm_of("2jmj7l5rSw0yVb/vlWAYkK/YBwk="), Some("SHA1"));
        assert_eq!(
            algorithm_of("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="),
            Some("SHA256")
        );
        assert_eq!(algorithm_of("1B2M2Y8AsgTpgAmY7PhCfg=="), None);
    }
}
