//! The blob etag: hex MD5 of the body (S3 and Swift both use it). Either the engine computes it
//! while the body streams in, or the writer supplies it at commit because it already hashed the
//! bytes on their way in (the gateway does, once per object, instead of once per replica); the
//! node then checks a CRC32C of what arrived against the writer's (see `cairn-node`'s `PutBlob`).

use md5::{Digest, Md5};

use crate::error::{Error, Result};

/// Incremental MD5 of a streamed body.
#[derive(Debug, Default, Clone)]
pub struct EtagHasher {
    md5: Md5,
}

impl EtagHasher {
    pub fn new() -> EtagHasher {
        EtagHasher::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
    }

    /// Lowercase hex of the digest.
    pub fn finish_hex(self) -> String {
        use std::fmt::Write;
        let digest = self.md5.finalize();
        let mut out = String::with_capacity(32);
        for b in digest.iter() {
            let _ = write!(out, "{b:02x}");
        }
        out
    }
}

/// Where a blob's etag comes from; chosen when the blob is begun.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EtagSource {
    /// The engine hashes the body as it streams in; an etag given at commit must match it.
    #[default]
    Computed,
    /// The commit carries the etag; the engine does not hash the body.
    Supplied,
}

/// The hashing state of a blob being written: `None` when the etag is supplied.
pub fn hasher_for(source: EtagSource) -> Option<EtagHasher> {
    match source {
        EtagSource::Computed => Some(EtagHasher::new()),
        EtagSource::Supplied => None,
    }
}

/// The etag a blob is committed with: the computed one (checked against a supplied one, if
/// any), or the supplied one (checked to be an MD5 in lowercase hex).
pub fn settle(computed: Option<EtagHasher>, supplied: Option<String>) -> Result<String> {
    match (computed, supplied) {
        (Some(h), None) => Ok(h.finish_hex()),
        (Some(h), Some(s)) => {
            let got = h.finish_hex();
            if got.eq_ignore_ascii_case(&s) {
                Ok(got)
            } else {
                Err(Error::Invalid(format!(
                    "the body's MD5 is {got}, the writer announced {s}"
                )))
            }
        }
        (None, Some(s)) => {
            if s.len() == 32
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                Ok(s)
            } else {
                Err(Error::Invalid(format!(
                    "a supplied etag must be 32 lowercase hex digits, not {s:?}"
                )))
            }
        }
        (None, None) => Err(Error::Invalid(
            "the blob was begun with a supplied etag and committed without one".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashed(data: &[u8]) -> Option<EtagHasher> {
        let mut h = EtagHasher::new();
        h.update(data);
        Some(h)
    }

    #[test]
    fn a_computed_etag_must_match_a_supplied_one() {
        const HELLO: &str = "5d41402abc4b2a76b9719d911017c592";
        assert_eq!(settle(hashed(b"hello"), None).unwrap(), HELLO);
        assert_eq!(
            settle(hashed(b"hello"), Some(HELLO.to_uppercase())).unwrap(),
            HELLO
        );
        assert!(matches!(
            settle(hashed(b"hellO"), Some(HELLO.into())),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn a_supplied_etag_must_be_md5_hex() {
        let ok = "0123456789abcdef0123456789abcdef";
        assert_eq!(settle(None, Some(ok.into())).unwrap(), ok);
        for bad in [
            "",
            "0123",
            &ok.to_uppercase(),
            &format!("{ok}0"),
            "g123456789abcdef0123456789abcdef",
        ] {
            assert!(settle(None, Some(bad.to_string())).is_err(), "{bad}");
        }
        assert!(settle(None, None).is_err());
    }
}
