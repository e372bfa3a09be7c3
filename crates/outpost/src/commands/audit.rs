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

mod compare;
use compare::{Verdict, judge};

/// The line for an object that is not identical.
fn describe(d: &Delivered, v: &Verdict) -> Option<String> {
    let at = format!(
        "s3://{}/{}",
        d.bucket,
        outpost_ledger::render::printable(&d.key)
    );
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
        Verdict::Failed(e) => format!(
            "FAILED        {at}: {}",
            outpost_ledger::render::printable(e)
        ),
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

#[cfg(test)]
mod tests;
