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

    /// Builds the checksum of `kind` from finished digests. `signed_payload` has no
    /// header of its own: where one is needed (a streamed body) it is Content-MD5.
    pub fn from_digest(kind: Checksum, crc32c: u32, crc64: u64, md5: &[u8]) -> PartChecksum {
        match kind {
            Checksum::Crc32c => PartChecksum::Crc32c(B64.encode(crc32c.to_be_bytes())),
            Checksum::Crc64Nvme => PartChecksum::Crc64Nvme(B64.encode(crc64.to_be_bytes())),
            Checksum::Md5 | Checksum::SignedPayload => PartChecksum::Md5(B64.encode(md5)),
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
            Checksum::Md5 | Checksum::SignedPayload => FileDigest::Md5(md5::Md5::new()),
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

/// Everything computed over an object's bytes in one pass while they are read: the
/// header's checksum (what the store verifies, when a header is sent), CRC-64/NVME always (the
/// ledger's and manifests' whole-object value), and MD5 plus the line count only when
/// asked (`aam-info` manifests).
pub(crate) struct ObjectDigest {
    /// The header's checksum; `None` when it is CRC-64/NVME (computed once) or when no
    /// header is sent.
    configured: Option<FileDigest>,
    /// The header's kind, `None` when the signed payload alone is the check.
    kind: Option<Checksum>,
    /// CRC-64/NVME.
    crc64: Box<crc_fast::Digest>,
    /// MD5 and `\n` count, when measured.
    measure: Option<(md5::Md5, u64)>,
    /// Bytes seen.
    len: u64,
}

/// What an [`ObjectDigest`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sums {
    /// The header's checksum, as it is sent (`None`: no header, the signed payload is
    /// the check).
    pub sum: Option<PartChecksum>,
    /// CRC-64/NVME.
    pub crc64: u64,
    /// CRC-32C, when that is the configured checksum (combinable across parts).
    pub crc32c: Option<u32>,
    /// Bytes seen.
    pub len: u64,
    /// MD5 and line count, when measured.
    pub measured: Option<crate::Measured>,
}

impl ObjectDigest {
    /// An empty digest: the header's `kind` (if any) plus CRC-64/NVME, plus MD5 and lines
    /// when `measure`.
    pub(crate) fn new(kind: Option<Checksum>, measure: bool) -> ObjectDigest {
        ObjectDigest {
            configured: kind
                .filter(|&k| k != Checksum::Crc64Nvme)
                .map(FileDigest::new),
            kind,
            crc64: Box::new(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme)),
            measure: measure.then(|| (md5::Md5::new(), 0)),
            len: 0,
        }
    }

    /// Adds `data`, in pieces that stay in the CPU's cache across the digests.
    pub(crate) fn update(&mut self, data: &[u8]) {
        for piece in data.chunks(256 << 10) {
            self.crc64.update(piece);
            if let Some(d) = &mut self.configured {
                d.update(piece);
            }
            if let Some((md5, lines)) = &mut self.measure {
                md5.update(piece);
                *lines += piece.iter().filter(|&&b| b == b'\n').count() as u64;
            }
        }
        self.len += data.len() as u64;
    }

    /// What was found over everything added.
    pub(crate) fn finish(self) -> Sums {
        let crc64 = self.crc64.finalize();
        let (sum, crc32c) = match (self.configured, self.kind) {
            (None, None) => (None, None),
            (None, Some(kind)) => (Some(PartChecksum::from_digest(kind, 0, crc64, &[])), None),
            (Some(FileDigest::Crc(kind, d)), _) => {
                let v = d.finalize() as u32;
                (Some(PartChecksum::from_digest(kind, v, 0, &[])), Some(v))
            }
            (Some(d), _) => (Some(d.finish()), None),
        };
        Sums {
            sum,
            crc64,
            crc32c,
            len: self.len,
            measured: self.measure.map(|(md5, lines)| crate::Measured {
                md5_hex: crate::facts::hex(&md5.finalize()),
                lines,
            }),
        }
    }
}

/// The CRC-64/NVME of consecutive pieces whose own values and lengths are `parts`.
pub(crate) fn combine_crc64(parts: impl IntoIterator<Item = (u64, u64)>) -> u64 {
    combine(crc_fast::CrcAlgorithm::Crc64Nvme, parts)
}

/// The CRC-32C of consecutive pieces whose own values and lengths are `parts`.
pub(crate) fn combine_crc32c(parts: impl IntoIterator<Item = (u32, u64)>) -> u32 {
    combine(
        crc_fast::CrcAlgorithm::Crc32Iscsi,
        parts.into_iter().map(|(v, n)| (u64::from(v), n)),
    ) as u32
}

fn combine(alg: crc_fast::CrcAlgorithm, parts: impl IntoIterator<Item = (u64, u64)>) -> u64 {
    let mut acc: Option<u64> = None;
    for (v, n) in parts {
        acc = Some(match acc {
            None => v,
            Some(a) => crc_fast::checksum_combine(alg, a, v, n),
        });
    }
    acc.unwrap_or(0)
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

    #[test]
    fn parts_combine_to_the_whole_files_crc() {
        // A multipart file: the whole-file CRC-64/NVME (and CRC-32C) of the parts'
        // values combined in order equals that of the whole file.
        let data: Vec<u8> = (0..(3u32 << 20) + 12_345)
            .map(|i| (i * 31 + i / 4099) as u8)
            .collect();
        for part in [1usize << 20, 777_777, data.len()] {
            let sums: Vec<Sums> = data
                .chunks(part)
                .map(|p| {
                    let mut d = ObjectDigest::new(Some(Checksum::Crc32c), false);
                    d.update(p);
                    d.finish()
                })
                .collect();
            let crc64 = combine_crc64(sums.iter().map(|s| (s.crc64, s.len)));
            assert_eq!(crc64, crc_fast::crc64_nvme(&data), "part {part}");
            let crc32c = combine_crc32c(sums.iter().map(|s| (s.crc32c.unwrap_or(0), s.len)));
            assert_eq!(crc32c, crc_fast::crc32_iscsi(&data), "part {part}");
        }
        assert_eq!(combine_crc64([]), 0);
    }

    #[test]
    fn one_pass_gives_every_value() {
        let data = b"a,b\n1,2\n3,4\nno newline at the end";
        for kind in [Checksum::Crc32c, Checksum::Crc64Nvme, Checksum::Md5] {
            let mut d = ObjectDigest::new(Some(kind), true);
            for piece in data.chunks(5) {
                d.update(piece);
            }
            let s = d.finish();
            assert_eq!(s.sum, Some(PartChecksum::compute(kind, data)), "{kind:?}");
            assert_eq!(s.crc64, crc_fast::crc64_nvme(data));
            assert_eq!(s.len, data.len() as u64);
            let m = s.measured.expect("measured");
            assert_eq!(m.lines, 3);
            let want = crate::facts::hex(&md5::Md5::digest(data));
            assert_eq!(m.md5_hex, want);
            assert_eq!(s.crc32c.is_some(), kind == Checksum::Crc32c);
        }
        let mut d = ObjectDigest::new(Some(Checksum::Md5), false);
        d.update(b"x\n");
        assert_eq!(d.finish().measured, None);
        // No header (the signed payload is the check): no header value, CRC-64 still.
        let mut d = ObjectDigest::new(None, false);
        d.update(data);
        let s = d.finish();
        assert_eq!((s.sum, s.crc32c), (None, None));
        assert_eq!(s.crc64, crc_fast::crc64_nvme(data));
    }
}
