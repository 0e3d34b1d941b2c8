//! Object checksums S3 clients send (`x-amz-checksum-*`, `Content-MD5`).
//!
//! AWS transmits every checksum as base64 of the big-endian digest bytes,
//! so CRCs are rendered from their integer value in network byte order.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::error::{S3Error, S3ErrorCode};

/// Checksum algorithms S3 supports for `x-amz-checksum-*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumAlgorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl ChecksumAlgorithm {
    /// Every algorithm, for scanning headers.
    pub const ALL: [ChecksumAlgorithm; 5] = [
        Self::Crc32,
        Self::Crc32c,
        Self::Crc64Nvme,
        Self::Sha1,
        Self::Sha256,
    ];

    /// From a header name such as `x-amz-checksum-crc32c` (case-insensitive).
    pub fn from_header_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.header_name().eq_ignore_ascii_case(name))
    }

    /// The header carrying this checksum.
    pub fn header_name(self) -> &'static str {
        match self {
            Self::Crc32 => "x-amz-checksum-crc32",
            Self::Crc32c => "x-amz-checksum-crc32c",
            Self::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Self::Sha1 => "x-amz-checksum-sha1",
            Self::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// From `x-amz-checksum-algorithm` / `x-amz-sdk-checksum-algorithm`
    /// values such as `CRC32C` (case-insensitive).
    pub fn from_algorithm_value(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.algorithm_value().eq_ignore_ascii_case(value.trim()))
    }

    /// `CRC32`, `CRC32C`, `CRC64NVME`, `SHA1`, `SHA256`.
    pub fn algorithm_value(self) -> &'static str {
        match self {
            Self::Crc32 => "CRC32",
            Self::Crc32c => "CRC32C",
            Self::Crc64Nvme => "CRC64NVME",
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
        }
    }

    /// Name of the XML element in multipart bodies (`ChecksumCRC32C`, …).
    pub fn xml_element(self) -> &'static str {
        match self {
            Self::Crc32 => "ChecksumCRC32",
            Self::Crc32c => "ChecksumCRC32C",
            Self::Crc64Nvme => "ChecksumCRC64NVME",
            Self::Sha1 => "ChecksumSHA1",
            Self::Sha256 => "ChecksumSHA256",
        }
    }

    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Crc32 | Self::Crc32c => 4,
            Self::Crc64Nvme => 8,
            Self::Sha1 => 20,
            Self::Sha256 => 32,
        }
    }
}

enum Inner {
    Crc32(crc_fast::Digest),
    Crc64(crc_fast::Digest),
    Sha1(Sha1),
    Sha256(Sha256),
}

/// Incremental checksum in S3's wire form.
pub struct ChecksumHasher {
    algorithm: ChecksumAlgorithm,
    inner: Inner,
}

impl std::fmt::Debug for ChecksumHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChecksumHasher")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl ChecksumHasher {
    pub fn new(algorithm: ChecksumAlgorithm) -> Self {
        use crc_fast::CrcAlgorithm as C;
        let inner = match algorithm {
            ChecksumAlgorithm::Crc32 => Inner::Crc32(crc_fast::Digest::new(C::Crc32IsoHdlc)),
            ChecksumAlgorithm::Crc32c => Inner::Crc32(crc_fast::Digest::new(C::Crc32Iscsi)),
            ChecksumAlgorithm::Crc64Nvme => Inner::Crc64(crc_fast::Digest::new(C::Crc64Nvme)),
            ChecksumAlgorithm::Sha1 => Inner::Sha1(Sha1::new()),
            ChecksumAlgorithm::Sha256 => Inner::Sha256(Sha256::new()),
        };
        Self { algorithm, inner }
    }

    pub fn algorithm(&self) -> ChecksumAlgorithm {
        self.algorithm
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.inner {
            Inner::Crc32(d) | Inner::Crc64(d) => d.update(data),
            Inner::Sha1(h) => h.update(data),
            Inner::Sha256(h) => h.update(data),
        }
    }

    /// The raw big-endian digest.
    pub fn finish_bytes(self) -> Vec<u8> {
        match self.inner {
            Inner::Crc32(d) => {
                // A 32-bit CRC only ever occupies the low 32 bits.
                let v = d.finalize().to_be_bytes();
                v[4..].to_vec()
            }
            Inner::Crc64(d) => d.finalize().to_be_bytes().to_vec(),
            Inner::Sha1(h) => h.finalize().to_vec(),
            Inner::Sha256(h) => h.finalize().to_vec(),
        }
    }

    /// Base64 of the big-endian digest, as in `x-amz-checksum-*`.
    pub fn finish(self) -> String {
        STANDARD.encode(self.finish_bytes())
    }
}

/// Compare a `Content-MD5` header with the MD5 of the received body.
/// A header that is not base64 of 16 bytes is `InvalidDigest`.
pub fn content_md5_matches(header_b64: &str, md5: &[u8; 16]) -> Result<bool, S3Error> {
    let decoded = STANDARD.decode(header_b64.trim()).map_err(|_| {
        S3Error::new(
            S3ErrorCode::InvalidDigest,
            "The Content-MD5 you specified is not valid base64.",
        )
    })?;
    if decoded.len() != 16 {
        return Err(S3Error::new(
            S3ErrorCode::InvalidDigest,
            "The Content-MD5 you specified is not a 128-bit digest.",
        ));
    }
    Ok(decoded == md5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::Md5;

    fn sum(a: ChecksumAlgorithm, data: &[u8]) -> String {
        let mut h = ChecksumHasher::new(a);
        for piece in data.chunks(3) {
            h.update(piece);
        }
        h.finish()
    }

    #[test]
    fn check_values() {
        // Standard "123456789" check values, big-endian then base64.
        let d = b"123456789";
        assert_eq!(
            sum(ChecksumAlgorithm::Crc32, d),
            STANDARD.encode(0xCBF4_3926u32.to_be_bytes())
        );
        assert_eq!(
            sum(ChecksumAlgorithm::Crc32c, d),
            STANDARD.encode(0xE306_9283u32.to_be_bytes())
        );
        assert_eq!(
            sum(ChecksumAlgorithm::Crc64Nvme, d),
            STANDARD.encode(0xAE8B_1486_0A79_9888u64.to_be_bytes())
        );
        assert_eq!(
            sum(ChecksumAlgorithm::Sha1, b"abc"),
            "qZk+NkcGgWq6PiVxeFDCbJzQ2J0="
        );
        assert_eq!(
            sum(ChecksumAlgorithm::Sha256, b""),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        // "hello world" crc32 as sent by boto3.
        assert_eq!(sum(ChecksumAlgorithm::Crc32, b"hello world"), "DUoRhQ==");
    }

    #[test]
    fn names() {
        for a in ChecksumAlgorithm::ALL {
            assert_eq!(
                ChecksumAlgorithm::from_header_name(a.header_name()),
                Some(a)
            );
            assert_eq!(
                ChecksumAlgorithm::from_algorithm_value(a.algorithm_value()),
                Some(a)
            );
            let len = STANDARD.decode(sum(a, b"x")).unwrap().len();
            assert_eq!(len, a.digest_len());
        }
        assert_eq!(
            ChecksumAlgorithm::from_header_name("X-Amz-Checksum-CRC32C"),
            Some(ChecksumAlgorithm::Crc32c)
        );
        assert_eq!(
            ChecksumAlgorithm::from_algorithm_value("crc64nvme"),
            Some(ChecksumAlgorithm::Crc64Nvme)
        );
        assert_eq!(ChecksumAlgorithm::from_algorithm_value("MD5"), None);
    }

    #[test]
    fn content_md5() {
        let digest: [u8; 16] = Md5::digest(b"hello").into();
        let good = STANDARD.encode(digest);
        assert!(content_md5_matches(&good, &digest).unwrap());
        let other: [u8; 16] = Md5::digest(b"hellO").into();
        assert!(!content_md5_matches(&good, &other).unwrap());
        assert_eq!(
            content_md5_matches("not base64!", &digest)
                .unwrap_err()
                .code,
            S3ErrorCode::InvalidDigest
        );
        assert_eq!(
            content_md5_matches("AAAA", &digest).unwrap_err().code,
            S3ErrorCode::InvalidDigest
        );
    }
}
