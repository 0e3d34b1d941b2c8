//! Swift's default cluster constraints and the metadata rules built on them.
//!
//! These are the values a stock Swift proxy advertises under `/info`
//! (`swift` section); clients such as python-swiftclient size their
//! segments and metadata from them, so the gateway must enforce the same
//! numbers and answer with the same messages.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::SwiftError;

/// Largest single object (5 GiB + 2 bytes, Swift's historical default).
pub const MAX_FILE_SIZE: u64 = 5 * 1024 * 1024 * 1024 + 2;
/// Longest user-metadata name, in bytes, after the `X-*-Meta-` prefix.
pub const MAX_META_NAME_LENGTH: usize = 128;
/// Longest user-metadata value, in bytes.
pub const MAX_META_VALUE_LENGTH: usize = 256;
/// Most user-metadata items in one request.
pub const MAX_META_COUNT: usize = 90;
/// Most bytes of names plus values in one request.
pub const MAX_META_OVERALL_SIZE: usize = 4096;
/// Longest object name, in bytes (UTF-8).
pub const MAX_OBJECT_NAME_LENGTH: usize = 1024;
/// Longest container name, in bytes (UTF-8).
pub const MAX_CONTAINER_NAME_LENGTH: usize = 256;
/// Longest account name, in bytes.
pub const MAX_ACCOUNT_NAME_LENGTH: usize = 256;
/// Largest `limit` accepted on a container GET.
pub const CONTAINER_LISTING_LIMIT: usize = 10_000;
/// Largest `limit` accepted on an account GET.
pub const ACCOUNT_LISTING_LIMIT: usize = 10_000;

/// Validates a container name: non-empty, no `/`, no NUL, ≤ 256 bytes.
pub fn validate_container_name(name: &str) -> Result<(), SwiftError> {
    if name.is_empty() {
        return Err(SwiftError::bad_request("Container name cannot be empty"));
    }
    if name.len() > MAX_CONTAINER_NAME_LENGTH {
        return Err(SwiftError::bad_request(format!(
            "Container name length of {} longer than {}",
            name.len(),
            MAX_CONTAINER_NAME_LENGTH
        )));
    }
    if name.contains('/') {
        return Err(SwiftError::bad_request("Container name cannot contain '/'"));
    }
    if name.contains('\0') {
        return Err(SwiftError::precondition_failed(
            "Invalid UTF8 or contains NULL",
        ));
    }
    Ok(())
}

/// Validates an object name: non-empty, no NUL, ≤ 1024 bytes. Slashes are
/// ordinary characters in object names (pseudo-directories).
pub fn validate_object_name(name: &str) -> Result<(), SwiftError> {
    if name.is_empty() {
        return Err(SwiftError::bad_request("Object name cannot be empty"));
    }
    if name.len() > MAX_OBJECT_NAME_LENGTH {
        return Err(SwiftError::bad_request(format!(
            "Object name length of {} longer than {}",
            name.len(),
            MAX_OBJECT_NAME_LENGTH
        )));
    }
    if name.contains('\0') {
        return Err(SwiftError::precondition_failed(
            "Invalid UTF8 or contains NULL",
        ));
    }
    Ok(())
}

/// Rejects a declared object body larger than [`MAX_FILE_SIZE`] (413).
pub fn check_object_size(content_length: u64) -> Result<(), SwiftError> {
    if content_length > MAX_FILE_SIZE {
        return Err(SwiftError::entity_too_large("Your request is too large."));
    }
    Ok(())
}

/// Which resource a metadata header applies to; selects the header prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKind {
    /// `X-Account-Meta-*`
    Account,
    /// `X-Container-Meta-*`
    Container,
    /// `X-Object-Meta-*`
    Object,
}

impl MetaKind {
    fn word(self) -> &'static str {
        match self {
            MetaKind::Account => "account",
            MetaKind::Container => "container",
            MetaKind::Object => "object",
        }
    }

    /// Lowercase header prefix, e.g. `x-object-meta-`.
    pub fn prefix(self) -> String {
        format!("x-{}-meta-", self.word())
    }

    /// Lowercase removal prefix, e.g. `x-remove-container-meta-`.
    pub fn remove_prefix(self) -> String {
        format!("x-remove-{}-meta-", self.word())
    }

    /// Title-cased prefix as Swift sends it back, e.g. `X-Object-Meta-`.
    pub fn response_prefix(self) -> &'static str {
        match self {
            MetaKind::Account => "X-Account-Meta-",
            MetaKind::Container => "X-Container-Meta-",
            MetaKind::Object => "X-Object-Meta-",
        }
    }
}

/// The user-metadata changes a request asks for. Keys are lowercased and
/// carry no prefix (`X-Object-Meta-Color` → `color`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaUpdate {
    /// Keys to set to a (non-empty) value.
    pub set: BTreeMap<String, String>,
    /// Keys to delete (`X-Remove-*-Meta-K`, or `X-*-Meta-K` with an empty value).
    pub remove: BTreeSet<String>,
}

impl MetaUpdate {
    /// Applies the update to stored metadata with Swift's semantics:
    ///
    /// * **Object** PUT/POST *replaces* all user metadata: the result is
    ///   exactly `set` (a POST without any meta header clears it).
    /// * **Account/Container** POST updates key by key: `set` entries are
    ///   written, `remove` entries deleted, other keys left alone.
    pub fn apply(&self, kind: MetaKind, existing: &mut BTreeMap<String, String>) {
        if kind == MetaKind::Object {
            existing.clone_from(&self.set);
            return;
        }
        for k in &self.remove {
            existing.remove(k);
        }
        for (k, v) in &self.set {
            existing.insert(k.clone(), v.clone());
        }
    }

    /// True when the request carried no user-metadata header at all.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }
}

/// Extracts user metadata from request headers and enforces Swift's limits
/// (400 with Swift's messages). Header names match case-insensitively;
/// values are trimmed. An empty value means removal (as Swift treats
/// `X-Container-Meta-K:` with no value). Limits count only values being set.
pub fn collect_meta(
    headers: &[(String, String)],
    kind: MetaKind,
) -> Result<MetaUpdate, SwiftError> {
    let prefix = kind.prefix();
    let remove_prefix = kind.remove_prefix();
    let mut update = MetaUpdate::default();
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        let (key, removing) = if let Some(k) = lower.strip_prefix(&remove_prefix) {
            (k, true)
        } else if let Some(k) = lower.strip_prefix(&prefix) {
            (k, false)
        } else {
            continue;
        };
        if key.is_empty() {
            return Err(SwiftError::bad_request("Metadata name cannot be empty"));
        }
        if key.len() > MAX_META_NAME_LENGTH {
            return Err(SwiftError::bad_request(format!(
                "Metadata name too long: {}{}",
                kind.response_prefix(),
                key
            )));
        }
        let value = value.trim();
        if removing || value.is_empty() {
            update.set.remove(key);
            update.remove.insert(key.to_string());
            continue;
        }
        if value.len() > MAX_META_VALUE_LENGTH {
            return Err(SwiftError::bad_request(format!(
                "Metadata value longer than {}: {}{}",
                MAX_META_VALUE_LENGTH,
                kind.response_prefix(),
                key
            )));
        }
        update.remove.remove(key);
        update.set.insert(key.to_string(), value.to_string());
    }
    if update.set.len() > MAX_META_COUNT {
        return Err(SwiftError::bad_request(format!(
            "Too many metadata items; max {MAX_META_COUNT}"
        )));
    }
    let size: usize = update.set.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_META_OVERALL_SIZE {
        return Err(SwiftError::bad_request(format!(
            "Total metadata too large; max {MAX_META_OVERALL_SIZE}"
        )));
    }
    Ok(update)
}

/// Response headers for stored user metadata, with names title-cased per
/// dash-separated word as Swift emits them (`color` → `X-Object-Meta-Color`,
/// `temp-url-key` → `X-Account-Meta-Temp-Url-Key`).
pub fn meta_headers(kind: MetaKind, meta: &BTreeMap<String, String>) -> Vec<(String, String)> {
    meta.iter()
        .map(|(k, v)| {
            (
                format!("{}{}", kind.response_prefix(), title_case(k)),
                v.clone(),
            )
        })
        .collect()
}

/// Title-cases each `-`-separated word (`temp-url-key` → `Temp-Url-Key`).
pub fn title_case(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut chars = w.chars();
            match chars.next() {
                Some(first) => first
                    .to_uppercase()
                    .chain(chars.flat_map(char::to_lowercase))
                    .collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<String>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn names() {
        assert!(validate_container_name("c").is_ok());
        assert_eq!(validate_container_name("").unwrap_err().status, 400);
        assert_eq!(validate_container_name("a/b").unwrap_err().status, 400);
        assert!(validate_container_name(&"x".repeat(256)).is_ok());
        let e = validate_container_name(&"x".repeat(257)).unwrap_err();
        assert_eq!(e.message, "Container name length of 257 longer than 256");
        assert!(validate_object_name("a/b/c").is_ok());
        assert!(validate_object_name(&"x".repeat(1024)).is_ok());
        assert_eq!(
            validate_object_name(&"x".repeat(1025)).unwrap_err().status,
            400
        );
        assert_eq!(validate_object_name("a\0").unwrap_err().status, 412);
        assert!(check_object_size(MAX_FILE_SIZE).is_ok());
        assert_eq!(
            check_object_size(MAX_FILE_SIZE + 1).unwrap_err().status,
            413
        );
    }

    #[test]
    fn collects_and_lowercases() {
        let u = collect_meta(
            &h(&[
                ("X-Object-Meta-Color", " Blue "),
                ("x-object-meta-SIZE", "L"),
                ("X-Container-Meta-Other", "no"),
                ("Content-Type", "text/plain"),
            ]),
            MetaKind::Object,
        )
        .unwrap();
        assert_eq!(u.set.get("color").map(String::as_str), Some("Blue"));
        assert_eq!(u.set.get("size").map(String::as_str), Some("L"));
        assert_eq!(u.set.len(), 2);
    }

    #[test]
    fn removal_forms() {
        let u = collect_meta(
            &h(&[
                ("X-Remove-Container-Meta-A", "x"),
                ("X-Container-Meta-B", ""),
                ("X-Container-Meta-C", "v"),
            ]),
            MetaKind::Container,
        )
        .unwrap();
        assert!(u.remove.contains("a") && u.remove.contains("b"));
        let mut stored: BTreeMap<String, String> = [("a", "1"), ("b", "2"), ("z", "3")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        u.apply(MetaKind::Container, &mut stored);
        assert_eq!(stored.keys().cloned().collect::<Vec<_>>(), vec!["c", "z"]);
        u.apply(MetaKind::Object, &mut stored);
        assert_eq!(stored.keys().cloned().collect::<Vec<_>>(), vec!["c"]);
    }

    #[test]
    fn limits() {
        let long = "n".repeat(MAX_META_NAME_LENGTH + 1);
        let e = collect_meta(
            &h(&[(&format!("X-Account-Meta-{long}"), "v")]),
            MetaKind::Account,
        )
        .unwrap_err();
        assert!(e.message.starts_with("Metadata name too long"));
        let e = collect_meta(
            &h(&[("X-Account-Meta-K", &"v".repeat(257))]),
            MetaKind::Account,
        )
        .unwrap_err();
        assert!(e.message.starts_with("Metadata value longer than 256"));
        let many: Vec<(String, String)> = (0..91)
            .map(|i| (format!("X-Object-Meta-K{i}"), "v".into()))
            .collect();
        let e = collect_meta(&many, MetaKind::Object).unwrap_err();
        assert_eq!(e.message, "Too many metadata items; max 90");
        let big: Vec<(String, String)> = (0..20)
            .map(|i| (format!("X-Object-Meta-K{i:03}"), "v".repeat(250)))
            .collect();
        let e = collect_meta(&big, MetaKind::Object).unwrap_err();
        assert_eq!(e.message, "Total metadata too large; max 4096");
        assert_eq!(
            collect_meta(&h(&[("X-Object-Meta-", "v")]), MetaKind::Object)
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn response_names() {
        let m: BTreeMap<String, String> = [("temp-url-key", "k"), ("color", "b")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let hs = meta_headers(MetaKind::Account, &m);
        assert_eq!(hs[0], ("X-Account-Meta-Color".to_string(), "b".to_string()));
        assert_eq!(
            hs[1],
            ("X-Account-Meta-Temp-Url-Key".to_string(), "k".to_string())
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn collect_never_panics(name in "(X-Object-Meta-|X-Remove-Object-Meta-)?.{0,20}", value in ".{0,300}") {
            let _ = collect_meta(&[(name, value)], MetaKind::Object);
        }

        #[test]
        fn names_never_panic(s in ".{0,40}") {
            let _ = validate_container_name(&s);
            let _ = validate_object_name(&s);
            let _ = title_case(&s);
        }
    }
}
