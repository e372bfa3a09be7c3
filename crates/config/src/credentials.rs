//! A server's `credentials` (which identity writes: each mode's keys, and only those)
//! and `sse` (how objects are encrypted), resolved after `defaults` were merged in. Both
//! are taken whole from the server or from `defaults`, never mixed.

use crate::raw::{RawCredentials, RawCredentialsMode, RawSse, RawSseMode};
use crate::server::{Invalid, bad};
use crate::{Credentials, Sse};

/// `credentials` (default `mode: internal`): the keys of its mode, and only those.
pub(crate) fn credentials(c: Option<RawCredentials>) -> Result<Credentials, Invalid> {
    let Some(c) = c else {
        return Ok(Credentials::Internal);
    };
    let (mode, word): (_, &str) = match c.mode {
        None => {
            return bad(
                &["credentials"],
                "`credentials` needs `mode: internal`, `static` or `assume_role`",
            );
        }
        Some(m @ RawCredentialsMode::Internal) => (m, "internal"),
        Some(m @ RawCredentialsMode::Static) => (m, "static"),
        Some(m @ RawCredentialsMode::AssumeRole) => (m, "assume_role"),
    };
    let keys: &[(&'static str, bool)] = &[
        ("access_key_id", c.access_key_id.is_some()),
        ("secret_access_key_file", c.secret_access_key_file.is_some()),
        ("role_arn", c.role_arn.is_some()),
        ("external_id", c.external_id.is_some()),
    ];
    let allowed: &[&str] = match mode {
        RawCredentialsMode::Internal => &[],
        RawCredentialsMode::Static => &["access_key_id", "secret_access_key_file"],
        RawCredentialsMode::AssumeRole => &["role_arn", "external_id"],
    };
    if let Some((key, _)) = keys.iter().find(|(k, set)| *set && !allowed.contains(k)) {
        return bad(
            &["credentials", key],
            format!("`{key}` is not a key of credentials mode `{word}`"),
        );
    }
    let needs = |key: &str| format!("credentials mode `{word}` needs `{key}`");
    match mode {
        RawCredentialsMode::Internal => Ok(Credentials::Internal),
        RawCredentialsMode::Static => {
            let Some(access_key_id) = c.access_key_id.and_then(|w| w.0) else {
                return bad(&["credentials"], needs("access_key_id"));
            };
            let Some(secret_access_key_file) = c.secret_access_key_file.and_then(|w| w.0) else {
                return bad(&["credentials"], needs("secret_access_key_file"));
            };
            if access_key_id.is_empty() {
                return bad(
                    &["credentials", "access_key_id"],
                    "access_key_id must not be empty",
                );
            }
            if !secret_access_key_file.is_absolute() {
                return bad(
                    &["credentials", "secret_access_key_file"],
                    "secret_access_key_file must be an absolute path",
                );
            }
            Ok(Credentials::Static {
                access_key_id,
                secret_access_key_file,
            })
        }
        RawCredentialsMode::AssumeRole => {
            let Some(role_arn) = c.role_arn.and_then(|w| w.0) else {
                return bad(&["credentials"], needs("role_arn"));
            };
            if !role_arn.starts_with("arn:") || !role_arn.contains(":role/") {
                return bad(
                    &["credentials", "role_arn"],
                    format!(
                        "role_arn {role_arn:?} is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME)"
                    ),
                );
            }
            let external_id = c.external_id.and_then(|w| w.0);
            match external_id.as_deref() {
                None => bad(
                    &["credentials"],
                    "assume_role needs `external_id`: the customer's trust policy must require it (sts:ExternalId) so that no other party can make the publisher write into their bucket (the confused-deputy problem); agree one per customer and run `outpost policy` for the trust policy",
                ),
                Some(e) if e.len() < 2 || e.len() > 1224 => bad(
                    &["credentials", "external_id"],
                    "external_id must be 2 to 1,224 characters (STS's limits)",
                ),
                Some(_) => Ok(Credentials::AssumeRole {
                    role_arn,
                    external_id,
                }),
            }
        }
    }
}

/// `sse`: `AES256`, or `aws:kms` with a full key ARN.
pub(crate) fn sse(s: RawSse) -> Result<Sse, Invalid> {
    match (s.mode, s.kms_key_id) {
        (None, _) => bad(
            &["sse"],
            "`sse` needs `mode: AES256` or `mode: \"aws:kms\"`",
        ),
        (Some(RawSseMode::Aes256), None) => Ok(Sse::Aes256),
        (Some(RawSseMode::Aes256), Some(_)) => bad(
            &["sse", "kms_key_id"],
            "kms_key_id is only valid with mode aws:kms",
        ),
        (Some(RawSseMode::Kms), Some(k))
            if k.starts_with("arn:") && k.contains(":kms:") && k.contains(":key/") =>
        {
            Ok(Sse::Kms { kms_key_id: k })
        }
        (Some(RawSseMode::Kms), Some(k)) => bad(
            &["sse", "kms_key_id"],
            format!(
                "kms_key_id {k:?} must be a full key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID); an alias or bare id would resolve in the publisher's own account"
            ),
        ),
        (Some(RawSseMode::Kms), None) => bad(&["sse"], "mode aws:kms needs kms_key_id"),
    }
}
