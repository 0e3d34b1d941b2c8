//! AWS Signature Version 4, as S3 uses it: the `Authorization` header form
//! and the presigned-URL (query) form, plus client-side signing helpers.
//!
//! The flow on the server is [`parse_auth`] (syntax only, no secret needed,
//! so the gateway can look up the access key afterwards) then [`verify`]
//! (time window and signature). The returned [`SigningContext`] carries the
//! derived key so `aws-chunked` bodies can be verified chunk by chunk.

mod canonical;
mod client;
mod context;
mod parse;
mod verify;

pub use client::{
    PresignInput, SigningInput, presign_url, sign_request, sign_request_with_context,
};
pub use context::SigningContext;
pub use parse::parse_auth;
pub use verify::verify;

pub(crate) use context::constant_time_eq;

/// The only signing algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Allowed distance between the request time and the server clock (AWS: 15 min).
pub const MAX_CLOCK_SKEW_SECS: u64 = 15 * 60;
/// Longest presigned URL lifetime AWS allows: 7 days.
pub const MAX_PRESIGNED_EXPIRES_SECS: u64 = 604_800;

/// `x-amz-content-sha256` value for an unsigned single-shot payload.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// `x-amz-content-sha256` value for signed `aws-chunked` bodies.
pub const STREAMING_SIGNED: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
/// Signed `aws-chunked` bodies followed by signed trailers.
pub const STREAMING_SIGNED_TRAILER: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
/// Unsigned `aws-chunked` bodies followed by (unsigned) trailers.
pub const STREAMING_UNSIGNED_TRAILER: &str = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";

/// The parts of an HTTP request that signing looks at.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequestParts<'a> {
    pub method: &'a str,
    /// The path as received, still percent-encoded.
    pub raw_path: &'a str,
    /// The query string as received, without the leading `?`.
    pub raw_query: &'a str,
    /// Header names lowercased, values as received; names may repeat.
    pub headers: &'a [(String, String)],
}

impl HttpRequestParts<'_> {
    /// The first value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How the body is protected, from `x-amz-content-sha256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadMode {
    /// `UNSIGNED-PAYLOAD`: the body is not covered by the signature.
    UnsignedPayload,
    /// The lowercase hex SHA-256 of the whole body; the gateway must check it
    /// (mismatch → `XAmzContentSHA256Mismatch`).
    Sha256(String),
    /// `aws-chunked` body with per-chunk signatures.
    StreamingSigned,
    /// `aws-chunked` body with per-chunk signatures and signed trailers.
    StreamingSignedTrailer,
    /// `aws-chunked` body without signatures, with trailers (boto3 ≥ 1.36 default).
    StreamingUnsignedTrailer,
}

impl PayloadMode {
    /// True for the three `aws-chunked` modes.
    pub fn is_streaming(&self) -> bool {
        matches!(
            self,
            Self::StreamingSigned | Self::StreamingSignedTrailer | Self::StreamingUnsignedTrailer
        )
    }
}

/// A syntactically valid SigV4 authentication, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    pub access_key: String,
    /// Credential scope date, `YYYYMMDD`.
    pub date: String,
    pub region: String,
    pub service: String,
    /// Signed header names, in the order the client listed them.
    pub signed_headers: Vec<String>,
    /// Lowercase hex.
    pub signature: String,
    /// `20250101T000000Z`, from `X-Amz-Date` (header or query) or `Date`.
    pub amz_date: String,
    pub request_time_unix: u64,
    pub payload: PayloadMode,
    /// `Some(X-Amz-Expires)` for presigned URLs, `None` for header auth.
    pub presigned_expires_s: Option<u64>,
}

impl AuthRequest {
    /// `date/region/service/aws4_request`.
    pub fn scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }
}

#[cfg(test)]
mod tests;
