//! Renderer tests: exact output for small cases, and well-formedness
//! (re-parsed with our own parser) for everything.

use super::tree::parse_document;
use super::*;
use crate::S3ErrorCode;

const DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";
const T: u64 = 1_735_689_600_000;

fn owner() -> Owner {
    Owner {
        id: "abc123".into(),
        display_name: "alice".into(),
    }
}

fn obj(key: &str) -> ObjectEntry {
    ObjectEntry {
        key: key.into(),
        last_modified_unix_ms: T,
        etag: "d41d8cd98f00b204e9800998ecf8427e".into(),
        size: 42,
        owner: Some(owner()),
    }
}

fn well_formed(xml: &str) {
    assert!(xml.starts_with(DECL));
    parse_document(xml.as_bytes()).unwrap().unwrap();
}

#[test]
fn list_buckets() {
    let xml = render_list_buckets(
        &owner(),
        &[BucketEntry {
            name: "b1".into(),
            creation_date_unix_ms: T,
        }],
    );
    assert_eq!(
        xml,
        format!(
            "{DECL}<ListAllMyBucketsResult xmlns=\"{S3_XMLNS}\"><Owner><ID>abc123</ID>\
             <DisplayName>alice</DisplayName></Owner><Buckets><Bucket><Name>b1</Name>\
             <CreationDate>2025-01-01T00:00:00.000Z</CreationDate></Bucket></Buckets>\
             </ListAllMyBucketsResult>"
        )
    );
}

#[test]
fn list_v1() {
    let l = ListObjectsV1 {
        bucket: "b".into(),
        prefix: "p/".into(),
        max_keys: 2,
        delimiter: Some("/".into()),
        is_truncated: true,
        contents: vec![obj("p/a b&c")],
        common_prefixes: vec!["p/z/".into()],
        ..Default::default()
    };
    let xml = render_list_objects_v1(&l);
    well_formed(&xml);
    assert!(xml.contains("<NextMarker>p/z/</NextMarker>"));
    assert!(xml.contains("<Key>p/a b&amp;c</Key>"));
    assert!(xml.contains("<ETag>&quot;d41d8cd98f00b204e9800998ecf8427e&quot;</ETag>"));
    assert!(xml.contains("<Size>42</Size>"));
    assert!(xml.contains("<Owner><ID>abc123</ID>"));
    assert!(xml.contains("<StorageClass>STANDARD</StorageClass>"));
    assert!(xml.contains("<CommonPrefixes><Prefix>p/z/</Prefix></CommonPrefixes>"));
    assert!(!xml.contains("EncodingType"));

    // No delimiter: no NextMarker even when truncated.
    let no_delim = ListObjectsV1 {
        delimiter: None,
        ..l.clone()
    };
    assert!(!render_list_objects_v1(&no_delim).contains("NextMarker"));

    // URL encoding applies to keys, prefixes and the delimiter.
    let url = ListObjectsV1 {
        encoding_type_url: true,
        ..l
    };
    let xml = render_list_objects_v1(&url);
    assert!(xml.contains("<Key>p/a%20b%26c</Key>"));
    assert!(xml.contains("<EncodingType>url</EncodingType>"));
}

#[test]
fn list_v2() {
    let l = ListObjectsV2 {
        bucket: "b".into(),
        max_keys: 1000,
        continuation_token: Some("tok".into()),
        next_continuation_token: Some("next".into()),
        start_after: Some("s a".into()),
        is_truncated: true,
        contents: vec![obj("k1"), obj("k2")],
        common_prefixes: vec!["d/".into()],
        encoding_type_url: true,
        ..Default::default()
    };
    let xml = render_list_objects_v2(&l);
    well_formed(&xml);
    assert!(xml.contains("<KeyCount>3</KeyCount>"));
    assert!(xml.contains("<ContinuationToken>tok</ContinuationToken>"));
    assert!(xml.contains("<NextContinuationToken>next</NextContinuationToken>"));
    assert!(xml.contains("<StartAfter>s%20a</StartAfter>"));
    assert!(!xml.contains("<Owner>"));
    let with_owner = ListObjectsV2 {
        fetch_owner: true,
        ..l
    };
    assert!(render_list_objects_v2(&with_owner).contains("<Owner>"));
}

#[test]
fn list_versions() {
    let l = ListVersions {
        bucket: "b".into(),
        max_keys: 1000,
        versions: vec![obj("k")],
        ..Default::default()
    };
    let xml = render_list_versions(&l);
    well_formed(&xml);
    assert!(
        xml.contains("<Version><Key>k</Key><VersionId>null</VersionId><IsLatest>true</IsLatest>")
    );
}

#[test]
fn multipart() {
    let xml = render_initiate_multipart("b", "k<", "u1");
    assert_eq!(
        xml,
        format!(
            "{DECL}<InitiateMultipartUploadResult xmlns=\"{S3_XMLNS}\"><Bucket>b</Bucket>\
             <Key>k&lt;</Key><UploadId>u1</UploadId></InitiateMultipartUploadResult>"
        )
    );
    let xml = render_complete_multipart("http://h/b/k", "b", "k", "abc-2");
    well_formed(&xml);
    assert!(xml.contains("<ETag>&quot;abc-2&quot;</ETag>"));

    let xml = render_list_parts(&ListParts {
        bucket: "b".into(),
        key: "k".into(),
        upload_id: "u".into(),
        owner: Some(owner()),
        part_number_marker: 0,
        next_part_number_marker: Some(1),
        max_parts: 1,
        is_truncated: true,
        parts: vec![PartEntry {
            part_number: 1,
            last_modified_unix_ms: T,
            etag: "e".into(),
            size: 5,
        }],
    });
    well_formed(&xml);
    assert!(xml.contains("<NextPartNumberMarker>1</NextPartNumberMarker>"));
    assert!(xml.contains("<Part><PartNumber>1</PartNumber><LastModified>2025-01-01T00:00:00.000Z</LastModified><ETag>&quot;e&quot;</ETag><Size>5</Size></Part>"));

    let xml = render_list_uploads(&ListUploads {
        bucket: "b".into(),
        max_uploads: 1000,
        next_key_marker: Some("k".into()),
        next_upload_id_marker: Some("u".into()),
        uploads: vec![UploadEntry {
            key: "k".into(),
            upload_id: "u".into(),
            initiated_unix_ms: T,
            owner: None,
        }],
        common_prefixes: vec!["x/".into()],
        ..Default::default()
    });
    well_formed(&xml);
    assert!(xml.contains("<Upload><Key>k</Key><UploadId>u</UploadId><StorageClass>STANDARD</StorageClass><Initiated>2025-01-01T00:00:00.000Z</Initiated></Upload>"));
    assert!(xml.contains("<NextUploadIdMarker>u</NextUploadIdMarker>"));
}

#[test]
fn copy_delete_location() {
    let xml = render_copy_object_result(T, "e");
    assert_eq!(
        xml,
        format!(
            "{DECL}<CopyObjectResult xmlns=\"{S3_XMLNS}\"><LastModified>2025-01-01T00:00:00.000Z\
             </LastModified><ETag>&quot;e&quot;</ETag></CopyObjectResult>"
        )
    );
    assert!(render_copy_part_result(T, "e").contains("<CopyPartResult"));

    let xml = render_delete_result(&DeleteResult {
        deleted: vec![DeletedEntry {
            key: "a".into(),
            version_id: None,
        }],
        errors: vec![DeleteErrorEntry {
            key: "b".into(),
            version_id: None,
            code: S3ErrorCode::AccessDenied,
            message: "Access Denied".into(),
        }],
    });
    well_formed(&xml);
    assert!(xml.contains("<Deleted><Key>a</Key></Deleted>"));
    assert!(xml.contains(
        "<Error><Key>b</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
    ));

    assert_eq!(
        render_location_constraint(Some("us-east-1")),
        format!("{DECL}<LocationConstraint xmlns=\"{S3_XMLNS}\"/>")
    );
    assert!(
        render_location_constraint(Some("eu-west-1")).contains(">eu-west-1</LocationConstraint>")
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Any key survives rendering: re-parsing the listing gives it back.
    #[test]
    fn rendered_keys_round_trip(keys in proptest::collection::vec("\\PC{1,30}", 1..10)) {
        let l = ListObjectsV2 {
            bucket: "b".into(),
            max_keys: 1000,
            contents: keys.iter().map(|k| obj(k)).collect(),
            ..Default::default()
        };
        let xml = render_list_objects_v2(&l);
        let root = parse_document(xml.as_bytes()).unwrap().unwrap();
        let got: Vec<String> = root
            .children_named("Contents")
            .map(|c| c.child_text("Key").unwrap_or_default().to_owned())
            .collect();
        proptest::prop_assert_eq!(got, keys);
    }
}
