//! A tiny, bounded element tree built with quick-xml.
//!
//! Request bodies are small (≤ 2 MiB), so a tree keeps each parser a few
//! lines of lookups instead of a state machine. Namespaces are dropped
//! (local names only), attributes ignored, and every limit is explicit so
//! hostile input costs bounded memory.

use quick_xml::Reader;
use quick_xml::events::Event;

use crate::error::{S3Error, S3ErrorCode};

/// Largest request body parsed.
pub const MAX_XML_BODY: usize = 2 * 1024 * 1024;
/// Deepest nesting accepted; S3 bodies need 3.
pub const MAX_XML_DEPTH: usize = 32;
/// Most elements accepted; a full 10 000-part completion needs ~50 000.
pub const MAX_XML_ELEMENTS: usize = 100_000;

pub(crate) fn malformed(detail: impl AsRef<str>) -> S3Error {
    S3Error::new(
        S3ErrorCode::MalformedXML,
        format!(
            "The XML you provided was not well-formed or did not validate against our \
             published schema ({})",
            detail.as_ref()
        ),
    )
}

#[derive(Debug, Default)]
pub(crate) struct Element {
    pub name: String,
    /// Concatenated text and CDATA directly inside this element.
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Text of a child, untrimmed (keys may have significant spaces).
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }
}

fn local_name(qname: &[u8]) -> Result<String, S3Error> {
    let local = match qname.iter().rposition(|&b| b == b':') {
        Some(i) => &qname[i + 1..],
        None => qname,
    };
    std::str::from_utf8(local)
        .map(str::to_owned)
        .map_err(|_| malformed("element name is not UTF-8"))
}

/// Parse a body into its root element; `Ok(None)` for an empty or
/// whitespace-only body.
pub(crate) fn parse_document(body: &[u8]) -> Result<Option<Element>, S3Error> {
    if body.len() > MAX_XML_BODY {
        return Err(malformed("body larger than 2 MiB"));
    }
    let text = std::str::from_utf8(body).map_err(|_| malformed("body is not UTF-8"))?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| malformed(format!("at byte {}: {e}", reader.buffer_position())))?;
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(malformed("content after the root element"));
            }
            Event::Start(start) => {
                count += 1;
                if count > MAX_XML_ELEMENTS || stack.len() >= MAX_XML_DEPTH {
                    return Err(malformed("document too large or too deep"));
                }
                stack.push(Element {
                    name: local_name(start.name().as_ref())?,
                    ..Element::default()
                });
            }
            Event::Empty(start) => {
                count += 1;
                if count > MAX_XML_ELEMENTS || stack.len() >= MAX_XML_DEPTH {
                    return Err(malformed("document too large or too deep"));
                }
                let el = Element {
                    name: local_name(start.name().as_ref())?,
                    ..Element::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or_else(|| malformed("unexpected end tag"))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let s = t
                    .unescape()
                    .map_err(|e| malformed(format!("bad text: {e}")))?;
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => return Err(malformed("text outside the root element")),
                }
            }
            Event::CData(c) => {
                let s = std::str::from_utf8(&c).map_err(|_| malformed("CDATA is not UTF-8"))?;
                match stack.last_mut() {
                    Some(el) => el.text.push_str(s),
                    None => return Err(malformed("CDATA outside the root element")),
                }
            }
            Event::DocType(_) => return Err(malformed("DOCTYPE is not allowed")),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(malformed("unclosed element"));
    }
    root.map(Some).ok_or_else(|| malformed("no root element"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_tree() {
        let doc = br#"<?xml version="1.0"?><a:R xmlns:a="urn:x"><K> x &amp; y </K><E/><![CDATA[<z>]]></a:R>"#;
        let root = parse_document(doc).unwrap().unwrap();
        assert_eq!(root.name, "R");
        assert_eq!(root.child_text("K"), Some(" x & y "));
        assert_eq!(root.child_text("E"), Some(""));
        assert_eq!(root.text, "<z>");
    }

    #[test]
    fn rejects() {
        for bad in [
            &b"<a>"[..],
            b"<a></b>",
            b"<a/><b/>",
            b"text",
            b"<a>&bogus;</a>",
            b"<!DOCTYPE a [<!ENTITY x \"y\">]><a/>",
            b"\xff\xfe",
        ] {
            assert!(
                parse_document(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(parse_document(b"  \n").unwrap().is_none());
        let deep = "<a>".repeat(MAX_XML_DEPTH + 1);
        assert!(parse_document(deep.as_bytes()).is_err());
        assert!(parse_document(&vec![b' '; MAX_XML_BODY + 1]).is_err());
    }
}
