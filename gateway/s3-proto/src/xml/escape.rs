//! Escaping for text placed in XML, and the `encoding-type=url` encoding.

use std::fmt::Write;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Escape text for element content or attribute values.
///
/// Control characters other than tab and newline are written as numeric
/// character references: S3 keys may contain them, and writing them raw
/// would produce a document no parser accepts (carriage returns would also
/// be silently normalised away).
pub fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' => out.push(c),
            c if c.is_control() && u32::from(c) < 0x20 => {
                let _ = write!(out, "&#x{:X};", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// Characters left alone by `encoding-type=url`: RFC 3986 unreserved plus
/// `/`, which keeps listings readable; any URL decoder restores the rest.
const URL_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Percent-encode a key or prefix for `encoding-type=url` responses.
pub fn url_encode(s: &str) -> String {
    utf8_percent_encode(s, URL_KEEP).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(escape_text("a&b<c>\"d'"), "a&amp;b&lt;c&gt;&quot;d&apos;");
        assert_eq!(escape_text("x\ry\u{1}\tz\n"), "x&#xD;y&#x1;\tz\n");
        assert_eq!(escape_text("ünï"), "ünï");
    }

    #[test]
    fn url_encoding() {
        assert_eq!(url_encode("a b/c+d~é"), "a%20b/c%2Bd~%C3%A9");
    }
}
