//! One server after `defaults` were merged in: each section's defaults, ranges and
//! checks, one function per section. A check names the key path it refused (relative to
//! the server); `resolve.rs` finds where that key was written. To change a default or a
//! range, change it here and in docs/configuration.md. `credentials` and `sse` are
//! resolved in `credentials.rs`.

use std::time::Duration;

use crate::credentials::{credentials, sse};

use crate::raw::{
    RawAfterUpload, RawChecksum, RawCompletion, RawManifest, RawMultipart, RawOverwrite, RawRetry,
    RawServer, RawTimeouts,
};
use crate::resolve::{DAY, HOUR, MAX_UPLOADS, in_range, is_account_id};
use crate::{AfterUpload, Checksum, Completion, Multipart, Retry, Server};
use crate::{Manifest, ManifestFormat, Overwrite};
use crate::{Timeouts, units::format_size};

/// A refused value: the key path below the server, and why.
pub(crate) type Invalid = (Vec<&'static str>, String);

const MS1: Duration = Duration::from_millis(1);
const MS100: Duration = Duration::from_millis(100);
/// S3's limits on part sizes.
const MIN_PART: u64 = 5 << 20;
const MAX_PART: u64 = 5 << 30;

/// Refuses the value at `key` (below the server) for `reason`.
pub(crate) fn bad<T>(key: &[&'static str], reason: impl Into<String>) -> Result<T, Invalid> {
    Err((key.to_vec(), reason.into()))
}

/// A duration of `key` (its path below the server), checked against its documented range.
fn ranged(key: &[&'static str], d: Duration, min: Duration, max: Duration) -> Result<(), Invalid> {
    in_range(&key.join("."), d, min, max).map_err(|r| (key.to_vec(), r))
}

/// `s`, the server `name` merged over `defaults`, validated.
pub(crate) fn resolve(name: &str, s: RawServer) -> Result<Server, Invalid> {
    let Some(bucket) = s.bucket else {
        return bad(&[], "missing required key `bucket`");
    };
    if let Err(why) = crate::bucket_name_problem(&bucket) {
        return bad(
            &["bucket"],
            format!("invalid bucket name {bucket:?}: {why}"),
        );
    }
    let prefix = s.prefix.unwrap_or_default();
    if prefix.starts_with('/') {
        return bad(
            &["prefix"],
            format!("prefix {prefix:?} must not start with '/' (S3 keys have no leading slash)"),
        );
    }
    if prefix.len() >= 1024 {
        return bad(
            &["prefix"],
            "prefix is longer than S3's 1,024-byte key limit",
        );
    }
    let region = s.region.unwrap_or_else(|| "us-east-1".into());
    if region.is_empty() {
        return bad(&["region"], "region must not be empty");
    }
    if let Some(ep) = &s.endpoint
        && !(ep.starts_with("http://") || ep.starts_with("https://"))
    {
        return bad(
            &["endpoint"],
            format!("endpoint {ep:?} must start with http:// or https://"),
        );
    }
    let credentials = credentials(s.credentials)?;
    if let Some(owner) = &s.expected_bucket_owner
        && !is_account_id(owner)
    {
        return bad(
            &["expected_bucket_owner"],
            format!("expected_bucket_owner {owner:?} is not a 12-digit AWS account id"),
        );
    }
    let sse = s.sse.map(sse).transpose()?;
    if let Some(sc) = &s.storage_class
        && !crate::STORAGE_CLASSES.contains(&sc.as_str())
    {
        let valid = crate::STORAGE_CLASSES.join(", ");
        return bad(
            &["storage_class"],
            format!("storage_class {sc:?} is not an S3 storage class; valid: {valid}"),
        );
    }
    let completion = completion(s.completion, s.marker_suffix, s.quiet_period.map(|d| d.0))?;
    if let Some(r) = &s.archive_retention {
        ranged(
            &["archive_retention"],
            r.0,
            Duration::from_secs(60),
            100 * 365 * DAY,
        )?;
    }
    let max_concurrent_uploads = s.max_concurrent_uploads.map_or(4, |n| n.0);
    if !(1..=MAX_UPLOADS).contains(&max_concurrent_uploads) {
        return bad(
            &["max_concurrent_uploads"],
            format!("max_concurrent_uploads must be between 1 and {MAX_UPLOADS}"),
        );
    }
    let multipart = multipart(s.multipart.unwrap_or_default())?;
    let retry = retry(s.retry.unwrap_or_default())?;
    let timeouts = timeouts(s.timeouts.unwrap_or_default())?;
    let publish_last = s.publish_last.unwrap_or_default();
    if let Some(g) = publish_last
        .iter()
        .find(|g| g.is_empty() || g.contains('/'))
    {
        return bad(
            &["publish_last"],
            format!("publish_last glob {g:?} must be a non-empty file-name pattern without '/'"),
        );
    }
    let manifest = manifest(s.manifest, s.manifest_name, &completion)?;
    let notify = crate::notify::targets(s.notify.unwrap_or_default(), &region)?;
    let period = |key, v: Option<crate::raw::OffDur>, default: Duration, max: Duration| {
        let d = v.map_or(Some(default), |d| d.0);
        d.map(|d| ranged(&[key], d, Duration::from_secs(1), max))
            .transpose()
            .map(|_| d)
    };
    let verify_interval = period("verify_interval", s.verify_interval, 6 * HOUR, 30 * DAY)?;
    let orphan_age = period("orphan_age", s.orphan_age, DAY, 365 * DAY)?;
    Ok(Server {
        name: name.to_owned(),
        bucket,
        prefix,
        region,
        endpoint: s.endpoint,
        path_style: s.path_style.unwrap_or(false),
        checksum: match s.checksum.unwrap_or(RawChecksum::Crc32c) {
            RawChecksum::Crc32c => Checksum::Crc32c,
            RawChecksum::Crc64nvme => Checksum::Crc64Nvme,
            RawChecksum::Md5 => Checksum::Md5,
            RawChecksum::SignedPayload => Checksum::SignedPayload,
        },
        credentials,
        expected_bucket_owner: s.expected_bucket_owner,
        sse,
        storage_class: s.storage_class,
        overwrite: match s.overwrite.unwrap_or(RawOverwrite::Always) {
            RawOverwrite::Always => Overwrite::Always,
            RawOverwrite::Never => Overwrite::Never,
        },
        publish_last,
        manifest,
        completion,
        after_upload: match s.after_upload.unwrap_or(RawAfterUpload::Delete) {
            RawAfterUpload::Delete => AfterUpload::Delete,
            RawAfterUpload::Archive => AfterUpload::Archive,
        },
        archive_retention: s.archive_retention.map(|d| d.0),
        verify_interval,
        orphan_age,
        max_concurrent_uploads,
        window: s.window.map(|w| w.0),
        max_bandwidth: s.max_bandwidth.map_or(0, |r| r.0),
        multipart,
        retry,
        timeouts,
        notify,
    })
}

/// `completion` with its `marker_suffix` or `quiet_period` (each read only in its mode).
fn completion(
    mode: Option<RawCompletion>,
    marker_suffix: Option<String>,
    quiet_period: Option<Duration>,
) -> Result<Completion, Invalid> {
    match mode.unwrap_or(RawCompletion::Rename) {
        RawCompletion::Rename => Ok(Completion::Rename),
        RawCompletion::Marker => {
            let suffix = marker_suffix.unwrap_or_else(|| ".ready".into());
            if suffix.is_empty() || suffix.contains('/') {
                return bad(
                    &["marker_suffix"],
                    format!("marker_suffix {suffix:?} must be non-empty and contain no '/'"),
                );
            }
            Ok(Completion::Marker { suffix })
        }
        RawCompletion::Quiet => {
            let period = quiet_period.unwrap_or(Duration::from_secs(30));
            ranged(&["quiet_period"], period, MS100, DAY)?;
            Ok(Completion::Quiet { period })
        }
    }
}

/// `manifest` with its `manifest_name` (read only when `manifest` is on): a plain file
/// name, refused with the quiet rule (a batch must arrive complete, and under that rule
/// nothing says when a folder is).
fn manifest(
    format: Option<RawManifest>,
    name: Option<String>,
    completion: &Completion,
) -> Result<Option<Manifest>, Invalid> {
    let format = match format.unwrap_or(RawManifest::Off) {
        RawManifest::Off => return Ok(None),
        RawManifest::Json => ManifestFormat::Json,
        RawManifest::AamInfo => ManifestFormat::AamInfo,
    };
    if matches!(completion, Completion::Quiet { .. }) {
        return bad(
            &["manifest"],
            "manifest needs `completion: rename` or `completion: marker`: a batch folder must arrive complete (renamed into place whole, or completed by its marker `<folder><suffix>`), and the quiet rule cannot tell when a folder is",
        );
    }
    let name = name.unwrap_or_else(|| format.default_name().to_owned());
    // The longest name left for `{batch}` (a folder name fits 255 bytes; the manifest's
    // name must too): checked against the template without it.
    let fixed = name.replace("{batch}", "");
    if name.is_empty()
        || name.contains('/')
        || name.contains('\0')
        || fixed == "."
        || fixed == ".."
        || name.starts_with('.')
        || fixed.len() > 200
    {
        return bad(
            &["manifest_name"],
            format!(
                "manifest_name {name:?} must be a plain file name (no '/', not starting with '.', at most 200 bytes besides {{batch}})"
            ),
        );
    }
    Ok(Some(Manifest { format, name }))
}

/// `multipart`: S3's part limits.
fn multipart(m: RawMultipart) -> Result<Multipart, Invalid> {
    let multipart = Multipart {
        threshold: m.threshold.map_or(64 << 20, |v| v.0),
        part_size: m.part_size.map_or(16 << 20, |v| v.0),
        concurrency: m.concurrency.map_or(4, |n| n.0),
    };
    let (min, max) = (format_size(MIN_PART), format_size(MAX_PART));
    if !(MIN_PART..=MAX_PART).contains(&multipart.part_size) {
        return bad(
            &["multipart", "part_size"],
            format!("multipart.part_size must be between {min} and {max} (S3's part limits)"),
        );
    }
    if multipart.threshold == 0 || multipart.threshold > MAX_PART {
        return bad(
            &["multipart", "threshold"],
            format!("multipart.threshold must be between 1B and {max} (the largest single PUT)"),
        );
    }
    if multipart.concurrency == 0 || multipart.concurrency > 64 {
        return bad(
            &["multipart", "concurrency"],
            "multipart.concurrency must be between 1 and 64",
        );
    }
    Ok(multipart)
}

/// `retry`: the backoff range, and a cap no smaller than the first backoff.
fn retry(r: RawRetry) -> Result<Retry, Invalid> {
    let retry = Retry {
        initial_backoff: r.initial_backoff.map_or(Duration::from_secs(1), |d| d.0),
        max_backoff: r.max_backoff.map_or(Duration::from_secs(300), |d| d.0),
        max_attempts: r.max_attempts.map_or(20, |n| n.0),
    };
    ranged(
        &["retry", "initial_backoff"],
        retry.initial_backoff,
        MS1,
        HOUR,
    )?;
    ranged(&["retry", "max_backoff"], retry.max_backoff, MS1, DAY)?;
    if retry.max_backoff < retry.initial_backoff {
        return bad(
            &["retry", "max_backoff"],
            "retry.max_backoff must not be less than retry.initial_backoff",
        );
    }
    if !(1..=10_000).contains(&retry.max_attempts) {
        return bad(
            &["retry", "max_attempts"],
            "retry.max_attempts must be between 1 and 10000",
        );
    }
    Ok(retry)
}

/// `timeouts`.
fn timeouts(t: RawTimeouts) -> Result<Timeouts, Invalid> {
    let timeouts = Timeouts {
        connect: t.connect.map_or(Duration::from_secs(5), |d| d.0),
        read: t.read.map_or(Duration::from_secs(60), |d| d.0),
    };
    ranged(&["timeouts", "connect"], timeouts.connect, MS100, HOUR)?;
    ranged(&["timeouts", "read"], timeouts.read, MS100, HOUR)?;
    Ok(timeouts)
}
