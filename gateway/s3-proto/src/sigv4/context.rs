//! The per-request signing state needed after the headers were verified:
//! `aws-chunked` bodies chain a signature per chunk off the request's one.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::canonical::sha256_hex;

type HmacSha256 = Hmac<Sha256>;

/// Hex SHA-256 of the empty string, part of every chunk's string to sign.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

pub(crate) fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// `HMAC("AWS4"+secret, date)` → region → service → `aws4_request`.
pub(crate) fn derive_signing_key(
    secret: &str,
    date: &str,
    region: &str,
    service: &str,
) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// Compare two strings without an early exit, so timing leaks nothing about
/// how much of a guessed signature was right.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The verified request's key material, for chunk and trailer signatures.
#[derive(Clone)]
pub struct SigningContext {
    signing_key: [u8; 32],
    /// The request's own signature: the "previous" of the first chunk.
    pub seed_signature: String,
    pub amz_date: String,
    /// `date/region/service/aws4_request`.
    pub scope: String,
}

impl std::fmt::Debug for SigningContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningContext")
            .field("signing_key", &"<redacted>")
            .field("seed_signature", &self.seed_signature)
            .field("amz_date", &self.amz_date)
            .field("scope", &self.scope)
            .finish()
    }
}

impl SigningContext {
    /// Build a context from a secret (client side, or tests).
    /// `scope` is `date/region/service/aws4_request`.
    pub fn new(secret_key: &str, amz_date: &str, scope: &str, seed_signature: &str) -> Self {
        let mut parts = scope.split('/');
        let date = parts.next().unwrap_or_default();
        let region = parts.next().unwrap_or_default();
        let service = parts.next().unwrap_or_default();
        Self {
            signing_key: derive_signing_key(secret_key, date, region, service),
            seed_signature: seed_signature.to_owned(),
            amz_date: amz_date.to_owned(),
            scope: scope.to_owned(),
        }
    }

    pub(crate) fn from_key(
        signing_key: [u8; 32],
        seed: String,
        amz_date: String,
        scope: String,
    ) -> Self {
        Self {
            signing_key,
            seed_signature: seed,
            amz_date,
            scope,
        }
    }

    pub(crate) fn sign(&self, string_to_sign: &str) -> String {
        hex::encode(hmac(&self.signing_key, string_to_sign.as_bytes()))
    }

    /// Signature of one `aws-chunked` chunk, chained off `previous`.
    pub fn chunk_signature(&self, previous: &str, chunk_data: &[u8]) -> String {
        self.sign(&format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{previous}\n{EMPTY_SHA256}\n{}",
            self.amz_date,
            self.scope,
            sha256_hex(chunk_data)
        ))
    }

    /// Signature of the trailer section; `trailer_bytes` are the canonical
    /// trailer lines `name:value\n`, `previous` is the final chunk's signature.
    pub fn trailer_signature(&self, previous: &str, trailer_bytes: &[u8]) -> String {
        self.sign(&format!(
            "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{previous}\n{}",
            self.amz_date,
            self.scope,
            sha256_hex(trailer_bytes)
        ))
    }
}
