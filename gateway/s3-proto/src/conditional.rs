//! Conditional requests (RFC 7232) as S3 applies them.
//!
//! Reads: If-Match wins over If-Unmodified-Since, If-None-Match wins over
//! If-Modified-Since (a header that is overridden is not evaluated at all),
//! and the match checks run before the not-modified checks.
//!
//! Writes (conditional PUT / CompleteMultipartUpload): `If-None-Match: *`
//! fails with 412 when the key exists; `If-Match` fails with 412 on an ETag
//! mismatch and — as AWS documents for conditional writes — with 404
//! `NoSuchKey` when there is no object to match against.

use crate::error::{S3Error, S3ErrorCode};
use crate::time::parse_http_date;

/// One entity tag from a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityTag {
    pub weak: bool,
    /// Without quotes.
    pub value: String,
}

/// An `If-Match` / `If-None-Match` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtagCondition {
    /// `*`: any current representation.
    Any,
    Tags(Vec<EntityTag>),
}

impl EtagCondition {
    /// Parse a (possibly comma-joined) list; quotes are optional because
    /// S3 clients commonly send bare ETags. `None` if nothing usable.
    pub fn parse(values: &[&str]) -> Option<Self> {
        let mut tags = Vec::new();
        for item in values.iter().flat_map(|v| v.split(',')) {
            let item = item.trim();
            if item == "*" {
                return Some(Self::Any);
            }
            let (weak, rest) = match item.strip_prefix("W/").or_else(|| item.strip_prefix("w/")) {
                Some(r) => (true, r),
                None => (false, item),
            };
            let value = unquote(rest);
            if !value.is_empty() {
                tags.push(EntityTag {
                    weak,
                    value: value.to_owned(),
                });
            }
        }
        (!tags.is_empty()).then_some(Self::Tags(tags))
    }

    /// Strong comparison (If-Match): weak tags never match.
    fn matches_strong(&self, etag: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Tags(tags) => tags.iter().any(|t| !t.weak && t.value == etag),
        }
    }

    /// Weak comparison (If-None-Match): the W/ flag is ignored.
    fn matches_weak(&self, etag: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Tags(tags) => tags.iter().any(|t| t.value == etag),
        }
    }
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(s)
}

/// Why a condition stopped the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CondFailure {
    /// 412.
    #[error("precondition failed")]
    PreconditionFailed,
    /// 304, only from reads; send no body.
    #[error("not modified")]
    NotModified,
    /// 404, only from writes: `If-Match` on a key that does not exist.
    #[error("no such key")]
    NoSuchKey,
}

impl CondFailure {
    pub fn to_s3_error(self) -> S3Error {
        match self {
            Self::PreconditionFailed => S3Error::new(
                S3ErrorCode::PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold",
            ),
            Self::NotModified => S3Error::new(S3ErrorCode::NotModified, "Not Modified"),
            Self::NoSuchKey => {
                S3Error::new(S3ErrorCode::NoSuchKey, "The specified key does not exist.")
            }
        }
    }
}

/// The four conditional headers. Unparsable dates are ignored (RFC 7232).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    pub if_match: Option<EtagCondition>,
    pub if_none_match: Option<EtagCondition>,
    /// Unix seconds.
    pub if_modified_since: Option<u64>,
    /// Unix seconds.
    pub if_unmodified_since: Option<u64>,
}

impl Conditions {
    /// From request headers (names compared case-insensitively).
    pub fn from_headers(headers: &[(String, String)]) -> Self {
        Self::with_prefix(headers, "")
    }

    /// From `x-amz-copy-source-if-*` headers of CopyObject / UploadPartCopy.
    pub fn from_copy_source_headers(headers: &[(String, String)]) -> Self {
        Self::with_prefix(headers, "x-amz-copy-source-")
    }

    fn with_prefix(headers: &[(String, String)], prefix: &str) -> Self {
        let values = |name: &str| -> Vec<&str> {
            let full = format!("{prefix}{name}");
            headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(&full))
                .map(|(_, v)| v.as_str())
                .collect()
        };
        let date = |name: &str| values(name).first().and_then(|v| parse_http_date(v));
        Self {
            if_match: EtagCondition::parse(&values("if-match")),
            if_none_match: EtagCondition::parse(&values("if-none-match")),
            if_modified_since: date("if-modified-since"),
            if_unmodified_since: date("if-unmodified-since"),
        }
    }

    /// True when no condition is present.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// GET/HEAD. `current` is (ETag without quotes, last-modified unix secs),
    /// `None` when the object does not exist (then only If-Match can fail;
    /// the gateway normally answers NoSuchKey before asking).
    pub fn evaluate_read(&self, current: Option<(&str, u64)>) -> Result<(), CondFailure> {
        let Some((etag, last_modified)) = current else {
            return match self.if_match {
                Some(_) => Err(CondFailure::PreconditionFailed),
                None => Ok(()),
            };
        };
        let etag = unquote(etag);
        self.check_match(etag, last_modified)?;
        if let Some(cond) = &self.if_none_match {
            if cond.matches_weak(etag) {
                return Err(CondFailure::NotModified);
            }
        } else if let Some(since) = self.if_modified_since
            && last_modified <= since
        {
            return Err(CondFailure::NotModified);
        }
        Ok(())
    }

    /// Copy sources: as a read, but every failure is 412 (S3 never
    /// answers 304 to a copy).
    pub fn evaluate_copy_source(&self, current: (&str, u64)) -> Result<(), CondFailure> {
        self.evaluate_read(Some(current))
            .map_err(|_| CondFailure::PreconditionFailed)
    }

    /// Conditional writes; `current` describes the object being replaced.
    pub fn evaluate_write(&self, current: Option<(&str, u64)>) -> Result<(), CondFailure> {
        let Some((etag, last_modified)) = current else {
            return match self.if_match {
                Some(_) => Err(CondFailure::NoSuchKey),
                None => Ok(()),
            };
        };
        let etag = unquote(etag);
        self.check_match(etag, last_modified)?;
        if let Some(cond) = &self.if_none_match
            && cond.matches_weak(etag)
        {
            return Err(CondFailure::PreconditionFailed);
        }
        Ok(())
    }

    /// If-Match, or If-Unmodified-Since when If-Match is absent.
    fn check_match(&self, etag: &str, last_modified: u64) -> Result<(), CondFailure> {
        if let Some(cond) = &self.if_match {
            if !cond.matches_strong(etag) {
                return Err(CondFailure::PreconditionFailed);
            }
        } else if let Some(since) = self.if_unmodified_since
            && last_modified > since
        {
            return Err(CondFailure::PreconditionFailed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_735_689_600; // Wed, 01 Jan 2025 00:00:00 GMT
    const DATE: &str = "Wed, 01 Jan 2025 00:00:00 GMT";
    const EARLIER: &str = "Tue, 31 Dec 2024 00:00:00 GMT";

    fn c(pairs: &[(&str, &str)]) -> Conditions {
        let h: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Conditions::from_headers(&h)
    }

    use CondFailure::*;

    #[test]
    fn parsing() {
        let cond = c(&[("if-match", "\"abc\", W/\"def\""), ("If-Match", "ghi")]);
        assert_eq!(
            cond.if_match,
            Some(EtagCondition::Tags(vec![
                EntityTag {
                    weak: false,
                    value: "abc".into()
                },
                EntityTag {
                    weak: true,
                    value: "def".into()
                },
                EntityTag {
                    weak: false,
                    value: "ghi".into()
                },
            ]))
        );
        assert_eq!(
            c(&[("if-none-match", "*")]).if_none_match,
            Some(EtagCondition::Any)
        );
        assert_eq!(c(&[("if-modified-since", DATE)]).if_modified_since, Some(T));
        assert!(c(&[("if-modified-since", "garbage"), ("if-match", " ")]).is_empty());
    }

    #[test]
    fn read_precedence() {
        let cur = Some(("abc", T));
        assert_eq!(c(&[("if-match", "\"abc\"")]).evaluate_read(cur), Ok(()));
        assert_eq!(c(&[("if-match", "abc")]).evaluate_read(cur), Ok(()));
        assert_eq!(
            c(&[("if-match", "\"x\"")]).evaluate_read(cur),
            Err(PreconditionFailed)
        );
        assert_eq!(
            c(&[("if-match", "W/\"abc\"")]).evaluate_read(cur),
            Err(PreconditionFailed)
        );
        assert_eq!(c(&[("if-match", "*")]).evaluate_read(cur), Ok(()));
        // If-Match true beats If-Unmodified-Since false.
        assert_eq!(
            c(&[("if-match", "abc"), ("if-unmodified-since", EARLIER)]).evaluate_read(cur),
            Ok(())
        );
        assert_eq!(
            c(&[("if-unmodified-since", EARLIER)]).evaluate_read(cur),
            Err(PreconditionFailed)
        );
        assert_eq!(
            c(&[("if-unmodified-since", DATE)]).evaluate_read(cur),
            Ok(())
        );
        // If-None-Match.
        assert_eq!(
            c(&[("if-none-match", "W/\"abc\"")]).evaluate_read(cur),
            Err(NotModified)
        );
        assert_eq!(
            c(&[("if-none-match", "\"x\", \"abc\"")]).evaluate_read(cur),
            Err(NotModified)
        );
        assert_eq!(c(&[("if-none-match", "x")]).evaluate_read(cur), Ok(()));
        // If-None-Match false beats If-Modified-Since true... and vice versa.
        assert_eq!(
            c(&[("if-none-match", "x"), ("if-modified-since", DATE)]).evaluate_read(cur),
            Ok(())
        );
        assert_eq!(
            c(&[("if-none-match", "abc"), ("if-modified-since", EARLIER)]).evaluate_read(cur),
            Err(NotModified)
        );
        assert_eq!(
            c(&[("if-modified-since", DATE)]).evaluate_read(cur),
            Err(NotModified)
        );
        assert_eq!(
            c(&[("if-modified-since", EARLIER)]).evaluate_read(cur),
            Ok(())
        );
        // 412 wins over 304.
        assert_eq!(
            c(&[("if-match", "x"), ("if-none-match", "abc")]).evaluate_read(cur),
            Err(PreconditionFailed)
        );
        // Missing object.
        assert_eq!(
            c(&[("if-match", "abc")]).evaluate_read(None),
            Err(PreconditionFailed)
        );
        assert_eq!(c(&[("if-none-match", "*")]).evaluate_read(None), Ok(()));
    }

    #[test]
    fn writes() {
        let cur = Some(("abc", T));
        let inm = c(&[("if-none-match", "*")]);
        assert_eq!(inm.evaluate_write(None), Ok(()));
        assert_eq!(inm.evaluate_write(cur), Err(PreconditionFailed));
        let im = c(&[("if-match", "\"abc\"")]);
        assert_eq!(im.evaluate_write(cur), Ok(()));
        assert_eq!(im.evaluate_write(Some(("zzz", T))), Err(PreconditionFailed));
        assert_eq!(im.evaluate_write(None), Err(NoSuchKey));
        assert_eq!(NoSuchKey.to_s3_error().status(), 404);
        assert_eq!(NotModified.to_s3_error().status(), 304);
        assert_eq!(Conditions::default().evaluate_write(cur), Ok(()));
    }

    #[test]
    fn copy_source() {
        let h = vec![(
            "x-amz-copy-source-if-none-match".to_owned(),
            "\"abc\"".to_owned(),
        )];
        let cond = Conditions::from_copy_source_headers(&h);
        assert_eq!(
            cond.evaluate_copy_source(("abc", T)),
            Err(PreconditionFailed)
        );
        assert_eq!(cond.evaluate_copy_source(("other", T)), Ok(()));
        assert!(Conditions::from_headers(&h).is_empty());
    }
}
