//! The settings written back as the YAML a user would write (`completion: quiet,
//! quiet_period: 30s`), for `outpost check` and log lines; never Rust's `Debug`. Each
//! `Display` prints the key and its value, durations and sizes in the units of
//! docs/configuration.md. A reader changes this file when a key's spelling changes.

use std::fmt::{self, Display, Formatter};

use crate::units::{format_duration, format_size};
use crate::{AfterUpload, Checksum, Completion, Credentials, Manifest, ManifestFormat};
use crate::{Multipart, Overwrite, Retry, Sse, Timeouts};

/// `s` as a YAML scalar: plain when it reads back as the same string, else double-quoted.
struct Scalar<'a>(&'a str);

impl Display for Scalar<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let special = |c: char| ":#{}[],&*!|>'\"%@`\\".contains(c) || c.is_control();
        let plain = !s.is_empty()
            && !s.starts_with([' ', '-', '?', '~'])
            && !s.ends_with(' ')
            && !s.contains(special)
            && !matches!(s, "true" | "false" | "null" | "yes" | "no" | "on" | "off")
            && s.parse::<f64>().is_err();
        if plain {
            f.write_str(s)
        } else {
            write!(f, "{s:?}")
        }
    }
}

/// `credentials: { mode: ..., ... }`; the secret file's path is shown, never a secret.
impl Display for Credentials {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Internal => f.write_str("credentials: { mode: internal }"),
            Credentials::Static {
                access_key_id,
                secret_access_key_file,
            } => write!(
                f,
                "credentials: {{ mode: static, access_key_id: {}, secret_access_key_file: {} }}",
                Scalar(access_key_id),
                Scalar(&secret_access_key_file.to_string_lossy())
            ),
            Credentials::AssumeRole {
                role_arn,
                external_id,
            } => {
                write!(
                    f,
                    "credentials: {{ mode: assume_role, role_arn: {}",
                    Scalar(role_arn)
                )?;
                // The external id guards against a confused deputy: like a secret, it is
                // never printed (check output lands in tickets and CI logs).
                if external_id.is_some() {
                    f.write_str(", external_id: (set)")?;
                }
                f.write_str(" }")
            }
        }
    }
}

/// `completion: rename`, `completion: marker, marker_suffix: .ready` or
/// `completion: quiet, quiet_period: 30s`.
impl Display for Completion {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Completion::Rename => f.write_str("completion: rename"),
            Completion::Marker { suffix } => {
                write!(f, "completion: marker, marker_suffix: {}", Scalar(suffix))
            }
            Completion::Quiet { period } => {
                write!(
                    f,
                    "completion: quiet, quiet_period: {}",
                    format_duration(*period)
                )
            }
        }
    }
}

/// `manifest: json, manifest_name: _manifest.json` or
/// `manifest: aam-info, manifest_name: "{batch}.info"`.
impl Display for Manifest {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let format = match self.format {
            ManifestFormat::Json => "json",
            ManifestFormat::AamInfo => "aam-info",
        };
        write!(
            f,
            "manifest: {format}, manifest_name: {}",
            Scalar(&self.name)
        )
    }
}

/// `after_upload: delete` or `after_upload: archive`.
impl Display for AfterUpload {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AfterUpload::Delete => "after_upload: delete",
            AfterUpload::Archive => "after_upload: archive",
        })
    }
}

/// `overwrite: always` or `overwrite: never`.
impl Display for Overwrite {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Overwrite::Always => "overwrite: always",
            Overwrite::Never => "overwrite: never",
        })
    }
}

/// `checksum: crc32c`, `crc64nvme`, `md5` or `signed_payload`.
impl Display for Checksum {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Checksum::Crc32c => "checksum: crc32c",
            Checksum::Crc64Nvme => "checksum: crc64nvme",
            Checksum::Md5 => "checksum: md5",
            Checksum::SignedPayload => "checksum: signed_payload",
        })
    }
}

/// `sse: { mode: AES256 }` or `sse: { mode: "aws:kms", kms_key_id: ... }`.
impl Display for Sse {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Sse::Aes256 => f.write_str("sse: { mode: AES256 }"),
            Sse::Kms { kms_key_id } => write!(
                f,
                "sse: {{ mode: \"aws:kms\", kms_key_id: {} }}",
                Scalar(kms_key_id)
            ),
        }
    }
}

/// `multipart: { threshold: 64MiB, part_size: 16MiB, concurrency: 4 }`.
impl Display for Multipart {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "multipart: {{ threshold: {}, part_size: {}, concurrency: {} }}",
            format_size(self.threshold),
            format_size(self.part_size),
            self.concurrency
        )
    }
}

/// `retry: { initial_backoff: 1s, max_backoff: 5m, max_attempts: 20 }`.
impl Display for Retry {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "retry: {{ initial_backoff: {}, max_backoff: {}, max_attempts: {} }}",
            format_duration(self.initial_backoff),
            format_duration(self.max_backoff),
            self.max_attempts
        )
    }
}

/// `timeouts: { connect: 5s, read: 1m }`.
impl Display for Timeouts {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timeouts: {{ connect: {}, read: {} }}",
            format_duration(self.connect),
            format_duration(self.read)
        )
    }
}

/// `webhook: { url: https://host/…, secret_file: … }`, `sqs: { queue_url: … }` or
/// `sns: { topic_arn: … }`, after `name: …`. A webhook URL's path and query are not
/// shown: hook URLs often carry a token.
impl Display for crate::Target {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        use crate::TargetKind;
        write!(f, "{{ name: {}, ", Scalar(&self.name))?;
        match &self.kind {
            TargetKind::Webhook { url, secret_file } => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
                let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
                let host = host.rsplit('@').next().unwrap_or_default();
                write!(
                    f,
                    "webhook: {{ url: {}, secret_file: {} }}",
                    Scalar(&format!("{scheme}://{host}/…")),
                    Scalar(&secret_file.to_string_lossy())
                )?;
            }
            TargetKind::Sqs {
                queue_url, region, ..
            } => write!(
                f,
                "sqs: {{ queue_url: {}, region: {} }}",
                Scalar(queue_url),
                Scalar(region)
            )?,
            TargetKind::Sns {
                topic_arn, region, ..
            } => write!(
                f,
                "sns: {{ topic_arn: {}, region: {} }}",
                Scalar(topic_arn),
                Scalar(region)
            )?,
        }
        f.write_str(" }")
    }
}
