//! Bucket requests: create, delete, head, location, listings (v1, v2, versions, uploads),
//! multi-object delete, and the read-only ACL/versioning answers tools ask for.

use std::collections::BTreeMap;

use axum::response::Response;
use cairn_engine::{ListItem, ListQuery};
use cairn_node::ClusterClient;
use cairn_s3_proto::xml::{
    self, BucketEntry, DeleteErrorEntry, DeleteResult, DeletedEntry, ListObjectsV1, ListObjectsV2,
    ListVersions, ObjectEntry, Owner,
};
use cairn_s3_proto::{S3ErrorCode, names};
use futures::StreamExt;
use http::{Method, StatusCode};

use super::{S3Request, S3Result, cluster_error, empty, err, xml_response};
use crate::body::read_small;
use crate::policy;
use crate::server::RequestCtx;

/// A bucket's region, kept in its container record.
const SYS_LOCATION: &str = "sys-location";
/// Objects a DeleteObjects request deletes at once.
const DELETE_CONCURRENCY: usize = 16;
/// S3's page limit for listings.
pub(crate) const MAX_KEYS: usize = 1000;

pub(crate) fn owner(req: &S3Request) -> Owner {
    Owner {
        id: req.account.clone(),
        display_name: req.principal.user_name.clone(),
    }
}

/// The bucket must exist in the caller's account.
pub(crate) async fn require_bucket(
    ctx: &RequestCtx,
    req: &S3Request,
    bucket: &str,
) -> S3Result<()> {
    let found = ctx
        .state
        .objects
        .container_exists(&req.account, bucket)
        .await
        .map_err(cluster_error)?;
    if !found {
        return Err(err(
            S3ErrorCode::NoSuchBucket,
            "The specified bucket does not exist",
        )
        .with_resource(bucket.to_string()));
    }
    Ok(())
}

pub(crate) async fn list_buckets(ctx: &RequestCtx, req: &S3Request) -> S3Result<Response> {
    let client = ctx.state.objects.client();
    let mut buckets = Vec::new();
    let mut marker = None;
    loop {
        let page = client
            .list_containers(
                &req.account,
                ListQuery {
                    marker: marker.clone(),
                    limit: 1000,
                    ..ListQuery::default()
                },
            )
            .await
            .map_err(cluster_error)?;
        for item in &page.items {
            // Swift containers that are not valid bucket names (e.g. `x+segments`) stay
            // Swift-only, as with Swift's own s3api.
            if let ListItem::Entry(e) = item
                && names::validate_bucket_name(&e.name).is_ok()
            {
                buckets.push(BucketEntry {
                    name: e.name.clone(),
                    creation_date_unix_ms: e.timestamp.wall_micros / 1000,
                });
            }
        }
        match (page.truncated, page.next_marker) {
            (true, Some(m)) if buckets.len() < 100_000 => marker = Some(m),
            _ => break,
        }
    }
    Ok(xml_response(
        StatusCode::OK,
        xml::render_list_buckets(&owner(req), &buckets),
    ))
}

pub(crate) async fn handle(
    ctx: &RequestCtx,
    req: &S3Request,
    body: axum::body::Body,
) -> S3Result<Response> {
    let bucket = req.bucket()?.to_string();
    let method = req.method().clone();
    match method {
        Method::PUT => {
            if req.has_q("versioning")
                || req.has_q("acl")
                || req.has_q("tagging")
                || req.has_q("cors")
                || req.has_q("lifecycle")
                || req.has_q("policy")
            {
                return Err(err(
                    S3ErrorCode::NotImplemented,
                    "This bucket setting is not implemented",
                ));
            }
            create(ctx, req, &bucket, body).await
        }
        Method::HEAD => {
            let client = ctx.state.objects.client();
            let info = client
                .container_info(&req.account, &bucket)
                .await
                .map_err(cluster_error)?
                .ok_or_else(|| {
                    err(
                        S3ErrorCode::NoSuchBucket,
                        "The specified bucket does not exist",
                    )
                    .with_resource(bucket.clone())
                })?;
            let mut r = empty(StatusCode::OK);
            super::set_header(&mut r, "x-amz-bucket-region", &ctx.state.region);
            super::set_header(
                &mut r,
                policy::S3_POLICY_HEADER,
                &policy::policy_name(client.policies(), ClusterClient::policy_of_record(&info)),
            );
            Ok(r)
        }
        Method::DELETE => {
            if req.has_q("cors")
                || req.has_q("tagging")
                || req.has_q("lifecycle")
                || req.has_q("policy")
            {
                return Ok(empty(StatusCode::NO_CONTENT));
            }
            require_bucket(ctx, req, &bucket).await?;
            let client = ctx.state.objects.client();
            ctx.state.objects.forget_container(&req.account, &bucket);
            client
                .delete_container(&req.account, &bucket)
                .await
                .map_err(|e| cluster_error(e).with_resource(bucket.clone()))?;
            // The multipart segment container goes too when nothing is left in it.
            let _ = client
                .delete_container(&req.account, &super::multipart::segments_container(&bucket))
                .await;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        Method::POST if req.has_q("delete") => delete_objects(ctx, req, &bucket, body).await,
        Method::GET => {
            require_bucket(ctx, req, &bucket).await?;
            if req.has_q("location") {
                let loc = (ctx.state.region != "us-east-1").then_some(ctx.state.region.as_str());
                return Ok(xml_response(
                    StatusCode::OK,
                    xml::render_location_constraint(loc),
                ));
            }
            if req.has_q("versioning") {
                return Ok(xml_response(
                    StatusCode::OK,
                    format!(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<VersioningConfiguration xmlns=\"{}\"/>",
                        xml::S3_XMLNS
                    ),
                ));
            }
            if req.has_q("acl") {
                return Ok(xml_response(StatusCode::OK, acl_xml(req)));
            }
            if req.has_q("uploads") {
                return super::multipart::list_uploads(ctx, req, &bucket).await;
            }
            if req.has_q("versions") {
                return list_versions(ctx, req, &bucket).await;
            }
            if [
                "policy",
                "cors",
                "lifecycle",
                "tagging",
                "website",
                "replication",
                "encryption",
                "logging",
                "notification",
                "object-lock",
                "ownershipControls",
                "publicAccessBlock",
                "accelerate",
                "requestPayment",
            ]
            .iter()
            .any(|q| req.has_q(q))
            {
                return Err(err(
                    S3ErrorCode::NotImplemented,
                    "This bucket setting is not implemented",
                ));
            }
            if req.q("list-type") == Some("2") {
                list_v2(ctx, req, &bucket).await
            } else {
                list_v1(ctx, req, &bucket).await
            }
        }
        _ => Err(err(
            S3ErrorCode::MethodNotAllowed,
            "The specified method is not allowed against this resource.",
        )),
    }
}

pub(crate) fn acl_xml(req: &S3Request) -> String {
    let o = owner(req);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<AccessControlPolicy xmlns=\"{ns}\"><Owner><ID>{id}</ID><DisplayName>{name}</DisplayName></Owner><AccessControlList><Grant><Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"CanonicalUser\"><ID>{id}</ID><DisplayName>{name}</DisplayName></Grantee><Permission>FULL_CONTROL</Permission></Grant></AccessControlList></AccessControlPolicy>",
        ns = xml::S3_XMLNS,
        id = xml::escape::escape_text(&o.id),
        name = xml::escape::escape_text(&o.display_name),
    )
}

async fn create(
    ctx: &RequestCtx,
    req: &S3Request,
    bucket: &str,
    body: axum::body::Body,
) -> S3Result<Response> {
    names::validate_bucket_name(bucket)?;
    let doc = read_small(body, xml::MAX_XML_BODY).await?;
    let location = xml::parse_create_bucket(&doc)?;
    let client = ctx.state.objects.client();
    let chosen = policy::choose_s3(
        client.policies(),
        &ctx.state.region,
        req.header(policy::S3_POLICY_HEADER),
        location.as_deref(),
    )
    .map_err(|(code, message)| err(code, message).with_resource(bucket.to_string()))?;
    // An existing bucket keeps its policy whatever this request names.
    if client
        .container_info(&req.account, bucket)
        .await
        .map_err(cluster_error)?
        .is_some()
    {
        return Err(err(
            S3ErrorCode::BucketAlreadyOwnedByYou,
            "Your previous request to create the named bucket succeeded and you already own it.",
        )
        .with_resource(bucket.to_string()));
    }
    let mut meta = BTreeMap::new();
    meta.insert(SYS_LOCATION.to_string(), ctx.state.region.clone());
    policy::record_policy(&mut meta, chosen);
    client
        .put_container(&req.account, bucket, meta)
        .await
        .map_err(cluster_error)?;
    let mut r = empty(StatusCode::OK);
    super::set_header(&mut r, "location", &format!("/{bucket}"));
    Ok(r)
}

fn max_keys(req: &S3Request, name: &str) -> S3Result<usize> {
    match req.q(name) {
        None => Ok(MAX_KEYS),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(|n| usize::try_from(n).unwrap_or(MAX_KEYS).min(MAX_KEYS))
            .ok_or_else(|| {
                err(
                    S3ErrorCode::InvalidArgument,
                    format!("{name} must be a non-negative integer"),
                )
            }),
    }
}

struct Page {
    contents: Vec<ObjectEntry>,
    prefixes: Vec<String>,
    truncated: bool,
    next_marker: Option<String>,
}

async fn list_page(
    ctx: &RequestCtx,
    req: &S3Request,
    bucket: &str,
    marker: Option<String>,
    limit: usize,
    with_owner: bool,
) -> S3Result<Page> {
    let prefix = req.q("prefix").unwrap_or("").to_string();
    let delimiter = req
        .q("delimiter")
        .filter(|d| !d.is_empty())
        .map(str::to_string);
    if limit == 0 {
        return Ok(Page {
            contents: Vec::new(),
            prefixes: Vec::new(),
            truncated: false,
            next_marker: None,
        });
    }
    let mut contents = Vec::new();
    let mut prefixes = Vec::new();
    let mut marker = marker;
    // The engine may return a short page when it hit its scan bound; keep asking until the
    // page is full or the listing ends.
    loop {
        let page = ctx
            .state
            .objects
            .client()
            .list_objects(
                &req.account,
                bucket,
                ListQuery {
                    prefix: prefix.clone(),
                    delimiter: delimiter.clone(),
                    marker: marker.clone(),
                    limit: limit - contents.len() - prefixes.len(),
                    ..ListQuery::default()
                },
            )
            .await
            .map_err(cluster_error)?;
        for item in page.items {
            match item {
                ListItem::Entry(e) => contents.push(ObjectEntry {
                    key: e.name,
                    last_modified_unix_ms: e.timestamp.wall_micros / 1000,
                    etag: e.etag,
                    size: e.size_bytes,
                    owner: with_owner.then(|| owner(req)),
                }),
                ListItem::Prefix(p) => prefixes.push(p),
            }
        }
        let full = contents.len() + prefixes.len() >= limit;
        match (page.truncated, page.next_marker) {
            (true, Some(m)) if !full => marker = Some(m),
            (true, Some(m)) => {
                return Ok(Page {
                    contents,
                    prefixes,
                    truncated: true,
                    next_marker: Some(m),
                });
            }
            _ => {
                return Ok(Page {
                    contents,
                    prefixes,
                    truncated: false,
                    next_marker: None,
                });
            }
        }
    }
}

fn encoding_url(req: &S3Request) -> S3Result<bool> {
    match req.q("encoding-type") {
        None => Ok(false),
        Some("url") => Ok(true),
        Some(other) => Err(err(
            S3ErrorCode::InvalidArgument,
            format!("Invalid Encoding Method specified in Request: {other}"),
        )),
    }
}

async fn list_v1(ctx: &RequestCtx, req: &S3Request, bucket: &str) -> S3Result<Response> {
    let limit = max_keys(req, "max-keys")?;
    let marker = req
        .q("marker")
        .filter(|m| !m.is_empty())
        .map(str::to_string);
    let page = list_page(ctx, req, bucket, marker.clone(), limit, true).await?;
    let delimiter = req
        .q("delimiter")
        .filter(|d| !d.is_empty())
        .map(str::to_string);
    let doc = ListObjectsV1 {
        bucket: bucket.to_string(),
        prefix: req.q("prefix").unwrap_or("").to_string(),
        marker: marker.unwrap_or_default(),
        next_marker: if page.truncated && delimiter.is_some() {
            page.next_marker
        } else {
            None
        },
        max_keys: u32::try_from(limit).unwrap_or(1000),
        delimiter,
        is_truncated: page.truncated,
        contents: page.contents,
        common_prefixes: page.prefixes,
        encoding_type_url: encoding_url(req)?,
    };
    Ok(xml_response(
        StatusCode::OK,
        xml::render_list_objects_v1(&doc),
    ))
}

fn token_encode(marker: &str) -> String {
    hex::encode(marker.as_bytes())
}

fn token_decode(token: &str) -> S3Result<String> {
    hex::decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            err(
                S3ErrorCode::InvalidArgument,
                "The continuation token provided is incorrect",
            )
        })
}

async fn list_v2(ctx: &RequestCtx, req: &S3Request, bucket: &str) -> S3Result<Response> {
    let limit = max_keys(req, "max-keys")?;
    let token = req.q("continuation-token").map(str::to_string);
    let start_after = req
        .q("start-after")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let marker = match &token {
        Some(t) => Some(token_decode(t)?),
        None => start_after.clone(),
    };
    let fetch_owner = req.q("fetch-owner") == Some("true");
    let page = list_page(ctx, req, bucket, marker, limit, fetch_owner).await?;
    let doc = ListObjectsV2 {
        bucket: bucket.to_string(),
        prefix: req.q("prefix").unwrap_or("").to_string(),
        delimiter: req
            .q("delimiter")
            .filter(|d| !d.is_empty())
            .map(str::to_string),
        max_keys: u32::try_from(limit).unwrap_or(1000),
        is_truncated: page.truncated,
        continuation_token: token,
        next_continuation_token: page.next_marker.as_deref().map(token_encode),
        start_after,
        fetch_owner,
        contents: page.contents,
        common_prefixes: page.prefixes,
        encoding_type_url: encoding_url(req)?,
    };
    Ok(xml_response(
        StatusCode::OK,
        xml::render_list_objects_v2(&doc),
    ))
}

/// ListObjectVersions on an unversioned bucket: every current object, version `null`.
async fn list_versions(ctx: &RequestCtx, req: &S3Request, bucket: &str) -> S3Result<Response> {
    let limit = max_keys(req, "max-keys")?;
    let marker = req
        .q("key-marker")
        .filter(|m| !m.is_empty())
        .map(str::to_string);
    let page = list_page(ctx, req, bucket, marker.clone(), limit, true).await?;
    let doc = ListVersions {
        bucket: bucket.to_string(),
        prefix: req.q("prefix").unwrap_or("").to_string(),
        key_marker: marker.unwrap_or_default(),
        version_id_marker: String::new(),
        next_key_marker: page.next_marker.clone().filter(|_| page.truncated),
        next_version_id_marker: page.truncated.then(|| "null".to_string()),
        max_keys: u32::try_from(limit).unwrap_or(1000),
        delimiter: req
            .q("delimiter")
            .filter(|d| !d.is_empty())
            .map(str::to_string),
        is_truncated: page.truncated,
        versions: page.contents,
        common_prefixes: page.prefixes,
        encoding_type_url: encoding_url(req)?,
    };
    Ok(xml_response(
        StatusCode::OK,
        xml::render_list_versions(&doc),
    ))
}

async fn delete_objects(
    ctx: &RequestCtx,
    req: &S3Request,
    bucket: &str,
    body: axum::body::Body,
) -> S3Result<Response> {
    require_bucket(ctx, req, bucket).await?;
    let doc = read_small(body, xml::MAX_XML_BODY).await?;
    if let Some(md5) = req.header("content-md5") {
        use md5::Digest;
        let got: [u8; 16] = md5::Md5::digest(&doc).into();
        if !cairn_s3_proto::checksum::content_md5_matches(md5, &got)? {
            return Err(err(
                S3ErrorCode::BadDigest,
                "The Content-MD5 you specified did not match what we received.",
            ));
        }
    }
    let request = xml::parse_delete(&doc)?;
    // Deletes run a bounded number at a time; answers keep the request's order.
    let objects = &ctx.state.objects;
    let account = req.account.as_str();
    let outcomes: Vec<_> = futures::stream::iter(request.objects.into_iter().map(|o| async move {
        let r = objects.delete(account, bucket, &o.key, true).await;
        (o, r)
    }))
    .buffered(DELETE_CONCURRENCY)
    .collect()
    .await;
    let mut result = DeleteResult::default();
    for (o, r) in outcomes {
        match r {
            Ok(_) => {
                if !request.quiet {
                    result.deleted.push(DeletedEntry {
                        key: o.key,
                        version_id: o.version_id,
                    });
                }
            }
            Err(e) => {
                let e = cluster_error(e);
                result.errors.push(DeleteErrorEntry {
                    key: o.key,
                    version_id: o.version_id,
                    code: e.code,
                    message: e.message,
                });
            }
        }
    }
    Ok(xml_response(
        StatusCode::OK,
        xml::render_delete_result(&result),
    ))
}
