//! Query-string decoding shared by listings and TempURL.
//!
//! Swift parses query strings with Python's `parse_qsl`: `&`-separated
//! pairs, `+` means space, percent escapes are decoded to bytes and the
//! result must be UTF-8. A key without `=` has an empty value (that is how
//! TempURL's bare `inline` flag arrives).

use percent_encoding::percent_decode;

use crate::error::SwiftError;

/// Longest raw query string we are willing to decode; anything larger is a
/// hostile request (Swift's own URL limit is 8 KiB).
pub const MAX_QUERY_LENGTH: usize = 64 * 1024;

/// Decodes one query component (`+` → space, then percent escapes).
pub fn decode_component(raw: &str) -> Result<String, SwiftError> {
    let plus_fixed = raw.replace('+', " ");
    let bytes: Vec<u8> = percent_decode(plus_fixed.as_bytes()).collect();
    String::from_utf8(bytes).map_err(|_| SwiftError::bad_request("Invalid UTF8 in query string"))
}

/// Percent-decodes a URL *path* (unlike query components, `+` stays a
/// literal plus). Swift names objects and signs TempURLs by decoded path.
pub fn decode_path(raw: &str) -> Result<String, SwiftError> {
    percent_decode(raw.as_bytes())
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| SwiftError::precondition_failed("Invalid UTF8 or contains NULL"))
}

/// Splits and decodes a raw query string into ordered `(key, value)` pairs.
/// Empty segments (`a=1&&b=2`) are skipped. A leading `?` is tolerated.
pub fn parse_query(raw: &str) -> Result<Vec<(String, String)>, SwiftError> {
    if raw.len() > MAX_QUERY_LENGTH {
        return Err(SwiftError::bad_request("Query string too long"));
    }
    let raw = raw.strip_prefix('?').unwrap_or(raw);
    let mut out = Vec::new();
    for part in raw.split('&') {
        if part.is_empty() {
            continue;
        }
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        out.push((decode_component(k)?, decode_component(v)?));
    }
    Ok(out)
}

/// First value for `key` (Swift reads the first occurrence).
pub fn first<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes() {
        let q = parse_query("?prefix=a%2Fb+c&inline&&x=%E2%9C%93").unwrap();
        assert_eq!(first(&q, "prefix"), Some("a/b c"));
        assert_eq!(first(&q, "inline"), Some(""));
        assert_eq!(first(&q, "x"), Some("✓"));
        assert_eq!(parse_query("a=%ff").unwrap_err().status, 400);
        assert!(parse_query("").unwrap().is_empty());
        assert_eq!(decode_path("/v1/a/c/x+y%20z").unwrap(), "/v1/a/c/x+y z");
        assert_eq!(decode_path("/%ff").unwrap_err().status, 412);
    }
}
