//! The on-disk container shared by ring and builder files.
//!
//! ```text
//! offset  size  field
//!      0     8  magic: "CAIRNRNG" (compiled ring) or "CAIRNBLD" (builder)
//!      8     2  format version (little-endian), currently 1
//!     10     1  compression: 1 = zstd
//!     11     5  reserved, zero
//!     16     8  payload length once decompressed
//!     24     8  compressed body length
//!     32    32  BLAKE3 of bytes 0..32 followed by the compressed body
//!     64     …  compressed body
//! ```
//! The digest is checked before anything is decompressed or parsed, so a flipped bit or a
//! truncated copy is reported as such, never half-loaded.

use crate::error::{Result, RingError};
use crate::limits;

pub(crate) const HEADER_LEN: usize = 64;
pub(crate) const FORMAT_VERSION: u16 = 1;
const COMPRESSION_ZSTD: u8 = 1;
/// zstd level 3: fast, and assignment tables compress well at any level.
const ZSTD_LEVEL: i32 = 3;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Ring,
    Builder,
}

impl FileKind {
    fn magic(self) -> &'static [u8; 8] {
        match self {
            Self::Ring => b"CAIRNRNG",
            Self::Builder => b"CAIRNBLD",
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Ring => "ring",
            Self::Builder => "builder",
        }
    }
}

/// Compresses `payload` and wraps it in a header with its digest.
pub(crate) fn seal(kind: FileKind, payload: &[u8]) -> Result<Vec<u8>> {
    let body = zstd::bulk::compress(payload, ZSTD_LEVEL).map_err(|e| RingError::Corrupt {
        kind: kind.name(),
        reason: format!("compression failed: {e}"),
    })?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(kind.magic());
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.push(COMPRESSION_ZSTD);
    out.extend_from_slice(&[0u8; 5]);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    let digest = digest(&out[..32], &body);
    out.extend_from_slice(digest.as_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Checks the header and digest and returns the decompressed payload.
pub(crate) fn open(kind: FileKind, bytes: &[u8]) -> Result<Vec<u8>> {
    let name = kind.name();
    let magic_len = bytes.len().min(8);
    if bytes[..magic_len] != kind.magic()[..magic_len] || bytes.is_empty() {
        return Err(foreign(kind, bytes));
    }
    if bytes.len() < HEADER_LEN {
        return Err(RingError::Truncated {
            kind: name,
            expected: HEADER_LEN as u64,
            found: bytes.len() as u64,
        });
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != FORMAT_VERSION {
        return Err(RingError::UnsupportedFormat {
            kind: name,
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let payload_len = read_u64(&bytes[16..24]);
    let body_len = read_u64(&bytes[24..32]);
    let expected = (HEADER_LEN as u64).saturating_add(body_len);
    if (bytes.len() as u64) < expected {
        return Err(RingError::Truncated {
            kind: name,
            expected,
            found: bytes.len() as u64,
        });
    }
    let stored = &bytes[32..64];
    let body = &bytes[HEADER_LEN..];
    let computed = digest(&bytes[..32], body);
    if stored != computed.as_bytes() {
        return Err(RingError::ChecksumMismatch {
            kind: name,
            stored: hex(stored),
            computed: computed.to_hex().to_string(),
        });
    }
    // The digest covers the header too, so from here on a bad field is a bug in the writer.
    if bytes[10] != COMPRESSION_ZSTD {
        return Err(RingError::Corrupt {
            kind: name,
            reason: format!("unknown compression {}", bytes[10]),
        });
    }
    if (bytes.len() as u64) != expected {
        return Err(RingError::Corrupt {
            kind: name,
            reason: "trailing bytes after the body".into(),
        });
    }
    if payload_len > limits::FILE_PAYLOAD_LEN_MAX {
        return Err(RingError::Corrupt {
            kind: name,
            reason: format!("payload of {payload_len} bytes is too large"),
        });
    }
    let capacity = usize::try_from(payload_len).map_err(|_| RingError::Corrupt {
        kind: name,
        reason: format!("payload of {payload_len} bytes does not fit in memory"),
    })?;
    let payload = zstd::bulk::decompress(body, capacity).map_err(|e| RingError::Corrupt {
        kind: name,
        reason: format!("decompression failed: {e}"),
    })?;
    if payload.len() as u64 != payload_len {
        return Err(RingError::Corrupt {
            kind: name,
            reason: format!(
                "payload is {} bytes, header says {payload_len}",
                payload.len()
            ),
        });
    }
    Ok(payload)
}

fn foreign(kind: FileKind, bytes: &[u8]) -> RingError {
    let other = match kind {
        FileKind::Ring => FileKind::Builder,
        FileKind::Builder => FileKind::Ring,
    };
    let hint = if bytes.starts_with(other.magic()) {
        match kind {
            FileKind::Ring => {
                ": it is a ring builder file; compile it with `ring-tool <builder> write-ring`"
            }
            FileKind::Builder => ": it is a compiled ring, not a builder file",
        }
    } else if bytes.starts_with(&GZIP_MAGIC) {
        ": it is gzip data, perhaps a Swift ring or builder; Cairn uses its own format"
    } else if bytes.is_empty() {
        ": the file is empty"
    } else {
        ""
    };
    let shown: String = bytes
        .iter()
        .take(8)
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '.' })
        .collect();
    RingError::ForeignFile {
        expected: kind.name(),
        found: shown,
        hint,
    }
}

fn digest(header: &[u8], body: &[u8]) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    h.update(header);
    h.update(body);
    h.finalize()
}

fn read_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Little helpers to lay out a payload: a postcard-encoded record, then raw arrays.
pub(crate) struct PayloadWriter {
    pub buf: Vec<u8>,
}

impl PayloadWriter {
    pub fn new() -> Self {
        Self { buf: Vec::new() }
    }

    pub fn record<T: serde::Serialize>(&mut self, kind: FileKind, value: &T) -> Result<()> {
        let encoded = postcard::to_allocvec(value).map_err(|e| RingError::Corrupt {
            kind: kind.name(),
            reason: format!("cannot encode: {e}"),
        })?;
        self.buf
            .extend_from_slice(&(encoded.len() as u64).to_le_bytes());
        self.buf.extend_from_slice(&encoded);
        Ok(())
    }

    pub fn u16s(&mut self, values: &[u16]) {
        self.buf.reserve(values.len() * 2);
        for v in values {
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
    }

    pub fn u32s(&mut self, values: &[u32]) {
        self.buf.reserve(values.len() * 4);
        for v in values {
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
    }
}

pub(crate) struct PayloadReader<'a> {
    kind: FileKind,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> PayloadReader<'a> {
    pub fn new(kind: FileKind, buf: &'a [u8]) -> Self {
        Self { kind, buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| RingError::Corrupt {
                kind: self.kind.name(),
                reason: "payload ends early".into(),
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn record<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        let len = read_u64(self.take(8)?);
        let len = usize::try_from(len).map_err(|_| self.corrupt("record length overflows"))?;
        let bytes = self.take(len)?;
        postcard::from_bytes(bytes).map_err(|e| self.corrupt(&format!("bad record: {e}")))
    }

    pub fn u16s(&mut self, n: usize) -> Result<Vec<u16>> {
        let bytes = self.take(
            n.checked_mul(2)
                .ok_or_else(|| self.corrupt("array too long"))?,
        )?;
        Ok(bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect())
    }

    pub fn u32s(&mut self, n: usize) -> Result<Vec<u32>> {
        let bytes = self.take(
            n.checked_mul(4)
                .ok_or_else(|| self.corrupt("array too long"))?,
        )?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    pub fn finish(self) -> Result<()> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(self.corrupt("trailing bytes in payload"))
        }
    }

    pub fn corrupt(&self, reason: &str) -> RingError {
        RingError::Corrupt {
            kind: self.kind.name(),
            reason: reason.to_string(),
        }
    }
}
