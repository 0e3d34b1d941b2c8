//! The `aws-chunked` content encoding used by streaming uploads.
//!
//! Wire format, per chunk: `hex-size[;chunk-signature=sig]\r\n<data>\r\n`.
//! A zero-size chunk ends the data; then, depending on the mode, nothing
//! more than `\r\n` (signed), or trailer lines `name:value\r\n` followed by
//! `x-amz-trailer-signature:sig\r\n` (signed trailers only) and `\r\n`.
//!
//! [`ChunkedDecoder`] is incremental and never needs the whole body: feed
//! it whatever the socket produced. [`encode_chunked`] produces the same
//! framing, for tests and our load generator.

mod decoder;
mod encoder;

pub use decoder::{ChunkedDecoder, Decoded};
pub use encoder::encode_chunked;

use crate::sigv4::{PayloadMode, SigningContext};

/// Largest chunk accepted. Signed chunks are held in memory until their
/// signature is checked, so this bounds per-request memory in the decoder.
/// SDKs use 64 KiB; AWS documents 8 MiB as a practical upper end.
pub const MAX_CHUNK_SIZE: u64 = 16 * 1024 * 1024;
/// Longest chunk header line (size, extensions), without its CRLF.
pub const MAX_CHUNK_HEADER_LINE: usize = 4 * 1024;
/// Longest trailer section (all trailer lines with their CRLFs).
pub const MAX_TRAILER_SECTION: usize = 16 * 1024;
/// Trailer carrying the signature of the other trailers.
pub const TRAILER_SIGNATURE_NAME: &str = "x-amz-trailer-signature";

/// Which `aws-chunked` variant the body uses (from `x-amz-content-sha256`).
#[derive(Debug, Clone)]
pub enum ChunkedMode {
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`.
    Signed(SigningContext),
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`.
    SignedWithTrailer(SigningContext),
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`.
    UnsignedWithTrailer,
}

impl ChunkedMode {
    /// The mode for a request's payload mode; `None` when the body is not
    /// `aws-chunked`, or when a signed mode comes without a verified context.
    pub fn for_payload(payload: &PayloadMode, ctx: Option<SigningContext>) -> Option<Self> {
        match payload {
            PayloadMode::StreamingSigned => ctx.map(Self::Signed),
            PayloadMode::StreamingSignedTrailer => ctx.map(Self::SignedWithTrailer),
            PayloadMode::StreamingUnsignedTrailer => Some(Self::UnsignedWithTrailer),
            PayloadMode::UnsignedPayload | PayloadMode::Sha256(_) => None,
        }
    }

    pub(crate) fn context(&self) -> Option<&SigningContext> {
        match self {
            Self::Signed(c) | Self::SignedWithTrailer(c) => Some(c),
            Self::UnsignedWithTrailer => None,
        }
    }

    pub(crate) fn has_trailers(&self) -> bool {
        !matches!(self, Self::Signed(_))
    }
}

#[cfg(test)]
mod tests;
