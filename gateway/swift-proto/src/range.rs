//! The `Range` request header, with swob's rules.
//!
//! * Any syntactically invalid spec (missing `bytes=`, `5-3`, `-`, `45`,
//!   non-digits) makes the *whole header ignored*: serve the full object
//!   (returned here as an empty vector).
//! * Satisfiable specs are kept and clipped; if none is satisfiable the
//!   answer is 416 — including any range on an empty object.
//! * Egregious sets are refused with 416 as Swift does: more than
//!   [`MAX_RANGES`] ranges, more than [`MAX_RANGE_OVERLAPS`] overlapping
//!   pairs, or ≥ [`MAX_NONASCENDING_RANGES`] ranges out of order.

use crate::error::SwiftError;

/// Most ranges in one request.
pub const MAX_RANGES: usize = 50;
/// Most pairwise overlaps among the ranges.
pub const MAX_RANGE_OVERLAPS: usize = 2;
/// A non-ascending set this large is refused.
pub const MAX_NONASCENDING_RANGES: usize = 8;
/// Longest header examined; a longer one cannot hold ≤ 50 sane ranges.
pub const MAX_RANGE_HEADER_LENGTH: usize = 4096;

type Spec = (Option<u64>, Option<u64>);

fn parse_specs(header: &str) -> Option<Vec<Spec>> {
    if header.len() > MAX_RANGE_HEADER_LENGTH {
        return None;
    }
    let h: String = header.chars().filter(|c| *c != ' ').collect();
    let rest = h
        .get(..6)
        .filter(|p| p.eq_ignore_ascii_case("bytes="))
        .and(h.get(6..))?;
    let num = |s: &str| -> Option<u64> {
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Absurdly large values saturate: still "past the end".
        Some(s.parse().unwrap_or(u64::MAX))
    };
    let mut specs = Vec::new();
    for r in rest.split(',') {
        let (a, b) = r.split_once('-')?;
        let start = if a.is_empty() { None } else { Some(num(a)?) };
        let end = if b.is_empty() { None } else { Some(num(b)?) };
        match (start, end) {
            (None, None) => return None,
            (Some(s), Some(e)) if e < s => return None,
            _ => {}
        }
        specs.push((start, end));
    }
    Some(specs)
}

/// Parses `Range` against an object of `size` bytes. Returns inclusive
/// `(first, last)` pairs in request order; an empty vector means "ignore the
/// header, send everything with 200"; `Err` is 416.
pub fn parse_ranges(header: &str, size: u64) -> Result<Vec<(u64, u64)>, SwiftError> {
    let Some(specs) = parse_specs(header) else {
        return Ok(Vec::new());
    };
    let unsatisfiable = || SwiftError::range_not_satisfiable("Requested Range Not Satisfiable");
    // Half-open [start, end) like swob, converted at the end.
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for (start, end) in specs {
        match (start, end) {
            (None, Some(0)) => {}
            (None, Some(n)) => ranges.push((size.saturating_sub(n), size)),
            (Some(s), None) if s < size => ranges.push((s, size)),
            (Some(s), Some(e)) if s < size => ranges.push((s, e.saturating_add(1).min(size))),
            _ => {}
        }
    }
    ranges.retain(|(s, e)| s < e);
    if ranges.is_empty() || ranges.len() > MAX_RANGES {
        return Err(unsatisfiable());
    }
    let mut overlaps = 0usize;
    for (i, &(s1, e1)) in ranges.iter().enumerate() {
        for &(s2, e2) in &ranges[i + 1..] {
            let strictly_inside = |x: u64, lo: u64, hi: u64| lo < x && x < hi;
            if strictly_inside(s2, s1, e1)
                || strictly_inside(e2, s1, e1)
                || strictly_inside(s1, s2, e2)
                || strictly_inside(e1, s2, e2)
            {
                overlaps += 1;
                if overlaps > MAX_RANGE_OVERLAPS {
                    return Err(unsatisfiable());
                }
            }
        }
    }
    let ascending = ranges.windows(2).all(|w| w[0] <= w[1]);
    if !ascending && ranges.len() >= MAX_NONASCENDING_RANGES {
        return Err(unsatisfiable());
    }
    Ok(ranges.into_iter().map(|(s, e)| (s, e - 1)).collect())
}

/// `Content-Range` value for a partial response (`bytes 0-9/100`).
pub fn content_range(first: u64, last: u64, size: u64) -> String {
    format!("bytes {first}-{last}/{size}")
}

/// `Content-Range` value accompanying a 416 (`bytes */100`).
pub fn unsatisfied_content_range(size: u64) -> String {
    format!("bytes */{size}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn forms() {
        assert_eq!(parse_ranges("bytes=0-9", 100).unwrap(), vec![(0, 9)]);
        assert_eq!(parse_ranges("bytes=90-", 100).unwrap(), vec![(90, 99)]);
        assert_eq!(parse_ranges("bytes=-10", 100).unwrap(), vec![(90, 99)]);
        assert_eq!(parse_ranges("bytes=-1000", 100).unwrap(), vec![(0, 99)]);
        assert_eq!(parse_ranges("bytes=50-1000", 100).unwrap(), vec![(50, 99)]);
        assert_eq!(
            parse_ranges("Bytes = 0-1, 5-6", 100).unwrap(),
            vec![(0, 1), (5, 6)]
        );
        assert_eq!(
            parse_ranges("bytes=0-1,200-300", 100).unwrap(),
            vec![(0, 1)]
        );
    }

    #[test]
    fn ignored_headers() {
        for h in [
            "",
            "bytes=5-3",
            "bytes=-",
            "bytes=45",
            "bytes=a-b",
            "items=0-1",
            "bytes=0-1,x",
        ] {
            assert!(parse_ranges(h, 100).unwrap().is_empty(), "{h}");
        }
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(parse_ranges("bytes=100-", 100).unwrap_err().status, 416);
        assert_eq!(parse_ranges("bytes=-0", 100).unwrap_err().status, 416);
        assert_eq!(parse_ranges("bytes=0-0", 0).unwrap_err().status, 416);
        let many: Vec<String> = (0..51).map(|i| format!("{i}-{i}")).collect();
        assert_eq!(
            parse_ranges(&format!("bytes={}", many.join(",")), 100)
                .unwrap_err()
                .status,
            416
        );
        assert_eq!(
            parse_ranges("bytes=0-50,1-50,2-50,3-50", 100)
                .unwrap_err()
                .status,
            416
        );
        let desc: Vec<String> = (0..8).rev().map(|i| format!("{i}-{i}")).collect();
        assert_eq!(
            parse_ranges(&format!("bytes={}", desc.join(",")), 100)
                .unwrap_err()
                .status,
            416
        );
        assert_eq!(content_range(0, 9, 100), "bytes 0-9/100");
        assert_eq!(unsatisfied_content_range(100), "bytes */100");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn never_panics_and_in_bounds(h in "(bytes=)?[0-9,\\- ]{0,30}", size in 0u64..1000) {
            if let Ok(rs) = parse_ranges(&h, size) {
                for (a, b) in rs { prop_assert!(a <= b && b < size); }
            }
        }

        #[test]
        fn random_strings_never_panic(h in ".{0,60}", size: u64) {
            let _ = parse_ranges(&h, size);
        }
    }
}
