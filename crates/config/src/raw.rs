//! The YAML as written (every key optional), the `defaults` merge, and the checks that
//! turn it into [`Config`]. Type and value errors are raised while deserializing, so
//! serde_norway reports where the value was written; checks that need the merged view
//! are located afterwards by their key path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::units::{parse_duration, parse_size};
use crate::{
    AfterUpload, Checksum, Completion, Config, ConfigError, Credentials, Multipart, Retry, Server,
    Sse, Timeouts,
};

/// A size written as a string like `8MiB`.
#[derive(Debug, Clone, Copy)]
struct Size(u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_size(&s).map(Size).map_err(de::Error::custom)
    }
}

/// A duration written as a string like `30s`.
#[derive(Debug, Clone, Copy)]
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Dur).map_err(de::Error::custom)
    }
}

/// A server name, checked where it is written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Name(String);

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if crate::valid_server_name(&s) {
            Ok(Name(s))
        } else {
            Err(de::Error::custom(format!(
                "invalid server name {s:?}: must match [A-Za-z0-9_][A-Za-z0-9_.-]*"
            )))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    spool_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    publisher_account_id: Option<String>,
    max_concurrent_uploads: Option<usize>,
    shutdown_grace: Option<Dur>,
    rescan_interval: Option<Dur>,
    instance: Option<String>,
    lease_ttl: Option<Dur>,
    max_buffer_memory: Option<Size>,
    #[serde(default)]
    defaults: RawServer,
    #[serde(default)]
    servers: Servers,
}

/// The `servers` map; a name given twice is an error, not a silent overwrite.
#[derive(Default)]
struct Servers(BTreeMap<Name, RawServer>);

impl<'de> Deserialize<'de> for Servers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Servers;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of server names to server settings")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Servers, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(name) = map.next_key::<Name>()? {
                    if out.contains_key(&name) {
                        return Err(de::Error::custom(format!("duplicate server {:?}", name.0)));
                    }
                    let v = map.next_value::<RawServer>()?;
                    out.insert(name, v);
                }
                Ok(Servers(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawServer {
    bucket: Option<String>,
    prefix: Option<String>,
    region: Option<String>,
    endpoint: Option<String>,
    path_style: Option<bool>,
    checksum: Option<RawChecksum>,
    credentials: Option<RawCredentials>,
    expected_bucket_owner: Option<String>,
    sse: Option<RawSse>,
    storage_class: Option<String>,
    publish_last: Option<Vec<String>>,
    completion: Option<RawCompletion>,
    marker_suffix: Option<String>,
    quiet_period: Option<Dur>,
    after_upload: Option<RawAfterUpload>,
    archive_retention: Option<Dur>,
    max_concurrent_uploads: Option<usize>,
    multipart: Option<RawMultipart>,
    retry: Option<RawRetry>,
    timeouts: Option<RawTimeouts>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawChecksum {
    Crc32c,
    Crc64nvme,
    Md5,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawCompletion {
    Rename,
    Marker,
    Quiet,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawAfterUpload {
    Delete,
    Archive,
}

#[derive(Deserialize, Clone)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
enum RawCredentials {
    Internal {},
    Static {
        access_key_id: String,
        secret_access_key_file: PathBuf,
    },
    AssumeRole {
        role_arn: String,
        external_id: Option<String>,
    },
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawSse {
    mode: RawSseMode,
    kms_key_id: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
enum RawSseMode {
    #[serde(rename = "AES256")]
    Aes256,
    #[serde(rename = "aws:kms")]
    Kms,
}

#[derive(Deserialize, Clone, Copy, Default)]
#[serde(deny_unknown_fields)]
struct RawMultipart {
    threshold: Option<Size>,
    part_size: Option<Size>,
    concurrency: Option<usize>,
}

#[derive(Deserialize, Clone, Copy, Default)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    initial_backoff: Option<Dur>,
    max_backoff: Option<Dur>,
    max_attempts: Option<u32>,
}

#[derive(Deserialize, Clone, Copy, Default)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    connect: Option<Dur>,
    read: Option<Dur>,
}

const MS1: Duration = Duration::from_millis(1);
const MS100: Duration = Duration::from_millis(100);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
/// Files in flight at most, over all servers or for one (descriptors, memory).
const MAX_UPLOADS: usize = 1024;

/// Every duration has a documented range (docs/configuration.md): beyond it a value is
/// a typo (`0s` rescans in a loop, `99999999d` overflows a deadline).
fn in_range(key: &str, d: Duration, min: Duration, max: Duration) -> Result<(), String> {
    if d < min || d > max {
        return Err(format!(
            "{key} must be between {} and {}",
            show(min),
            show(max)
        ));
    }
    Ok(())
}

fn show(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_millis() != 0 || s == 0 && !d.is_zero() {
        format!("{}ms", d.as_millis())
    } else if s >= 86_400 && s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s >= 3600 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else {
        format!("{s}s")
    }
}

/// S3's limits on part sizes.
const MIN_PART: u64 = 5 << 20;
const MAX_PART: u64 = 5 << 30;

pub(crate) fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = if text.trim().is_empty() {
        return Err(ConfigError {
            file: path.to_owned(),
            line: None,
            column: None,
            reason: "configuration is empty".into(),
        });
    } else {
        serde_norway::from_str(text).map_err(|e| {
            let loc = e.location();
            ConfigError {
                file: path.to_owned(),
                line: loc.as_ref().map(|l| l.line()),
                column: loc.as_ref().map(|l| l.column()),
                reason: first_line(&e.to_string()),
            }
        })?
    };
    let err = |keys: &[&str], reason: String| {
        let (line, column) = locate(text, keys);
        ConfigError {
            file: path.to_owned(),
            line: Some(line),
            column: Some(column),
            reason,
        }
    };

    let max_concurrent_uploads = raw.max_concurrent_uploads.unwrap_or(32);
    if !(1..=MAX_UPLOADS).contains(&max_concurrent_uploads) {
        return Err(err(
            &["max_concurrent_uploads"],
            format!("max_concurrent_uploads must be between 1 and {MAX_UPLOADS}"),
        ));
    }
    let shutdown_grace = raw.shutdown_grace.map_or(Duration::from_secs(30), |d| d.0);
    in_range("shutdown_grace", shutdown_grace, Duration::ZERO, HOUR)
        .map_err(|r| err(&["shutdown_grace"], r))?;
    let rescan_interval = raw.rescan_interval.map_or(Duration::from_secs(30), |d| d.0);
    in_range(
        "rescan_interval",
        rescan_interval,
        Duration::from_secs(1),
        DAY,
    )
    .map_err(|r| err(&["rescan_interval"], r))?;
    if let Some(id) = &raw.publisher_account_id
        && (id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(err(
            &["publisher_account_id"],
            format!("publisher_account_id {id:?} is not a 12-digit AWS account id"),
        ));
    }
    if raw.servers.0.is_empty() {
        return Err(err(&["servers"], "no servers are configured".into()));
    }
    let mut servers = BTreeMap::new();
    for (Name(name), server) in &raw.servers.0 {
        let s = merge(server, &raw.defaults);
        let resolved = resolve(name, s).map_err(|(key, reason)| {
            let mut keys = vec!["servers", name.as_str()];
            keys.extend(key.iter());
            // A value inherited from `defaults` is located there.
            let (l1, _) = locate(text, &keys);
            let (l0, _) = locate(text, &["servers", name.as_str()]);
            if l1 == l0 && !key.is_empty() {
                let mut dkeys = vec!["defaults"];
                dkeys.extend(key.iter());
                let (dl, dc) = locate(text, &dkeys);
                if dl > 1 && locate(text, &["defaults"]).0 != dl {
                    return ConfigError {
                        file: path.to_owned(),
                        line: Some(dl),
                        column: Some(dc),
                        reason: format!("server {name}: {reason}"),
                    };
                }
            }
            err(&keys, format!("server {name}: {reason}"))
        })?;
        servers.insert(name.clone(), resolved);
    }
    let instance = raw.instance.clone();
    if let Some(i) = &instance
        && !crate::valid_server_name(i)
    {
        return Err(err(
            &["instance"],
            format!("instance {i:?} must match [A-Za-z0-9_][A-Za-z0-9_.-]*"),
        ));
    }
    let max_buffer_memory = raw.max_buffer_memory.map_or(256 << 20, |v| v.0);
    if !(16 << 20..=64 << 30).contains(&max_buffer_memory) {
        return Err(err(
            &["max_buffer_memory"],
            "max_buffer_memory must be between 16MiB and 64GiB".into(),
        ));
    }
    let lease_ttl = raw.lease_ttl.map_or(Duration::from_secs(60), |d| d.0);
    in_range("lease_ttl", lease_ttl, Duration::from_secs(1), DAY)
        .map_err(|r| err(&["lease_ttl"], r))?;
    let spool_dir = raw
        .spool_dir
        .unwrap_or_else(|| PathBuf::from("/var/spool/outpost"));
    if !spool_dir.is_absolute() {
        return Err(err(
            &["spool_dir"],
            format!("spool_dir {:?} must be an absolute path", spool_dir),
        ));
    }
    Ok(Config {
        spool_dir,
        listen: raw
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9464))),
        publisher_account_id: raw.publisher_account_id,
        max_concurrent_uploads,
        shutdown_grace,
        rescan_interval,
        instance,
        lease_ttl,
        max_buffer_memory,
        servers,
    })
}

/// `server` with `defaults` filled in: nested `multipart`, `retry`, `timeouts` merge key
/// by key; `credentials` and `sse` are taken whole from whichever side has them.
fn merge(server: &RawServer, defaults: &RawServer) -> RawServer {
    let d = defaults.clone();
    let s = server.clone();
    RawServer {
        bucket: s.bucket.or(d.bucket),
        prefix: s.prefix.or(d.prefix),
        region: s.region.or(d.region),
        endpoint: s.endpoint.or(d.endpoint),
        path_style: s.path_style.or(d.path_style),
        checksum: s.checksum.or(d.checksum),
        credentials: s.credentials.or(d.credentials),
        expected_bucket_owner: s.expected_bucket_owner.or(d.expected_bucket_owner),
        sse: s.sse.or(d.sse),
        storage_class: s.storage_class.or(d.storage_class),
        publish_last: s.publish_last.or(d.publish_last),
        completion: s.completion.or(d.completion),
        marker_suffix: s.marker_suffix.or(d.marker_suffix),
        quiet_period: s.quiet_period.or(d.quiet_period),
        after_upload: s.after_upload.or(d.after_upload),
        archive_retention: s.archive_retention.or(d.archive_retention),
        max_concurrent_uploads: s.max_concurrent_uploads.or(d.max_concurrent_uploads),
        multipart: Some({
            let (s, d) = (
                s.multipart.unwrap_or_default(),
                d.multipart.unwrap_or_default(),
            );
            RawMultipart {
                threshold: s.threshold.or(d.threshold),
                part_size: s.part_size.or(d.part_size),
                concurrency: s.concurrency.or(d.concurrency),
            }
        }),
        retry: Some({
            let (s, d) = (s.retry.unwrap_or_default(), d.retry.unwrap_or_default());
            RawRetry {
                initial_backoff: s.initial_backoff.or(d.initial_backoff),
                max_backoff: s.max_backoff.or(d.max_backoff),
                max_attempts: s.max_attempts.or(d.max_attempts),
            }
        }),
        timeouts: Some({
            let (s, d) = (
                s.timeouts.unwrap_or_default(),
                d.timeouts.unwrap_or_default(),
            );
            RawTimeouts {
                connect: s.connect.or(d.connect),
                read: s.read.or(d.read),
            }
        }),
    }
}

type Invalid = (Vec<&'static str>, String);

fn resolve(name: &str, s: RawServer) -> Result<Server, Invalid> {
    let bad = |key: &[&'static str], reason: String| Err((key.to_vec(), reason));
    let Some(bucket) = s.bucket else {
        return bad(&[], "missing required key `bucket`".into());
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
            "prefix is longer than S3's 1,024-byte key limit".into(),
        );
    }
    let region = s.region.unwrap_or_else(|| "us-east-1".into());
    if region.is_empty() {
        return bad(&["region"], "region must not be empty".into());
    }
    if let Some(ep) = &s.endpoint
        && !(ep.starts_with("http://") || ep.starts_with("https://"))
    {
        return bad(
            &["endpoint"],
            format!("endpoint {ep:?} must start with http:// or https://"),
        );
    }
    let credentials = match s.credentials.unwrap_or(RawCredentials::Internal {}) {
        RawCredentials::Internal {} => Credentials::Internal,
        RawCredentials::Static {
            access_key_id,
            secret_access_key_file,
        } => {
            if access_key_id.is_empty() {
                return bad(
                    &["credentials", "access_key_id"],
                    "access_key_id must not be empty".into(),
                );
            }
            if !secret_access_key_file.is_absolute() {
                return bad(
                    &["credentials", "secret_access_key_file"],
                    "secret_access_key_file must be an absolute path".into(),
                );
            }
            Credentials::Static {
                access_key_id,
                secret_access_key_file,
            }
        }
        RawCredentials::AssumeRole {
            role_arn,
            external_id,
        } => {
            if !role_arn.starts_with("arn:") || !role_arn.contains(":role/") {
                return bad(
                    &["credentials", "role_arn"],
                    format!(
                        "role_arn {role_arn:?} is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME)"
                    ),
                );
            }
            match external_id.as_deref() {
                None => {
                    return bad(
                        &["credentials"],
                        "assume_role needs `external_id`: the customer's trust policy must require it (sts:ExternalId) so that no other party can make the publisher write into their bucket (the confused-deputy problem); agree one per customer and run `outpost policy` for the trust policy".into(),
                    );
                }
                Some(e) if e.len() < 2 || e.len() > 1224 => {
                    return bad(
                        &["credentials", "external_id"],
                        "external_id must be 2 to 1,224 characters (STS's limits)".into(),
                    );
                }
                Some(_) => {}
            }
            Credentials::AssumeRole {
                role_arn,
                external_id,
            }
        }
    };
    if let Some(owner) = &s.expected_bucket_owner
        && (owner.len() != 12 || !owner.bytes().all(|b| b.is_ascii_digit()))
    {
        return bad(
            &["expected_bucket_owner"],
            format!("expected_bucket_owner {owner:?} is not a 12-digit AWS account id"),
        );
    }
    let sse = match s.sse {
        None => None,
        Some(RawSse {
            mode: RawSseMode::Aes256,
            kms_key_id: None,
        }) => Some(Sse::Aes256),
        Some(RawSse {
            mode: RawSseMode::Aes256,
            kms_key_id: Some(_),
        }) => {
            return bad(
                &["sse", "kms_key_id"],
                "kms_key_id is only valid with mode aws:kms".into(),
            );
        }
        Some(RawSse {
            mode: RawSseMode::Kms,
            kms_key_id,
        }) => match kms_key_id {
            Some(k) if k.starts_with("arn:") && k.contains(":kms:") && k.contains(":key/") => {
                Some(Sse::Kms { kms_key_id: k })
            }
            Some(k) => {
                return bad(
                    &["sse", "kms_key_id"],
                    format!(
                        "kms_key_id {k:?} must be a full key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID); an alias or bare id would resolve in the publisher's own account"
                    ),
                );
            }
            None => return bad(&["sse"], "mode aws:kms needs kms_key_id".into()),
        },
    };
    if let Some(sc) = &s.storage_class
        && !crate::STORAGE_CLASSES.contains(&sc.as_str())
    {
        return bad(
            &["storage_class"],
            format!(
                "storage_class {sc:?} is not an S3 storage class; valid: {}",
                crate::STORAGE_CLASSES.join(", ")
            ),
        );
    }
    let completion = match s.completion.unwrap_or(RawCompletion::Rename) {
        RawCompletion::Rename => Completion::Rename,
        RawCompletion::Marker => {
            let suffix = s.marker_suffix.unwrap_or_else(|| ".ready".into());
            if suffix.is_empty() || suffix.contains('/') {
                return bad(
                    &["marker_suffix"],
                    format!("marker_suffix {suffix:?} must be non-empty and contain no '/'"),
                );
            }
            Completion::Marker { suffix }
        }
        RawCompletion::Quiet => {
            let period = s.quiet_period.map_or(Duration::from_secs(30), |d| d.0);
            in_range("quiet_period", period, MS100, DAY).map_err(|r| (vec!["quiet_period"], r))?;
            Completion::Quiet { period }
        }
    };
    if let Some(r) = s.archive_retention {
        in_range(
            "archive_retention",
            r.0,
            Duration::from_secs(60),
            100 * 365 * DAY,
        )
        .map_err(|r| (vec!["archive_retention"], r))?;
    }
    let max_concurrent_uploads = s.max_concurrent_uploads.unwrap_or(4);
    if !(1..=MAX_UPLOADS).contains(&max_concurrent_uploads) {
        return bad(
            &["max_concurrent_uploads"],
            format!("max_concurrent_uploads must be between 1 and {MAX_UPLOADS}"),
        );
    }
    let m = s.multipart.unwrap_or_default();
    let multipart = Multipart {
        threshold: m.threshold.map_or(64 << 20, |v| v.0),
        part_size: m.part_size.map_or(16 << 20, |v| v.0),
        concurrency: m.concurrency.unwrap_or(4),
    };
    if !(MIN_PART..=MAX_PART).contains(&multipart.part_size) {
        return bad(
            &["multipart", "part_size"],
            "multipart.part_size must be between 5MiB and 5GiB (S3's part limits)".into(),
        );
    }
    if multipart.threshold == 0 || multipart.threshold > MAX_PART {
        return bad(
            &["multipart", "threshold"],
            "multipart.threshold must be between 1B and 5GiB (the largest single PUT)".into(),
        );
    }
    if multipart.concurrency == 0 || multipart.concurrency > 64 {
        return bad(
            &["multipart", "concurrency"],
            "multipart.concurrency must be between 1 and 64".into(),
        );
    }
    let r = s.retry.unwrap_or_default();
    let retry = Retry {
        initial_backoff: r.initial_backoff.map_or(Duration::from_secs(1), |d| d.0),
        max_backoff: r.max_backoff.map_or(Duration::from_secs(300), |d| d.0),
        max_attempts: r.max_attempts.unwrap_or(20),
    };
    in_range("retry.initial_backoff", retry.initial_backoff, MS1, HOUR)
        .map_err(|r| (vec!["retry", "initial_backoff"], r))?;
    in_range("retry.max_backoff", retry.max_backoff, MS1, DAY)
        .map_err(|r| (vec!["retry", "max_backoff"], r))?;
    if retry.max_backoff < retry.initial_backoff {
        return bad(
            &["retry", "max_backoff"],
            "retry.max_backoff must not be less than retry.initial_backoff".into(),
        );
    }
    if !(1..=10_000).contains(&retry.max_attempts) {
        return bad(
            &["retry", "max_attempts"],
            "retry.max_attempts must be between 1 and 10000".into(),
        );
    }
    let t = s.timeouts.unwrap_or_default();
    let timeouts = Timeouts {
        connect: t.connect.map_or(Duration::from_secs(5), |d| d.0),
        read: t.read.map_or(Duration::from_secs(60), |d| d.0),
    };
    in_range("timeouts.connect", timeouts.connect, MS100, HOUR)
        .map_err(|r| (vec!["timeouts", "connect"], r))?;
    in_range("timeouts.read", timeouts.read, MS100, HOUR)
        .map_err(|r| (vec!["timeouts", "read"], r))?;
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
        },
        credentials,
        expected_bucket_owner: s.expected_bucket_owner,
        sse,
        storage_class: s.storage_class,
        publish_last,
        completion,
        after_upload: match s.after_upload.unwrap_or(RawAfterUpload::Delete) {
            RawAfterUpload::Delete => AfterUpload::Delete,
            RawAfterUpload::Archive => AfterUpload::Archive,
        },
        archive_retention: s.archive_retention.map(|d| d.0),
        max_concurrent_uploads,
        multipart,
        retry,
        timeouts,
    })
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or(s);
    // serde_norway appends " at line L column C"; the location is printed separately.
    match line.find(" at line ") {
        Some(i) => line[..i].to_owned(),
        None => line.to_owned(),
    }
}

/// Line and column (1-based) of the deepest key of `keys` found in block-style YAML;
/// (1, 1) when not even the first is found.
pub(crate) fn locate(text: &str, keys: &[&str]) -> (usize, usize) {
    let mut best = (1, 1);
    let mut depth = 0;
    let mut parent_indent: isize = -1;
    for (i, line) in text.lines().enumerate() {
        if depth == keys.len() {
            break;
        }
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = (line.len() - trimmed.len()) as isize;
        if depth > 0 && indent <= parent_indent {
            break; // the parent's block ended without the key
        }
        let key = keys[depth];
        let matches = [
            format!("{key}:"),
            format!("\"{key}\":"),
            format!("'{key}':"),
        ]
        .iter()
        .any(|k| trimmed.starts_with(k.as_str()));
        if matches {
            best = (i + 1, indent as usize + 1);
            parent_indent = indent;
            depth += 1;
        }
    }
    best
}
