//! Checksums the store verifies, computed once per byte as the data is read. What a
//! reader may touch here: the encodings S3 expects; which checksum a server uses is
//! configuration (`outpost_config::Checksum`).

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
        let mut d = FileDigest::new(kind);
        d.update(data);
        d.finish()
    }

    /// Builds the checksum of `kind` from finished digests.
    pub fn from_digest(kind: Checksum, crc32c: u32, crc64: u64, md5: &[u8]) -> PartChecksum {
        match kind {
            Checksum::Crc32c => PartChecksum::Crc32c(B64.encode(crc32c.to_be_bytes())),
            Checksum::Crc64Nvme => PartChecksum::Crc64Nvme(B64.encode(crc64.to_be_bytes())),
            Checksum::Md5 => PartChecksum::Md5(B64.encode(md5)),
        }
    }
}

/// A checksum of one kind fed piece by piece (a whole file read in pieces, or one part).
pub(crate) enum FileDigest {
    /// CRC-32C (iSCSI) or CRC-64/NVME.
    Crc(Checksum, Box<crc_fast::Digest>),
    /// MD5.
    Md5(md5::Md5),
}

impl FileDigest {
    /// An empty digest of `kind`.
    pub(crate) fn new(kind: Checksum) -> FileDigest {
        use crc_fast::CrcAlgorithm;
        match kind {
            Checksum::Crc32c => FileDigest::Crc(
                kind,
                Box::new(crc_fast::Digest::new(CrcAlgorithm::Crc32Iscsi)),
            ),
            Checksum::Crc64Nvme => FileDigest::Crc(
                kind,
                Box::new(crc_fast::Digest::new(CrcAlgorithm::Crc64Nvme)),
            ),
            Checksum::Md5 => FileDigest::Md5(md5::Md5::new()),
        }
    }

    /// Adds `data`.
    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            FileDigest::Crc(_, d) => d.update(data),
            FileDigest::Md5(d) => d.update(data),
        }
    }

    /// The checksum of everything added.
    pub(crate) fn finish(self) -> PartChecksum {
        match self {
            FileDigest::Crc(kind, d) => {
                let v = d.finalize();
                PartChecksum::from_digest(kind, v as u32, v, &[])
            }
            FileDigest::Md5(d) => PartChecksum::from_digest(Checksum::Md5, 0, 0, &d.finalize()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let crc32c = |v: u32| PartChecksum::Crc32c(B64.encode(v.to_be_bytes()));
        let crc64 = |v: u64| PartChecksum::Crc64Nvme(B64.encode(v.to_be_bytes()));
        // (kind, data, expected): RFC 3720 and the CRC catalogue's check values.
        let cases = [
            (Checksum::Crc32c, &[0u8; 32][..], crc32c(0x8A91_36AA)),
            (Checksum::Crc32c, b"123456789", crc32c(0xE306_9283)),
            (Checksum::Crc32c, b"", crc32c(0)),
            (
                Checksum::Crc64Nvme,
                b"123456789",
                crc64(0xAE8B_1486_0A79_9888),
            ),
            (Checksum::Crc64Nvme, b"", crc64(0)),
            (
                Checksum::Md5,
                b"",
                PartChecksum::Md5("1B2M2Y8AsgTpgAmY7PhCfg==".into()),
            ),
            (
                Checksum::Md5,
                b"123456789",
                PartChecksum::Md5("JfnnlDI7RTiF9RgfG2JNCw==".into()),
            ),
        ];
        for (kind, data, want) in cases {
            assert_eq!(PartChecksum::compute(kind, data), want, "{kind:?} {data:?}");
        }
    }

    #[test]
    fn pieces_give_the_checksum_of_the_whole() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        for kind in [Checksum::Crc32c, Checksum::Crc64Nvme, Checksum::Md5] {
            let mut d = FileDigest::new(kind);
            for piece in data.chunks(4093) {
                d.update(piece);
            }
            assert_eq!(d.finish(), PartChecksum::compute(kind, &data), "{kind:?}");
        }
    }
}
