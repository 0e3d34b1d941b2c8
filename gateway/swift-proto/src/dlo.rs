//! Dynamic Large Objects: `X-Object-Manifest: container/prefix` names a
//! container and an object-name prefix; the object's content is the
//! concatenation of every object in that container whose name starts with
//! the prefix, in listing (byte) order, read at GET time.

use md5::{Digest, Md5};
use percent_encoding::percent_decode_str;

use crate::constraints::{validate_container_name, validate_object_name};
use crate::error::SwiftError;
use crate::segments::{Piece, SegmentRead, plan};

/// Most segments a DLO GET will list and stitch (Swift pages listings of
/// 10000; beyond this the gateway should refuse rather than loop forever).
pub const MAX_DLO_SEGMENTS: usize = 10_000;

const FORMAT_MSG: &str = "X-Object-Manifest must be in the format container/prefix";

/// Parses an `X-Object-Manifest` value into `(container, prefix)`, both
/// percent-decoded. The value must look like `container/prefix` with no
/// leading `/` and no query characters (`?`, `&`), as Swift requires.
pub fn parse_object_manifest(value: &str) -> Result<(String, String), SwiftError> {
    let value = value.trim();
    if value.starts_with('/') || value.contains('?') || value.contains('&') {
        return Err(SwiftError::bad_request(FORMAT_MSG));
    }
    let (c, p) = value
        .split_once('/')
        .ok_or_else(|| SwiftError::bad_request(FORMAT_MSG))?;
    let decode = |s: &str| {
        percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| SwiftError::bad_request(FORMAT_MSG))
    };
    let (container, prefix) = (decode(c)?, decode(p)?);
    if container.is_empty() || prefix.is_empty() {
        return Err(SwiftError::bad_request(FORMAT_MSG));
    }
    validate_container_name(&container)?;
    validate_object_name(&prefix)?;
    Ok((container, prefix))
}

/// Plans the reads of a DLO given its segments `(object name, size)` in
/// listing order, all in `container`, for the inclusive range `range`
/// (`None` = whole object).
pub fn plan_dlo_read(
    container: &str,
    segments: &[(String, u64)],
    range: Option<(u64, u64)>,
) -> Vec<SegmentRead> {
    plan(
        segments.iter().map(|(name, size)| Piece {
            container,
            object: name,
            offset: 0,
            len: *size,
        }),
        range,
    )
}

/// Total size of a DLO.
pub fn dlo_total_size(segments: &[(String, u64)]) -> u64 {
    segments
        .iter()
        .map(|(_, s)| *s)
        .fold(0u64, u64::saturating_add)
}

/// DLO ETag as Swift computes it: MD5 hex of the concatenated (unquoted)
/// segment etags, in listing order. Swift sends it quoted.
pub fn dlo_etag<'a>(segment_etags: impl IntoIterator<Item = &'a str>) -> String {
    let mut h = Md5::new();
    for e in segment_etags {
        h.update(e.trim_matches('"').as_bytes());
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_manifest_header() {
        assert_eq!(
            parse_object_manifest("segs/big/").unwrap(),
            ("segs".into(), "big/".into())
        );
        assert_eq!(
            parse_object_manifest("se%20gs/a%2Fb").unwrap(),
            ("se gs".into(), "a/b".into())
        );
        for bad in ["", "segs", "/segs/p", "segs/", "/p", "c/p?x", "%ff/p"] {
            assert_eq!(parse_object_manifest(bad).unwrap_err().status, 400, "{bad}");
        }
    }

    #[test]
    fn plans_reads() {
        let segs = vec![
            ("p/1".to_string(), 4),
            ("p/2".to_string(), 0),
            ("p/3".to_string(), 4),
        ];
        let r = plan_dlo_read("c", &segs, Some((2, 5)));
        let got: Vec<(&str, u64, u64)> = r
            .iter()
            .map(|s| (s.object.as_str(), s.start, s.end))
            .collect();
        assert_eq!(got, vec![("p/1", 2, 4), ("p/3", 0, 2)]);
        assert_eq!(plan_dlo_read("c", &segs, None).len(), 2);
        assert_eq!(dlo_total_size(&segs), 8);
        assert_eq!(dlo_etag(["a", "\"b\""]), hex::encode(Md5::digest(b"ab")));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn manifest_parse_never_panics(s in ".{0,60}") {
            let _ = parse_object_manifest(&s);
        }

        #[test]
        fn dlo_plan_covers_range(sizes in proptest::collection::vec(0u64..20, 0..10), a in 0u64..250, b in 0u64..250) {
            let segs: Vec<(String, u64)> = sizes.iter().enumerate().map(|(i, s)| (format!("{i}"), *s)).collect();
            let total = dlo_total_size(&segs);
            let (x, y) = (a.min(b), a.max(b));
            let got: u64 = plan_dlo_read("c", &segs, Some((x, y))).iter().map(|r| r.end - r.start).sum();
            let want = if x >= total { 0 } else { y.min(total - 1) - x + 1 };
            prop_assert_eq!(got, want);
        }
    }
}
