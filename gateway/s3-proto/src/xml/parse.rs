//! Parsers for the XML request bodies the gateway accepts.

use super::tree::{Element, malformed, parse_document};
use crate::checksum::ChecksumAlgorithm;
use crate::error::{S3Error, S3ErrorCode};

/// Most parts in a multipart upload (AWS limit).
pub const MAX_PARTS: u32 = 10_000;
/// Most keys in one DeleteObjects request (AWS limit).
pub const MAX_DELETE_OBJECTS: usize = 1000;

/// One `<Part>` of a CompleteMultipartUpload body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    pub part_number: u32,
    /// Without surrounding quotes.
    pub etag: String,
    /// `Checksum*` elements given for the part (base64 values).
    pub checksums: Vec<(ChecksumAlgorithm, String)>,
}

/// One `<Object>` of a DeleteObjects body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectIdentifier {
    pub key: String,
    pub version_id: Option<String>,
}

/// A DeleteObjects body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRequest {
    pub objects: Vec<ObjectIdentifier>,
    /// Only report errors in the response.
    pub quiet: bool,
}

fn root_named(body: &[u8], name: &str) -> Result<Element, S3Error> {
    let root = parse_document(body)?.ok_or_else(|| malformed("empty body"))?;
    if root.name != name {
        return Err(malformed(format!(
            "expected root element {name}, found {}",
            root.name
        )));
    }
    Ok(root)
}

/// CompleteMultipartUpload → its parts. Parts must be listed in strictly
/// ascending order (`InvalidPartOrder` otherwise, as AWS does); at least
/// one part and at most [`MAX_PARTS`].
pub fn parse_complete_multipart(body: &[u8]) -> Result<Vec<CompletedPart>, S3Error> {
    let root = root_named(body, "CompleteMultipartUpload")?;
    let mut parts = Vec::new();
    for part in root.children_named("Part") {
        let number = part
            .child_text("PartNumber")
            .ok_or_else(|| malformed("Part without PartNumber"))?
            .trim();
        let part_number: u32 = number
            .parse()
            .ok()
            .filter(|n| (1..=MAX_PARTS).contains(n))
            .ok_or_else(|| {
                S3Error::new(
                    S3ErrorCode::InvalidArgument,
                    format!("Part number must be an integer between 1 and {MAX_PARTS}"),
                )
            })?;
        let etag = part
            .child_text("ETag")
            .ok_or_else(|| malformed("Part without ETag"))?
            .trim();
        let etag = etag
            .strip_prefix('"')
            .and_then(|e| e.strip_suffix('"'))
            .unwrap_or(etag)
            .to_owned();
        let checksums = ChecksumAlgorithm::ALL
            .into_iter()
            .filter_map(|a| {
                part.child_text(a.xml_element())
                    .map(|v| (a, v.trim().to_owned()))
            })
            .collect();
        if let Some(prev) = parts.last().map(|p: &CompletedPart| p.part_number)
            && part_number <= prev
        {
            return Err(S3Error::new(
                S3ErrorCode::InvalidPartOrder,
                "The list of parts was not in ascending order. Parts must be ordered by \
                     part number.",
            ));
        }
        parts.push(CompletedPart {
            part_number,
            etag,
            checksums,
        });
    }
    if parts.is_empty() {
        return Err(malformed("you must specify at least one part"));
    }
    Ok(parts)
}

/// DeleteObjects body: 1 to [`MAX_DELETE_OBJECTS`] keys, optional `Quiet`.
pub fn parse_delete(body: &[u8]) -> Result<DeleteRequest, S3Error> {
    let root = root_named(body, "Delete")?;
    let quiet = match root.child_text("Quiet").map(str::trim) {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(_) => return Err(malformed("Quiet must be true or false")),
    };
    let mut objects = Vec::new();
    for obj in root.children_named("Object") {
        if objects.len() == MAX_DELETE_OBJECTS {
            return Err(malformed(format!(
                "at most {MAX_DELETE_OBJECTS} objects can be deleted per request"
            )));
        }
        let key = obj
            .child_text("Key")
            .ok_or_else(|| malformed("Object without Key"))?;
        objects.push(ObjectIdentifier {
            key: key.to_owned(),
            version_id: obj
                .child_text("VersionId")
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()),
        });
    }
    if objects.is_empty() {
        return Err(malformed("no Object to delete"));
    }
    Ok(DeleteRequest { objects, quiet })
}

/// CreateBucket body → location constraint. An empty body, or one
/// without (or with an empty) `LocationConstraint`, gives `None`
/// (meaning the default region, as AWS treats us-east-1).
pub fn parse_create_bucket(body: &[u8]) -> Result<Option<String>, S3Error> {
    let Some(root) = parse_document(body)? else {
        return Ok(None);
    };
    if root.name != "CreateBucketConfiguration" {
        return Err(malformed(format!(
            "expected root element CreateBucketConfiguration, found {}",
            root.name
        )));
    }
    Ok(root
        .child_text("LocationConstraint")
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_multipart() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Part><PartNumber>1</PartNumber><ETag>"a54357aff0632cce46d942af68356b38"</ETag>
    <ChecksumCRC32C>sOO8/Q==</ChecksumCRC32C><Unknown>x</Unknown></Part>
  <Part><ETag>&quot;0c78aef83f66abc1fa1e8477f296d394&quot;</ETag><PartNumber> 2 </PartNumber></Part>
  <Part><PartNumber>5</PartNumber><ETag>bare</ETag></Part>
</CompleteMultipartUpload>"#;
        let parts = parse_complete_multipart(body).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].etag, "a54357aff0632cce46d942af68356b38");
        assert_eq!(
            parts[0].checksums,
            vec![(ChecksumAlgorithm::Crc32c, "sOO8/Q==".to_owned())]
        );
        assert_eq!(parts[1].part_number, 2);
        assert_eq!(parts[1].etag, "0c78aef83f66abc1fa1e8477f296d394");
        assert_eq!(parts[2].etag, "bare");
    }

    #[test]
    fn complete_multipart_errors() {
        let code = |b: &str| parse_complete_multipart(b.as_bytes()).unwrap_err().code;
        assert_eq!(code(""), S3ErrorCode::MalformedXML);
        assert_eq!(
            code("<CompleteMultipartUpload/>"),
            S3ErrorCode::MalformedXML
        );
        assert_eq!(code("<Other/>"), S3ErrorCode::MalformedXML);
        assert_eq!(
            code(
                "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>"
            ),
            S3ErrorCode::MalformedXML
        );
        assert_eq!(
            code(
                "<CompleteMultipartUpload><Part><PartNumber>0</PartNumber><ETag>a</ETag></Part></CompleteMultipartUpload>"
            ),
            S3ErrorCode::InvalidArgument
        );
        assert_eq!(
            code(
                "<CompleteMultipartUpload><Part><PartNumber>2</PartNumber><ETag>a</ETag></Part>\
                  <Part><PartNumber>1</PartNumber><ETag>b</ETag></Part></CompleteMultipartUpload>"
            ),
            S3ErrorCode::InvalidPartOrder
        );
        assert_eq!(
            code(
                "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>a</ETag></Part>\
                  <Part><PartNumber>1</PartNumber><ETag>b</ETag></Part></CompleteMultipartUpload>"
            ),
            S3ErrorCode::InvalidPartOrder
        );
    }

    #[test]
    fn delete() {
        let body = br#"<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Quiet>true</Quiet>
<Object><Key> spaced key </Key></Object><Object><Key>a&amp;b</Key><VersionId>null</VersionId></Object></Delete>"#;
        let d = parse_delete(body).unwrap();
        assert!(d.quiet);
        assert_eq!(d.objects[0].key, " spaced key ");
        assert_eq!(d.objects[1].key, "a&b");
        assert_eq!(d.objects[1].version_id.as_deref(), Some("null"));

        let many: String = (0..=MAX_DELETE_OBJECTS)
            .map(|i| format!("<Object><Key>k{i}</Key></Object>"))
            .collect();
        let too_many = format!("<Delete>{many}</Delete>");
        assert_eq!(
            parse_delete(too_many.as_bytes()).unwrap_err().code,
            S3ErrorCode::MalformedXML
        );
        assert!(parse_delete(b"<Delete></Delete>").is_err());
        assert!(parse_delete(b"<Delete><Object/></Delete>").is_err());
        assert!(
            parse_delete(b"<Delete><Quiet>maybe</Quiet><Object><Key>a</Key></Object></Delete>")
                .is_err()
        );
    }

    #[test]
    fn create_bucket() {
        assert_eq!(parse_create_bucket(b"").unwrap(), None);
        assert_eq!(
            parse_create_bucket(
                br#"<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
                <LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>"#
            )
            .unwrap(),
            Some("eu-west-1".to_owned())
        );
        assert_eq!(
            parse_create_bucket(b"<CreateBucketConfiguration/>").unwrap(),
            None
        );
        assert!(parse_create_bucket(b"<Nope/>").is_err());
        assert!(parse_create_bucket(b"<CreateBucketConfiguration>").is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn random_bytes_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse_complete_multipart(&body);
            let _ = parse_delete(&body);
            let _ = parse_create_bucket(&body);
        }

        #[test]
        fn xmlish_never_panics(
            parts in proptest::collection::vec(
                "<|>|/|</|<!--|-->|<!\\[CDATA\\[|\\]\\]>|&amp;|&#x0;|&#|;|=|\"|'|:|xmlns|<\\?xml|\\?>|Part|PartNumber|ETag|Delete|Object|Key|Quiet|CompleteMultipartUpload|CreateBucketConfiguration|LocationConstraint|[0-9]{1,6}| |true",
                0..60,
            )
        ) {
            let body = parts.concat();
            let _ = parse_complete_multipart(body.as_bytes());
            let _ = parse_delete(body.as_bytes());
            let _ = parse_create_bucket(body.as_bytes());
        }

        #[test]
        fn generated_delete_round_trips(keys in proptest::collection::vec("[a-zA-Z0-9 &<>\"'/._-]{1,20}", 1..20)) {
            let objects: String = keys
                .iter()
                .map(|k| format!("<Object><Key>{}</Key></Object>", super::super::escape::escape_text(k)))
                .collect();
            let body = format!("<Delete>{objects}</Delete>");
            let d = parse_delete(body.as_bytes()).unwrap();
            let got: Vec<String> = d.objects.into_iter().map(|o| o.key).collect();
            proptest::prop_assert_eq!(got, keys);
        }
    }
}
