//! Client-side signing, for our load generator and for tests: produces what
//! an SDK would send, using the same canonicalisation as [`super::verify`].

use super::canonical::{CanonicalInput, canonical_request, string_to_sign, uri_encode};
use super::context::{SigningContext, derive_signing_key, hmac};
use super::{ALGORITHM, UNSIGNED_PAYLOAD};

/// Service all our scopes use.
const SERVICE: &str = "s3";

/// Inputs to [`sign_request`]. Every header given is signed; include `host`,
/// `x-amz-date` and `x-amz-content-sha256` as an SDK would.
#[derive(Debug, Clone, Copy)]
pub struct SigningInput<'a> {
    pub method: &'a str,
    /// Percent-encoded path as it will be sent.
    pub raw_path: &'a str,
    /// Query as it will be sent, without `?`.
    pub raw_query: &'a str,
    pub headers: &'a [(String, String)],
    /// Value of `x-amz-content-sha256` (hex, `UNSIGNED-PAYLOAD`, `STREAMING-…`).
    pub payload_hash: &'a str,
    pub access_key: &'a str,
    pub secret_key: &'a str,
    pub region: &'a str,
    /// `20250101T000000Z`.
    pub amz_date: &'a str,
}

/// Inputs to [`presign_url`].
#[derive(Debug, Clone, Copy)]
pub struct PresignInput<'a> {
    pub method: &'a str,
    pub raw_path: &'a str,
    /// Extra query parameters (already encoded), or `""`.
    pub raw_query: &'a str,
    /// Headers to sign; must include `host`.
    pub headers: &'a [(String, String)],
    pub access_key: &'a str,
    pub secret_key: &'a str,
    pub region: &'a str,
    pub amz_date: &'a str,
    pub expires_s: u64,
}

fn scope_of(amz_date: &str, region: &str) -> String {
    let date = amz_date.get(..8).unwrap_or(amz_date);
    format!("{date}/{region}/{SERVICE}/aws4_request")
}

/// Lowercased header list and the sorted, de-duplicated names to sign.
fn lowered(headers: &[(String, String)]) -> (Vec<(String, String)>, Vec<String>) {
    let lower: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect();
    let mut names: Vec<String> = lower.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    names.dedup();
    (lower, names)
}

fn signature_for(
    secret: &str,
    region: &str,
    amz_date: &str,
    input: &CanonicalInput<'_>,
) -> ([u8; 32], String) {
    let date = amz_date.get(..8).unwrap_or(amz_date);
    let key = derive_signing_key(secret, date, region, SERVICE);
    let sts = string_to_sign(
        amz_date,
        &scope_of(amz_date, region),
        &canonical_request(input),
    );
    (key, hex::encode(hmac(&key, sts.as_bytes())))
}

/// The `Authorization` header value for a request.
pub fn sign_request(input: &SigningInput<'_>) -> String {
    sign_request_with_context(input).0
}

/// Like [`sign_request`], also returning the context needed to sign an
/// `aws-chunked` body (its seed is this request's signature).
pub fn sign_request_with_context(input: &SigningInput<'_>) -> (String, SigningContext) {
    let (headers, names) = lowered(input.headers);
    let (key, signature) = signature_for(
        input.secret_key,
        input.region,
        input.amz_date,
        &CanonicalInput {
            method: input.method,
            raw_path: input.raw_path,
            raw_query: input.raw_query,
            headers: &headers,
            signed_headers: &names,
            payload_hash: input.payload_hash,
            skip_signature: false,
        },
    );
    let scope = scope_of(input.amz_date, input.region);
    let auth = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={}, Signature={signature}",
        input.access_key,
        names.join(";")
    );
    let ctx = SigningContext::from_key(key, signature, input.amz_date.to_owned(), scope);
    (auth, ctx)
}

/// A presigned `path?query` (payload `UNSIGNED-PAYLOAD`).
pub fn presign_url(input: &PresignInput<'_>) -> String {
    let (headers, names) = lowered(input.headers);
    let scope = scope_of(input.amz_date, input.region);
    let credential = format!("{}/{scope}", input.access_key);
    let mut query = String::new();
    if !input.raw_query.is_empty() {
        query.push_str(input.raw_query);
        query.push('&');
    }
    query.push_str(&format!(
        "X-Amz-Algorithm={ALGORITHM}&X-Amz-Credential={}&X-Amz-Date={}&X-Amz-Expires={}\
         &X-Amz-SignedHeaders={}",
        uri_encode(credential.as_bytes()),
        uri_encode(input.amz_date.as_bytes()),
        input.expires_s,
        uri_encode(names.join(";").as_bytes())
    ));
    let (_, signature) = signature_for(
        input.secret_key,
        input.region,
        input.amz_date,
        &CanonicalInput {
            method: input.method,
            raw_path: input.raw_path,
            raw_query: &query,
            headers: &headers,
            signed_headers: &names,
            payload_hash: UNSIGNED_PAYLOAD,
            skip_signature: true,
        },
    );
    format!("{}?{query}&X-Amz-Signature={signature}", input.raw_path)
}
