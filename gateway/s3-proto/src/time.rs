//! Timestamp formats S3 uses, with the calendar math done here so the crate
//! needs no date library: ISO 8601 with milliseconds in XML bodies, the
//! "basic" form `20250101T000000Z` in SigV4, and RFC 7231 HTTP dates.

use std::time::{Duration, SystemTime};

const SECS_PER_DAY: u64 = 86_400;
/// Largest year we format; keeps the arithmetic far away from overflow and
/// covers any plausible object timestamp.
const MAX_YEAR: u64 = 9999;

/// Days since 1970-01-01 for a proleptic Gregorian date (no validation).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    // Shift the year so it starts in March: leap days fall at the end.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    // 719_468 = days from 0000-03-01 to 1970-01-01.
    era * 146_097 + doe - 719_468
}

/// (year, month, day) for days since 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: u64) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        _ => 28,
    }
}

struct Civil {
    year: u64,
    month: u64,
    day: u64,
    hour: u64,
    minute: u64,
    second: u64,
}

/// 9999-12-31T23:59:59Z: absurd inputs are clamped here instead of
/// overflowing (httpdate would panic past year 9999).
fn max_secs() -> u64 {
    days_from_civil(MAX_YEAR, 12, 31) * SECS_PER_DAY + SECS_PER_DAY - 1
}

fn civil(unix_secs: u64) -> Civil {
    let secs = unix_secs.min(max_secs());
    let (year, month, day) = civil_from_days(secs / SECS_PER_DAY);
    let rem = secs % SECS_PER_DAY;
    Civil {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: rem % 3600 / 60,
        second: rem % 60,
    }
}

/// `2025-01-01T00:00:00.000Z`, the form S3 uses in XML listings.
pub fn iso8601_ms(unix_ms: u64) -> String {
    let c = civil(unix_ms / 1000);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        unix_ms % 1000
    )
}

/// `Wed, 01 Jan 2025 00:00:00 GMT`, for `Last-Modified` and friends.
pub fn http_date(unix_ms: u64) -> String {
    let secs = (unix_ms / 1000).min(max_secs());
    httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Parse an HTTP date (any of the three RFC 7231 forms) into unix seconds.
pub fn parse_http_date(s: &str) -> Option<u64> {
    let t = httpdate::parse_http_date(s.trim()).ok()?;
    t.duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// `20250101T000000Z`: the SigV4 `X-Amz-Date` form.
pub fn amz_date(unix_secs: u64) -> String {
    let c = civil(unix_secs);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parse `20250101T000000Z` into unix seconds, rejecting impossible dates.
pub fn parse_amz_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let year = digits(s.get(0..4)?)?;
    let month = digits(s.get(4..6)?)?;
    let day = digits(s.get(6..8)?)?;
    let hour = digits(s.get(9..11)?)?;
    let minute = digits(s.get(11..13)?)?;
    let second = digits(s.get(13..15)?)?;
    if year < 1970
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * SECS_PER_DAY + hour * 3600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(iso8601_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601_ms(1_735_689_600_123), "2025-01-01T00:00:00.123Z");
        assert_eq!(iso8601_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            http_date(1_735_689_600_000),
            "Wed, 01 Jan 2025 00:00:00 GMT"
        );
        assert_eq!(amz_date(1_369_353_600), "20130524T000000Z");
        assert_eq!(parse_amz_date("20130524T000000Z"), Some(1_369_353_600));
        assert_eq!(
            parse_http_date("Fri, 24 May 2013 00:00:00 GMT"),
            Some(1_369_353_600)
        );
    }

    #[test]
    fn rejects_bad_amz_dates() {
        for s in [
            "",
            "20130524T000000",
            "2013052AT000000Z",
            "20130230T000000Z",
            "20131324T000000Z",
            "20130524T240000Z",
            "+0130524T000000Z",
            "2013-05-24T00:00Z",
        ] {
            assert_eq!(parse_amz_date(s), None, "{s}");
        }
    }

    #[test]
    fn huge_values_do_not_panic() {
        let s = iso8601_ms(u64::MAX);
        assert!(s.starts_with("9999-12-31T23:59:59"));
        let _ = amz_date(u64::MAX);
        assert!(http_date(u64::MAX).contains("9999"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn amz_round_trip(secs in 0u64..253_402_300_799) {
            proptest::prop_assert_eq!(parse_amz_date(&amz_date(secs)), Some(secs));
        }
    }
}
