//! S3 XML bodies: parsers for requests (quick-xml, bounded) and renderers
//! for responses (string building with escaping).

pub mod escape;
mod parse;
mod render;
mod tree;

pub use parse::{
    CompletedPart, DeleteRequest, MAX_DELETE_OBJECTS, MAX_PARTS, ObjectIdentifier,
    parse_complete_multipart, parse_create_bucket, parse_delete,
};
pub use render::{
    BucketEntry, DeleteErrorEntry, DeleteResult, DeletedEntry, ListObjectsV1, ListObjectsV2,
    ListParts, ListUploads, ListVersions, ObjectEntry, Owner, PartEntry, S3_XMLNS, UploadEntry,
    render_complete_multipart, render_copy_object_result, render_copy_part_result,
    render_delete_result, render_initiate_multipart, render_list_buckets, render_list_objects_v1,
    render_list_objects_v2, render_list_parts, render_list_uploads, render_list_versions,
    render_location_constraint,
};
pub use tree::{MAX_XML_BODY, MAX_XML_DEPTH, MAX_XML_ELEMENTS};

#[cfg(test)]
mod tests;
