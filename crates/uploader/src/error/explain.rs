//! The operator's sentence for a refusal: what the destination refused, the likely
//! causes, and what the customer or the operator must fix. A reader may reword these
//! texts here (`outpost verify` and the logs print them); which error is a refusal is
//! decided in `error.rs`.

use super::{ASSUME_ROLE_REFUSED, Cause, ErrorClass, UploadError};

impl UploadError {
    /// One line for an operator: what the destination refused, the possible causes, and
    /// what the customer or the operator must fix.
    pub fn explain(&self, s: &outpost_config::Server) -> String {
        if self.class == ErrorClass::Exists {
            return self.explain_exists(s);
        }
        if self.code.as_deref() == Some(crate::CONDITIONAL_WRITES_IGNORED) {
            let workaround = if self.op == crate::CONDITIONAL_COMPLETE {
                "; as single PUTs are honoured, raising `multipart.threshold` (up to 5GiB) keeps files below it create-only"
            } else {
                ""
            };
            return format!(
                "the store ignores If-None-Match: * on {}: with `overwrite: never` a file published to a key that already holds an object would replace it; publish server {} to a store that honours conditional writes (AWS S3 does), or set `overwrite: always` and rely on bucket versioning{workaround}",
                if self.op == crate::CONDITIONAL_COMPLETE {
                    "CompleteMultipartUpload (files at or above `multipart.threshold`)"
                } else {
                    "PutObject"
                },
                s.name
            );
        }
        let code = self.code.as_deref().unwrap_or("");
        let verify = format!("check with `outpost verify {}`", s.name);
        let kms = match &s.sse {
            Some(outpost_config::Sse::Kms { kms_key_id }) => format!(
                ", or the key policy of {kms_key_id} does not let the publisher use the key"
            ),
            _ => String::new(),
        };
        let owner = match &s.expected_bucket_owner {
            Some(o) => format!(
                ", or bucket {} is not owned by account {o} (expected_bucket_owner)",
                s.bucket
            ),
            None => String::new(),
        };
        let why = match code {
            "" if self.cause == Some(Cause::UntrustedCertificate) => format!(
                "fix: check `endpoint` of server {} (the certificate must name its host); for a private CA, add it to the system's trust store or point SSL_CERT_FILE at a PEM bundle that holds it, then restart outpost (the trusted roots are read at start)",
                s.name
            ),
            "" if self.class != ErrorClass::Refused => format!(
                "the endpoint could not be reached or did not answer; fix: check `endpoint`/`region` of server {} and the network path to it (DNS, firewall, proxy), then {verify}",
                s.name
            ),
            "AccessDenied" | "AllAccessDisabled" | "" => format!(
                "the bucket policy of {} does not allow the publisher to write under {:?}{owner}{kms}; fix: run `outpost policy {}` and have the customer apply it, then {verify}",
                s.bucket, s.prefix, s.name
            ),
            "NoSuchBucket" => format!(
                "bucket {} does not exist; fix: check `bucket` of server {} or ask the customer to create it",
                s.bucket, s.name
            ),
            "InvalidAccessKeyId" => format!(
                "S3 does not know the access key; fix: check the credentials of server {} (the access key id, or the daemon's identity)",
                s.name
            ),
            "SignatureDoesNotMatch" => format!(
                "the secret key does not match the access key; fix: check the secret of server {}",
                s.name
            ),
            "PermanentRedirect"
            | "AuthorizationHeaderMalformed"
            | "IllegalLocationConstraintException" => format!(
                "bucket {} is not in region {}; fix: set `region` of server {} to the bucket's region",
                s.bucket, s.region, s.name
            ),
            "InvalidToken" => format!(
                "the session token is not valid; fix: check the assume_role settings of server {}",
                s.name
            ),
            ASSUME_ROLE_REFUSED => match &s.credentials {
                outpost_config::Credentials::AssumeRole { role_arn, .. } => format!(
                    "STS does not let the publisher assume role {role_arn}: the role's trust policy must name the publisher's account or identity and require the external id set in `credentials.external_id` of server {name} (sts:ExternalId), the role must exist, and the publisher's own identity must be allowed sts:AssumeRole on it; fix: run `outpost policy {name}` and have the customer apply its trust policy, then {verify}",
                    name = s.name
                ),
                _ => format!("STS refused AssumeRole; {verify}"),
            },
            "InvalidStorageClass" => format!(
                "S3 refuses storage_class {:?} for every object; fix: set `storage_class` of server {} to a class the bucket accepts, then reload (SIGHUP)",
                s.storage_class.as_deref().unwrap_or(""),
                s.name
            ),
            "InvalidEncryptionAlgorithmError" => format!(
                "S3 refuses the encryption settings for every object; fix: check `sse` of server {}",
                s.name
            ),
            c if c.starts_with("KMS.") => format!(
                "KMS refuses the key{kms}; fix: the customer adds the key-policy statement printed by `outpost policy {}`",
                s.name
            ),
            _ => format!("the destination refuses us; {verify}"),
        };
        format!(
            "{} refused ({}): {why}",
            self.op,
            if code.is_empty() {
                self.message.as_str()
            } else {
                code
            }
        )
    }
}

impl UploadError {
    /// [`ErrorClass::Exists`]: what is at the key and what the operator may do.
    fn explain_exists(&self, s: &outpost_config::Server) -> String {
        let what = match &self.existing {
            Some(o) => format!(
                "an object of {} bytes{}{} already at that key",
                o.size,
                o.etag
                    .as_deref()
                    .map(|e| format!(", ETag {e}"))
                    .unwrap_or_default(),
                o.last_modified
                    .map(|t| format!(", last modified {}", crate::facts::rfc3339(t)))
                    .unwrap_or_default()
            ),
            None => {
                "an object already at that key (the publisher may not read it: no s3:GetObject)"
                    .to_owned()
            }
        };
        format!(
            "server {} has `overwrite: never` and there is {what}, which is not this file; the object was left untouched and the file moved to .failed/ (reason exists); fix: have the customer remove or rename the object, or drop the file under another name, then `outpost requeue`",
            s.name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_their_fix() {
        let config = outpost_config::Config::parse(
            std::path::Path::new("t.yaml"),
            "servers:\n  acme:\n    bucket: bkt\n",
        )
        .expect("config");
        let server = &config.servers["acme"];
        let tls = UploadError {
            cause: Some(Cause::UntrustedCertificate),
            ..UploadError::new(
                ErrorClass::Refused,
                "PutObject",
                format!(
                    "{}: invalid peer certificate: UnknownIssuer",
                    crate::error::UNTRUSTED
                ),
            )
        };
        assert!(tls.explain(server).contains("SSL_CERT_FILE"));
        let down = UploadError::new(
            ErrorClass::Transient,
            "PutObject",
            "connection error: refused",
        );
        let text = down.explain(server);
        assert!(text.contains("could not be reached"), "{text}");
        assert!(!text.contains("bucket policy"), "{text}");
        let exists = UploadError {
            existing: Some(Box::new(crate::ObjectInfo {
                size: 3,
                etag: Some("\"abc\"".into()),
                last_modified: Some(std::time::UNIX_EPOCH),
                version_id: None,
                checksums: Vec::new(),
                token: None,
            })),
            ..UploadError::new(ErrorClass::Exists, "PutObject", "exists")
        };
        let text = exists.explain(server);
        assert!(text.contains("overwrite: never"), "{text}");
        assert!(
            text.contains("3 bytes, ETag \"abc\", last modified 1970-01-01T00:00:00Z"),
            "{text}"
        );
    }
}
