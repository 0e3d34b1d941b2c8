//! Multipart uploads. An upload is a marker object `<key>/<upload id>` in the bucket's
//! segment container `<bucket>+segments` (as Swift's s3api lays it out), its parts are
//! `<key>/<upload id>/<part number>` there, and completing it writes a manifest (the same
//! kind Swift SLOs use) into the bucket, listed with the parts' total size and the
//! `md5-of-md5s-N` ETag.

use std::collections::BTreeMap;

use axum::response::Response;
use cairn_engine::{ListItem, ListQuery};
use cairn_node::{ClusterClient, ObjectPut};
use cairn_s3_proto::range::parse_range;
use cairn_s3_proto::xml::{self, ListParts, ListUploads, PartEntry, UploadEntry};
use cairn_s3_proto::{S3Error, S3ErrorCode};
use cairn_swift_proto::{SloManifest, SloSegment};
use http::{Method, StatusCode};
use md5::Digest;

use super::bucket::{owner, require_bucket};
use super::ingest::S3Body;
use super::object::{content_type, meta_from_headers, open_source, read_opened, write_streamed};
use super::{S3Request, S3Result, cluster_error, empty, err, xml_response};
use crate::body::read_small;
use crate::objects::{self, SYS_MPU_PARTS};
use crate::server::RequestCtx;

/// Content type marking an upload's marker object.
const UPLOAD_MARKER_TYPE: &str = "application/x-cairn-multipart-upload";
/// The marker keeps the final object's content type here.
const SYS_UPLOAD_CONTENT_TYPE: &str = "sys-upload-content-type";
/// S3's smallest part (all but the last).
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;
/// S3's part size and count limits.
pub const MAX_PART_BYTES: u64 = 5 * 1024 * 1024 * 1024;
pub const MAX_PART_NUMBER: u32 = 10_000;

pub(crate) fn segments_container(bucket: &str) -> String {
    format!("{bucket}+segments")
}

fn marker_name(key: &str, upload_id: &str) -> String {
    format!("{key}/{upload_id}")
}

fn part_name(key: &str, upload_id: &str, part: u32) -> String {
    format!("{key}/{upload_id}/{part:05}")
}

/// The parts of the completed multipart upload now stored at `key`, if it is one: an object
/// owns its parts in S3, so they go when it is replaced. Bounded look-ups: nothing at all
/// unless the bucket ever had a multipart upload (its segments container exists).
pub(crate) async fn parts_to_replace(
    ctx: &RequestCtx,
    account: &str,
    bucket: &str,
    key: &str,
) -> Option<SloManifest> {
    let objects = &ctx.state.objects;
    let segments = segments_container(bucket);
    if !objects
        .container_exists_cached(account, &segments)
        .await
        .unwrap_or(false)
    {
        return None;
    }
    // HEAD first: opening a plain object would start reading its bytes.
    let head = objects.head(account, bucket, key).await.ok()??;
    if head.manifest_kind() != Some("mpu") {
        return None;
    }
    let open = objects.open(account, bucket, key, true).await.ok()??;
    let crate::objects::Opened::Manifest(manifest) = open.opened else {
        return None;
    };
    // Only parts this key's uploads created: a manifest naming anything else is not ours to
    // clean up.
    let own = format!("{key}/");
    let segments_of_key: Vec<SloSegment> = manifest
        .segments
        .into_iter()
        .filter(|s| s.container == segments && s.object.starts_with(&own))
        .collect();
    Some(SloManifest {
        segments: segments_of_key,
    })
}

/// Deletes the parts of an object that a write just replaced (best effort: a failure leaves
/// garbage, never a broken object).
pub(crate) async fn drop_replaced_parts(
    ctx: &RequestCtx,
    account: &str,
    parts: Option<SloManifest>,
) {
    if let Some(parts) = parts
        && !parts.segments.is_empty()
    {
        ctx.state.objects.delete_segments(account, &parts).await;
    }
}

fn no_such_upload(upload_id: &str) -> S3Error {
    err(
        S3ErrorCode::NoSuchUpload,
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
    )
    .with_resource(upload_id.to_string())
}

fn valid_upload_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

pub(crate) async fn handle(
    ctx: &RequestCtx,
    req: &S3Request,
    bucket: &str,
    key: &str,
    body: axum::body::Body,
) -> S3Result<Response> {
    require_bucket(ctx, req, bucket).await?;
    let method = req.method().clone();
    if req.has_q("uploads") {
        return match method {
            Method::POST => create(ctx, req, bucket, key).await,
            _ => Err(err(S3ErrorCode::MethodNotAllowed, "use POST ?uploads")),
        };
    }
    let upload_id = req.q("uploadId").unwrap_or_default().to_string();
    let marker = if valid_upload_id(&upload_id) {
        ctx.state
            .objects
            .head(
                &req.account,
                &segments_container(bucket),
                &marker_name(key, &upload_id),
            )
            .await
            .map_err(cluster_error)?
            .filter(|m| m.meta.content_type == UPLOAD_MARKER_TYPE)
    } else {
        None
    };
    let Some(marker) = marker else {
        return Err(no_such_upload(&upload_id));
    };
    match method {
        Method::PUT => upload_part(ctx, req, bucket, key, &upload_id, body).await,
        Method::GET => list_parts(ctx, req, bucket, key, &upload_id).await,
        Method::POST => complete(ctx, req, bucket, key, &upload_id, marker, body).await,
        Method::DELETE => {
            abort(ctx, req, bucket, key, &upload_id).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        _ => Err(err(
            S3ErrorCode::MethodNotAllowed,
            "The specified method is not allowed against this resource.",
        )),
    }
}

async fn create(ctx: &RequestCtx, req: &S3Request, bucket: &str, key: &str) -> S3Result<Response> {
    let client = ctx.state.objects.client();
    let segments = segments_container(bucket);
    if client
        .head_container(&req.account, &segments)
        .await
        .map_err(cluster_error)?
        .is_none()
    {
        // Parts are kept under the bucket's policy (an erasure-coded bucket's parts are
        // erasure-coded too).
        let policy = client
            .container_info(&req.account, bucket)
            .await
            .map_err(cluster_error)?
            .map(|info| ClusterClient::policy_of_record(&info))
            .unwrap_or_else(|| client.policies().default_policy().index);
        let mut meta = BTreeMap::new();
        crate::policy::record_policy(&mut meta, policy);
        client
            .put_container(&req.account, &segments, meta)
            .await
            .map_err(cluster_error)?;
    }
    ctx.state.objects.note_container(&req.account, &segments);
    let upload_id = crate::cluster::random_hex(16)
        .map_err(|e| err(S3ErrorCode::InternalError, e.to_string()))?;
    let mut meta = meta_from_headers(req)?;
    meta.insert(SYS_UPLOAD_CONTENT_TYPE.into(), content_type(req));
    let put = ObjectPut {
        account: req.account.clone(),
        container: segments,
        object: marker_name(key, &upload_id),
        size_bytes: 0,
        content_type: UPLOAD_MARKER_TYPE.into(),
        user_meta: meta,
        digest: None,
    };
    ctx.state
        .objects
        .put(put, cairn_net::Body::Empty)
        .await
        .map_err(cluster_error)?;
    Ok(xml_response(
        StatusCode::OK,
        xml::render_initiate_multipart(bucket, key, &upload_id),
    ))
}

fn part_number(req: &S3Request) -> S3Result<u32> {
    req.q("partNumber")
        .and_then(|p| p.parse::<u32>().ok())
        .filter(|n| (1..=MAX_PART_NUMBER).contains(n))
        .ok_or_else(|| {
            err(
                S3ErrorCode::InvalidArgument,
                format!(
                    "Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive"
                ),
            )
        })
}

async fn upload_part(
    ctx: &RequestCtx,
    req: &S3Request,
    bucket: &str,
    key: &str,
    upload_id: &str,
    body: axum::body::Body,
) -> S3Result<Response> {
    let part = part_number(req)?;
    let name = part_name(key, upload_id, part);
    let container = segments_container(bucket);
    if req.header("x-amz-copy-source").is_some() {
        // UploadPartCopy: the part's bytes come from another object (or a range of it).
        let (_, _, open) = open_source(ctx, req).await?;
        let size = open.opened.size();
        let span = match req.header("x-amz-copy-source-range") {
            Some(h) => {
                let r = parse_range(h, size)
                    .map_err(|e| e.to_s3_error())?
                    .ok_or_else(|| {
                        err(
                            S3ErrorCode::InvalidArgument,
                            "The x-amz-copy-source-range value must be of the form bytes=first-last",
                        )
                    })?;
                Some((r.start, r.end))
            }
            None => None,
        };
        let (start, end) = span.unwrap_or((0, size));
        let body = read_opened(ctx, &req.account, open.opened, span).await?;
        let put = ObjectPut {
            account: req.account.clone(),
            container: container.clone(),
            object: name.clone(),
            size_bytes: end - start,
            content_type: "application/octet-stream".into(),
            user_meta: BTreeMap::new(),
            digest: None,
        };
        let written = ctx
            .state
            .objects
            .put(put, body)
            .await
            .map_err(cluster_error)?;
        let etag = ctx
            .state
            .objects
            .head(&req.account, &container, &name)
            .await
            .map_err(cluster_error)?
            .map(|i| i.etag().to_string())
            .unwrap_or_default();
        return Ok(xml_response(
            StatusCode::OK,
            xml::render_copy_part_result(written.timestamp.wall_micros / 1000, &etag),
        ));
    }
    let (decoder, size) = S3Body::for_request(req)?;
    if size > MAX_PART_BYTES {
        return Err(err(
            S3ErrorCode::EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed part size (5 GiB).",
        ));
    }
    let put = ObjectPut {
        account: req.account.clone(),
        container,
        object: name,
        size_bytes: size,
        content_type: "application/octet-stream".into(),
        user_meta: BTreeMap::new(),
        digest: None,
    };
    write_streamed(ctx, put, decoder, body, size).await
}

/// Every stored part of an upload: `(number, etag, size, modified ms)`, in number order.
async fn stored_parts(
    ctx: &RequestCtx,
    req: &S3Request,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> S3Result<Vec<(u32, String, u64, u64)>> {
    let prefix = format!("{}/", marker_name(key, upload_id));
    let mut parts = Vec::new();
    let mut marker = None;
    loop {
        let page = ctx
            .state
            .objects
            .client()
            .list_objects(
                &req.account,
                &segments_container(bucket),
                ListQuery {
                    prefix: prefix.clone(),
                    marker: marker.clone(),
                    limit: 1000,
                    ..ListQuery::default()
                },
            )
            .await
            .map_err(cluster_error)?;
        for item in page.items {
            if let ListItem::Entry(e) = item
                && let Some(n) = e.name.strip_prefix(&prefix).and_then(|n| n.parse().ok())
            {
                parts.push((n, e.etag, e.size_bytes, e.timestamp.wall_micros / 1000));
            }
        }
        match (page.truncated, page.next_marker) {
            (true, Some(m)) if parts.len() <= MAX_PART_NUMBER as usize => marker = Some(m),
            _ => break,
        }
    }
    Ok(parts)
}

async fn list_parts(
    ctx: &RequestCtx,
    req: &S3Request,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> S3Result<Response> {
    let after: u32 = req
        .q("part-number-marker")
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    let max: usize = req
        .q("max-parts")
        .and_then(|m| m.parse().ok())
        .unwrap_or(1000)
        .min(1000);
    let all = stored_parts(ctx, req, bucket, key, upload_id).await?;
    let rest: Vec<_> = all.into_iter().filter(|p| p.0 > after).collect();
    let truncated = rest.len() > max;
    let page: Vec<PartEntry> = rest
        .into_iter()
        .take(max)
        .map(|(n, etag, size, ms)| PartEntry {
            part_number: n,
            last_modified_unix_ms: ms,
            etag,
            size,
        })
        .collect();
    let doc = ListParts {
        bucket: bucket.to_string(),
        key: key.to_string(),
        upload_id: upload_id.to_string(),
        owner: Some(owner(req)),
        part_number_marker: after,
        next_part_number_marker: page.last().map(|p| p.part_number).filter(|_| truncated),
        max_parts: u32::try_from(max).unwrap_or(1000),
        is_truncated: truncated,
        parts: page,
    };
    Ok(xml_response(StatusCode::OK, xml::render_list_parts(&doc)))
}

#[allow(clippy::too_many_arguments)]
async fn complete(
    ctx: &RequestCtx,
    req: &S3Request,
    bucket: &str,
    key: &str,
    upload_id: &str,
    marker: crate::objects::ObjectInfo,
    body: axum::body::Body,
) -> S3Result<Response> {
    let doc = read_small(body, xml::MAX_XML_BODY).await?;
    let requested = xml::parse_complete_multipart(&doc)?;
    if requested.is_empty() {
        return Err(err(
            S3ErrorCode::MalformedXML,
            "You must specify at least one part",
        ));
    }
    let stored = stored_parts(ctx, req, bucket, key, upload_id).await?;
    let by_number: BTreeMap<u32, &(u32, String, u64, u64)> =
        stored.iter().map(|p| (p.0, p)).collect();
    let container = segments_container(bucket);
    let mut segments = Vec::with_capacity(requested.len());
    let mut md5s = md5::Md5::new();
    for (i, want) in requested.iter().enumerate() {
        let Some(&&(n, ref etag, size, _)) = by_number.get(&want.part_number) else {
            return Err(err(
                S3ErrorCode::InvalidPart,
                format!("Part {} was not uploaded", want.part_number),
            ));
        };
        if want.etag.trim_matches('"') != etag {
            return Err(err(
                S3ErrorCode::InvalidPart,
                format!("Part {n}'s ETag does not match the uploaded part"),
            ));
        }
        if i + 1 < requested.len() && size < MIN_PART_BYTES {
            return Err(err(
                S3ErrorCode::EntityTooSmall,
                format!("Part {n} is {size} bytes; every part but the last must be at least 5 MiB"),
            ));
        }
        let raw = hex::decode(etag).map_err(|_| {
            err(
                S3ErrorCode::InternalError,
                "a stored part has a malformed ETag",
            )
        })?;
        md5s.update(&raw);
        segments.push(SloSegment {
            container: container.clone(),
            object: part_name(key, upload_id, n),
            etag: etag.clone(),
            size_bytes: size,
            content_type: None,
            range: None,
        });
    }
    let etag = format!("{}-{}", hex::encode(md5s.finalize()), requested.len());
    let manifest = SloManifest { segments };
    let json = manifest.to_stored_json();
    let mut meta: BTreeMap<String, String> = marker
        .meta
        .user_meta
        .iter()
        .filter(|(k, _)| k.as_str() != SYS_UPLOAD_CONTENT_TYPE)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    meta.insert(SYS_MPU_PARTS.into(), requested.len().to_string());
    let meta = objects::manifest_meta("mpu", manifest.total_size(), &etag, meta);
    let content_type = marker
        .sys(SYS_UPLOAD_CONTENT_TYPE)
        .unwrap_or("binary/octet-stream")
        .to_string();
    let put = ObjectPut {
        account: req.account.clone(),
        container: bucket.to_string(),
        object: key.to_string(),
        size_bytes: json.len() as u64,
        content_type,
        user_meta: meta,
        digest: None,
    };
    let replaced = parts_to_replace(ctx, &req.account, bucket, key).await;
    ctx.state
        .objects
        .put(put, cairn_net::Body::Full(json.into()))
        .await
        .map_err(cluster_error)?;
    drop_replaced_parts(ctx, &req.account, replaced).await;
    // Parts left out of the object, and the marker, are no longer needed.
    let used: std::collections::BTreeSet<u32> = requested.iter().map(|p| p.part_number).collect();
    let client = ctx.state.objects.client();
    for (n, ..) in stored.iter().filter(|p| !used.contains(&p.0)) {
        let _ = client
            .delete_object(&req.account, &container, &part_name(key, upload_id, *n))
            .await;
    }
    let _ = client
        .delete_object(&req.account, &container, &marker_name(key, upload_id))
        .await;
    Ok(xml_response(
        StatusCode::OK,
        xml::render_complete_multipart(&format!("/{bucket}/{key}"), bucket, key, &etag),
    ))
}

async fn abort(
    ctx: &RequestCtx,
    req: &S3Request,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> S3Result<()> {
    let container = segments_container(bucket);
    let client = ctx.state.objects.client();
    for (n, ..) in stored_parts(ctx, req, bucket, key, upload_id).await? {
        client
            .delete_object(&req.account, &container, &part_name(key, upload_id, n))
            .await
            .map_err(cluster_error)?;
    }
    client
        .delete_object(&req.account, &container, &marker_name(key, upload_id))
        .await
        .map_err(cluster_error)?;
    Ok(())
}

pub(crate) async fn list_uploads(
    ctx: &RequestCtx,
    req: &S3Request,
    bucket: &str,
) -> S3Result<Response> {
    let prefix = req.q("prefix").unwrap_or("").to_string();
    let key_marker = req.q("key-marker").unwrap_or("").to_string();
    let max: usize = req
        .q("max-uploads")
        .and_then(|m| m.parse().ok())
        .unwrap_or(1000)
        .min(1000);
    let container = segments_container(bucket);
    let mut uploads = Vec::new();
    let mut marker = (!key_marker.is_empty()).then(|| key_marker.clone());
    let mut truncated = false;
    'pages: loop {
        let page = match ctx
            .state
            .objects
            .client()
            .list_objects(
                &req.account,
                &container,
                ListQuery {
                    prefix: prefix.clone(),
                    marker: marker.clone(),
                    limit: 1000,
                    ..ListQuery::default()
                },
            )
            .await
        {
            Ok(p) => p,
            Err(e) => return Err(cluster_error(e)),
        };
        for item in page.items {
            if let ListItem::Entry(e) = item
                && e.content_type == UPLOAD_MARKER_TYPE
                && let Some((k, id)) = e.name.rsplit_once('/')
                && valid_upload_id(id)
            {
                if uploads.len() == max {
                    truncated = true;
                    break 'pages;
                }
                uploads.push(UploadEntry {
                    key: k.to_string(),
                    upload_id: id.to_string(),
                    initiated_unix_ms: e.timestamp.wall_micros / 1000,
                    owner: Some(owner(req)),
                });
            }
        }
        match (page.truncated, page.next_marker) {
            (true, Some(m)) => marker = Some(m),
            _ => break,
        }
    }
    let doc = ListUploads {
        bucket: bucket.to_string(),
        key_marker,
        upload_id_marker: req.q("upload-id-marker").unwrap_or("").to_string(),
        next_key_marker: uploads.last().map(|u| u.key.clone()).filter(|_| truncated),
        next_upload_id_marker: uploads
            .last()
            .map(|u| u.upload_id.clone())
            .filter(|_| truncated),
        prefix,
        delimiter: None,
        max_uploads: u32::try_from(max).unwrap_or(1000),
        is_truncated: truncated,
        uploads,
        common_prefixes: Vec::new(),
        encoding_type_url: req.q("encoding-type") == Some("url"),
    };
    Ok(xml_response(StatusCode::OK, xml::render_list_uploads(&doc)))
}
