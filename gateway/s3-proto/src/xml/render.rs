//! Response bodies. Plain string building: every value goes through
//! [`escape_text`], and `encoding-type=url` is applied where AWS applies it
//! (keys, prefixes, delimiters, markers, start-after).

use super::escape::{escape_text, url_encode};
use crate::error::S3ErrorCode;
use crate::time::iso8601_ms;

/// The S3 XML namespace on every root element.
pub const S3_XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";
const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";
const STORAGE_CLASS: &str = "STANDARD";

/// Bucket or object owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub id: String,
    pub display_name: String,
}

/// One bucket in ListBuckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketEntry {
    pub name: String,
    pub creation_date_unix_ms: u64,
}

/// One object in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEntry {
    pub key: String,
    pub last_modified_unix_ms: u64,
    /// Without quotes; rendered quoted.
    pub etag: String,
    pub size: u64,
    /// Rendered in V1 and versions listings when set, in V2 only with fetch-owner.
    pub owner: Option<Owner>,
}

/// ListObjects (V1) response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListObjectsV1 {
    pub bucket: String,
    pub prefix: String,
    pub marker: String,
    /// Rendered only when truncated and a delimiter was given (AWS
    /// behaviour); if `None` it defaults to the last key or prefix listed.
    pub next_marker: Option<String>,
    pub max_keys: u32,
    pub delimiter: Option<String>,
    pub is_truncated: bool,
    pub contents: Vec<ObjectEntry>,
    pub common_prefixes: Vec<String>,
    /// `encoding-type=url` was requested.
    pub encoding_type_url: bool,
}

/// ListObjectsV2 response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListObjectsV2 {
    pub bucket: String,
    pub prefix: String,
    pub delimiter: Option<String>,
    pub max_keys: u32,
    pub is_truncated: bool,
    pub continuation_token: Option<String>,
    pub next_continuation_token: Option<String>,
    pub start_after: Option<String>,
    /// `fetch-owner=true`: render owners of entries that have one.
    pub fetch_owner: bool,
    pub contents: Vec<ObjectEntry>,
    pub common_prefixes: Vec<String>,
    pub encoding_type_url: bool,
}

/// ListObjectVersions for an unversioned bucket: every object is its own
/// latest version, with version id `null`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListVersions {
    pub bucket: String,
    pub prefix: String,
    pub key_marker: String,
    pub version_id_marker: String,
    pub next_key_marker: Option<String>,
    pub next_version_id_marker: Option<String>,
    pub max_keys: u32,
    pub delimiter: Option<String>,
    pub is_truncated: bool,
    pub versions: Vec<ObjectEntry>,
    pub common_prefixes: Vec<String>,
    pub encoding_type_url: bool,
}

/// One uploaded part in ListParts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartEntry {
    pub part_number: u32,
    pub last_modified_unix_ms: u64,
    pub etag: String,
    pub size: u64,
}

/// ListParts response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListParts {
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
    /// Rendered as both Initiator and Owner when set.
    pub owner: Option<Owner>,
    pub part_number_marker: u32,
    pub next_part_number_marker: Option<u32>,
    pub max_parts: u32,
    pub is_truncated: bool,
    pub parts: Vec<PartEntry>,
}

/// One in-progress upload in ListMultipartUploads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadEntry {
    pub key: String,
    pub upload_id: String,
    pub initiated_unix_ms: u64,
    pub owner: Option<Owner>,
}

/// ListMultipartUploads response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListUploads {
    pub bucket: String,
    pub key_marker: String,
    pub upload_id_marker: String,
    pub next_key_marker: Option<String>,
    pub next_upload_id_marker: Option<String>,
    pub prefix: String,
    pub delimiter: Option<String>,
    pub max_uploads: u32,
    pub is_truncated: bool,
    pub uploads: Vec<UploadEntry>,
    pub common_prefixes: Vec<String>,
    pub encoding_type_url: bool,
}

/// A key deleted by DeleteObjects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedEntry {
    pub key: String,
    pub version_id: Option<String>,
}

/// A key DeleteObjects failed to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteErrorEntry {
    pub key: String,
    pub version_id: Option<String>,
    pub code: S3ErrorCode,
    pub message: String,
}

/// DeleteObjects response. With `Quiet`, pass an empty `deleted`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteResult {
    pub deleted: Vec<DeletedEntry>,
    pub errors: Vec<DeleteErrorEntry>,
}

/// Small writer: opening root with namespace, escaped leaves.
struct Doc {
    out: String,
    url: bool,
}

impl Doc {
    fn new(root: &str) -> Self {
        Self::with_encoding(root, false)
    }

    fn with_encoding(root: &str, url: bool) -> Self {
        let mut out = String::with_capacity(512);
        out.push_str(XML_DECL);
        out.push('<');
        out.push_str(root);
        out.push_str(" xmlns=\"");
        out.push_str(S3_XMLNS);
        out.push_str("\">");
        Self { out, url }
    }

    fn open(&mut self, name: &str) {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
    }

    fn close(&mut self, name: &str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    fn leaf(&mut self, name: &str, value: &str) {
        self.open(name);
        self.out.push_str(&escape_text(value));
        self.close(name);
    }

    /// A leaf subject to `encoding-type=url`.
    fn leaf_enc(&mut self, name: &str, value: &str) {
        if self.url {
            self.leaf(name, &url_encode(value));
        } else {
            self.leaf(name, value);
        }
    }

    fn num(&mut self, name: &str, value: impl std::fmt::Display) {
        self.leaf(name, &value.to_string());
    }

    fn bool(&mut self, name: &str, value: bool) {
        self.leaf(name, if value { "true" } else { "false" });
    }

    fn date(&mut self, name: &str, unix_ms: u64) {
        self.leaf(name, &iso8601_ms(unix_ms));
    }

    fn etag(&mut self, etag: &str) {
        self.leaf("ETag", &format!("\"{etag}\""));
    }

    fn owner(&mut self, element: &str, owner: &Owner) {
        self.open(element);
        self.leaf("ID", &owner.id);
        self.leaf("DisplayName", &owner.display_name);
        self.close(element);
    }

    fn encoding_type(&mut self) {
        if self.url {
            self.leaf("EncodingType", "url");
        }
    }

    fn common_prefixes(&mut self, prefixes: &[String]) {
        for p in prefixes {
            self.open("CommonPrefixes");
            self.leaf_enc("Prefix", p);
            self.close("CommonPrefixes");
        }
    }

    fn object(&mut self, element: &str, o: &ObjectEntry, with_owner: bool, version: bool) {
        self.open(element);
        self.leaf_enc("Key", &o.key);
        if version {
            self.leaf("VersionId", "null");
            self.bool("IsLatest", true);
        }
        self.date("LastModified", o.last_modified_unix_ms);
        self.etag(&o.etag);
        self.num("Size", o.size);
        if let (true, Some(owner)) = (with_owner, &o.owner) {
            self.owner("Owner", owner);
        }
        self.leaf("StorageClass", STORAGE_CLASS);
        self.close(element);
    }

    fn finish(mut self, root: &str) -> String {
        self.close(root);
        self.out
    }
}

/// ListAllMyBucketsResult.
pub fn render_list_buckets(owner: &Owner, buckets: &[BucketEntry]) -> String {
    let mut d = Doc::new("ListAllMyBucketsResult");
    d.owner("Owner", owner);
    d.open("Buckets");
    for b in buckets {
        d.open("Bucket");
        d.leaf("Name", &b.name);
        d.date("CreationDate", b.creation_date_unix_ms);
        d.close("Bucket");
    }
    d.close("Buckets");
    d.finish("ListAllMyBucketsResult")
}

/// ListBucketResult for ListObjects (V1).
pub fn render_list_objects_v1(l: &ListObjectsV1) -> String {
    let mut d = Doc::with_encoding("ListBucketResult", l.encoding_type_url);
    d.leaf("Name", &l.bucket);
    d.leaf_enc("Prefix", &l.prefix);
    d.leaf_enc("Marker", &l.marker);
    if let (true, Some(_)) = (l.is_truncated, &l.delimiter) {
        let fallback = || {
            let last_key = l.contents.last().map(|o| o.key.as_str());
            let last_prefix = l.common_prefixes.last().map(String::as_str);
            last_key.max(last_prefix).unwrap_or_default().to_owned()
        };
        let next = l.next_marker.clone().unwrap_or_else(fallback);
        d.leaf_enc("NextMarker", &next);
    }
    d.num("MaxKeys", l.max_keys);
    if let Some(delim) = &l.delimiter {
        d.leaf_enc("Delimiter", delim);
    }
    d.bool("IsTruncated", l.is_truncated);
    d.encoding_type();
    for o in &l.contents {
        d.object("Contents", o, true, false);
    }
    d.common_prefixes(&l.common_prefixes);
    d.finish("ListBucketResult")
}

/// ListBucketResult for ListObjectsV2.
pub fn render_list_objects_v2(l: &ListObjectsV2) -> String {
    let mut d = Doc::with_encoding("ListBucketResult", l.encoding_type_url);
    d.leaf("Name", &l.bucket);
    d.leaf_enc("Prefix", &l.prefix);
    if let Some(sa) = &l.start_after {
        d.leaf_enc("StartAfter", sa);
    }
    if let Some(t) = &l.continuation_token {
        d.leaf("ContinuationToken", t);
    }
    if let Some(t) = &l.next_continuation_token {
        d.leaf("NextContinuationToken", t);
    }
    d.num("KeyCount", l.contents.len() + l.common_prefixes.len());
    d.num("MaxKeys", l.max_keys);
    if let Some(delim) = &l.delimiter {
        d.leaf_enc("Delimiter", delim);
    }
    d.bool("IsTruncated", l.is_truncated);
    d.encoding_type();
    for o in &l.contents {
        d.object("Contents", o, l.fetch_owner, false);
    }
    d.common_prefixes(&l.common_prefixes);
    d.finish("ListBucketResult")
}

/// ListVersionsResult (unversioned bucket: VersionId `null`, IsLatest).
pub fn render_list_versions(l: &ListVersions) -> String {
    let mut d = Doc::with_encoding("ListVersionsResult", l.encoding_type_url);
    d.leaf("Name", &l.bucket);
    d.leaf_enc("Prefix", &l.prefix);
    d.leaf_enc("KeyMarker", &l.key_marker);
    d.leaf("VersionIdMarker", &l.version_id_marker);
    if let Some(m) = &l.next_key_marker {
        d.leaf_enc("NextKeyMarker", m);
    }
    if let Some(m) = &l.next_version_id_marker {
        d.leaf("NextVersionIdMarker", m);
    }
    d.num("MaxKeys", l.max_keys);
    if let Some(delim) = &l.delimiter {
        d.leaf_enc("Delimiter", delim);
    }
    d.bool("IsTruncated", l.is_truncated);
    d.encoding_type();
    for o in &l.versions {
        d.object("Version", o, true, true);
    }
    d.common_prefixes(&l.common_prefixes);
    d.finish("ListVersionsResult")
}

/// InitiateMultipartUploadResult.
pub fn render_initiate_multipart(bucket: &str, key: &str, upload_id: &str) -> String {
    let mut d = Doc::new("InitiateMultipartUploadResult");
    d.leaf("Bucket", bucket);
    d.leaf("Key", key);
    d.leaf("UploadId", upload_id);
    d.finish("InitiateMultipartUploadResult")
}

/// CompleteMultipartUploadResult; `etag` unquoted (e.g. `abc…-3`).
pub fn render_complete_multipart(location: &str, bucket: &str, key: &str, etag: &str) -> String {
    let mut d = Doc::new("CompleteMultipartUploadResult");
    d.leaf("Location", location);
    d.leaf("Bucket", bucket);
    d.leaf("Key", key);
    d.etag(etag);
    d.finish("CompleteMultipartUploadResult")
}

/// ListPartsResult.
pub fn render_list_parts(l: &ListParts) -> String {
    let mut d = Doc::new("ListPartsResult");
    d.leaf("Bucket", &l.bucket);
    d.leaf("Key", &l.key);
    d.leaf("UploadId", &l.upload_id);
    if let Some(owner) = &l.owner {
        d.owner("Initiator", owner);
        d.owner("Owner", owner);
    }
    d.leaf("StorageClass", STORAGE_CLASS);
    d.num("PartNumberMarker", l.part_number_marker);
    if let Some(n) = l.next_part_number_marker {
        d.num("NextPartNumberMarker", n);
    }
    d.num("MaxParts", l.max_parts);
    d.bool("IsTruncated", l.is_truncated);
    for p in &l.parts {
        d.open("Part");
        d.num("PartNumber", p.part_number);
        d.date("LastModified", p.last_modified_unix_ms);
        d.etag(&p.etag);
        d.num("Size", p.size);
        d.close("Part");
    }
    d.finish("ListPartsResult")
}

/// ListMultipartUploadsResult.
pub fn render_list_uploads(l: &ListUploads) -> String {
    let mut d = Doc::with_encoding("ListMultipartUploadsResult", l.encoding_type_url);
    d.leaf("Bucket", &l.bucket);
    d.leaf_enc("KeyMarker", &l.key_marker);
    d.leaf("UploadIdMarker", &l.upload_id_marker);
    if let Some(m) = &l.next_key_marker {
        d.leaf_enc("NextKeyMarker", m);
    }
    if let Some(m) = &l.next_upload_id_marker {
        d.leaf("NextUploadIdMarker", m);
    }
    d.leaf_enc("Prefix", &l.prefix);
    if let Some(delim) = &l.delimiter {
        d.leaf_enc("Delimiter", delim);
    }
    d.num("MaxUploads", l.max_uploads);
    d.bool("IsTruncated", l.is_truncated);
    d.encoding_type();
    for u in &l.uploads {
        d.open("Upload");
        d.leaf_enc("Key", &u.key);
        d.leaf("UploadId", &u.upload_id);
        if let Some(owner) = &u.owner {
            d.owner("Initiator", owner);
            d.owner("Owner", owner);
        }
        d.leaf("StorageClass", STORAGE_CLASS);
        d.date("Initiated", u.initiated_unix_ms);
        d.close("Upload");
    }
    d.common_prefixes(&l.common_prefixes);
    d.finish("ListMultipartUploadsResult")
}

/// CopyObjectResult.
pub fn render_copy_object_result(last_modified_unix_ms: u64, etag: &str) -> String {
    copy_result("CopyObjectResult", last_modified_unix_ms, etag)
}

/// CopyPartResult (UploadPartCopy).
pub fn render_copy_part_result(last_modified_unix_ms: u64, etag: &str) -> String {
    copy_result("CopyPartResult", last_modified_unix_ms, etag)
}

fn copy_result(root: &str, last_modified_unix_ms: u64, etag: &str) -> String {
    let mut d = Doc::new(root);
    d.date("LastModified", last_modified_unix_ms);
    d.etag(etag);
    d.finish(root)
}

/// DeleteResult.
pub fn render_delete_result(r: &DeleteResult) -> String {
    let mut d = Doc::new("DeleteResult");
    for del in &r.deleted {
        d.open("Deleted");
        d.leaf("Key", &del.key);
        if let Some(v) = &del.version_id {
            d.leaf("VersionId", v);
        }
        d.close("Deleted");
    }
    for e in &r.errors {
        d.open("Error");
        d.leaf("Key", &e.key);
        if let Some(v) = &e.version_id {
            d.leaf("VersionId", v);
        }
        d.leaf("Code", e.code.as_str());
        d.leaf("Message", &e.message);
        d.close("Error");
    }
    d.finish("DeleteResult")
}

/// GetBucketLocation: AWS answers an empty element for us-east-1.
pub fn render_location_constraint(region: Option<&str>) -> String {
    match region {
        None | Some("") | Some("us-east-1") => {
            format!("{XML_DECL}<LocationConstraint xmlns=\"{S3_XMLNS}\"/>")
        }
        Some(r) => format!(
            "{XML_DECL}<LocationConstraint xmlns=\"{S3_XMLNS}\">{}</LocationConstraint>",
            escape_text(r)
        ),
    }
}
