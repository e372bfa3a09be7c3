//! The YAML as written: every key of SPEC §2, each declared once here with its type
//! (every key optional; defaults and ranges live in `resolve.rs` and `server.rs`). Values
//! whose form is wrong (a size, a duration, a server name, a keyword) are refused while
//! parsing, so the parser's own position applies. To add a key: add it to its section
//! here, then resolve it where its section is resolved. (The sections of one `notify`
//! entry are declared beside their resolution, in `notify.rs`.)

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::keys::{Field, keyword, not_a_mapping, section, whole};
pub(crate) use crate::scalar::{Count, Dur, OffDur, Rate, RawWindow, Size, Written};

section!(whole "top-level", "the file must be a mapping of top-level keys",
    /// The whole file.
    struct RawConfig {
        /// The spool (absolute; default `/var/spool/outpost`).
        spool_dir: PathBuf,
        /// Address of `/metrics`, `/healthz`, `/readyz`.
        listen: SocketAddr,
        /// The publisher's 12-digit account, for `outpost policy`.
        publisher_account_id: String,
        /// Files in flight over all servers (1–1024).
        max_concurrent_uploads: Count<usize>,
        /// Time SIGTERM gives uploads in flight (0s–1h).
        shutdown_grace: Dur,
        /// Period of the full rescan that catches missed events (1s–1d).
        rescan_interval: Dur,
        /// This daemon's folder in `.outpost/` (default: the host name).
        instance: String,
        /// Age after which another daemon's lease counts as dead (1s–1d).
        lease_ttl: Dur,
        /// Bytes all body buffers may hold at once (16MiB–64GiB).
        max_buffer_memory: Size,
        /// The daemon's own state, such as the delivery ledger (absolute; default
        /// `/var/lib/outpost`).
        state_dir: PathBuf,
        /// Age after which ledger rows are pruned (1h–3650d).
        ledger_retention: Dur,
        /// Bytes per second sent over all servers together (`0`: unlimited).
        max_bandwidth: Rate,
        /// Server keys merged into every server.
        defaults: Defaults,
        /// Servers by name; resolved one by one over `defaults`.
        servers: Servers,
    }
);

section!(by_key "server", "a server must be a mapping of server keys",
    /// One server as written, or `defaults`.
    struct RawServer {
        /// Destination bucket (required, after the merge); S3's naming rules.
        bucket: String,
        /// Prepended to the relative path (no leading `/`).
        prefix: String,
        /// Bucket region (default `us-east-1`).
        region: String,
        /// Custom endpoint URL (S3-compatible stores, tests).
        endpoint: String,
        /// `endpoint/bucket/key` addressing.
        path_style: bool,
        /// The integrity check on every PUT and part (default `crc32c`).
        checksum: RawChecksum,
        /// Taken whole: a server's `mode: internal` never inherits a `role_arn`.
        credentials: RawCredentials,
        /// Sent as `x-amz-expected-bucket-owner`: 12 digits.
        expected_bucket_owner: String,
        /// Taken whole, like `credentials`.
        sse: RawSse,
        /// One of [`crate::STORAGE_CLASSES`].
        storage_class: String,
        /// Whether a later drop may replace an existing object (default `always`);
        /// `never` sends `If-None-Match: *` (create-only writes).
        overwrite: RawOverwrite,
        /// Globs of control files published after their data.
        publish_last: Vec<String>,
        /// Batch manifests (default `off`): `json` or `aam-info`, uploaded as each batch
        /// folder's last object.
        manifest: RawManifest,
        /// The manifest's file name; `{batch}` stands for the batch folder's name.
        manifest_name: String,
        /// When a file counts as complete (default `rename`).
        completion: RawCompletion,
        /// Read only with `completion: marker`.
        marker_suffix: String,
        /// Read only with `completion: quiet`.
        quiet_period: Dur,
        /// What happens to a published file (default `delete`).
        after_upload: RawAfterUpload,
        /// Age after which archived files are pruned (1m–36500d).
        archive_retention: Dur,
        /// Files in flight for this server (1–1024).
        max_concurrent_uploads: Count<usize>,
        /// The background `verify` probe's period (default 6h; `0` off).
        verify_interval: OffDur,
        /// Age of an open multipart upload of ours that the sweep aborts (default 24h).
        orphan_age: OffDur,
        /// When files of this server may start (default: always).
        window: RawWindow,
        /// Bytes per second sent to this server (`0`: unlimited).
        max_bandwidth: Rate,
        /// Merged key by key with `defaults`.
        multipart: RawMultipart,
        /// Merged key by key with `defaults`.
        retry: RawRetry,
        /// Merged key by key with `defaults`.
        timeouts: RawTimeouts,
        /// Delivery notifications: a list of targets, taken whole (a server's list
        /// replaces the one in `defaults`; `notify: []` turns them off).
        notify: Vec<crate::notify::RawTarget>,
    }
);

section!(whole "credentials", "`credentials` must be a mapping with `mode: ...`",
    /// `credentials`: all keys of all modes; which belong to which mode is checked when
    /// resolving, where each key can be located.
    struct RawCredentials {
        /// Required: `internal`, `static` or `assume_role`.
        mode: RawCredentialsMode,
        /// `static` only.
        access_key_id: Written<String>,
        /// `static` only; the file is read by the uploader, never here.
        secret_access_key_file: Written<PathBuf>,
        /// `assume_role` only.
        role_arn: Written<String>,
        /// `assume_role` only.
        external_id: Written<String>,
    }
);

section!(whole "sse", "`sse` must be a mapping with `mode: ...`",
    /// `sse`.
    struct RawSse {
        /// Required: `AES256` or `aws:kms`.
        mode: RawSseMode,
        /// `aws:kms` only.
        kms_key_id: String,
    }
);

section!(by_key "multipart", "`multipart` must be a mapping",
    /// `multipart`.
    struct RawMultipart {
        /// Files this size or larger go by multipart (1B–5GiB).
        threshold: Size,
        /// Part size (5MiB–5GiB, S3's limits).
        part_size: Size,
        /// Parts in flight per file (1–64).
        concurrency: Count<usize>,
    }
);

section!(by_key "retry", "`retry` must be a mapping",
    /// `retry`.
    struct RawRetry {
        /// First retry delay before jitter (1ms–1h).
        initial_backoff: Dur,
        /// Cap of the delay (1ms–1d, at least `initial_backoff`).
        max_backoff: Dur,
        /// Attempts before a file goes to `.failed/` (1–10000).
        max_attempts: Count<u32>,
    }
);

section!(by_key "timeouts", "`timeouts` must be a mapping",
    /// `timeouts`.
    struct RawTimeouts {
        /// TCP/TLS connect (100ms–1h).
        connect: Dur,
        /// Time without progress (100ms–1h).
        read: Dur,
    }
);

keyword!(
    "checksum",
    /// `checksum`.
    enum RawChecksum {
        Crc32c = "crc32c",
        Crc64nvme = "crc64nvme",
        Md5 = "md5",
        SignedPayload = "signed_payload",
    }
);

keyword!(
    "completion",
    /// `completion`.
    enum RawCompletion {
        Rename = "rename",
        Marker = "marker",
        Quiet = "quiet",
    }
);

keyword!(
    "manifest",
    /// `manifest`.
    enum RawManifest {
        Off = "off",
        Json = "json",
        AamInfo = "aam-info",
    }
);

keyword!(
    "after_upload",
    /// `after_upload`.
    enum RawAfterUpload {
        Delete = "delete",
        Archive = "archive",
    }
);

keyword!(
    "overwrite",
    /// `overwrite`.
    enum RawOverwrite {
        Always = "always",
        Never = "never",
    }
);

keyword!(
    "credentials mode",
    /// `credentials.mode`.
    enum RawCredentialsMode {
        Internal = "internal",
        Static = "static",
        AssumeRole = "assume_role",
    }
);

keyword!(
    "sse mode",
    /// `sse.mode`.
    enum RawSseMode {
        Aes256 = "AES256",
        Kms = "aws:kms",
    }
);

/// `defaults`: server keys. Read as a mapping, where an empty value is an empty mapping
/// but `~` or `null` is refused, as before the keys were declared once.
#[derive(Default, Clone)]
pub(crate) struct Defaults(pub(crate) RawServer);

impl Field for Defaults {
    fn read<'de, A: de::MapAccess<'de>>(map: &mut A) -> Result<Option<Self>, A::Error> {
        map.next_value().map(Some)
    }
}

impl<'de> Deserialize<'de> for Defaults {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Defaults;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of server keys")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Defaults, A::Error> {
                RawServer::deserialize(de::value::MapAccessDeserializer::new(map)).map(Defaults)
            }
        }
        d.deserialize_map(V)
    }
}

/// The `servers` map; a name given twice is refused at the second, not overwritten.
#[derive(Default, Clone)]
pub(crate) struct Servers(pub(crate) BTreeMap<String, RawServer>);

whole!(Servers);

impl<'de> Deserialize<'de> for Servers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Servers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(MSG)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Servers, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(name) = map.next_key_seed(NewName(&out))? {
                    let v = map.next_value::<RawServer>()?;
                    out.insert(name, v);
                }
                Ok(Servers(out))
            }
            not_a_mapping!(MSG);
        }
        const MSG: &str = "`servers` must be a mapping of server names to server keys";
        d.deserialize_any(V)
    }
}

/// A server name (`[A-Za-z0-9_][A-Za-z0-9_.-]*`, also its spool folder) not among the
/// servers read so far; checked inside the parser's visit of the name, so an error is
/// located at the name itself.
struct NewName<'a>(&'a BTreeMap<String, RawServer>);

impl<'de> de::DeserializeSeed<'de> for NewName<'_> {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for NewName<'_> {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a server name")
    }
    fn visit_str<E: de::Error>(self, name: &str) -> Result<String, E> {
        if !crate::valid_server_name(name) {
            return Err(E::custom(format!(
                "invalid server name {name:?}: must match [A-Za-z0-9_][A-Za-z0-9_.-]*"
            )));
        }
        if self.0.contains_key(name) {
            return Err(E::custom(format!("duplicate server `{name}`")));
        }
        Ok(name.to_owned())
    }
}
