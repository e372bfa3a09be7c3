//! Checksums the store verifies, computed once per byte as the data is read.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use md5::Digest;
use outpost_config::Checksum;

/// The checksum of one part or single PUT, base64-encoded as S3 expects it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartChecksum {
    /// `x-amz-checksum-crc32c`.
    Crc32c(String),
    /// `x-amz-checksum-crc64nvme`.
    Crc64Nvme(String),
    /// `Content-MD5`.
    Md5(String),
}

impl PartChecksum {
    /// Computes `kind` over `data`.
    pub fn compute(kind: Checksum, data: &[u8]) -> PartChecksum {
        match kind {
            Checksum::Crc32c => {
                PartChecksum::Crc32c(B64.encode(crc32c::crc32c(data).to_be_bytes()))
            }
            Checksum::Crc64Nvme => {
                let mut d = crc64fast_nvme::Digest::new();
                d.write(data);
                PartChecksum::Crc64Nvme(B64.encode(d.sum64().to_be_bytes()))
            }
            Checksum::Md5 => PartChecksum::Md5(B64.encode(md5::Md5::digest(data))),
        }
    }
}

impl PartChecksum {
    /// Builds the checksum of `kind` from finished digests.
    pub fn from_digest(kind: Checksum, crc32c: u32, crc64: u64, md5: &[u8]) -> PartChecksum {
        match kind {
            Checksum::Crc32c => PartChecksum::Crc32c(B64.encode(crc32c.to_be_bytes())),
            Checksum::Crc64Nvme => PartChecksum::Crc64Nvme(B64.encode(crc64.to_be_bytes())),
            Checksum::Md5 => PartChecksum::Md5(B64.encode(md5)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // RFC 3720 test vector: 32 bytes of zeros -> CRC32C 0x8A9136AA.
        assert_eq!(
            PartChecksum::compute(Checksum::Crc32c, &[0u8; 32]),
            PartChecksum::Crc32c(B64.encode(0x8A91_36AAu32.to_be_bytes()))
        );
        assert_eq!(
            PartChecksum::compute(Checksum::Md5, b""),
            PartChecksum::Md5("1B2M2Y8AsgTpgAmY7PhCfg==".into())
        );
        let PartChecksum::Crc64Nvme(s) = PartChecksum::compute(Checksum::Crc64Nvme, b"123456789")
        else {
            panic!("kind")
        };
        // CRC-64/NVME check value 0xAE8B14860A799888.
        assert_eq!(s, B64.encode(0xAE8B_1486_0A79_9888u64.to_be_bytes()));
    }
}
