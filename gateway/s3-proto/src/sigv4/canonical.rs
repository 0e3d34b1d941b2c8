//! The SigV4 canonical request and string to sign, exactly as S3 builds them.
//!
//! S3 differs from other AWS services in one way that matters here: the path
//! is *not* normalised (no `.`/`..` removal, no double encoding). Each path
//! segment is decoded once and re-encoded with the strict SigV4 rules, so a
//! client that encoded more or fewer characters than we would still matches.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, percent_encode};
use sha2::{Digest, Sha256};

use super::ALGORITHM;

/// Everything except the RFC 3986 unreserved characters gets `%XX`.
const SIGV4_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Query parameter carrying the signature itself in presigned URLs; it is
/// never part of what was signed.
pub(crate) const SIGNATURE_PARAM: &str = "X-Amz-Signature";

/// Percent-encode raw bytes with the SigV4 rules (uppercase hex).
pub(crate) fn uri_encode(bytes: &[u8]) -> String {
    percent_encode(bytes, SIGV4_ENCODE).to_string()
}

/// Decode once, then encode with the SigV4 rules.
fn reencode(raw: &str) -> String {
    let decoded: Vec<u8> = percent_decode_str(raw).collect();
    uri_encode(&decoded)
}

/// The canonical URI: every segment re-encoded, `/` separators kept.
pub(crate) fn canonical_uri(raw_path: &str) -> String {
    if raw_path.is_empty() {
        return "/".to_owned();
    }
    let segments: Vec<String> = raw_path.split('/').map(reencode).collect();
    segments.join("/")
}

/// Split a raw query into decoded `(name, value)` pairs, in order.
/// `+` is kept literally: S3 clients encode spaces as `%20`.
pub(crate) fn parse_query(raw_query: &str) -> Vec<(String, String)> {
    raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                percent_decode_str(k).decode_utf8_lossy().into_owned(),
                percent_decode_str(v).decode_utf8_lossy().into_owned(),
            )
        })
        .collect()
}

/// The canonical query string: pairs re-encoded, sorted by name then value.
pub(crate) fn canonical_query(raw_query: &str, skip_signature: bool) -> String {
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let key_bytes: Vec<u8> = percent_decode_str(k).collect();
            if skip_signature && key_bytes == SIGNATURE_PARAM.as_bytes() {
                return None;
            }
            Some((uri_encode(&key_bytes), reencode(v)))
        })
        .collect();
    pairs.sort();
    let parts: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join("&")
}

/// Trim a header value and collapse inner runs of whitespace to one space.
fn normalize_value(v: &str) -> String {
    v.split_ascii_whitespace().collect::<Vec<_>>().join(" ")
}

/// All values of header `name`, normalised and joined with `,`.
pub(crate) fn canonical_header_value(headers: &[(String, String)], name: &str) -> String {
    let values: Vec<String> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| normalize_value(v))
        .collect();
    values.join(",")
}

/// What the canonical request is built from.
pub(crate) struct CanonicalInput<'a> {
    pub method: &'a str,
    pub raw_path: &'a str,
    pub raw_query: &'a str,
    pub headers: &'a [(String, String)],
    pub signed_headers: &'a [String],
    pub payload_hash: &'a str,
    pub skip_signature: bool,
}

/// The canonical request text.
pub(crate) fn canonical_request(input: &CanonicalInput<'_>) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(input.method);
    out.push('\n');
    out.push_str(&canonical_uri(input.raw_path));
    out.push('\n');
    out.push_str(&canonical_query(input.raw_query, input.skip_signature));
    out.push('\n');
    for name in input.signed_headers {
        out.push_str(name);
        out.push(':');
        out.push_str(&canonical_header_value(input.headers, name));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&input.signed_headers.join(";"));
    out.push('\n');
    out.push_str(input.payload_hash);
    out
}

/// Lowercase hex SHA-256.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hash of canonical request}`.
pub(crate) fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_segments_reencoded() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/b/a b"), "/b/a%20b");
        assert_eq!(canonical_uri("/b/a%20b"), "/b/a%20b");
        assert_eq!(canonical_uri("/b/a%2fb"), "/b/a%2Fb");
        assert_eq!(canonical_uri("/b/./x/../y"), "/b/./x/../y");
        assert_eq!(canonical_uri("/b/%7Efoo*"), "/b/~foo%2A");
        assert_eq!(canonical_uri("/b//k/"), "/b//k/");
    }

    #[test]
    fn query_sorted_and_encoded() {
        assert_eq!(canonical_query("", false), "");
        assert_eq!(canonical_query("uploads", false), "uploads=");
        assert_eq!(
            canonical_query("prefix=a%20b&delimiter=/&acl&a=2&a=1", false),
            "a=1&a=2&acl=&delimiter=%2F&prefix=a%20b"
        );
        assert_eq!(canonical_query("X-Amz-Signature=abc&x=1", true), "x=1");
        assert_eq!(
            canonical_query("X-Amz-Signature=abc", false),
            "X-Amz-Signature=abc"
        );
    }

    #[test]
    fn header_values_normalised() {
        let h = vec![
            ("x-a".to_owned(), "  a   b  ".to_owned()),
            ("x-a".to_owned(), "c".to_owned()),
        ];
        assert_eq!(canonical_header_value(&h, "x-a"), "a b,c");
        assert_eq!(canonical_header_value(&h, "x-b"), "");
    }
}
