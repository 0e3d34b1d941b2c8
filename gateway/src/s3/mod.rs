//! The S3 API (path-style addressing): SigV4 authentication, buckets, objects, multipart
//! uploads and listings. Protocol rules come from `cairn-s3-proto`; this module authenticates,
//! dispatches on method + query and maps requests onto the object layer.
//!
//! Buckets are containers in the caller's project account (`AUTH_<project id>`), so each
//! project has its own bucket namespace and the same data is visible through Swift.

mod bucket;
mod ingest;
mod multipart;
mod object;

use axum::extract::Request;
use axum::response::Response;
use cairn_meta::identity::{Principal, Role};
use cairn_node::ClientError;
use cairn_s3_proto::sigv4::{self, HttpRequestParts, PayloadMode, SigningContext};
use cairn_s3_proto::{S3Error, S3ErrorCode};
use http::request::Parts;
use http::{HeaderValue, Method, StatusCode};
use tracing::warn;

use crate::body::IngestFailure;
use crate::server::RequestCtx;

/// Request headers beyond this many bytes in total are refused (S3 allows 8 KiB of headers
/// on a PUT; clients send well under this).
pub const HEADER_BYTES_MAX: usize = 16 * 1024;

pub(crate) type S3Result<T> = Result<T, S3Error>;

pub(crate) fn err(code: S3ErrorCode, msg: impl Into<String>) -> S3Error {
    S3Error::new(code, msg)
}

impl From<IngestFailure> for S3Error {
    fn from(e: IngestFailure) -> Self {
        match e {
            IngestFailure::Long { .. } => err(
                S3ErrorCode::IncompleteBody,
                format!("{e}: the body does not match the declared length"),
            ),
            _ => err(S3ErrorCode::IncompleteBody, e.to_string()),
        }
    }
}

pub(crate) fn cluster_error(e: ClientError) -> S3Error {
    match e {
        ClientError::NotFound => err(S3ErrorCode::NoSuchKey, "The specified key does not exist."),
        ClientError::NotEmpty { .. } => err(
            S3ErrorCode::BucketNotEmpty,
            "The bucket you tried to delete is not empty",
        ),
        ClientError::Invalid(m) => err(S3ErrorCode::InvalidRequest, m),
        ClientError::RangeNotSatisfiable { .. } => err(
            S3ErrorCode::InvalidRange,
            "The requested range is not satisfiable",
        ),
        ClientError::DiskFull => err(
            S3ErrorCode::ServiceUnavailable,
            "The cluster has no space for this write",
        ),
        ClientError::Body(m) => err(S3ErrorCode::IncompleteBody, m),
        ClientError::NoQuorum(m) => {
            warn!(error = %m, "no quorum");
            err(
                S3ErrorCode::ServiceUnavailable,
                "Not enough replicas answered; retry",
            )
        }
        // Objects carry no fencing epochs; only block-layer calls can be fenced.
        f @ ClientError::Fenced { .. } => err(S3ErrorCode::InternalError, f.to_string()),
    }
}

/// An authenticated S3 request.
#[derive(Debug)]
pub(crate) struct S3Request {
    pub parts: Parts,
    /// Lowercased header names with their values.
    pub headers: Vec<(String, String)>,
    /// Decoded query parameters.
    pub query: Vec<(String, String)>,
    pub bucket: Option<String>,
    pub key: Option<String>,
    pub principal: Principal,
    pub account: String,
    pub payload: PayloadMode,
    pub signing: SigningContext,
}

impl S3Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn q(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn has_q(&self, name: &str) -> bool {
        self.query.iter().any(|(k, _)| k == name)
    }

    pub fn method(&self) -> &Method {
        &self.parts.method
    }

    pub fn bucket(&self) -> S3Result<&str> {
        self.bucket
            .as_deref()
            .ok_or_else(|| err(S3ErrorCode::InvalidRequest, "no bucket in the request"))
    }
}

pub(crate) fn decode(s: &str) -> S3Result<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| {
            err(
                S3ErrorCode::InvalidArgument,
                "the request is not valid UTF-8",
            )
        })
}

fn parse_query(raw: &str) -> S3Result<Vec<(String, String)>> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            // `+` in a query is a literal plus for SigV4 clients, but form-style encoders
            // send it for a space in values like prefixes; S3 decodes it as a space.
            Ok((decode(k)?, decode(&v.replace('+', "%20"))?))
        })
        .collect()
}

pub(crate) fn xml_response(status: StatusCode, body: String) -> Response {
    let mut r = Response::new(axum::body::Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    r
}

pub(crate) fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(axum::body::Body::empty());
    *r.status_mut() = status;
    r
}

pub(crate) fn set_header(r: &mut Response, name: &str, value: &str) {
    if let (Ok(k), Ok(v)) = (
        http::HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        r.headers_mut().insert(k, v);
    }
}

fn error_response(ctx: &RequestCtx, e: &S3Error, head: bool) -> Response {
    if e.code == S3ErrorCode::NotModified {
        return empty(StatusCode::NOT_MODIFIED);
    }
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if head {
        // A HEAD answer has no body; the status (and x-amz-request-id) say it all.
        return empty(status);
    }
    xml_response(status, e.to_xml(&ctx.request_id))
}

/// Whether a request carries S3 authentication (a header or a presigned query); anonymous
/// requests are never S3's, so a few paths (Swift's `/info`) can be shared.
pub fn is_signed(req: &Request) -> bool {
    req.headers().contains_key(http::header::AUTHORIZATION)
        || req.uri().query().is_some_and(|q| {
            q.split('&').any(|p| {
                let k = p.split_once('=').map_or(p, |(k, _)| k);
                k.eq_ignore_ascii_case("X-Amz-Signature")
                    || k.eq_ignore_ascii_case("X-Amz-Credential")
                    || k == "Signature"
                    || k == "AWSAccessKeyId"
            })
        })
}

pub async fn handle(ctx: RequestCtx, req: Request) -> Response {
    let head = req.method() == Method::HEAD;
    let mut response = match handle_inner(&ctx, req).await {
        Ok(r) => r,
        Err(e) => {
            match e.code {
                S3ErrorCode::InternalError => warn!(error = %e.message, "internal error"),
                S3ErrorCode::SignatureDoesNotMatch
                | S3ErrorCode::AccessDenied
                | S3ErrorCode::InvalidAccessKeyId
                | S3ErrorCode::IncompleteBody
                | S3ErrorCode::BadDigest => {
                    tracing::info!(code = %e.code.as_str(), error = %e.message, "request refused")
                }
                _ => {}
            }
            error_response(&ctx, &e, head)
        }
    };
    set_header(&mut response, "x-amz-request-id", &ctx.request_id);
    set_header(&mut response, "server", "Cairn");
    response
}

async fn handle_inner(ctx: &RequestCtx, req: Request) -> S3Result<Response> {
    let (parts, body) = req.into_parts();
    let req = authenticate(ctx, parts).await?;
    let writer = req.principal.has_role(Role::Admin) || req.principal.has_role(Role::Member);
    if !writer && !matches!(*req.method(), Method::GET | Method::HEAD) {
        return Err(err(
            S3ErrorCode::AccessDenied,
            "Access Denied: your role in this project is read-only",
        ));
    }
    match (&req.bucket, &req.key) {
        (None, _) => match *req.method() {
            Method::GET => bucket::list_buckets(ctx, &req).await,
            _ => Err(err(
                S3ErrorCode::MethodNotAllowed,
                "The specified method is not allowed against this resource.",
            )),
        },
        (Some(_), None) => bucket::handle(ctx, &req, body).await,
        (Some(_), Some(_)) => object::handle(ctx, &req, body).await,
    }
}

async fn authenticate(ctx: &RequestCtx, parts: Parts) -> S3Result<S3Request> {
    let header_bytes: usize = parts
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes > HEADER_BYTES_MAX {
        return Err(err(
            S3ErrorCode::RequestHeaderSectionTooLarge,
            format!(
                "Your request header section exceeds the maximum allowed size ({HEADER_BYTES_MAX} bytes)."
            ),
        ));
    }
    let mut headers = Vec::with_capacity(parts.headers.len());
    for (k, v) in &parts.headers {
        let v = v.to_str().map_err(|_| {
            err(
                S3ErrorCode::InvalidArgument,
                format!("header {k} is not visible ASCII"),
            )
        })?;
        headers.push((k.as_str().to_string(), v.to_string()));
    }
    let raw_path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().unwrap_or("").to_string();
    let http = HttpRequestParts {
        method: parts.method.as_str(),
        raw_path: &raw_path,
        raw_query: &raw_query,
        headers: &headers,
    };
    let Some(auth) = sigv4::parse_auth(&http)? else {
        return Err(err(
            S3ErrorCode::AccessDenied,
            "Access Denied: anonymous requests are not allowed",
        ));
    };
    if auth.region != ctx.state.region {
        return Err(err(
            S3ErrorCode::AuthorizationHeaderMalformed,
            format!(
                "the region '{}' is wrong; expecting '{}'",
                auth.region, ctx.state.region
            ),
        ));
    }
    let found = ctx
        .state
        .identity
        .s3_secret(&auth.access_key)
        .await
        .map_err(|e| {
            warn!(error = %e, "looking up an access key failed");
            err(S3ErrorCode::InternalError, "identity store unavailable")
        })?;
    let Some((principal, secret)) = found else {
        return Err(err(
            S3ErrorCode::InvalidAccessKeyId,
            "The AWS Access Key Id you provided does not exist in our records.",
        ));
    };
    let now = crate::objects::now_unix_s();
    let signing = sigv4::verify(&http, &auth, secret.expose(), now)?;
    let project = principal.project_id.clone().ok_or_else(|| {
        err(
            S3ErrorCode::AccessDenied,
            "the key is not scoped to a project",
        )
    })?;
    let query = parse_query(&raw_query)?;
    let mut segs = raw_path.trim_start_matches('/').splitn(2, '/');
    let bucket = segs
        .next()
        .filter(|b| !b.is_empty())
        .map(decode)
        .transpose()?;
    let key = segs
        .next()
        .filter(|k| !k.is_empty())
        .map(decode)
        .transpose()?;
    if let Some(k) = &key {
        cairn_s3_proto::names::validate_object_key(k)?;
    }
    Ok(S3Request {
        parts,
        headers,
        query,
        bucket,
        key,
        principal,
        account: format!("AUTH_{project}"),
        payload: auth.payload,
        signing,
    })
}
