//! Account and container GET/HEAD: query parameters, entry selection,
//! body rendering in Swift's three formats, and the HEAD header sets.
//!
//! Swift semantics reproduced here:
//! * `limit` must be decimal digits to count; non-digits are ignored (the
//!   default 10000 applies); above 10000 → 412 `Maximum limit is 10000`.
//! * `format=json|xml` wins over `Accept`; any other `format` value means
//!   plain text. Without `format`, the `Accept` header is negotiated among
//!   `text/plain`, `application/json`, `application/xml`, `text/xml`; an
//!   unparsable `Accept` → 400, nothing acceptable → 406.
//! * `reverse` is true for `true|1|yes|on|t|y` (case-insensitive).
//! * `delimiter` is accepted as any non-empty string (modern Swift); an empty
//!   one means "no delimiter".
//! * A plain-text listing with no entries has an empty body; Swift answers
//!   such listings with `204 No Content` — that choice is the gateway's.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::constraints::{CONTAINER_LISTING_LIMIT, MetaKind, meta_headers};
use crate::error::SwiftError;
use crate::query::{first, parse_query};
use crate::timestamp::listing_last_modified;

/// Output format of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One name per line (`text/plain`).
    Plain,
    /// JSON array of objects (`application/json`).
    Json,
    /// XML document (`application/xml`).
    Xml,
}

impl Format {
    /// `Content-Type` header value for a listing in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Plain => "text/plain; charset=utf-8",
            Format::Json => "application/json; charset=utf-8",
            Format::Xml => "application/xml; charset=utf-8",
        }
    }
}

/// Parsed listing query for an account or container GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingParams {
    /// Only names starting with this.
    pub prefix: Option<String>,
    /// Roll names up to the first delimiter after `prefix` into `subdir`s.
    pub delimiter: Option<String>,
    /// Only names strictly after this (before it when `reverse`).
    pub marker: Option<String>,
    /// Only names strictly before this (after it when `reverse`).
    pub end_marker: Option<String>,
    /// Maximum entries (objects + subdirs), ≤ 10000.
    pub limit: usize,
    /// Descending order.
    pub reverse: bool,
    /// Body format.
    pub format: Format,
}

impl Default for ListingParams {
    fn default() -> Self {
        Self {
            prefix: None,
            delimiter: None,
            marker: None,
            end_marker: None,
            limit: CONTAINER_LISTING_LIMIT,
            reverse: false,
            format: Format::Plain,
        }
    }
}

/// Swift's `config_true_value`.
pub fn is_true_value(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "true" | "1" | "yes" | "on" | "t" | "y"
    )
}

const LISTING_TYPES: [&str; 4] = [
    "text/plain",
    "application/json",
    "application/xml",
    "text/xml",
];

fn format_for_type(t: &str) -> Format {
    match t {
        "application/json" => Format::Json,
        "application/xml" | "text/xml" => Format::Xml,
        _ => Format::Plain,
    }
}

/// Chooses a listing type from an `Accept` header like swob's `best_match`:
/// entries sorted by q (then specific before wildcard), first option that
/// matches wins. `None`/empty header → plain text.
pub fn negotiate_format(accept: Option<&str>) -> Result<Format, SwiftError> {
    let header = match accept.map(str::trim) {
        None | Some("") => return Ok(Format::Plain),
        Some(h) => h,
    };
    let invalid = || SwiftError::bad_request("Invalid Accept header");
    let mut entries: Vec<(String, String, f64, bool)> = Vec::new();
    for item in header.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let (typ, sub) = media.split_once('/').ok_or_else(invalid)?;
        if typ.is_empty() || sub.is_empty() || sub.contains('/') {
            return Err(invalid());
        }
        let mut q = 1.0f64;
        let mut seen_q = false;
        for p in parts {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            let (name, value) = p.split_once('=').ok_or_else(invalid)?;
            if name.trim() == "q" {
                if seen_q {
                    return Err(invalid());
                }
                seen_q = true;
                q = value.trim().parse::<f64>().map_err(|_| invalid())?;
                if !q.is_finite() {
                    return Err(invalid());
                }
            }
        }
        let specific = typ != "*" && sub != "*";
        entries.push((typ.to_string(), sub.to_string(), q, specific));
    }
    // Stable sort keeps header order among equals, as Python's sort does.
    entries.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.3.cmp(&a.3)));
    for (typ, sub, q, _) in &entries {
        if *q <= 0.0 {
            continue;
        }
        for option in LISTING_TYPES {
            let (ot, os) = option.split_once('/').unwrap_or((option, ""));
            if (typ == "*" || typ == ot) && (sub == "*" || sub == os) {
                return Ok(format_for_type(option));
            }
        }
    }
    Err(SwiftError::not_acceptable(""))
}

impl ListingParams {
    /// Parses a raw (still percent-encoded) query string plus the request's
    /// `Accept` header.
    pub fn parse(raw_query: &str, accept: Option<&str>) -> Result<Self, SwiftError> {
        let q = parse_query(raw_query)?;
        for (k, v) in &q {
            if v.contains('\0') || k.contains('\0') {
                return Err(SwiftError::bad_request(format!(
                    "\"{k}\" parameter not valid UTF-8"
                )));
            }
        }
        let non_empty = |key: &str| first(&q, key).filter(|v| !v.is_empty()).map(str::to_string);
        let mut params = ListingParams {
            prefix: non_empty("prefix"),
            delimiter: non_empty("delimiter"),
            marker: non_empty("marker"),
            end_marker: non_empty("end_marker"),
            ..ListingParams::default()
        };
        if let Some(limit) = first(&q, "limit")
            && !limit.is_empty()
            && limit.bytes().all(|b| b.is_ascii_digit())
        {
            let too_big = || {
                SwiftError::precondition_failed(format!(
                    "Maximum limit is {CONTAINER_LISTING_LIMIT}"
                ))
            };
            let n: usize = limit.parse().map_err(|_| too_big())?;
            if n > CONTAINER_LISTING_LIMIT {
                return Err(too_big());
            }
            params.limit = n;
        }
        params.reverse = first(&q, "reverse").is_some_and(is_true_value);
        params.format = match first(&q, "format").filter(|f| !f.is_empty()) {
            Some(f) => match f.to_ascii_lowercase().as_str() {
                "json" => Format::Json,
                "xml" => Format::Xml,
                _ => Format::Plain,
            },
            None => negotiate_format(accept)?,
        };
        Ok(params)
    }

    /// Selects the entries a listing returns from names sorted ascending
    /// (byte order), applying prefix, markers, delimiter roll-up, reverse
    /// and limit the way Swift's container/account brokers do. A subdir
    /// equal to `marker` is not repeated (so paging by subdir works).
    pub fn select<'a, T>(&self, sorted: &'a [(String, T)]) -> Vec<ListingEntry<'a, T>> {
        let prefix = self.prefix.as_deref().unwrap_or("");
        let mut out: Vec<ListingEntry<'a, T>> = Vec::new();
        let mut last_subdir: Option<String> = None;
        let iter: Box<dyn Iterator<Item = &'a (String, T)>> = if self.reverse {
            Box::new(sorted.iter().rev())
        } else {
            Box::new(sorted.iter())
        };
        for (name, value) in iter {
            if out.len() >= self.limit {
                break;
            }
            let n = name.as_str();
            if !n.starts_with(prefix) {
                continue;
            }
            let (lower, upper) = if self.reverse {
                (self.end_marker.as_deref(), self.marker.as_deref())
            } else {
                (self.marker.as_deref(), self.end_marker.as_deref())
            };
            if lower.is_some_and(|m| n <= m) || upper.is_some_and(|m| n >= m) {
                continue;
            }
            if let Some(delim) = self.delimiter.as_deref()
                && let Some(rest) = n.get(prefix.len()..)
                && let Some(pos) = rest.find(delim)
            {
                let dir = &n[..prefix.len() + pos + delim.len()];
                if last_subdir.as_deref() == Some(dir) || self.marker.as_deref() == Some(dir) {
                    continue;
                }
                last_subdir = Some(dir.to_string());
                out.push(ListingEntry::Subdir(dir.to_string()));
                continue;
            }
            out.push(ListingEntry::Item(n, value));
        }
        out
    }
}

/// One selected listing entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListingEntry<'a, T> {
    /// A real object/container with the caller's payload.
    Item(&'a str, &'a T),
    /// A rolled-up pseudo-directory (ends with the delimiter).
    Subdir(String),
}

/// One row of a container listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerItem {
    /// A stored object.
    Object {
        /// Object name.
        name: String,
        /// Size in bytes (for SLOs: the total size).
        bytes: u64,
        /// ETag without quotes.
        hash: String,
        /// Stored content type.
        content_type: String,
        /// Last modification, unix microseconds.
        last_modified_unix_micros: u64,
    },
    /// A pseudo-directory from `delimiter` roll-up.
    Subdir(String),
}

/// One row of an account listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountItem {
    /// A container with its usage counters.
    Container {
        /// Container name.
        name: String,
        /// Number of objects.
        count: u64,
        /// Bytes used.
        bytes: u64,
        /// Last modification, unix microseconds.
        last_modified_unix_micros: u64,
    },
    /// A pseudo-directory from `delimiter` roll-up.
    Subdir(String),
}

#[derive(Serialize)]
struct JsonObject<'a> {
    hash: &'a str,
    last_modified: String,
    bytes: u64,
    name: &'a str,
    content_type: &'a str,
}

#[derive(Serialize)]
struct JsonContainer<'a> {
    name: &'a str,
    count: u64,
    bytes: u64,
    last_modified: String,
}

#[derive(Serialize)]
struct JsonSubdir<'a> {
    subdir: &'a str,
}

/// Escapes text for XML element content and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {
                out.push_str(&format!("&#x{:x};", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

const XML_HEADER: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

fn json_array(parts: Vec<String>) -> String {
    format!("[{}]", parts.join(", "))
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Renders a container listing. Returns `(content_type, body)`.
pub fn render_container_listing(
    container: &str,
    items: &[ContainerItem],
    format: Format,
) -> (String, String) {
    let body = match format {
        Format::Plain => items
            .iter()
            .map(|i| match i {
                ContainerItem::Object { name, .. } => format!("{name}\n"),
                ContainerItem::Subdir(p) => format!("{p}\n"),
            })
            .collect(),
        Format::Json => json_array(
            items
                .iter()
                .map(|i| match i {
                    ContainerItem::Object {
                        name,
                        bytes,
                        hash,
                        content_type,
                        last_modified_unix_micros,
                    } => to_json(&JsonObject {
                        hash,
                        last_modified: listing_last_modified(*last_modified_unix_micros),
                        bytes: *bytes,
                        name,
                        content_type,
                    }),
                    ContainerItem::Subdir(p) => to_json(&JsonSubdir { subdir: p }),
                })
                .collect(),
        ),
        Format::Xml => {
            let mut s = format!("{XML_HEADER}<container name=\"{}\">", xml_escape(container));
            for i in items {
                match i {
                    ContainerItem::Object {
                        name,
                        bytes,
                        hash,
                        content_type,
                        last_modified_unix_micros,
                    } => s.push_str(&format!(
                        "<object><name>{}</name><hash>{}</hash><bytes>{}</bytes><content_type>{}</content_type><last_modified>{}</last_modified></object>",
                        xml_escape(name),
                        xml_escape(hash),
                        bytes,
                        xml_escape(content_type),
                        listing_last_modified(*last_modified_unix_micros)
                    )),
                    ContainerItem::Subdir(p) => {
                        let p = xml_escape(p);
                        s.push_str(&format!("<subdir name=\"{p}\"><name>{p}</name></subdir>"));
                    }
                }
            }
            s.push_str("</container>");
            s
        }
    };
    (format.content_type().to_string(), body)
}

/// Renders an account listing. Returns `(content_type, body)`.
pub fn render_account_listing(
    account: &str,
    items: &[AccountItem],
    format: Format,
) -> (String, String) {
    let body = match format {
        Format::Plain => items
            .iter()
            .map(|i| match i {
                AccountItem::Container { name, .. } => format!("{name}\n"),
                AccountItem::Subdir(p) => format!("{p}\n"),
            })
            .collect(),
        Format::Json => json_array(
            items
                .iter()
                .map(|i| match i {
                    AccountItem::Container {
                        name,
                        count,
                        bytes,
                        last_modified_unix_micros,
                    } => to_json(&JsonContainer {
                        name,
                        count: *count,
                        bytes: *bytes,
                        last_modified: listing_last_modified(*last_modified_unix_micros),
                    }),
                    AccountItem::Subdir(p) => to_json(&JsonSubdir { subdir: p }),
                })
                .collect(),
        ),
        Format::Xml => {
            let mut s = format!("{XML_HEADER}<account name=\"{}\">", xml_escape(account));
            for i in items {
                match i {
                    AccountItem::Container {
                        name,
                        count,
                        bytes,
                        last_modified_unix_micros,
                    } => s.push_str(&format!(
                        "<container><name>{}</name><count>{}</count><bytes>{}</bytes><last_modified>{}</last_modified></container>",
                        xml_escape(name),
                        count,
                        bytes,
                        listing_last_modified(*last_modified_unix_micros)
                    )),
                    AccountItem::Subdir(p) => {
                        let p = xml_escape(p);
                        s.push_str(&format!("<subdir name=\"{p}\"><name>{p}</name></subdir>"));
                    }
                }
            }
            s.push_str("</account>");
            s
        }
    };
    (format.content_type().to_string(), body)
}

/// Headers for account HEAD/GET (the caller adds `X-Timestamp`,
/// `Content-Type`, `X-Trans-Id`...).
pub fn account_headers(
    container_count: u64,
    object_count: u64,
    bytes: u64,
    meta: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut h = vec![
        (
            "X-Account-Container-Count".to_string(),
            container_count.to_string(),
        ),
        (
            "X-Account-Object-Count".to_string(),
            object_count.to_string(),
        ),
        ("X-Account-Bytes-Used".to_string(), bytes.to_string()),
    ];
    h.extend(meta_headers(MetaKind::Account, meta));
    h
}

/// Headers for container HEAD/GET; ACL headers only when set.
pub fn container_headers(
    object_count: u64,
    bytes: u64,
    meta: &BTreeMap<String, String>,
    read_acl: Option<&str>,
    write_acl: Option<&str>,
) -> Vec<(String, String)> {
    let mut h = vec![
        (
            "X-Container-Object-Count".to_string(),
            object_count.to_string(),
        ),
        ("X-Container-Bytes-Used".to_string(), bytes.to_string()),
    ];
    if let Some(r) = read_acl.filter(|s| !s.is_empty()) {
        h.push(("X-Container-Read".to_string(), r.to_string()));
    }
    if let Some(w) = write_acl.filter(|s| !s.is_empty()) {
        h.push(("X-Container-Write".to_string(), w.to_string()));
    }
    h.extend(meta_headers(MetaKind::Container, meta));
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_defaults_and_values() {
        let p = ListingParams::parse("", None).unwrap();
        assert_eq!(p, ListingParams::default());
        let p = ListingParams::parse(
            "prefix=a%2F&delimiter=/&marker=m&end_marker=z&limit=5&reverse=on&format=json",
            Some("application/xml"),
        )
        .unwrap();
        assert_eq!(p.prefix.as_deref(), Some("a/"));
        assert_eq!(p.delimiter.as_deref(), Some("/"));
        assert_eq!(p.marker.as_deref(), Some("m"));
        assert_eq!(p.end_marker.as_deref(), Some("z"));
        assert_eq!(p.limit, 5);
        assert!(p.reverse);
        assert_eq!(p.format, Format::Json);
    }

    #[test]
    fn limit_rules() {
        let e = ListingParams::parse("limit=10001", None).unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (412, "Maximum limit is 10000")
        );
        let e = ListingParams::parse("limit=99999999999999999999999", None).unwrap_err();
        assert_eq!(e.status, 412);
        assert_eq!(
            ListingParams::parse("limit=abc", None).unwrap().limit,
            10_000
        );
        assert_eq!(
            ListingParams::parse("limit=-1", None).unwrap().limit,
            10_000
        );
        assert_eq!(ListingParams::parse("limit=0", None).unwrap().limit, 0);
        assert_eq!(
            ListingParams::parse("prefix=%ff", None).unwrap_err().status,
            400
        );
    }

    #[test]
    fn accept_negotiation() {
        let f = |a: &str| negotiate_format(Some(a));
        assert_eq!(f("application/json").unwrap(), Format::Json);
        assert_eq!(f("text/xml").unwrap(), Format::Xml);
        assert_eq!(f("*/*").unwrap(), Format::Plain);
        assert_eq!(f("application/*").unwrap(), Format::Json);
        assert_eq!(
            f("text/plain;q=0.5, application/json").unwrap(),
            Format::Json
        );
        assert_eq!(f("image/png").unwrap_err().status, 406);
        assert_eq!(f("garbage").unwrap_err().status, 400);
        assert_eq!(
            ListingParams::parse("format=txt", Some("application/json"))
                .unwrap()
                .format,
            Format::Plain
        );
        assert_eq!(
            ListingParams::parse("format=XML", None).unwrap().format,
            Format::Xml
        );
    }

    fn names(v: &[&str]) -> Vec<(String, ())> {
        v.iter().map(|s| (s.to_string(), ())).collect()
    }

    fn show(entries: &[ListingEntry<'_, ()>]) -> Vec<String> {
        entries
            .iter()
            .map(|e| match e {
                ListingEntry::Item(n, _) => n.to_string(),
                ListingEntry::Subdir(d) => format!("D:{d}"),
            })
            .collect()
    }

    #[test]
    fn select_semantics() {
        let all = names(&["a", "b/1", "b/2", "c", "d/x/1", "e"]);
        let mut p = ListingParams {
            delimiter: Some("/".into()),
            ..Default::default()
        };
        assert_eq!(show(&p.select(&all)), ["a", "D:b/", "c", "D:d/", "e"]);
        p.marker = Some("b/".into());
        assert_eq!(show(&p.select(&all)), ["c", "D:d/", "e"]);
        p.marker = None;
        p.prefix = Some("d/".into());
        assert_eq!(show(&p.select(&all)), ["D:d/x/"]);
        let p = ListingParams {
            reverse: true,
            marker: Some("d".into()),
            end_marker: Some("a".into()),
            limit: 2,
            ..Default::default()
        };
        assert_eq!(show(&p.select(&all)), ["c", "b/2"]);
        let p = ListingParams {
            reverse: true,
            delimiter: Some("/".into()),
            ..Default::default()
        };
        assert_eq!(show(&p.select(&all)), ["e", "D:d/", "c", "D:b/", "a"]);
    }

    fn sample() -> Vec<ContainerItem> {
        vec![
            ContainerItem::Object {
                name: "a&b".into(),
                bytes: 3,
                hash: "h".into(),
                content_type: "text/plain".into(),
                last_modified_unix_micros: 1_735_689_600_000_000,
            },
            ContainerItem::Subdir("d/".into()),
        ]
    }

    #[test]
    fn render_container() {
        let (ct, body) = render_container_listing("c", &sample(), Format::Plain);
        assert_eq!(ct, "text/plain; charset=utf-8");
        assert_eq!(body, "a&b\nd/\n");
        let (_, body) = render_container_listing("c", &sample(), Format::Json);
        assert_eq!(
            body,
            r#"[{"hash":"h","last_modified":"2025-01-01T00:00:00.000000","bytes":3,"name":"a&b","content_type":"text/plain"}, {"subdir":"d/"}]"#
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v[1]["subdir"], "d/");
        let (ct, body) = render_container_listing("c<", &sample(), Format::Xml);
        assert_eq!(ct, "application/xml; charset=utf-8");
        assert_eq!(
            body,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<container name=\"c&lt;\"><object><name>a&amp;b</name><hash>h</hash><bytes>3</bytes><content_type>text/plain</content_type><last_modified>2025-01-01T00:00:00.000000</last_modified></object><subdir name=\"d/\"><name>d/</name></subdir></container>"
        );
        let (_, body) = render_container_listing("c", &[], Format::Json);
        assert_eq!(body, "[]");
    }

    #[test]
    fn render_account() {
        let items = vec![AccountItem::Container {
            name: "c".into(),
            count: 2,
            bytes: 9,
            last_modified_unix_micros: 0,
        }];
        let (_, body) = render_account_listing("AUTH_x", &items, Format::Json);
        assert_eq!(
            body,
            r#"[{"name":"c","count":2,"bytes":9,"last_modified":"1970-01-01T00:00:00.000000"}]"#
        );
        let (_, body) = render_account_listing("AUTH_x", &items, Format::Xml);
        assert!(body.ends_with("<account name=\"AUTH_x\"><container><name>c</name><count>2</count><bytes>9</bytes><last_modified>1970-01-01T00:00:00.000000</last_modified></container></account>"));
        let (_, body) = render_account_listing("AUTH_x", &items, Format::Plain);
        assert_eq!(body, "c\n");
    }

    #[test]
    fn head_headers() {
        let meta: BTreeMap<String, String> = [("k".to_string(), "v".to_string())].into();
        let h = account_headers(1, 2, 3, &meta);
        assert_eq!(h[0], ("X-Account-Container-Count".into(), "1".into()));
        assert_eq!(h[3], ("X-Account-Meta-K".into(), "v".into()));
        let h = container_headers(2, 3, &BTreeMap::new(), Some(".r:*"), None);
        assert_eq!(h.len(), 3);
        assert_eq!(h[2], ("X-Container-Read".into(), ".r:*".into()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn parse_never_panics(q in ".{0,80}", a in proptest::option::of(".{0,40}")) {
            let _ = ListingParams::parse(&q, a.as_deref());
        }

        #[test]
        fn select_respects_limit_and_order(
            mut ns in proptest::collection::vec("[ab/]{0,4}", 0..30),
            limit in 0usize..10, reverse: bool, delim: bool
        ) {
            ns.sort();
            ns.dedup();
            let all: Vec<(String, ())> = ns.into_iter().map(|n| (n, ())).collect();
            let p = ListingParams { limit, reverse, delimiter: delim.then(|| "/".to_string()), ..Default::default() };
            let out = p.select(&all);
            prop_assert!(out.len() <= limit);
            let keys: Vec<String> = out.iter().map(|e| match e { ListingEntry::Item(n, _) => n.to_string(), ListingEntry::Subdir(d) => d.clone() }).collect();
            for w in keys.windows(2) {
                if reverse { prop_assert!(w[0] >= w[1]); } else { prop_assert!(w[0] <= w[1]); }
            }
        }
    }
}
