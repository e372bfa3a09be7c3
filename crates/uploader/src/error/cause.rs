//! Causes looked for along an SDK error's source chain, by type: STS refusing AssumeRole
//! (it surfaces inside the S3 call's identity resolution) and a TLS certificate the
//! client does not trust. A reader may add a cause here; `error.rs` decides what class
//! each one gets.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use super::{ErrorClass, UploadError, classify};

/// The code an [`UploadError`] carries when STS refused to let us assume the role.
pub const ASSUME_ROLE_REFUSED: &str = "AssumeRoleRefused";

/// STS's answer to AssumeRole, when the SDK's credentials provider failed with one: the
/// error surfaces inside the S3 call's identity resolution (as a dispatch failure), so
/// the cause is looked for along the whole source chain. A refusal (4xx other than
/// throttling: AccessDenied, a trust policy that does not name us, a wrong external id,
/// a missing role; or an invalid configuration) blocks the server; throttling, 5xx and
/// network errors stay transient.
pub(super) fn sts_refusal(
    op: &'static str,
    e: &(dyn std::error::Error + 'static),
) -> Option<UploadError> {
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
                status: None,
                cause: None,
                existing: None,
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
                status: Some(status),
                cause: None,
                existing: None,
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
pub(crate) const UNTRUSTED: &str = "the endpoint's TLS certificate is not trusted";

/// Whether a connection error is a certificate the client does not trust: a
/// `rustls::Error::InvalidCertificate` (UnknownIssuer, NotValidForName, Expired …)
/// somewhere along the source chain. On the way, tokio-rustls wraps it in an
/// `std::io::Error` and hyper-rustls wraps that in another; an `io::Error`'s
/// `source()` skips the error it carries, so the walk steps into each one's payload
/// instead (as the SDK's own `error_chain` does).
pub(super) fn untrusted_certificate(e: Option<&(dyn std::error::Error + 'static)>) -> bool {
    let mut cur = e;
    while let Some(err) = cur {
        if let Some(rustls::Error::InvalidCertificate(_)) = err.downcast_ref::<rustls::Error>() {
            return true;
        }
        cur = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    false
}

/// The messages of `e` and its sources, joined by ": ".
pub(super) fn chain(e: Option<&dyn std::error::Error>) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with a source, as the SDK's connector errors wrap what hyper hands up.
    #[derive(Debug)]
    struct Wrapped(std::io::Error);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error (Connect)")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn untrusted_certificates_are_told_apart_from_other_connection_errors() {
        use rustls::{CertificateError, Error as Tls};
        let found = |inner: std::io::Error| {
            let e = Wrapped(inner);
            untrusted_certificate(Some(&e))
        };
        let io = |e: Tls| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        // As tokio-rustls reports a failed handshake.
        assert!(found(io(Tls::InvalidCertificate(
            CertificateError::UnknownIssuer
        ))));
        assert!(found(io(Tls::InvalidCertificate(
            CertificateError::NotValidForName
        ))));
        assert!(found(io(Tls::InvalidCertificate(
            CertificateError::Expired
        ))));
        // As it reaches the SDK: hyper-rustls wraps tokio-rustls's I/O error in another
        // (`io::Error::other`), the SDK's connector error around both.
        assert!(found(std::io::Error::other(io(Tls::InvalidCertificate(
            CertificateError::UnknownIssuer
        )))));
        assert!(!found(std::io::Error::other(io(Tls::DecryptError))));
        // The rustls error itself on the chain.
        let bare = Tls::InvalidCertificate(CertificateError::UnknownIssuer);
        assert!(untrusted_certificate(Some(&bare)));
        // Other TLS and connection errors are not about the certificate, whatever
        // their text says.
        assert!(!found(io(Tls::DecryptError)));
        assert!(!found(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused
        )));
        assert!(!found(std::io::Error::other(
            "invalid peer certificate: UnknownIssuer"
        )));
        assert!(!untrusted_certificate(None));
    }
}
