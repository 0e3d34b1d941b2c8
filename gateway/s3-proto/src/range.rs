//! The `Range` request header, restricted to what S3 serves: one byte range.

use crate::error::{S3Error, S3ErrorCode};

/// A satisfiable byte range, half-open: `[start, end)` with `end <= size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    /// Number of bytes in the range (never 0 for parsed ranges).
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// The `Content-Range` value of a 206 response: `bytes 0-9/100`.
    pub fn content_range(&self, size: u64) -> String {
        format!("bytes {}-{}/{size}", self.start, self.end.saturating_sub(1))
    }
}

/// Why a syntactically valid range cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Answer 416 `InvalidRange` with `Content-Range: bytes */size`.
    #[error("the requested range is not satisfiable")]
    Unsatisfiable,
}

impl RangeError {
    /// The S3 error to send.
    pub fn to_s3_error(self) -> S3Error {
        S3Error::new(
            S3ErrorCode::InvalidRange,
            "The requested range is not satisfiable",
        )
    }
}

/// `Content-Range` for a 416 response: `bytes */size`.
pub fn unsatisfied_content_range(size: u64) -> String {
    format!("bytes */{size}")
}

fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parse a `Range` header against an object of `size` bytes.
///
/// `Ok(None)` means "serve the whole object": AWS ignores a header it
/// cannot parse, and multiple ranges, rather than failing the request.
/// Forms: `bytes=a-b` (b clamped to size-1), `bytes=a-`, `bytes=-n`
/// (last n bytes). A first byte at or past the end, or `-0`, is
/// unsatisfiable (an empty object satisfies no range).
pub fn parse_range(header: &str, size: u64) -> Result<Option<ByteRange>, RangeError> {
    let header = header.trim();
    let Some(unit) = header.get(..6) else {
        return Ok(None);
    };
    if !unit.eq_ignore_ascii_case("bytes=") {
        return Ok(None);
    }
    let spec = header[6..].trim();
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        let Some(n) = number(last) else {
            return Ok(None);
        };
        if n == 0 || size == 0 {
            return Err(RangeError::Unsatisfiable);
        }
        return Ok(Some(ByteRange {
            start: size.saturating_sub(n),
            end: size,
        }));
    }
    let Some(start) = number(first) else {
        return Ok(None);
    };
    let end = if last.is_empty() {
        size
    } else {
        let Some(last) = number(last) else {
            return Ok(None);
        };
        if last < start {
            return Ok(None);
        }
        last.saturating_add(1).min(size)
    };
    if start >= size {
        return Err(RangeError::Unsatisfiable);
    }
    Ok(Some(ByteRange { start, end }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> Result<Option<ByteRange>, RangeError> {
        Ok(Some(ByteRange { start, end }))
    }

    #[test]
    fn forms() {
        assert_eq!(parse_range("bytes=0-9", 100), r(0, 10));
        assert_eq!(parse_range("bytes=90-200", 100), r(90, 100));
        assert_eq!(parse_range("bytes=10-", 100), r(10, 100));
        assert_eq!(parse_range("bytes=-10", 100), r(90, 100));
        assert_eq!(parse_range("bytes=-1000", 100), r(0, 100));
        assert_eq!(parse_range("Bytes=0-0", 1), r(0, 1));
        assert_eq!(parse_range("bytes=99-99", 100), r(99, 100));
    }

    #[test]
    fn unsatisfiable() {
        for h in ["bytes=100-", "bytes=100-200", "bytes=-0", "bytes=0-"] {
            let size = if h == "bytes=0-" { 0 } else { 100 };
            assert_eq!(parse_range(h, size), Err(RangeError::Unsatisfiable), "{h}");
        }
        assert_eq!(parse_range("bytes=-5", 0), Err(RangeError::Unsatisfiable));
        assert_eq!(RangeError::Unsatisfiable.to_s3_error().status(), 416);
        assert_eq!(unsatisfied_content_range(7), "bytes */7");
    }

    #[test]
    fn ignored() {
        for h in [
            "",
            "bytes",
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "bytes=5-1",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=1",
            "bytes=99999999999999999999999-",
            "bytes=+1-2",
        ] {
            assert_eq!(parse_range(h, 100), Ok(None), "{h}");
        }
    }

    #[test]
    fn content_range() {
        let b = ByteRange { start: 0, end: 10 };
        assert_eq!(b.content_range(100), "bytes 0-9/100");
        assert_eq!(b.len(), 10);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn never_panics_and_in_bounds(h in "(bytes|Bytes)?=?[0-9-, ]{0,30}|.{0,40}", size in 0u64..1000) {
            if let Ok(Some(r)) = parse_range(&h, size) {
                proptest::prop_assert!(r.start < r.end && r.end <= size);
            }
        }
    }
}
