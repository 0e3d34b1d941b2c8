//! Object requests: PUT (and CopyObject), GET/HEAD with ranges and conditions, DELETE, and
//! the multipart sub-resources (dispatched to `multipart`).

use std::collections::BTreeMap;

use axum::response::Response;
use cairn_node::ObjectPut;
use cairn_s3_proto::conditional::Conditions;
use cairn_s3_proto::range::{RangeError, parse_range, unsatisfied_content_range};
use cairn_s3_proto::time::http_date;
use cairn_s3_proto::{S3Error, S3ErrorCode, names, xml};
use http::{Method, StatusCode};

use super::bucket::require_bucket;
use super::ingest::{S3Body, header_checksum_meta};
use super::{S3Request, S3Result, cluster_error, decode, empty, err, set_header, xml_response};
use crate::body::to_http;
use crate::objects::{self, ObjectInfo, OpenObject, Opened, SYS_CHECKSUM_PREFIX, USER_META};
use crate::server::RequestCtx;

pub(crate) async fn handle(
    ctx: &RequestCtx,
    req: &S3Request,
    body: axum::body::Body,
) -> S3Result<Response> {
    let bucket = req.bucket()?.to_string();
    let key = req.key.clone().unwrap_or_default();
    let method = req.method().clone();
    if req.has_q("uploadId") || req.has_q("uploads") {
        return super::multipart::handle(ctx, req, &bucket, &key, body).await;
    }
    match method {
        Method::GET | Method::HEAD => {
            if req.has_q("acl") {
                require_bucket(ctx, req, &bucket).await?;
                return Ok(xml_response(StatusCode::OK, super::bucket::acl_xml(req)));
            }
            if req.has_q("tagging") {
                return Ok(xml_response(
                    StatusCode::OK,
                    format!(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Tagging xmlns=\"{}\"><TagSet/></Tagging>",
                        xml::S3_XMLNS
                    ),
                ));
            }
            get(ctx, req, &bucket, &key).await
        }
        Method::PUT => {
            if req.has_q("acl") || req.has_q("tagging") {
                return Err(err(
                    S3ErrorCode::NotImplemented,
                    "object ACLs and tags are not implemented",
                ));
            }
            if req.header("x-amz-copy-source").is_some() {
                return copy(ctx, req, &bucket, &key).await;
            }
            put(ctx, req, &bucket, &key, body).await
        }
        Method::DELETE => {
            require_bucket(ctx, req, &bucket).await?;
            ctx.state
                .objects
                .delete(&req.account, &bucket, &key, true)
                .await
                .map_err(cluster_error)?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        _ => Err(err(
            S3ErrorCode::MethodNotAllowed,
            "The specified method is not allowed against this resource.",
        )),
    }
}

/// User metadata and the content headers S3 keeps with an object.
pub(crate) fn meta_from_headers(req: &S3Request) -> S3Result<BTreeMap<String, String>> {
    let user: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(k, _)| k.starts_with(names::USER_METADATA_PREFIX))
        .cloned()
        .collect();
    names::check_user_metadata(&user)?;
    let mut meta: BTreeMap<String, String> = user
        .into_iter()
        .filter_map(|(k, v)| {
            Some((
                format!(
                    "{USER_META}{}",
                    k.strip_prefix(names::USER_METADATA_PREFIX)?
                ),
                v,
            ))
        })
        .collect();
    for (h, key) in CONTENT_HEADERS {
        if let Some(v) = req.header(h) {
            // aws-chunked is transfer framing, not the object's encoding.
            let v = if *h == "content-encoding" {
                v.split(',')
                    .map(str::trim)
                    .filter(|e| *e != "aws-chunked" && !e.is_empty())
                    .collect::<Vec<_>>()
                    .join(",")
            } else {
                v.to_string()
            };
            if !v.is_empty() {
                meta.insert(key.to_string(), v);
            }
        }
    }
    Ok(meta)
}

const CONTENT_HEADERS: &[(&str, &str)] = &[
    ("content-encoding", objects::SYS_CONTENT_ENCODING),
    ("content-disposition", objects::SYS_CONTENT_DISPOSITION),
    ("content-language", objects::SYS_CONTENT_LANGUAGE),
    ("cache-control", objects::SYS_CACHE_CONTROL),
    ("expires", objects::SYS_EXPIRES),
];

pub(crate) fn content_type(req: &S3Request) -> String {
    req.header("content-type")
        .filter(|c| !c.is_empty())
        .unwrap_or("binary/octet-stream")
        .to_string()
}

async fn put(
    ctx: &RequestCtx,
    req: &S3Request,
    bucket: &str,
    key: &str,
    body: axum::body::Body,
) -> S3Result<Response> {
    require_bucket(ctx, req, bucket).await?;
    let conditions = Conditions::from_headers(&req.headers);
    if !conditions.is_empty() {
        let current = ctx
            .state
            .objects
            .head(&req.account, bucket, key)
            .await
            .map_err(cluster_error)?;
        conditions
            .evaluate_write(
                current
                    .as_ref()
                    .map(|i| (i.etag(), i.last_modified_unix_ms() / 1000)),
            )
            .map_err(|f| f.to_s3_error())?;
    }
    let (decoder, size) = S3Body::for_request(req)?;
    if size > cairn_net::limits::BODY_BYTES_MAX {
        return Err(err(
            S3ErrorCode::EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed object size (5 GiB); use a multipart upload.",
        ));
    }
    let mut meta = meta_from_headers(req)?;
    header_checksum_meta(req, &mut meta);
    let put = ObjectPut {
        account: req.account.clone(),
        container: bucket.to_string(),
        object: key.to_string(),
        size_bytes: size,
        content_type: content_type(req),
        user_meta: meta,
        digest: None,
    };
    let replaced = super::multipart::parts_to_replace(ctx, &req.account, bucket, key).await;
    let answer = write_streamed(ctx, put, decoder, body, size).await?;
    super::multipart::drop_replaced_parts(ctx, &req.account, replaced).await;
    Ok(answer)
}

/// Streams a request body into a write (an object or a part) and answers as S3 does: the
/// ETag, and the checksum when one was sent. The body's own verdict (length, digests) wins
/// over the write's: a refused body is why the write failed.
pub(crate) async fn write_streamed(
    ctx: &RequestCtx,
    put: ObjectPut,
    decoder: S3Body,
    body: axum::body::Body,
    size: u64,
) -> S3Result<Response> {
    let (body, task, digest) = decoder.start(body, size);
    let put = ObjectPut {
        digest: Some(digest),
        ..put
    };
    let written = ctx.state.objects.put(put, body).await;
    let ingested = task
        .await
        .map_err(|e| err(S3ErrorCode::InternalError, format!("body task: {e}")))??;
    written.map_err(cluster_error)?;
    let mut r = empty(StatusCode::OK);
    set_header(&mut r, "etag", &format!("\"{}\"", ingested.md5_hex()));
    if let Some((a, v)) = &ingested.decoder.computed {
        set_header(&mut r, a.header_name(), v);
    }
    Ok(r)
}

/// `whole`: the answer carries the whole object (a stored checksum describes only that).
fn object_headers(r: &mut Response, info: &ObjectInfo, req: &S3Request, whole: bool) {
    set_header(r, "etag", &format!("\"{}\"", info.etag()));
    set_header(r, "last-modified", &http_date(info.last_modified_unix_ms()));
    set_header(r, "content-type", &info.meta.content_type);
    set_header(r, "accept-ranges", "bytes");
    for (k, v) in info.user_meta() {
        set_header(r, &format!("{}{k}", names::USER_METADATA_PREFIX), v);
    }
    for (h, key) in CONTENT_HEADERS {
        if let Some(v) = info.sys(key) {
            set_header(r, h, v);
        }
    }
    if let Some(n) = info.sys(objects::SYS_MPU_PARTS) {
        set_header(r, "x-amz-mp-parts-count", n);
    }
    if whole
        && req
            .header("x-amz-checksum-mode")
            .is_some_and(|m| m.eq_ignore_ascii_case("enabled"))
    {
        for (k, v) in &info.meta.user_meta {
            if let Some(a) = k.strip_prefix(SYS_CHECKSUM_PREFIX) {
                set_header(r, &format!("x-amz-checksum-{a}"), v);
            }
        }
    }
    // Presigned URLs and SDKs may override response headers.
    for (q, h) in [
        ("response-content-type", "content-type"),
        ("response-content-language", "content-language"),
        ("response-expires", "expires"),
        ("response-cache-control", "cache-control"),
        ("response-content-disposition", "content-disposition"),
        ("response-content-encoding", "content-encoding"),
    ] {
        if let Some(v) = req.q(q) {
            set_header(r, h, v);
        }
    }
}

fn no_such_key(key: &str) -> S3Error {
    err(S3ErrorCode::NoSuchKey, "The specified key does not exist.").with_resource(key.to_string())
}

async fn get(ctx: &RequestCtx, req: &S3Request, bucket: &str, key: &str) -> S3Result<Response> {
    let objects = &ctx.state.objects;
    // One retry: an overwrite landing between finding the newest version and reading it
    // makes the read miss that version.
    let mut attempt = 0;
    let open = loop {
        let found = objects.open(&req.account, bucket, key, true).await;
        match found {
            Ok(Some(o)) => break o,
            Ok(None) => {
                require_bucket(ctx, req, bucket).await?;
                return Err(no_such_key(key));
            }
            Err(e) if attempt == 0 => {
                tracing::debug!(error = %e, "open failed; retrying once");
                attempt += 1;
            }
            Err(e) => return Err(cluster_error(e)),
        }
    };
    let OpenObject { info, opened } = open;
    Conditions::from_headers(&req.headers)
        .evaluate_read(Some((info.etag(), info.last_modified_unix_ms() / 1000)))
        .map_err(|f| {
            let e = f.to_s3_error();
            if e.code == S3ErrorCode::NotModified {
                e
            } else {
                e.with_resource(key.to_string())
            }
        })?;
    let size = opened.size();
    let range = match req.header("range") {
        Some(h) => match parse_range(h, size) {
            Ok(r) => r,
            Err(RangeError::Unsatisfiable) => {
                let mut e = err(
                    S3ErrorCode::InvalidRange,
                    "The requested range is not satisfiable",
                );
                e.resource = Some(unsatisfied_content_range(size));
                return Err(e);
            }
        },
        None => None,
    };
    let (status, start, end) = match &range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.start, r.end),
        None => (StatusCode::OK, 0, size),
    };
    let mut response = empty(status);
    object_headers(&mut response, &info, req, range.is_none());
    set_header(&mut response, "content-length", &(end - start).to_string());
    if let Some(r) = &range {
        set_header(&mut response, "content-range", &r.content_range(size));
    }
    if *req.method() == Method::HEAD {
        return Ok(response);
    }
    let span = (range.is_some()).then_some((start, end));
    let body = read_opened(ctx, &req.account, opened, span).await?;
    *response.body_mut() = to_http(body);
    Ok(response)
}

/// `x-amz-copy-source: bucket/key` (URL-encoded, optionally with a leading `/`).
pub(crate) fn copy_source(req: &S3Request) -> S3Result<(String, String)> {
    let raw = req.header("x-amz-copy-source").unwrap_or_default();
    let raw = raw.split_once("?versionId=").map_or(raw, |(p, _)| p);
    let decoded = decode(raw.trim_start_matches('/'))?;
    match decoded.split_once('/') {
        Some((b, k)) if !b.is_empty() && !k.is_empty() => Ok((b.to_string(), k.to_string())),
        _ => Err(err(
            S3ErrorCode::InvalidArgument,
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
        )),
    }
}

/// Opens a copy source and checks the copy-source conditions.
pub(crate) async fn open_source(
    ctx: &RequestCtx,
    req: &S3Request,
) -> S3Result<(String, String, OpenObject)> {
    let (sb, sk) = copy_source(req)?;
    require_bucket(ctx, req, &sb).await?;
    let open = ctx
        .state
        .objects
        .open(&req.account, &sb, &sk, true)
        .await
        .map_err(cluster_error)?
        .ok_or_else(|| no_such_key(&sk))?;
    Conditions::from_copy_source_headers(&req.headers)
        .evaluate_copy_source((open.info.etag(), open.info.last_modified_unix_ms() / 1000))
        .map_err(|f| f.to_s3_error())?;
    Ok((sb, sk, open))
}

/// Streams `[start, end)` of an opened object.
pub(crate) async fn read_opened(
    ctx: &RequestCtx,
    account: &str,
    opened: Opened,
    span: Option<(u64, u64)>,
) -> S3Result<cairn_net::Body> {
    ctx.state
        .objects
        .read_opened(account, opened, span)
        .await
        .map_err(cluster_error)
}

async fn copy(ctx: &RequestCtx, req: &S3Request, bucket: &str, key: &str) -> S3Result<Response> {
    require_bucket(ctx, req, bucket).await?;
    let (sb, sk, open) = open_source(ctx, req).await?;
    let replace = match req.header("x-amz-metadata-directive") {
        None | Some("COPY") => false,
        Some("REPLACE") => true,
        Some(other) => {
            return Err(err(
                S3ErrorCode::InvalidArgument,
                format!("Unknown metadata directive {other}"),
            ));
        }
    };
    if sb == bucket && sk == key && !replace {
        return Err(err(
            S3ErrorCode::InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
        ));
    }
    let info = open.info.clone();
    let (meta, content_type) = if replace {
        (meta_from_headers(req)?, content_type(req))
    } else {
        let meta = info
            .meta
            .user_meta
            .iter()
            .filter(|(k, _)| {
                k.starts_with(USER_META)
                    || CONTENT_HEADERS.iter().any(|(_, s)| s == k)
                    || k.starts_with(SYS_CHECKSUM_PREFIX)
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (meta, info.meta.content_type.clone())
    };
    let size = open.opened.size();
    // The source's bytes are all read before the write completes, so replacing a multipart
    // object by a copy of itself may drop its old parts afterwards.
    let replaced = super::multipart::parts_to_replace(ctx, &req.account, bucket, key).await;
    let body = read_opened(ctx, &req.account, open.opened, None).await?;
    let put = ObjectPut {
        account: req.account.clone(),
        container: bucket.to_string(),
        object: key.to_string(),
        size_bytes: size,
        content_type,
        user_meta: meta,
        digest: None,
    };
    let written = ctx
        .state
        .objects
        .put(put, body)
        .await
        .map_err(cluster_error)?;
    super::multipart::drop_replaced_parts(ctx, &req.account, replaced).await;
    let etag = ctx
        .state
        .objects
        .head(&req.account, bucket, key)
        .await
        .map_err(cluster_error)?
        .map(|i| i.etag().to_string())
        .unwrap_or_default();
    Ok(xml_response(
        StatusCode::OK,
        xml::render_copy_object_result(written.timestamp.wall_micros / 1000, &etag),
    ))
}
