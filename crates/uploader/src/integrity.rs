//! Which check makes the store verify every byte of a part or single PUT: the
//! configured checksum header, the SigV4 payload hash, or both — chosen per server from
//! `checksum`, the transport and the CPU, the cheapest one the store verifies
//! (docs/configuration.md has the table). A reader may change the choice here; how a
//! checksum is computed is `checksum.rs`.

use outpost_config::{Checksum, Server};

/// How one destination's object bytes are checked by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Integrity {
    /// The checksum header each part and in-memory PutObject carries; `None` when the
    /// signed payload hash alone is the check.
    pub header: Option<Checksum>,
    /// Whether the payload is SHA-256-hashed into the signature (`x-amz-content-sha256`,
    /// which the store recomputes and compares), else `UNSIGNED-PAYLOAD`.
    pub signed: bool,
}

impl Integrity {
    /// The choice for `checksum` over TLS or plain http, `sha256_fast` when the CPU
    /// hashes SHA-256 in hardware (then it costs less than MD5):
    ///
    /// - `crc32c`, `crc64nvme`: the header (a CRC costs next to nothing); over http the
    ///   payload is signed as well (the SDK's rule for plain http).
    /// - `md5` over http: the signed payload hash only. It is computed for the
    ///   signature anyway and the store checks it against every byte, so a Content-MD5
    ///   beside it would hash every byte twice for no further check.
    /// - `md5` over TLS: the signed payload hash when SHA-256 is the cheaper hash, else
    ///   Content-MD5 with the payload unsigned.
    pub fn choose(checksum: Checksum, tls: bool, sha256_fast: bool) -> Integrity {
        match checksum {
            Checksum::Md5 if !tls || sha256_fast => Integrity {
                header: None,
                signed: true,
            },
            kind => Integrity {
                header: Some(kind),
                signed: !tls,
            },
        }
    }

    /// The choice for `server` on this machine. An endpoint that is not `https://` is
    /// plain http; no endpoint is AWS, always TLS.
    pub fn of(server: &Server) -> Integrity {
        let tls = server
            .endpoint
            .as_deref()
            .is_none_or(|e| e.starts_with("https://"));
        Integrity::choose(server.checksum, tls, sha256_in_hardware())
    }

    /// The header a body streamed from disk carries: the SDK cannot hash a stream into
    /// the signature before sending it (it goes `UNSIGNED-PAYLOAD` whatever the
    /// transport), so a streamed PutObject always carries the configured checksum.
    pub fn streamed_header(self, configured: Checksum) -> Checksum {
        self.header.unwrap_or(configured)
    }
}

/// Whether this CPU has SHA-256 instructions (x86 SHA extensions, ARMv8 SHA2), which the
/// SDK's hash (the `sha2` crate) detects and uses.
fn sha256_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("sha")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("sha2")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_choice_has_a_check_the_store_verifies_on_every_byte() {
        for kind in [Checksum::Crc32c, Checksum::Crc64Nvme, Checksum::Md5] {
            for tls in [false, true] {
                for fast in [false, true] {
                    let i = Integrity::choose(kind, tls, fast);
                    assert!(
                        i.header.is_some() || i.signed,
                        "{kind:?} tls {tls} fast {fast}"
                    );
                    // Plain http always signs (the SDK's rule there, and the only
                    // check a MITM cannot rewrite along with the body).
                    assert!(tls || i.signed, "{kind:?} over http unsigned");
                }
            }
        }
    }

    #[test]
    fn md5_is_never_computed_beside_a_signed_payload() {
        for (tls, fast) in [(false, false), (false, true), (true, true)] {
            let i = Integrity::choose(Checksum::Md5, tls, fast);
            assert_eq!((i.header, i.signed), (None, true), "tls {tls} fast {fast}");
        }
        let slow_tls = Integrity::choose(Checksum::Md5, true, false);
        assert_eq!(
            (slow_tls.header, slow_tls.signed),
            (Some(Checksum::Md5), false)
        );
    }

    #[test]
    fn crcs_go_unsigned_over_tls_and_a_stream_keeps_its_header() {
        let tls = Integrity::choose(Checksum::Crc32c, true, true);
        assert_eq!((tls.header, tls.signed), (Some(Checksum::Crc32c), false));
        let md5 = Integrity::choose(Checksum::Md5, false, true);
        assert_eq!(md5.streamed_header(Checksum::Md5), Checksum::Md5);
        assert_eq!(tls.streamed_header(Checksum::Crc32c), Checksum::Crc32c);
    }
}
