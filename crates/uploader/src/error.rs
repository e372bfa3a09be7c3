//! Upload errors and their classes: what the scheduler and the binary act on.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// What an upload error means for the file and the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Throttling, 5xx, timeouts, connection errors, expired credentials, a file
    /// changed during upload: retry with backoff.
    Transient,
    /// The destination refuses us (AccessDenied, NoSuchBucket, bad keys, wrong region).
    Refused,
    /// The store refuses this object itself (too large, bad key): it can never go.
    Object,
    /// The file cannot be read (permissions, not a regular file).
    Unreadable,
    /// The file disappeared from the claim.
    Vanished,
    /// Larger than S3's object limit.
    TooLarge,
    /// Shutdown interrupted the upload; its state stays recorded.
    Interrupted,
}

impl ErrorClass {
    /// Every class, so metrics can start at zero.
    pub const ALL: [ErrorClass; 7] = [
        ErrorClass::Transient,
        ErrorClass::Refused,
        ErrorClass::Object,
        ErrorClass::Unreadable,
        ErrorClass::Vanished,
        ErrorClass::TooLarge,
        ErrorClass::Interrupted,
    ];
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Refused => "refused",
            ErrorClass::Object => "object",
            ErrorClass::Unreadable => "unreadable",
            ErrorClass::Vanished => "vanished",
            ErrorClass::TooLarge => "too_large",
            ErrorClass::Interrupted => "interrupted",
        }
    }
    /// Whether a retry could help.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::Transient | ErrorClass::Refused)
    }
}

/// An upload error: its class, the S3 operation, the S3 code if any, and a message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{op}: {message}")]
pub struct UploadError {
    /// Class.
    pub class: ErrorClass,
    /// Operation (`PutObject`, `UploadPart`, …, or `read`).
    pub op: &'static str,
    /// S3 error code, when the server sent one.
    pub code: Option<String>,
    /// One line.
    pub message: String,
}

impl UploadError {
    /// An error of `class`.
    pub fn new(class: ErrorClass, op: &'static str, message: impl Into<String>) -> Self {
        UploadError {
            class,
            op,
            code: None,
            message: message.into(),
        }
    }

    /// Classifies a local I/O error reading the file.
    pub fn io(op: &'static str, e: &std::io::Error) -> Self {
        let class = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorClass::Vanished,
            std::io::ErrorKind::PermissionDenied => ErrorClass::Unreadable,
            _ if e.raw_os_error() == Some(40) => ErrorClass::Unreadable, // ELOOP: a link
            std::io::ErrorKind::UnexpectedEof => ErrorClass::Transient,  // truncated meanwhile
            _ => ErrorClass::Transient,
        };
        UploadError::new(class, op, e.to_string())
    }

    /// Classifies an SDK error.
    pub fn sdk<E>(op: &'static str, e: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        if let Some(refusal) = sts_refusal(op, &e) {
            return refusal;
        }
        match &e {
            SdkError::ServiceError(se) => {
                let code = se.err().code().map(str::to_owned);
                let msg = se.err().message().unwrap_or("").to_owned();
                let status = Some(se.raw().status().as_u16());
                let class = classify(code.as_deref(), status);
                UploadError {
                    class,
                    op,
                    message: format!(
                        "{} (HTTP {}){}",
                        code.as_deref().unwrap_or("error"),
                        status.map_or("?".into(), |s| s.to_string()),
                        if msg.is_empty() {
                            String::new()
                        } else {
                            format!(": {msg}")
                        }
                    ),
                    code,
                }
            }
            SdkError::TimeoutError(_) => UploadError::new(ErrorClass::Transient, op, "timed out"),
            SdkError::DispatchFailure(d) => {
                let detail = chain(std::error::Error::source(&e));
                if untrusted_certificate(&detail) {
                    // Retrying the same handshake cannot succeed: the server is blocked
                    // (files stay pending) until its certificate is trusted.
                    UploadError::new(ErrorClass::Refused, op, format!("{UNTRUSTED}: {detail}"))
                } else {
                    UploadError::new(
                        ErrorClass::Transient,
                        op,
                        format!(
                            "connection error{}: {detail}",
                            if d.is_timeout() { " (timeout)" } else { "" },
                        ),
                    )
                }
            }
            SdkError::ResponseError(_) => UploadError::new(
                ErrorClass::Transient,
                op,
                format!("bad response: {}", chain(std::error::Error::source(&e))),
            ),
            SdkError::ConstructionFailure(_) => {
                // Credentials that cannot be loaded or refreshed surface here.
                UploadError::new(
                    ErrorClass::Transient,
                    op,
                    format!("request not sent: {}", chain(std::error::Error::source(&e))),
                )
            }
            _ => UploadError::new(ErrorClass::Transient, op, chain(Some(&e))),
        }
    }
}

/// The code an [`UploadError`] carries when STS refused to let us assume the role.
pub const ASSUME_ROLE_REFUSED: &str = "AssumeRoleRefused";

/// STS's answer to AssumeRole, when the SDK's credentials provider failed with one: the
/// error surfaces inside the S3 call's identity resolution (as a dispatch failure), so
/// the cause is looked for along the whole source chain. A refusal (4xx other than
/// throttling: AccessDenied, a trust policy that does not name us, a wrong external id,
/// a missing role; or an invalid configuration) blocks the server; throttling, 5xx and
/// network errors stay transient.
fn sts_refusal(op: &'static str, e: &(dyn std::error::Error + 'static)) -> Option<UploadError> {
    use aws_credential_types::provider::error::CredentialsError;
    use aws_sdk_sts::operation::assume_role::AssumeRoleError;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(CredentialsError::InvalidConfiguration(_)) =
            err.downcast_ref::<CredentialsError>()
        {
            return Some(UploadError {
                class: ErrorClass::Refused,
                op,
                code: Some(ASSUME_ROLE_REFUSED.into()),
                message: format!("AssumeRole: invalid configuration: {}", chain(err.source())),
            });
        }
        if let Some(SdkError::ServiceError(se)) =
            err.downcast_ref::<SdkError<AssumeRoleError, HttpResponse>>()
        {
            let status = se.raw().status().as_u16();
            let code = se.err().code().map(str::to_owned);
            let class = match classify(code.as_deref(), Some(status)) {
                ErrorClass::Transient
                    if status >= 500
                        || status == 429
                        || matches!(
                            code.as_deref(),
                            Some("Throttling" | "ThrottlingException" | "RequestTimeout")
                        ) =>
                {
                    ErrorClass::Transient
                }
                _ => ErrorClass::Refused,
            };
            return Some(UploadError {
                class,
                op,
                code: (class == ErrorClass::Refused).then(|| ASSUME_ROLE_REFUSED.to_owned()),
                message: format!(
                    "STS refused AssumeRole: {} (HTTP {status}){}",
                    code.as_deref().unwrap_or("no error code"),
                    se.err()
                        .message()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
            });
        }
        cur = err.source();
    }
    None
}

/// How an error about an untrusted TLS certificate begins.
const UNTRUSTED: &str = "the endpoint's TLS certificate is not trusted";

/// Whether a connection error is a certificate the client does not trust (rustls says
/// "invalid peer certificate: UnknownIssuer / NotValidForName / Expired …").
fn untrusted_certificate(detail: &str) -> bool {
    detail.contains("invalid peer certificate")
}

fn chain(e: Option<&dyn std::error::Error>) -> String {
    let mut out = String::new();
    let mut cur = e;
    while let Some(err) = cur {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&err.to_string());
        cur = err.source();
    }
    out
}

/// The class of an S3 error code / HTTP status.
pub fn classify(code: Option<&str>, status: Option<u16>) -> ErrorClass {
    match code {
        Some(
            "AccessDenied"
            | "AllAccessDisabled"
            | "NoSuchBucket"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "PermanentRedirect"
            | "AuthorizationHeaderMalformed"
            | "IllegalLocationConstraintException"
            | "InvalidBucketName"
            | "AccountProblem"
            | "KMS.AccessDeniedException"
            | "KMS.DisabledException"
            | "InvalidToken"
            | "MethodNotAllowed",
        ) => ErrorClass::Refused,
        // Caused by our configuration for every object, not by the file: the server is
        // blocked (files stay pending) until the setting or the key is fixed.
        Some(
            "InvalidStorageClass"
            | "InvalidEncryptionAlgorithmError"
            | "KMS.KMSInvalidStateException"
            | "KMS.InvalidKeyUsageException"
            | "KMS.ValidationException"
            | "KMS.NotFoundException",
        ) => ErrorClass::Refused,
        Some("EntityTooLarge" | "KeyTooLongError" | "InvalidObjectName") => ErrorClass::Object,
        Some(
            "SlowDown"
            | "InternalError"
            | "ServiceUnavailable"
            | "RequestTimeout"
            | "Throttling"
            | "ThrottlingException"
            | "RequestTimeTooSkewed"
            | "ExpiredToken"
            | "TokenRefreshRequired"
            | "BadDigest"
            | "XAmzContentSHA256Mismatch"
            | "IncompleteBody"
            | "NoSuchUpload"
            | "InvalidPart"
            | "InvalidPartOrder"
            | "RequestTimeoutException"
            | "OperationAborted",
        ) => ErrorClass::Transient,
        _ => match status {
            Some(301 | 401 | 403) if code.is_none() => ErrorClass::Refused,
            Some(s) if s >= 500 || s == 429 || s == 408 => ErrorClass::Transient,
            // Unknown 4xx codes: retried within the file's limits, then `.failed/`.
            _ => ErrorClass::Transient,
        },
    }
}

impl UploadError {
    /// One line for an operator: what the destination refused, the possible causes, and
    /// what the customer or the operator must fix.
    pub fn explain(&self, s: &outpost_config::Server) -> String {
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
            "" if self.message.starts_with(UNTRUSTED) => format!(
                "fix: check `endpoint` of server {} (the certificate must name its host); for a private CA, add it to the system's trust store or point SSL_CERT_FILE at a PEM bundle that holds it",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let cases = [
            (Some("SlowDown"), Some(503), ErrorClass::Transient),
            (Some("InternalError"), Some(500), ErrorClass::Transient),
            (None, Some(502), ErrorClass::Transient),
            (Some("AccessDenied"), Some(403), ErrorClass::Refused),
            (Some("NoSuchBucket"), Some(404), ErrorClass::Refused),
            (Some("InvalidAccessKeyId"), Some(403), ErrorClass::Refused),
            (
                Some("SignatureDoesNotMatch"),
                Some(403),
                ErrorClass::Refused,
            ),
            (None, Some(301), ErrorClass::Refused),
            (Some("EntityTooLarge"), Some(400), ErrorClass::Object),
            (Some("ExpiredToken"), Some(400), ErrorClass::Transient),
            (Some("NoSuchUpload"), Some(404), ErrorClass::Transient),
            // Our configuration, for every object: block the server, fail no file.
            (Some("InvalidStorageClass"), Some(400), ErrorClass::Refused),
            (
                Some("InvalidEncryptionAlgorithmError"),
                Some(400),
                ErrorClass::Refused,
            ),
            (
                Some("KMS.NotFoundException"),
                Some(400),
                ErrorClass::Refused,
            ),
            (
                Some("KMS.DisabledException"),
                Some(400),
                ErrorClass::Refused,
            ),
            (
                Some("KMS.KMSInvalidStateException"),
                Some(400),
                ErrorClass::Refused,
            ),
            (Some("KeyTooLongError"), Some(400), ErrorClass::Object),
            (Some("InvalidObjectName"), Some(400), ErrorClass::Object),
        ];
        for (code, status, want) in cases {
            assert_eq!(classify(code, status), want, "{code:?} {status:?}");
        }
    }

    #[test]
    fn configured_storage_classes_are_the_sdks() {
        let sdk = aws_sdk_s3::types::StorageClass::values();
        for c in outpost_config::STORAGE_CLASSES {
            assert!(sdk.contains(c), "{c} is not a storage class of the SDK");
        }
        for c in sdk {
            assert!(
                outpost_config::STORAGE_CLASSES.contains(c),
                "the SDK knows {c}; add it to outpost_config::STORAGE_CLASSES"
            );
        }
    }

    #[test]
    fn untrusted_certificates_are_told_apart_from_other_connection_errors() {
        assert!(untrusted_certificate(
            "io error: client error (Connect): TLS handshake failed: invalid peer certificate: UnknownIssuer"
        ));
        assert!(!untrusted_certificate(
            "io error: client error (Connect): tcp connect error: Connection refused (os error 111)"
        ));
        let config = outpost_config::Config::parse(
            std::path::Path::new("t.yaml"),
            "servers:\n  acme:\n    bucket: bkt\n",
        )
        .expect("config");
        let server = &config.servers["acme"];
        let tls = UploadError::new(
            ErrorClass::Refused,
            "PutObject",
            format!("{UNTRUSTED}: invalid peer certificate: UnknownIssuer"),
        );
        assert!(tls.explain(server).contains("SSL_CERT_FILE"));
        let down = UploadError::new(
            ErrorClass::Transient,
            "PutObject",
            "connection error: refused",
        );
        let text = down.explain(server);
        assert!(text.contains("could not be reached"), "{text}");
        assert!(!text.contains("bucket policy"), "{text}");
    }
}
