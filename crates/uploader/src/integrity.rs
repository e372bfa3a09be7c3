//! Which check makes the store verify every byte of a part or single PUT: the
//! configured checksum header, the SigV4 signed payload hash, or both — from `checksum`
//! and the transport (docs/configuration.md has the table). The same on every host: no
//! choice depends on the CPU. A reader may change the choice here; how a checksum is
//! computed is `checksum.rs`.

use outpost_config::{Checksum, Server};

/// How one destination's object bytes are checked by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Integrity {
    /// The checksum header each part and in-memory PutObject carries; `None` when the
    /// signed payload hash alone is the check (`checksum: signed_payload`).
    pub header: Option<Checksum>,
    /// Whether the payload is SHA-256-hashed into the signature (`x-amz-content-sha256`,
    /// which the store recomputes and compares), else `UNSIGNED-PAYLOAD`.
    pub signed: bool,
}

impl Integrity {
    /// The choice for `checksum` over TLS or plain http:
    ///
    /// - `crc32c`, `crc64nvme`, `md5`: the header; over http the payload is signed as
    ///   well (the SDK's rule for plain http), over TLS it is not (the header covers
    ///   the bytes, and TLS their transit).
    /// - `signed_payload`: no header, the payload signed over either transport: one
    ///   SHA-256 pass, which the store verifies, instead of a second hash beside it.
    pub fn choose(checksum: Checksum, tls: bool) -> Integrity {
        match checksum {
            Checksum::SignedPayload => Integrity {
                header: None,
                signed: true,
            },
            kind => Integrity {
                header: Some(kind),
                signed: !tls,
            },
        }
    }

    /// The choice for `server`. An endpoint that is not `https://` is plain http; no
    /// endpoint is AWS, always TLS.
    pub fn of(server: &Server) -> Integrity {
        let tls = server
            .endpoint
            .as_deref()
            .is_none_or(|e| e.starts_with("https://"));
        Integrity::choose(server.checksum, tls)
    }

    /// The name of the parts' checksum header, as a multipart journal records it: an
    /// upload created for other part headers (CreateMultipartUpload names the algorithm)
    /// is not resumed with these.
    pub fn parts_check(self) -> &'static str {
        match self.header {
            Some(Checksum::Crc32c) => "crc32c",
            Some(Checksum::Crc64Nvme) => "crc64nvme",
            Some(Checksum::Md5) => "md5",
            Some(Checksum::SignedPayload) | None => "none",
        }
    }

    /// The header a body streamed from disk carries: the SDK cannot hash a stream into
    /// the signature before sending it (it goes `UNSIGNED-PAYLOAD` whatever the
    /// transport), so a streamed PutObject always carries a header — the configured one,
    /// or Content-MD5 (which every S3 store verifies) for `signed_payload`.
    pub fn streamed_header(self) -> Checksum {
        self.header.unwrap_or(Checksum::Md5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Checksum; 4] = [
        Checksum::Crc32c,
        Checksum::Crc64Nvme,
        Checksum::Md5,
        Checksum::SignedPayload,
    ];

    #[test]
    fn every_choice_has_a_check_the_store_verifies_on_every_byte() {
        for kind in ALL {
            for tls in [false, true] {
                let i = Integrity::choose(kind, tls);
                assert!(i.header.is_some() || i.signed, "{kind:?} tls {tls}");
                // Plain http always signs (the SDK's rule there, and the only check a
                // machine on the path cannot rewrite along with the body).
                assert!(tls || i.signed, "{kind:?} over http unsigned");
            }
        }
    }

    #[test]
    fn a_configured_header_is_always_sent_and_signed_payload_sends_none() {
        for kind in [Checksum::Crc32c, Checksum::Crc64Nvme, Checksum::Md5] {
            for tls in [false, true] {
                let i = Integrity::choose(kind, tls);
                assert_eq!(
                    (i.header, i.signed),
                    (Some(kind), !tls),
                    "{kind:?} tls {tls}"
                );
                assert_eq!(i.streamed_header(), kind);
            }
        }
        for tls in [false, true] {
            let i = Integrity::choose(Checksum::SignedPayload, tls);
            assert_eq!((i.header, i.signed), (None, true), "tls {tls}");
            assert_eq!(i.streamed_header(), Checksum::Md5);
        }
    }
}
