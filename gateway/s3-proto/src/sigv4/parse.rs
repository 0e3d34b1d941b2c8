//! Syntax of SigV4 credentials: the `Authorization` header and the
//! `X-Amz-*` presigned query parameters. No secret is needed here.

use super::canonical::parse_query;
use super::{
    ALGORITHM, AuthRequest, HttpRequestParts, MAX_PRESIGNED_EXPIRES_SECS, PayloadMode,
    STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER, UNSIGNED_PAYLOAD,
};
use crate::error::{S3Error, S3ErrorCode};
use crate::time::{amz_date, parse_amz_date, parse_http_date};

/// The only service name S3 requests may be scoped to.
const SERVICE: &str = "s3";
/// Credential scope terminator.
const TERMINATOR: &str = "aws4_request";

const SIGV2_MESSAGE: &str =
    "AWS Signature Version 2 is not supported; sign requests with AWS4-HMAC-SHA256 (SigV4)";

/// Which flavour is being parsed decides the error code used.
#[derive(Clone, Copy)]
enum Form {
    Header,
    Query,
}

impl Form {
    fn malformed(self, msg: impl Into<String>) -> S3Error {
        let code = match self {
            Form::Header => S3ErrorCode::AuthorizationHeaderMalformed,
            Form::Query => S3ErrorCode::AuthorizationQueryParametersError,
        };
        S3Error::new(code, msg)
    }
}

/// Parse the request's SigV4 authentication.
///
/// `Ok(None)` means anonymous: no `Authorization` header and no
/// `X-Amz-Algorithm` query parameter. SigV2 in either form is refused.
pub fn parse_auth(req: &HttpRequestParts<'_>) -> Result<Option<AuthRequest>, S3Error> {
    let query = parse_query(req.raw_query);
    let q = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let header = req.header("authorization");
    match (header, q("X-Amz-Algorithm")) {
        (Some(_), Some(_)) => Err(S3Error::new(
            S3ErrorCode::InvalidArgument,
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter \
             or the Authorization header should be specified",
        )),
        (Some(h), None) => parse_header_form(req, h).map(Some),
        (None, Some(alg)) => parse_query_form(req, alg, &q).map(Some),
        (None, None) => {
            if q("AWSAccessKeyId").is_some() && q("Signature").is_some() {
                Err(S3Error::new(S3ErrorCode::InvalidRequest, SIGV2_MESSAGE))
            } else {
                Ok(None)
            }
        }
    }
}

fn parse_header_form(req: &HttpRequestParts<'_>, value: &str) -> Result<AuthRequest, S3Error> {
    let form = Form::Header;
    let value = value.trim();
    if value.starts_with("AWS ") {
        return Err(S3Error::new(S3ErrorCode::InvalidRequest, SIGV2_MESSAGE));
    }
    let rest = match value.split_once(|c: char| c.is_ascii_whitespace()) {
        Some((alg, rest)) if alg == ALGORITHM => rest,
        _ => {
            let alg = value.split_ascii_whitespace().next().unwrap_or_default();
            return Err(form.malformed(format!(
                "unsupported authorization algorithm '{alg}'; expecting '{ALGORITHM}'"
            )));
        }
    };
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let Some((k, v)) = part.split_once('=') else {
            return Err(
                form.malformed(format!("malformed component '{part}' (expected key=value)"))
            );
        };
        let slot = match k.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            other => return Err(form.malformed(format!("unknown component '{other}'"))),
        };
        if slot.replace(v.trim()).is_some() {
            return Err(form.malformed(format!("component '{}' given twice", k.trim())));
        }
    }
    let credential = credential.ok_or_else(|| form.malformed("missing Credential"))?;
    let signed = signed.ok_or_else(|| form.malformed("missing SignedHeaders"))?;
    let signature = signature.ok_or_else(|| form.malformed("missing Signature"))?;

    let amz = header_amz_date(req)?;
    let payload = match req.header("x-amz-content-sha256") {
        Some(v) => parse_payload_mode(v)?,
        None => {
            return Err(S3Error::new(
                S3ErrorCode::InvalidRequest,
                "Missing required header for this request: x-amz-content-sha256",
            ));
        }
    };
    build(form, credential, signed, signature, amz, payload, None)
}

/// The request time for header auth: `x-amz-date`, else `Date`.
fn header_amz_date(req: &HttpRequestParts<'_>) -> Result<String, S3Error> {
    let denied = || {
        S3Error::new(
            S3ErrorCode::AccessDenied,
            "AWS authentication requires a valid Date or x-amz-date header",
        )
    };
    if let Some(v) = req.header("x-amz-date") {
        let v = v.trim();
        return match parse_amz_date(v) {
            Some(_) => Ok(v.to_owned()),
            None => Err(denied()),
        };
    }
    let date = req.header("date").ok_or_else(denied)?;
    parse_http_date(date).map(amz_date).ok_or_else(denied)
}

fn parse_query_form<'q>(
    req: &HttpRequestParts<'_>,
    algorithm: &str,
    q: &dyn Fn(&str) -> Option<&'q str>,
) -> Result<AuthRequest, S3Error> {
    let form = Form::Query;
    if algorithm != ALGORITHM {
        return Err(form.malformed(format!("X-Amz-Algorithm only supports \"{ALGORITHM}\"")));
    }
    let missing = || {
        form.malformed(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, \
             X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, \
             and X-Amz-Expires parameters.",
        )
    };
    let credential = q("X-Amz-Credential").ok_or_else(missing)?;
    let date = q("X-Amz-Date").ok_or_else(missing)?;
    let expires = q("X-Amz-Expires").ok_or_else(missing)?;
    let signed = q("X-Amz-SignedHeaders").ok_or_else(missing)?;
    let signature = q("X-Amz-Signature").ok_or_else(missing)?;

    if parse_amz_date(date).is_none() {
        return Err(form
            .malformed("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\""));
    }
    let expires: u64 = if !expires.is_empty() && expires.bytes().all(|b| b.is_ascii_digit()) {
        expires.parse().unwrap_or(u64::MAX)
    } else {
        return Err(form.malformed("X-Amz-Expires should be a number"));
    };
    if expires == 0 {
        return Err(form.malformed("X-Amz-Expires must be non-negative and non-zero"));
    }
    if expires > MAX_PRESIGNED_EXPIRES_SECS {
        return Err(
            form.malformed("X-Amz-Expires must be less than a week (in seconds) that is 604800")
        );
    }
    let payload = match req.header("x-amz-content-sha256") {
        Some(v) => parse_payload_mode(v)?,
        None => PayloadMode::UnsignedPayload,
    };
    build(
        form,
        credential,
        signed,
        signature,
        date.to_owned(),
        payload,
        Some(expires),
    )
}

/// Interpret `x-amz-content-sha256`.
pub(crate) fn parse_payload_mode(value: &str) -> Result<PayloadMode, S3Error> {
    let v = value.trim();
    Ok(match v {
        UNSIGNED_PAYLOAD => PayloadMode::UnsignedPayload,
        STREAMING_SIGNED => PayloadMode::StreamingSigned,
        STREAMING_SIGNED_TRAILER => PayloadMode::StreamingSignedTrailer,
        STREAMING_UNSIGNED_TRAILER => PayloadMode::StreamingUnsignedTrailer,
        v if v.starts_with("STREAMING-AWS4-ECDSA") => {
            return Err(S3Error::new(
                S3ErrorCode::NotImplemented,
                "SigV4a (ECDSA) streaming signatures are not supported",
            ));
        }
        v if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
            PayloadMode::Sha256(v.to_ascii_lowercase())
        }
        _ => {
            return Err(S3Error::new(
                S3ErrorCode::InvalidArgument,
                "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, a STREAMING-* value, \
                 or a valid hex SHA-256",
            ));
        }
    })
}

/// Validate the shared pieces and assemble the result.
fn build(
    form: Form,
    credential: &str,
    signed_headers: &str,
    signature: &str,
    amz: String,
    payload: PayloadMode,
    presigned_expires_s: Option<u64>,
) -> Result<AuthRequest, S3Error> {
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, terminator] = parts.as_slice() else {
        return Err(form.malformed(format!(
            "the Credential '{credential}' is malformed; expecting \
             '<access-key>/<YYYYMMDD>/<region>/s3/aws4_request'"
        )));
    };
    if access_key.is_empty() {
        return Err(form.malformed("the Credential has an empty access key"));
    }
    if date.len() != 8 || parse_amz_date(&format!("{date}T000000Z")).is_none() {
        return Err(form.malformed(format!(
            "the Credential date '{date}' is not a valid YYYYMMDD date"
        )));
    }
    if region.is_empty() {
        return Err(form.malformed("the Credential has an empty region"));
    }
    if *service != SERVICE {
        return Err(form.malformed(format!(
            "the Credential service '{service}' is incorrect; expecting '{SERVICE}'"
        )));
    }
    if *terminator != TERMINATOR {
        return Err(form.malformed(format!(
            "the Credential terminator '{terminator}' is incorrect; expecting '{TERMINATOR}'"
        )));
    }
    if amz.get(..8) != Some(*date) {
        return Err(form.malformed(format!(
            "the Credential date '{date}' does not match the request date '{amz}'"
        )));
    }
    let signed: Vec<String> = signed_headers.split(';').map(str::to_owned).collect();
    if signed.iter().any(|h| {
        h.is_empty()
            || !h
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase())
    }) {
        return Err(form.malformed(format!(
            "SignedHeaders '{signed_headers}' must be lowercase header names separated by ';'"
        )));
    }
    if !signed.iter().any(|h| h == "host") {
        return Err(form.malformed("SignedHeaders must include 'host'"));
    }
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(form.malformed("Signature must be 64 hexadecimal characters"));
    }
    let request_time_unix = parse_amz_date(&amz)
        .ok_or_else(|| form.malformed(format!("invalid request date '{amz}'")))?;
    Ok(AuthRequest {
        access_key: (*access_key).to_owned(),
        date: (*date).to_owned(),
        region: (*region).to_owned(),
        service: (*service).to_owned(),
        signed_headers: signed,
        signature: signature.to_ascii_lowercase(),
        amz_date: amz,
        request_time_unix,
        payload,
        presigned_expires_s,
    })
}
