//! Swift's three time renderings.
//!
//! * `X-Timestamp` / `X-Put-Timestamp`: seconds with exactly five decimals,
//!   zero-padded to 16 characters (`1700000000.12345`).
//! * listing `last_modified`: ISO 8601 with six fractional digits and *no*
//!   zone designator (`2025-01-01T00:00:00.000000`), always UTC.
//! * `Last-Modified`: an HTTP-date; Swift rounds the timestamp *up* to the
//!   next whole second so that `If-Modified-Since` with the returned value
//!   never reports a change that did not happen.
//!
//! All inputs are microseconds since the Unix epoch, which is what the
//! gateway stores.

use std::time::{Duration, UNIX_EPOCH};

const MICROS_PER_SEC: u64 = 1_000_000;
/// X-Timestamp has five decimals: ticks of 10 µs.
const MICROS_PER_TICK: u64 = 10;
const TICKS_PER_SEC: u64 = 100_000;
const SECS_PER_DAY: u64 = 86_400;

/// Formats unix microseconds as Swift's `X-Timestamp` (`%016.05f`),
/// rounding to the nearest 10 µs as Swift does.
pub fn x_timestamp(unix_micros: u64) -> String {
    let ticks = unix_micros.saturating_add(MICROS_PER_TICK / 2) / MICROS_PER_TICK;
    format!("{:010}.{:05}", ticks / TICKS_PER_SEC, ticks % TICKS_PER_SEC)
}

/// Parses an `X-Timestamp` value (`1700000000.12345`, `1700000000`, or with
/// up to six decimals) back into unix microseconds. Swift's internal
/// `_offset` suffix (`..._0000000000000001`) is ignored. Returns `None` for
/// anything else, including negative or overflowing values.
pub fn parse_x_timestamp(value: &str) -> Option<u64> {
    let value = value.trim();
    let value = value.split('_').next().unwrap_or(value);
    let (secs, frac) = match value.split_once('.') {
        Some((s, f)) => (s, f),
        None => (value, ""),
    };
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let mut micros: u64 = 0;
    for (i, b) in frac.bytes().enumerate() {
        let digit = u64::from(b - b'0');
        micros += digit * 10u64.pow(5 - u32::try_from(i).ok()?);
    }
    secs.checked_mul(MICROS_PER_SEC)?.checked_add(micros)
}

/// Formats unix microseconds as a listing `last_modified`
/// (`2025-01-01T00:00:00.000000`).
pub fn listing_last_modified(unix_micros: u64) -> String {
    let secs = unix_micros / MICROS_PER_SEC;
    let micros = unix_micros % MICROS_PER_SEC;
    let (y, mo, d, h, mi, s) = civil_from_unix(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{micros:06}")
}

/// `Last-Modified` header value: the timestamp rounded up to a whole second,
/// as an HTTP-date (`Mon, 01 Jan 2024 00:00:00 GMT`).
pub fn last_modified_header(unix_micros: u64) -> String {
    http_date(unix_micros.div_ceil(MICROS_PER_SEC))
}

/// Any whole-second unix time as an HTTP-date (IMF-fixdate). Used for
/// `Last-Modified`, `Date` and TempURL's `Expires`.
pub fn http_date(unix_secs: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(unix_secs))
}

/// Parses an HTTP-date (any of the three RFC 9110 forms) to unix seconds;
/// used for `If-Modified-Since` / `If-Unmodified-Since`.
pub fn parse_http_date(value: &str) -> Option<u64> {
    let t = httpdate::parse_http_date(value.trim()).ok()?;
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// Parses the strict UTC form TempURL accepts for `temp_url_expires`:
/// `YYYY-MM-DDTHH:MM:SSZ`. Returns unix seconds.
pub fn parse_iso8601_utc(value: &str) -> Option<u64> {
    let b = value.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let s = value.get(r)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 60
    {
        return None;
    }
    let days = days_from_civil(y, mo, d)?;
    Some(days * SECS_PER_DAY + h * 3600 + mi * 60 + s)
}

fn is_leap(y: u64) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

fn days_in_month(y: u64, m: u64) -> u64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (years ≥ 1970).
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    if y < 1970 {
        return None;
    }
    let mut days = 0u64;
    // Whole 400-year cycles first so huge years stay cheap.
    let cycles = (y - 1970) / 400;
    days += cycles * 146_097;
    let mut year = 1970 + cycles * 400;
    while year < y {
        days += if is_leap(year) { 366 } else { 365 };
        year += 1;
    }
    for month in 1..m {
        days += days_in_month(y, month);
    }
    Some(days + d - 1)
}

/// Converts unix seconds to (year, month, day, hour, minute, second) UTC.
fn civil_from_unix(secs: u64) -> (u64, u64, u64, u64, u64, u64) {
    let mut days = secs / SECS_PER_DAY;
    let rem = secs % SECS_PER_DAY;
    let mut year = 1970 + (days / 146_097) * 400;
    days %= 146_097;
    loop {
        let len = if is_leap(year) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
    }
    let mut month = 1;
    loop {
        let len = days_in_month(year, month);
        if days < len {
            break;
        }
        days -= len;
        month += 1;
    }
    (
        year,
        month,
        days + 1,
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn x_timestamp_format() {
        assert_eq!(x_timestamp(1_700_000_000_123_450), "1700000000.12345");
        assert_eq!(x_timestamp(1_700_000_000_000_000), "1700000000.00000");
        assert_eq!(x_timestamp(1_000_000), "0000000001.00000");
        assert_eq!(x_timestamp(1_999_996), "0000000002.00000");
        assert_eq!(x_timestamp(0).len(), 16);
    }

    #[test]
    fn x_timestamp_parse() {
        assert_eq!(
            parse_x_timestamp("1700000000.12345"),
            Some(1_700_000_000_123_450)
        );
        assert_eq!(parse_x_timestamp("17"), Some(17_000_000));
        assert_eq!(
            parse_x_timestamp("1700000000.12345_0000000000000001"),
            Some(1_700_000_000_123_450)
        );
        assert_eq!(parse_x_timestamp("-1"), None);
        assert_eq!(parse_x_timestamp("1.1234567"), None);
        assert_eq!(parse_x_timestamp("99999999999999999999"), None);
    }

    #[test]
    fn listing_format() {
        assert_eq!(listing_last_modified(0), "1970-01-01T00:00:00.000000");
        assert_eq!(
            listing_last_modified(1_735_689_600_000_000),
            "2025-01-01T00:00:00.000000"
        );
        // 2024-02-29T12:34:56.789012 (leap day)
        assert_eq!(
            listing_last_modified(1_709_210_096_789_012),
            "2024-02-29T12:34:56.789012"
        );
    }

    #[test]
    fn last_modified_rounds_up() {
        assert_eq!(
            last_modified_header(1_000_000),
            "Thu, 01 Jan 1970 00:00:01 GMT"
        );
        assert_eq!(
            last_modified_header(1_000_001),
            "Thu, 01 Jan 1970 00:00:02 GMT"
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:02 GMT"), Some(2));
    }

    #[test]
    fn iso8601() {
        assert_eq!(
            parse_iso8601_utc("2025-01-01T00:00:00Z"),
            Some(1_735_689_600)
        );
        assert_eq!(
            parse_iso8601_utc("2011-12-10T01:11:25Z"),
            Some(1_323_479_485)
        );
        assert_eq!(parse_iso8601_utc("2025-02-30T00:00:00Z"), None);
        assert_eq!(parse_iso8601_utc("2025-01-01 00:00:00Z"), None);
        assert_eq!(parse_iso8601_utc("1969-12-31T23:59:59Z"), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn civil_roundtrip(secs in 0u64..253_402_300_799) {
            let (y, mo, d, h, mi, s) = civil_from_unix(secs);
            let iso = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z");
            prop_assert_eq!(parse_iso8601_utc(&iso), Some(secs));
        }

        #[test]
        fn parsers_never_panic(s in ".{0,40}") {
            let _ = parse_x_timestamp(&s);
            let _ = parse_iso8601_utc(&s);
            let _ = parse_http_date(&s);
        }

        #[test]
        fn x_timestamp_roundtrips_to_tick(micros in 0u64..10_000_000_000_000_000) {
            let parsed = parse_x_timestamp(&x_timestamp(micros));
            prop_assert!(parsed.is_some());
            let parsed = parsed.unwrap_or_default();
            prop_assert!(parsed.abs_diff(micros) <= 5);
        }
    }
}
