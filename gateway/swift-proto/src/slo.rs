//! Static Large Objects: the `PUT ?multipart-manifest=put` body, segment
//! validation against what the gateway found, the stored manifest, the SLO
//! ETag and read planning.
//!
//! Flow for the gateway:
//! 1. [`parse_manifest_put`] the request body (400/413 on bad input);
//! 2. HEAD each `container/object` and pass the facts (or `None` when
//!    missing) to [`validate_segments`] → [`SloManifest`] or a 400 listing
//!    every problem (`Errors:\n/cont/obj, 404 Not Found\n`...);
//! 3. if the client sent an `ETag`, compare with [`SloManifest::etag`]
//!    (mismatch → 422, see [`check_client_etag`]);
//! 4. store [`SloManifest::to_stored_json`] as the object body with
//!    `X-Static-Large-Object: True`; that JSON is also what
//!    `GET ?multipart-manifest=get` returns;
//! 5. on GET, [`SloManifest::from_stored_json`] then
//!    [`SloManifest::plan_read`] with the client's range.
//!
//! Inline `data` segments are not supported (400). Nested SLOs work when
//! the gateway's segment reader itself resolves SLO manifests: the
//! sub-manifest's HEAD facts (SLO etag and total size) are what the parent
//! records, exactly as Swift does.

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::SwiftError;
use crate::segments::{Piece, SegmentRead, plan};

/// Most object-backed segments in one manifest (Swift's
/// `max_manifest_segments`).
pub const MAX_MANIFEST_SEGMENTS: usize = 1000;
/// Largest manifest body accepted (Swift's current `max_manifest_size`
/// default, 8 MiB; older releases used 2 MiB).
pub const MAX_MANIFEST_SIZE: usize = 8 * 1024 * 1024;
/// Smallest segment (or segment range), except for the last segment.
pub const MIN_SEGMENT_SIZE: u64 = 1;

/// Byte range of a segment as written by the client, resolved against the
/// segment's real size during validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentRange {
    /// `a-b`, inclusive.
    FromTo(u64, u64),
    /// `a-`: from `a` to the end.
    From(u64),
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

impl SegmentRange {
    /// Parses `a-b`, `a-` or `-n` (`bytes=` is implied). `a > b` and `-` are
    /// syntax errors; multiple ranges are rejected by the caller.
    pub fn parse(s: &str) -> Option<Self> {
        let s: String = s.chars().filter(|c| *c != ' ').collect();
        let (a, b) = s.split_once('-')?;
        let num = |x: &str| -> Option<u64> {
            if x.is_empty() || !x.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            x.parse().ok()
        };
        match (a.is_empty(), b.is_empty()) {
            (true, true) => None,
            (true, false) => Some(Self::Suffix(num(b)?)),
            (false, true) => Some(Self::From(num(a)?)),
            (false, false) => {
                let (a, b) = (num(a)?, num(b)?);
                (a <= b).then_some(Self::FromTo(a, b))
            }
        }
    }

    /// Inclusive `(first, last)` within an object of `size` bytes, or `None`
    /// when unsatisfiable. Ends past the object are clipped.
    pub fn resolve(self, size: u64) -> Option<(u64, u64)> {
        match self {
            Self::FromTo(a, b) => (a < size).then(|| (a, b.min(size - 1))),
            Self::From(a) => (a < size).then(|| (a, size - 1)),
            Self::Suffix(0) => None,
            Self::Suffix(n) => (size > 0).then(|| (size.saturating_sub(n), size - 1)),
        }
    }
}

/// One segment as requested in the manifest PUT body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SloSegmentSpec {
    /// Segment container.
    pub container: String,
    /// Segment object name.
    pub object: String,
    /// ETag the segment must have (unquoted), if the client gave one.
    pub etag: Option<String>,
    /// Size the segment object must have, if the client gave one.
    pub size_bytes: Option<u64>,
    /// Slice of the segment to use, if any.
    pub range: Option<SegmentRange>,
}

impl SloSegmentSpec {
    /// `/container/object`, the form Swift uses in messages and manifests.
    pub fn path(&self) -> String {
        format!("/{}/{}", self.container, self.object)
    }
}

/// What the gateway learned from HEAD on a segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentFacts {
    /// The segment's ETag (unquoted; for a sub-SLO, its SLO etag).
    pub etag: String,
    /// The segment's size (for a sub-SLO, its total size).
    pub size_bytes: u64,
    /// The segment's content type, recorded in the manifest when known.
    pub content_type: Option<String>,
}

/// One validated segment of a stored manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SloSegment {
    /// Segment container.
    pub container: String,
    /// Segment object name.
    pub object: String,
    /// Segment object ETag (whole object, even when ranged).
    pub etag: String,
    /// Segment object size (whole object, even when ranged).
    pub size_bytes: u64,
    /// Content type of the segment object, if known.
    pub content_type: Option<String>,
    /// Inclusive slice used, `None` for the whole object.
    pub range: Option<(u64, u64)>,
}

impl SloSegment {
    /// Bytes this segment contributes to the large object.
    pub fn contributed_len(&self) -> u64 {
        match self.range {
            Some((a, b)) => b.saturating_sub(a).saturating_add(1),
            None => self.size_bytes,
        }
    }
}

/// A validated SLO manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SloManifest {
    /// Segments in order.
    pub segments: Vec<SloSegment>,
}

/// Storage / `multipart-manifest=get` form of one segment.
#[derive(Debug, Serialize, Deserialize)]
struct StoredSegment {
    name: String,
    hash: String,
    bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    range: Option<String>,
}

fn bad(msg: impl Into<String>) -> SwiftError {
    SwiftError::bad_request(msg)
}

/// Parses the manifest PUT body. Errors per segment are collected and
/// reported together, one per line, as Swift does (`Index 0: ...`).
pub fn parse_manifest_put(body: &[u8]) -> Result<Vec<SloSegmentSpec>, SwiftError> {
    if body.len() > MAX_MANIFEST_SIZE {
        return Err(SwiftError::entity_too_large(format!(
            "Manifest File > {MAX_MANIFEST_SIZE} bytes"
        )));
    }
    let parsed: Value =
        serde_json::from_slice(body).map_err(|_| bad("Manifest must be valid JSON.\n"))?;
    let Value::Array(items) = parsed else {
        return Err(bad("Manifest must be a list.\n"));
    };
    if items.len() > MAX_MANIFEST_SEGMENTS {
        return Err(SwiftError::entity_too_large(format!(
            "Number of object-backed segments must be <= {MAX_MANIFEST_SEGMENTS}"
        )));
    }
    if items.is_empty() {
        return Err(bad("Manifest must have at least one segment.\n"));
    }
    let last = items.len() - 1;
    let mut errors: Vec<String> = Vec::new();
    let mut specs = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match parse_one(item, i == last) {
            Ok(spec) => specs.push(spec),
            Err(e) => errors.push(format!("Index {i}: {e}")),
        }
    }
    if !errors.is_empty() {
        return Err(bad(errors
            .iter()
            .map(|e| format!("{e}\n"))
            .collect::<String>()));
    }
    Ok(specs)
}

fn parse_one(item: &Value, is_last: bool) -> Result<SloSegmentSpec, String> {
    let Value::Object(map) = item else {
        return Err("not a JSON object".into());
    };
    if map.contains_key("data") {
        return Err("inline \"data\" segments are not supported".into());
    }
    let Some(path) = map.get("path") else {
        return Err("expected keys to include 'path'".into());
    };
    let mut extra: Vec<&String> = map
        .keys()
        .filter(|k| !matches!(k.as_str(), "path" | "etag" | "size_bytes" | "range"))
        .collect();
    if !extra.is_empty() {
        extra.sort();
        let list: Vec<String> = extra.iter().map(|k| format!("\"{k}\"")).collect();
        return Err(format!("extraneous keys {}", list.join(", ")));
    }
    let Value::String(path) = path else {
        return Err("\"path\" must be a string".into());
    };
    let etag = match map.get("etag") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.trim_matches('"').to_string()),
        Some(_) => return Err("\"etag\" must be a string or null (if provided)".into()),
    };
    let trimmed = path.trim_start_matches('/');
    let Some((container, object)) = trimmed
        .split_once('/')
        .filter(|(c, o)| !c.is_empty() && !o.is_empty())
    else {
        return Err(
            "path does not refer to an object. Path must be of the form /container/object.".into(),
        );
    };
    crate::constraints::validate_container_name(container).map_err(|e| e.message)?;
    crate::constraints::validate_object_name(object).map_err(|e| e.message)?;
    let size_bytes = match map.get("size_bytes") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_u64().ok_or("invalid size_bytes")?),
        Some(Value::String(s)) => Some(s.trim().parse::<u64>().map_err(|_| "invalid size_bytes")?),
        Some(_) => return Err("invalid size_bytes".into()),
    };
    if size_bytes.is_some_and(|s| s < MIN_SEGMENT_SIZE) && !is_last {
        return Err("too small; each segment must be at least 1 byte.".into());
    }
    let range = match map.get("range") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => {
            if s.contains(',') {
                return Err("multiple ranges (only one allowed)".into());
            }
            let r = SegmentRange::parse(s).ok_or("invalid range")?;
            if let Some(size) = size_bytes
                && r.resolve(size).is_none()
            {
                return Err("unsatisfiable range".into());
            }
            Some(r)
        }
        Some(_) => return Err("invalid range".into()),
    };
    Ok(SloSegmentSpec {
        container: container.to_string(),
        object: object.to_string(),
        etag,
        size_bytes,
        range,
    })
}

/// Checks each spec against the HEAD facts (same order; `None` = the HEAD
/// failed with 404). Every problem is reported in one 400 body:
/// `Errors:\n/c/o, 404 Not Found\n/c/p, Etag Mismatch\n`.
/// A range covering the whole segment is dropped, as Swift does.
pub fn validate_segments(
    specs: &[SloSegmentSpec],
    actual: &[Option<SegmentFacts>],
) -> Result<SloManifest, SwiftError> {
    if specs.len() != actual.len() {
        return Err(SwiftError::new(
            500,
            "segment facts do not match the manifest",
        ));
    }
    let mut problems: Vec<(String, &'static str)> = Vec::new();
    let mut segments = Vec::with_capacity(specs.len());
    let last = specs.len().saturating_sub(1);
    for (i, (spec, facts)) in specs.iter().zip(actual).enumerate() {
        let path = quote_path(&spec.path());
        let Some(facts) = facts else {
            problems.push((path, "404 Not Found"));
            continue;
        };
        let mut range = None;
        let mut length = facts.size_bytes;
        if let Some(r) = spec.range {
            match r.resolve(facts.size_bytes) {
                None => problems.push((path.clone(), "Unsatisfiable Range")),
                Some((0, b)) if b + 1 == facts.size_bytes => {}
                Some((a, b)) => {
                    range = Some((a, b));
                    length = b - a + 1;
                }
            }
        }
        if length < MIN_SEGMENT_SIZE && i != last {
            problems.push((
                path.clone(),
                "Too small; each segment must be at least 1 byte.",
            ));
        }
        if spec.size_bytes.is_some_and(|s| s != facts.size_bytes) {
            problems.push((path.clone(), "Size Mismatch"));
        }
        let actual_etag = facts.etag.trim_matches('"');
        if spec.etag.as_deref().is_some_and(|e| e != actual_etag) {
            problems.push((path.clone(), "Etag Mismatch"));
        }
        segments.push(SloSegment {
            container: spec.container.clone(),
            object: spec.object.clone(),
            etag: actual_etag.to_string(),
            size_bytes: facts.size_bytes,
            content_type: facts.content_type.clone(),
            range,
        });
    }
    if !problems.is_empty() {
        let body: String = problems
            .iter()
            .map(|(p, why)| format!("{p}, {why}\n"))
            .collect();
        return Err(bad(format!("Errors:\n{body}")));
    }
    Ok(SloManifest { segments })
}

/// Percent-quotes a path for error messages like Python's `quote` (keeps
/// `/` and unreserved characters).
fn quote_path(path: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const KEEP: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    utf8_percent_encode(path, KEEP).to_string()
}

/// 422 when the client's `ETag` on the manifest PUT is not the SLO etag.
pub fn check_client_etag(
    manifest: &SloManifest,
    client_etag: Option<&str>,
) -> Result<(), SwiftError> {
    match client_etag.map(|e| e.trim().trim_matches('"')) {
        Some(e) if !e.is_empty() && e != manifest.etag() => Err(SwiftError::unprocessable("")),
        _ => Ok(()),
    }
}

impl SloManifest {
    /// Size of the large object: the sum of contributed segment lengths.
    pub fn total_size(&self) -> u64 {
        self.segments
            .iter()
            .map(SloSegment::contributed_len)
            .fold(0u64, u64::saturating_add)
    }

    /// The SLO's ETag (unquoted): MD5 hex of the concatenation of each
    /// segment's etag, or `"{etag}:{first}-{last};"` for ranged segments.
    pub fn etag(&self) -> String {
        let mut h = Md5::new();
        for s in &self.segments {
            match s.range {
                Some((a, b)) => h.update(format!("{}:{}-{};", s.etag, a, b).as_bytes()),
                None => h.update(s.etag.as_bytes()),
            }
        }
        hex::encode(h.finalize())
    }

    /// JSON stored as the manifest body and returned for
    /// `?multipart-manifest=get`: `[{"name":"/c/o","hash":..,"bytes":..,
    /// "content_type":..?,"range":"a-b"?}]`.
    pub fn to_stored_json(&self) -> String {
        let stored: Vec<StoredSegment> = self
            .segments
            .iter()
            .map(|s| StoredSegment {
                name: format!("/{}/{}", s.container, s.object),
                hash: s.etag.clone(),
                bytes: s.size_bytes,
                content_type: s.content_type.clone(),
                range: s.range.map(|(a, b)| format!("{a}-{b}")),
            })
            .collect();
        serde_json::to_string(&stored).unwrap_or_else(|_| "[]".to_string())
    }

    /// Parses a stored manifest back. Corrupt data → 500-style error
    /// (status 500) since the manifest was written by us.
    pub fn from_stored_json(data: &[u8]) -> Result<Self, SwiftError> {
        let corrupt = || SwiftError::new(500, "Unable to load SLO manifest");
        let stored: Vec<StoredSegment> = serde_json::from_slice(data).map_err(|_| corrupt())?;
        let mut segments = Vec::with_capacity(stored.len());
        for s in stored {
            let (container, object) = s
                .name
                .trim_start_matches('/')
                .split_once('/')
                .map(|(c, o)| (c.to_string(), o.to_string()))
                .ok_or_else(corrupt)?;
            let range = match s.range {
                None => None,
                Some(r) => {
                    let (a, b) = r.split_once('-').ok_or_else(corrupt)?;
                    let a: u64 = a.parse().map_err(|_| corrupt())?;
                    let b: u64 = b.parse().map_err(|_| corrupt())?;
                    if a > b || b >= s.bytes {
                        return Err(corrupt());
                    }
                    Some((a, b))
                }
            };
            segments.push(SloSegment {
                container,
                object,
                etag: s.hash,
                size_bytes: s.bytes,
                content_type: s.content_type,
                range,
            });
        }
        Ok(SloManifest { segments })
    }

    /// Reads needed to serve the inclusive byte range `range` of the large
    /// object (`None` = everything), in order. Offsets are within each
    /// segment object (ranged segments are shifted accordingly).
    pub fn plan_read(&self, range: Option<(u64, u64)>) -> Vec<SegmentRead> {
        plan(
            self.segments.iter().map(|s| Piece {
                container: &s.container,
                object: &s.object,
                offset: s.range.map_or(0, |(a, _)| a),
                len: s.contributed_len(),
            }),
            range,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn md5hex(s: &str) -> String {
        hex::encode(Md5::digest(s.as_bytes()))
    }

    #[test]
    fn parses_put_body() {
        let body = br#"[{"path":"/c/a","etag":"e1","size_bytes":10},
                        {"path":"c/b/x","etag":null,"size_bytes":"5","range":"1-2"},
                        {"path":"/c/z","range":"-3"}]"#;
        let s = parse_manifest_put(body).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            (s[1].container.as_str(), s[1].object.as_str()),
            ("c", "b/x")
        );
        assert_eq!(s[1].range, Some(SegmentRange::FromTo(1, 2)));
        assert_eq!(s[1].size_bytes, Some(5));
        assert_eq!(s[2].range, Some(SegmentRange::Suffix(3)));
        assert_eq!(s[0].etag.as_deref(), Some("e1"));
    }

    #[test]
    fn rejects_bad_bodies() {
        assert_eq!(
            parse_manifest_put(b"nope").unwrap_err().message,
            "Manifest must be valid JSON.\n"
        );
        assert_eq!(
            parse_manifest_put(b"{}").unwrap_err().message,
            "Manifest must be a list.\n"
        );
        let e = parse_manifest_put(br#"[{"data":"aGk="},{"path":"/c"},{"path":"/c/o","x":1},{"path":"/c/o","size_bytes":0},{"path":"/c/o","range":"5-1"}]"#).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("Index 0: inline \"data\""));
        assert!(
            e.message
                .contains("Index 1: path does not refer to an object")
        );
        assert!(e.message.contains("Index 2: extraneous keys \"x\""));
        assert!(e.message.contains("Index 3: too small"));
        assert!(e.message.contains("Index 4: invalid range"));
        let many = format!("[{}]", vec![r#"{"path":"/c/o"}"#; 1001].join(","));
        assert_eq!(parse_manifest_put(many.as_bytes()).unwrap_err().status, 413);
        assert_eq!(
            parse_manifest_put(&vec![b' '; MAX_MANIFEST_SIZE + 1])
                .unwrap_err()
                .status,
            413
        );
        // last segment may be empty
        assert!(
            parse_manifest_put(
                br#"[{"path":"/c/o","size_bytes":1},{"path":"/c/p","size_bytes":0}]"#
            )
            .is_ok()
        );
        let e =
            parse_manifest_put(br#"[{"path":"/c/o","size_bytes":4,"range":"9-"}]"#).unwrap_err();
        assert!(e.message.contains("unsatisfiable range"));
    }

    fn facts(etag: &str, size: u64) -> Option<SegmentFacts> {
        Some(SegmentFacts {
            etag: etag.into(),
            size_bytes: size,
            content_type: Some("application/octet-stream".into()),
        })
    }

    #[test]
    fn validates_and_reports_every_problem() {
        let specs = parse_manifest_put(
            br#"[{"path":"/c/a","etag":"x"},{"path":"/c/b b","size_bytes":3},{"path":"/c/m"}]"#,
        )
        .unwrap();
        let e = validate_segments(&specs, &[facts("y", 1), facts("e", 4), None]).unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(
            e.message,
            "Errors:\n/c/a, Etag Mismatch\n/c/b%20b, Size Mismatch\n/c/m, 404 Not Found\n"
        );
    }

    #[test]
    fn etag_and_ranges_like_swift() {
        let specs =
            parse_manifest_put(br#"[{"path":"/c/a","range":"1-2"},{"path":"/c/b","range":"3-4"}]"#)
                .unwrap();
        let m = validate_segments(
            &specs,
            &[
                facts("etagoftheobjectsegmentone", 10),
                facts("etagoftheobjectsegmenttwo", 10),
            ],
        )
        .unwrap();
        assert_eq!(
            m.etag(),
            md5hex("etagoftheobjectsegmentone:1-2;etagoftheobjectsegmenttwo:3-4;")
        );
        assert_eq!(m.total_size(), 4);
        let specs =
            parse_manifest_put(br#"[{"path":"/c/a"},{"path":"/c/b","range":"0-"}]"#).unwrap();
        let m = validate_segments(&specs, &[facts("e1", 5), facts("e2", 7)]).unwrap();
        assert_eq!(m.segments[1].range, None, "whole-object range is dropped");
        assert_eq!(m.etag(), md5hex("e1e2"));
        assert_eq!(m.total_size(), 12);
        assert!(check_client_etag(&m, Some(&format!("\"{}\"", md5hex("e1e2")))).is_ok());
        assert_eq!(check_client_etag(&m, Some("nope")).unwrap_err().status, 422);
        let specs = parse_manifest_put(br#"[{"path":"/c/a","range":"-3"}]"#).unwrap();
        let m = validate_segments(&specs, &[facts("e", 10)]).unwrap();
        assert_eq!(m.segments[0].range, Some((7, 9)));
        let specs = parse_manifest_put(br#"[{"path":"/c/a","range":"20-"}]"#).unwrap();
        let e = validate_segments(&specs, &[facts("e", 10)]).unwrap_err();
        assert!(e.message.contains("Unsatisfiable Range"));
        let specs = parse_manifest_put(br#"[{"path":"/c/a"},{"path":"/c/b"}]"#).unwrap();
        let e = validate_segments(&specs, &[facts("e", 0), facts("e", 0)]).unwrap_err();
        assert!(e.message.contains("/c/a, Too small"));
        assert!(!e.message.contains("/c/b"));
    }

    #[test]
    fn stored_json_roundtrip() {
        let specs =
            parse_manifest_put(br#"[{"path":"/c/a"},{"path":"/d/b/c","range":"1-3"}]"#).unwrap();
        let m = validate_segments(
            &specs,
            &[
                facts("e1", 5),
                SegmentFacts {
                    etag: "\"e2\"".into(),
                    size_bytes: 7,
                    content_type: None,
                }
                .into(),
            ],
        )
        .unwrap();
        let json = m.to_stored_json();
        assert_eq!(
            json,
            r#"[{"name":"/c/a","hash":"e1","bytes":5,"content_type":"application/octet-stream"},{"name":"/d/b/c","hash":"e2","bytes":7,"range":"1-3"}]"#
        );
        assert_eq!(SloManifest::from_stored_json(json.as_bytes()).unwrap(), m);
        assert_eq!(
            SloManifest::from_stored_json(b"[{\"name\":\"x\"}]")
                .unwrap_err()
                .status,
            500
        );
    }

    #[test]
    fn plan_read_examples() {
        let specs = parse_manifest_put(
            br#"[{"path":"/c/a"},{"path":"/c/b","range":"10-19"},{"path":"/c/c"}]"#,
        )
        .unwrap();
        let m =
            validate_segments(&specs, &[facts("a", 5), facts("b", 100), facts("c", 5)]).unwrap();
        let r = m.plan_read(Some((3, 16)));
        let got: Vec<(&str, u64, u64)> = r
            .iter()
            .map(|s| (s.object.as_str(), s.start, s.end))
            .collect();
        assert_eq!(got, vec![("a", 3, 5), ("b", 10, 20), ("c", 0, 2)]);
        assert_eq!(m.plan_read(None).len(), 3);
        assert!(m.plan_read(Some((100, 200))).is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn put_body_never_panics(s in ".{0,200}") {
            let _ = parse_manifest_put(s.as_bytes());
        }

        #[test]
        fn structured_put_body_never_panics(
            paths in proptest::collection::vec("/?[a-c/]{0,5}", 0..5),
            sizes in proptest::collection::vec(proptest::option::of(-2i64..5), 0..5),
            ranges in proptest::collection::vec(proptest::option::of("[0-9-, ]{0,5}"), 0..5),
        ) {
            let items: Vec<serde_json::Value> = paths.iter().enumerate().map(|(i, p)| {
                let mut m = serde_json::Map::new();
                m.insert("path".into(), p.clone().into());
                if let Some(Some(s)) = sizes.get(i) { m.insert("size_bytes".into(), (*s).into()); }
                if let Some(Some(r)) = ranges.get(i) { m.insert("range".into(), r.clone().into()); }
                serde_json::Value::Object(m)
            }).collect();
            let body = serde_json::to_vec(&items).unwrap();
            if let Ok(specs) = parse_manifest_put(&body) {
                let f: Vec<Option<SegmentFacts>> = specs.iter().map(|_| facts("e", 3)).collect();
                let _ = validate_segments(&specs, &f);
            }
        }

        #[test]
        fn stored_json_never_panics(s in ".{0,200}") {
            let _ = SloManifest::from_stored_json(s.as_bytes());
        }

        #[test]
        fn structured_stored_json_never_panics(
            segs in proptest::collection::vec(("/?[a-c/]{0,4}", any::<u64>(), proptest::option::of("[0-9]{0,20}-[0-9]{0,20}")), 0..6),
            a: u64, b: u64,
        ) {
            let items: Vec<serde_json::Value> = segs.iter().map(|(n, bytes, r)| {
                let mut v = serde_json::json!({"name": n, "hash": "h", "bytes": bytes});
                if let Some(r) = r { v["range"] = r.clone().into(); }
                v
            }).collect();
            if let Ok(m) = SloManifest::from_stored_json(&serde_json::to_vec(&items).unwrap()) {
                let _ = m.total_size();
                let _ = m.etag();
                let _ = m.plan_read(Some((a.min(b), a.max(b))));
                let _ = m.plan_read(None);
            }
        }

        #[test]
        fn plan_read_covers_exactly(
            segs in proptest::collection::vec((0u64..50, proptest::option::of((0u64..20, 0u64..20))), 1..12),
            a in 0u64..700, b in 0u64..700, whole: bool,
        ) {
            let segments: Vec<SloSegment> = segs.iter().enumerate().map(|(i, (size, r))| {
                let range = r.and_then(|(x, y)| {
                    let (x, y) = (x.min(y), x.max(y));
                    (y < *size).then_some((x, y))
                });
                SloSegment { container: "c".into(), object: format!("{i}"), etag: "e".into(), size_bytes: *size, content_type: None, range }
            }).collect();
            let m = SloManifest { segments };
            // Expand the logical object byte-by-byte as (segment index, offset).
            let mut logical: Vec<(usize, u64)> = Vec::new();
            for (i, s) in m.segments.iter().enumerate() {
                let (from, to) = s.range.map_or((0, s.size_bytes), |(x, y)| (x, y + 1));
                for off in from..to { logical.push((i, off)); }
            }
            prop_assert_eq!(logical.len() as u64, m.total_size());
            let range = if whole { None } else { Some((a.min(b), a.max(b))) };
            let expected: Vec<(usize, u64)> = match range {
                None => logical.clone(),
                Some((x, y)) => logical.iter().skip(usize::try_from(x).unwrap()).take(usize::try_from(y - x + 1).unwrap()).cloned().collect(),
            };
            let mut got: Vec<(usize, u64)> = Vec::new();
            for r in m.plan_read(range) {
                prop_assert!(r.start < r.end);
                let idx: usize = r.object.parse().unwrap();
                for off in r.start..r.end { got.push((idx, off)); }
            }
            prop_assert_eq!(got, expected);
        }
    }
}
