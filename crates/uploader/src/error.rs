//! Upload errors and their classes: what the scheduler and the binary act on. Here a
//! reader may change which S3 code or local failure falls in which [`ErrorClass`], and
//! how a cause is recognised along an SDK error's source chain (by type, never by
//! text); the causes found along that chain are in `error/cause.rs`, the operator's
//! explanation of a refusal in `error/explain.rs`.

mod cause;
mod explain;

pub use cause::ASSUME_ROLE_REFUSED;
pub(crate) use cause::UNTRUSTED;
use cause::{chain, sts_refusal, untrusted_certificate};

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
    /// `overwrite: never` and the key already holds another object: never retried, the
    /// file goes to `.failed/` with reason `exists`, the object is untouched
    /// ([`UploadError::existing`] shows it when it could be read).
    Exists,
}

impl ErrorClass {
    /// Every class, so metrics can start at zero.
    pub const ALL: [ErrorClass; 8] = [
        ErrorClass::Transient,
        ErrorClass::Refused,
        ErrorClass::Object,
        ErrorClass::Unreadable,
        ErrorClass::Vanished,
        ErrorClass::TooLarge,
        ErrorClass::Interrupted,
        ErrorClass::Exists,
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
            ErrorClass::Exists => "exists",
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
    /// The HTTP status, when the server answered: a 5xx proves nothing was refused.
    pub status: Option<u16>,
    /// A cause found by type along the error's source chain, when one is known.
    pub cause: Option<Cause>,
    /// One line.
    pub message: String,
    /// [`ErrorClass::Exists`]: the object already at the key, when HeadObject could
    /// read it (size, ETag, Last-Modified, …).
    pub existing: Option<Box<crate::ObjectInfo>>,
}

/// Causes recognised by their type (never by an error's wording).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The endpoint's TLS certificate is not trusted (a `rustls` certificate error).
    UntrustedCertificate,
}

impl UploadError {
    /// An error of `class`.
    pub fn new(class: ErrorClass, op: &'static str, message: impl Into<String>) -> Self {
        UploadError {
            class,
            op,
            code: None,
            status: None,
            cause: None,
            message: message.into(),
            existing: None,
        }
    }

    /// Classifies a local I/O error reading the file.
    pub fn io(op: &'static str, e: &std::io::Error) -> Self {
        let class = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorClass::Vanished,
            std::io::ErrorKind::PermissionDenied => ErrorClass::Unreadable,
            // A link where the spool opens with O_NOFOLLOW.
            _ if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                ErrorClass::Unreadable
            }
            std::io::ErrorKind::UnexpectedEof => ErrorClass::Transient, // truncated meanwhile
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
                    status,
                    cause: None,
                    existing: None,
                }
            }
            SdkError::TimeoutError(_) => UploadError::new(ErrorClass::Transient, op, "timed out"),
            SdkError::DispatchFailure(d) => {
                let detail = chain(std::error::Error::source(&e));
                if untrusted_certificate(std::error::Error::source(&e)) {
                    // Retrying the same handshake cannot succeed: the server is blocked
                    // (files stay pending) until its certificate is trusted.
                    UploadError {
                        cause: Some(Cause::UntrustedCertificate),
                        ..UploadError::new(
                            ErrorClass::Refused,
                            op,
                            format!("{UNTRUSTED}: {detail}"),
                        )
                    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        use ErrorClass::{Object, Refused, Transient};
        let cases = [
            (Some("SlowDown"), Some(503), Transient),
            (Some("InternalError"), Some(500), Transient),
            (None, Some(502), Transient),
            (Some("AccessDenied"), Some(403), Refused),
            (Some("NoSuchBucket"), Some(404), Refused),
            (Some("InvalidAccessKeyId"), Some(403), Refused),
            (Some("SignatureDoesNotMatch"), Some(403), Refused),
            (None, Some(301), Refused),
            (Some("EntityTooLarge"), Some(400), Object),
            (Some("ExpiredToken"), Some(400), Transient),
            (Some("NoSuchUpload"), Some(404), Transient),
            // Our configuration, for every object: block the server, fail no file.
            (Some("InvalidStorageClass"), Some(400), Refused),
            (Some("InvalidEncryptionAlgorithmError"), Some(400), Refused),
            (Some("KMS.NotFoundException"), Some(400), Refused),
            (Some("KMS.DisabledException"), Some(400), Refused),
            (Some("KMS.KMSInvalidStateException"), Some(400), Refused),
            (Some("KeyTooLongError"), Some(400), Object),
            (Some("InvalidObjectName"), Some(400), Object),
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
    fn local_errors_are_classed() {
        use std::io::{Error, ErrorKind};
        let class = |e: Error| UploadError::io("open", &e).class;
        let eloop = rustix::io::Errno::LOOP.raw_os_error();
        assert_eq!(
            class(Error::from_raw_os_error(eloop)),
            ErrorClass::Unreadable
        );
        assert_eq!(
            class(Error::from(ErrorKind::NotFound)),
            ErrorClass::Vanished
        );
        assert_eq!(
            class(Error::from(ErrorKind::PermissionDenied)),
            ErrorClass::Unreadable
        );
        assert_eq!(
            class(Error::from(ErrorKind::UnexpectedEof)),
            ErrorClass::Transient
        );
    }
}
