//! Server-side check of a parsed SigV4 authentication.

use super::canonical::{CanonicalInput, canonical_request, string_to_sign};
use super::context::{SigningContext, constant_time_eq, derive_signing_key, hmac};
use super::{AuthRequest, HttpRequestParts, MAX_CLOCK_SKEW_SECS, UNSIGNED_PAYLOAD};
use crate::error::{S3Error, S3ErrorCode};

/// Verify the signature of `req` with the secret of `auth.access_key`.
///
/// Header auth must be within [`MAX_CLOCK_SKEW_SECS`] of `now_unix`;
/// presigned URLs must not be expired nor dated in the future beyond the
/// same skew. On success the context for `aws-chunked` bodies is returned.
pub fn verify(
    req: &HttpRequestParts<'_>,
    auth: &AuthRequest,
    secret_key: &str,
    now_unix: u64,
) -> Result<SigningContext, S3Error> {
    check_time(auth, now_unix)?;
    let presigned = auth.presigned_expires_s.is_some();
    if !presigned {
        check_amz_headers_signed(req, auth)?;
    }
    let payload_hash = match req.header("x-amz-content-sha256") {
        Some(v) => v.trim(),
        None => UNSIGNED_PAYLOAD,
    };
    let creq = canonical_request(&CanonicalInput {
        method: req.method,
        raw_path: req.raw_path,
        raw_query: req.raw_query,
        headers: req.headers,
        signed_headers: &auth.signed_headers,
        payload_hash,
        skip_signature: presigned,
    });
    let scope = auth.scope();
    let sts = string_to_sign(&auth.amz_date, &scope, &creq);
    let key = derive_signing_key(secret_key, &auth.date, &auth.region, &auth.service);
    let expected = hex::encode(hmac(&key, sts.as_bytes()));
    if !constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        return Err(S3Error::new(
            S3ErrorCode::SignatureDoesNotMatch,
            "The request signature we calculated does not match the signature you provided. \
             Check your key and signing method.",
        ));
    }
    Ok(SigningContext::from_key(
        key,
        auth.signature.clone(),
        auth.amz_date.clone(),
        scope,
    ))
}

fn check_time(auth: &AuthRequest, now: u64) -> Result<(), S3Error> {
    let t = auth.request_time_unix;
    match auth.presigned_expires_s {
        None => {
            if now.abs_diff(t) > MAX_CLOCK_SKEW_SECS {
                return Err(S3Error::new(
                    S3ErrorCode::RequestTimeTooSkewed,
                    "The difference between the request time and the server's time is too large.",
                ));
            }
        }
        Some(expires) => {
            if t > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
                return Err(S3Error::new(
                    S3ErrorCode::AccessDenied,
                    "Request is not valid yet",
                ));
            }
            if now > t.saturating_add(expires) {
                return Err(S3Error::new(
                    S3ErrorCode::AccessDenied,
                    "Request has expired",
                ));
            }
        }
    }
    Ok(())
}

/// AWS refuses header-signed requests carrying unsigned `x-amz-*` headers:
/// otherwise e.g. `x-amz-copy-source` could be swapped by a middlebox.
fn check_amz_headers_signed(req: &HttpRequestParts<'_>, auth: &AuthRequest) -> Result<(), S3Error> {
    for (name, _) in req.headers {
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("x-amz-") && !auth.signed_headers.contains(&lower) {
            return Err(S3Error::new(
                S3ErrorCode::AccessDenied,
                format!("There were headers present in the request which were not signed: {lower}"),
            ));
        }
    }
    Ok(())
}
