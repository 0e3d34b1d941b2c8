//! TempURL: pre-signed, expiring object URLs.
//!
//! The signature is an HMAC over `"{METHOD}\n{expires}\n{path}"` where
//! `expires` is the integer unix time (even if the URL carries the ISO 8601
//! form) and `path` is the object path `/v1/AUTH_x/c/o`, or for prefix URLs
//! `prefix:/v1/AUTH_x/c/{temp_url_prefix}`. Keys come from
//! `X-Account-Meta-Temp-URL-Key[-2]` and `X-Container-Meta-Temp-URL-Key[-2]`
//! (the gateway gathers them). Every failure answers 401 with Swift's body
//! `401 Unauthorized: Temp URL invalid\n` (the gateway should send no body
//! for HEAD).
//!
//! Signatures may be hex (digest chosen by length: 40 → SHA1, 64 → SHA256,
//! 128 → SHA512) or `sha1:`/`sha256:`/`sha512:` followed by base64
//! (standard or URL-safe alphabet, padding optional). A HEAD is accepted
//! with a signature for HEAD, GET, POST or PUT, as Swift allows.
//!
//! `temp_url_ip_range` URLs are recognised but always rejected, because
//! checking them needs the client address (not supported here).

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha512};

use crate::error::SwiftError;
use crate::query::{first, parse_query};
use crate::timestamp::parse_iso8601_utc;

/// HMAC digest of a TempURL signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TempUrlDigest {
    /// HMAC-SHA1 (still Swift's most common, and what older clients emit).
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// Swift's default `allowed_digests`.
pub const DEFAULT_ALLOWED_DIGESTS: [TempUrlDigest; 3] = [
    TempUrlDigest::Sha1,
    TempUrlDigest::Sha256,
    TempUrlDigest::Sha512,
];

/// Methods a TempURL may authorise (Swift's default `methods`).
pub const TEMPURL_METHODS: [&str; 5] = ["GET", "HEAD", "PUT", "POST", "DELETE"];

/// Longest signature accepted (a base64 SHA512 plus prefix is ~95 chars;
/// hex SHA512 is 128).
pub const MAX_SIGNATURE_LENGTH: usize = 256;

impl TempUrlDigest {
    /// Name used in the `name:base64` signature form and in `/info`.
    pub fn name(self) -> &'static str {
        match self {
            TempUrlDigest::Sha1 => "sha1",
            TempUrlDigest::Sha256 => "sha256",
            TempUrlDigest::Sha512 => "sha512",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        match s {
            "sha1" => Some(Self::Sha1),
            "sha256" => Some(Self::Sha256),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }
}

/// TempURL query parameters, with the signature already decoded to bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TempUrlParams {
    /// Raw signature bytes.
    pub signature: Vec<u8>,
    /// Digest the signature claims to use.
    pub digest: TempUrlDigest,
    /// Expiry, unix seconds.
    pub expires: u64,
    /// `temp_url_prefix`, for prefix-scoped URLs.
    pub prefix: Option<String>,
    /// `filename` override for `Content-Disposition`.
    pub filename: Option<String>,
    /// `inline` flag present.
    pub inline: bool,
    /// `temp_url_ip_range`, if present (such URLs are rejected).
    pub ip_range: Option<String>,
}

fn invalid() -> SwiftError {
    SwiftError::unauthorized("401 Unauthorized: Temp URL invalid\n")
}

/// Recognises a TempURL request. `None` when the query has neither
/// `temp_url_sig` nor `temp_url_expires` (not a TempURL: use normal auth);
/// `Some(Err(401))` when it is a TempURL but malformed.
pub fn parse_tempurl_query(raw_query: &str) -> Option<Result<TempUrlParams, SwiftError>> {
    let pairs = match parse_query(raw_query) {
        Ok(p) => p,
        Err(_) => {
            return raw_query.contains("temp_url_").then(|| Err(invalid()));
        }
    };
    let sig = first(&pairs, "temp_url_sig");
    let expires = first(&pairs, "temp_url_expires");
    if sig.is_none() && expires.is_none() {
        return None;
    }
    Some(parse_params(&pairs, sig, expires))
}

fn parse_params(
    pairs: &[(String, String)],
    sig: Option<&str>,
    expires: Option<&str>,
) -> Result<TempUrlParams, SwiftError> {
    let sig = sig.filter(|s| !s.is_empty()).ok_or_else(invalid)?;
    let expires = expires.filter(|s| !s.is_empty()).ok_or_else(invalid)?;
    let expires = match expires.parse::<u64>() {
        Ok(v) => v,
        Err(_) => parse_iso8601_utc(expires).ok_or_else(invalid)?,
    };
    let (digest, signature) = decode_signature(sig).ok_or_else(invalid)?;
    Ok(TempUrlParams {
        signature,
        digest,
        expires,
        prefix: first(pairs, "temp_url_prefix").map(str::to_string),
        filename: first(pairs, "filename").map(str::to_string),
        inline: first(pairs, "inline").is_some(),
        ip_range: first(pairs, "temp_url_ip_range").map(str::to_string),
    })
}

fn decode_signature(sig: &str) -> Option<(TempUrlDigest, Vec<u8>)> {
    if sig.len() > MAX_SIGNATURE_LENGTH {
        return None;
    }
    if let Some((name, b64)) = sig.split_once(':') {
        let digest = TempUrlDigest::from_name(name)?;
        let normalized: String = b64
            .trim_end_matches('=')
            .chars()
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                c => c,
            })
            .collect();
        return STANDARD_NO_PAD.decode(normalized).ok().map(|b| (digest, b));
    }
    let digest = match sig.len() {
        40 => TempUrlDigest::Sha1,
        64 => TempUrlDigest::Sha256,
        128 => TempUrlDigest::Sha512,
        _ => return None,
    };
    hex::decode(sig).ok().map(|b| (digest, b))
}

fn hmac_raw(digest: TempUrlDigest, key: &[u8], msg: &[u8]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
        match <M as Mac>::new_from_slice(key) {
            Ok(mut m) => {
                m.update(msg);
                m.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        }
    }
    match digest {
        TempUrlDigest::Sha1 => run::<Hmac<Sha1>>(key, msg),
        TempUrlDigest::Sha256 => run::<Hmac<Sha256>>(key, msg),
        TempUrlDigest::Sha512 => run::<Hmac<Sha512>>(key, msg),
    }
}

/// Constant-time equality (length is not secret).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() || a.is_empty() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The HMAC input Swift signs.
pub fn hmac_body(method: &str, expires: u64, hmac_path: &str) -> String {
    format!("{method}\n{expires}\n{hmac_path}")
}

/// Signs a TempURL; returns the hex signature (what `swift tempurl` prints
/// for SHA1/SHA256).
pub fn sign_tempurl(
    method: &str,
    expires: u64,
    path: &str,
    key: &str,
    digest: TempUrlDigest,
) -> String {
    hex::encode(hmac_raw(
        digest,
        key.as_bytes(),
        hmac_body(method, expires, path).as_bytes(),
    ))
}

/// Verifies a TempURL request. `path` is the decoded request path
/// `/v1/{account}/{container}/{object}`; `keys` are all TempURL keys of the
/// account and container; `now_unix` the current time. Any failure → 401.
pub fn verify_tempurl(
    params: &TempUrlParams,
    method: &str,
    path: &str,
    keys: &[&str],
    now_unix: u64,
    allowed_digests: &[TempUrlDigest],
) -> Result<(), SwiftError> {
    if params.expires < now_unix
        || params.ip_range.is_some()
        || !allowed_digests.contains(&params.digest)
        || !TEMPURL_METHODS.contains(&method)
    {
        return Err(invalid());
    }
    let mut parts = path.splitn(5, '/');
    let (Some(""), Some("v1"), Some(account), Some(container), Some(object)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(invalid());
    };
    if account.is_empty() || container.is_empty() || object.trim_matches('/').is_empty() {
        return Err(invalid());
    }
    let hmac_path = match &params.prefix {
        None => path.to_string(),
        Some(prefix) => {
            if !object.starts_with(prefix.as_str()) {
                return Err(invalid());
            }
            format!("prefix:/v1/{account}/{container}/{prefix}")
        }
    };
    let methods: &[&str] = if method == "HEAD" {
        &["HEAD", "GET", "POST", "PUT"]
    } else {
        &[method]
    };
    for key in keys {
        for m in methods {
            let expected = hmac_raw(
                params.digest,
                key.as_bytes(),
                hmac_body(m, params.expires, &hmac_path).as_bytes(),
            );
            if ct_eq(&expected, &params.signature) {
                return Ok(());
            }
        }
    }
    Err(invalid())
}

/// `Content-Disposition` for a successful GET/HEAD through a TempURL:
/// `inline` flag and `filename` win; otherwise `attachment` named after the
/// object's last path component (the gateway may prefer a stored
/// `Content-Disposition` when neither parameter was given).
pub fn content_disposition(params: &TempUrlParams, object_name: &str) -> String {
    let format = |kind: &str, name: &str| {
        use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
        const PY_SAFE: &AsciiSet = &NON_ALPHANUMERIC
            .remove(b'_')
            .remove(b'.')
            .remove(b'-')
            .remove(b'~');
        const KEEP_SLASH: &AsciiSet = &PY_SAFE.remove(b'/');
        const KEEP_SPACE_SLASH: &AsciiSet = &KEEP_SLASH.remove(b' ');
        format!(
            "{kind}; filename=\"{}\"; filename*=UTF-8''{}",
            utf8_percent_encode(name, KEEP_SPACE_SLASH),
            utf8_percent_encode(name, KEEP_SLASH)
        )
    };
    match (&params.filename, params.inline) {
        (Some(f), true) => format("inline", f),
        (None, true) => "inline".to_string(),
        (Some(f), false) => format("attachment", f),
        (None, false) => {
            let base = object_name
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or("");
            format("attachment", base)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PATH: &str = "/v1/AUTH_account/container/object";
    // Vectors computed independently with Python:
    //   hmac.new(b'mykey', b'GET\n1700000000\n/v1/AUTH_account/container/object', sha1).hexdigest()
    const SHA1_SIG: &str = "771f3cf01a233b090b2e8585bb4eb3fb67bf3084";
    const SHA256_SIG: &str = "bb70eaa9a54a137fb5c124ed5417bc948e0c5b3a504bfec8ab0b4ee0074dfdf7";
    //   'sha512:' + base64.urlsafe_b64encode(hmac.new(..., sha512).digest())
    const SHA512_SIG: &str = "sha512:37BD9sOVzhWNE6LH8Wxy3Mpf5RUK-wmtR9gb3JwdgcDGKPDwiYfHWffhfycDvgEfoAZA9AkQHGqiYzSAP9HK7Q==";
    //   hmac.new(b'mykey', b'GET\n1700000000\nprefix:/v1/AUTH_account/container/pre', sha1)
    const PREFIX_SIG: &str = "324a975b9f18d5f9a171455b964b0675f4045674";

    fn params(q: &str) -> TempUrlParams {
        parse_tempurl_query(q).unwrap().unwrap()
    }

    fn verify(q: &str, method: &str, path: &str, now: u64) -> Result<(), SwiftError> {
        verify_tempurl(
            &params(q),
            method,
            path,
            &["other", "mykey"],
            now,
            &DEFAULT_ALLOWED_DIGESTS,
        )
    }

    #[test]
    fn signs_like_python() {
        assert_eq!(
            sign_tempurl("GET", 1_700_000_000, PATH, "mykey", TempUrlDigest::Sha1),
            SHA1_SIG
        );
        assert_eq!(
            sign_tempurl("GET", 1_700_000_000, PATH, "mykey", TempUrlDigest::Sha256),
            SHA256_SIG
        );
    }

    #[test]
    fn verifies_all_digests() {
        for sig in [SHA1_SIG, SHA256_SIG, SHA512_SIG] {
            let q = format!("temp_url_sig={sig}&temp_url_expires=1700000000");
            assert!(verify(&q, "GET", PATH, 1_699_999_999).is_ok(), "{sig}");
            assert!(verify(&q, "HEAD", PATH, 1_699_999_999).is_ok(), "{sig}");
            assert_eq!(
                verify(&q, "PUT", PATH, 1_699_999_999).unwrap_err().status,
                401
            );
            assert_eq!(
                verify(&q, "GET", PATH, 1_700_000_001).unwrap_err().status,
                401
            );
            assert_eq!(
                verify(&q, "GET", "/v1/AUTH_account/container/other", 1)
                    .unwrap_err()
                    .status,
                401
            );
        }
        // Standard alphabet, no padding.
        let std = SHA512_SIG
            .replace('-', "+")
            .replace('_', "/")
            .trim_end_matches('=')
            .to_string();
        let q = format!(
            "temp_url_sig={}&temp_url_expires=1700000000",
            std.replace('+', "%2B")
        );
        assert!(verify(&q, "GET", PATH, 1).is_ok());
        let hex512 = sign_tempurl("GET", 1_700_000_000, PATH, "mykey", TempUrlDigest::Sha512);
        assert!(
            verify(
                &format!("temp_url_sig={hex512}&temp_url_expires=1700000000"),
                "GET",
                PATH,
                1
            )
            .is_ok()
        );
        let q = format!("temp_url_sig={SHA1_SIG}&temp_url_expires=1700000000");
        let only256 = verify_tempurl(
            &params(&q),
            "GET",
            PATH,
            &["mykey"],
            1,
            &[TempUrlDigest::Sha256],
        );
        assert_eq!(only256.unwrap_err().status, 401);
    }

    #[test]
    fn iso_expiry_and_prefix() {
        // 2023-11-14T22:13:20Z == 1700000000
        let q = format!(
            "temp_url_sig={SHA1_SIG}&temp_url_expires=2023-11-14T22:13:20Z&inline&filename=a+b.pdf"
        );
        let p = params(&q);
        assert_eq!(p.expires, 1_700_000_000);
        assert!(p.inline);
        assert_eq!(p.filename.as_deref(), Some("a b.pdf"));
        assert!(verify(&q, "GET", PATH, 5).is_ok());
        let q =
            format!("temp_url_sig={PREFIX_SIG}&temp_url_expires=1700000000&temp_url_prefix=pre");
        assert!(verify(&q, "GET", "/v1/AUTH_account/container/pre/sub/obj", 5).is_ok());
        assert!(verify(&q, "GET", "/v1/AUTH_account/container/prefix", 5).is_ok());
        assert_eq!(
            verify(&q, "GET", "/v1/AUTH_account/container/other", 5)
                .unwrap_err()
                .status,
            401
        );
    }

    #[test]
    fn recognition() {
        assert!(parse_tempurl_query("prefix=a").is_none());
        assert!(parse_tempurl_query("").is_none());
        let e = parse_tempurl_query("temp_url_sig=abc")
            .unwrap()
            .unwrap_err();
        assert_eq!(
            (e.status, e.body()),
            (401, "401 Unauthorized: Temp URL invalid\n".to_string())
        );
        assert!(
            parse_tempurl_query("temp_url_sig=abcd&temp_url_expires=1")
                .unwrap()
                .is_err()
        );
        assert!(
            parse_tempurl_query("temp_url_sig=sha1:@@&temp_url_expires=1")
                .unwrap()
                .is_err()
        );
        assert!(
            parse_tempurl_query("temp_url_sig=md5:AAAA&temp_url_expires=1")
                .unwrap()
                .is_err()
        );
        assert!(
            parse_tempurl_query("temp_url_sig=%ff&temp_url_expires=1")
                .unwrap()
                .is_err()
        );
        let q = format!(
            "temp_url_sig={SHA1_SIG}&temp_url_expires=1700000000&temp_url_ip_range=1.2.3.4"
        );
        assert_eq!(verify(&q, "GET", PATH, 1).unwrap_err().status, 401);
        let q = format!("temp_url_sig={SHA1_SIG}&temp_url_expires=1700000000");
        assert!(verify(&q, "COPY", PATH, 1).is_err());
        assert!(verify(&q, "GET", "/v1/AUTH_account/container", 1).is_err());
    }

    #[test]
    fn disposition() {
        let mut p = params(&format!("temp_url_sig={SHA1_SIG}&temp_url_expires=1"));
        assert_eq!(
            content_disposition(&p, "dir/my file.txt"),
            "attachment; filename=\"my file.txt\"; filename*=UTF-8''my%20file.txt"
        );
        p.inline = true;
        assert_eq!(content_disposition(&p, "x"), "inline");
        p.filename = Some("é.pdf".into());
        assert_eq!(
            content_disposition(&p, "x"),
            "inline; filename=\"%C3%A9.pdf\"; filename*=UTF-8''%C3%A9.pdf"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn query_never_panics(q in ".{0,120}") {
            if let Some(Ok(p)) = parse_tempurl_query(&q) {
                let _ = verify_tempurl(&p, "GET", PATH, &["k"], 0, &DEFAULT_ALLOWED_DIGESTS);
                let _ = content_disposition(&p, &q);
            }
        }

        #[test]
        fn structured_query_never_panics(sig in "(sha1:|sha256:|sha512:)?[A-Za-z0-9+/=_-]{0,130}", exp in "[0-9TZ:-]{0,22}", method in "[A-Z]{0,6}", path in "[/a-z]{0,20}") {
            let q = format!("temp_url_sig={sig}&temp_url_expires={exp}&temp_url_prefix=a");
            if let Some(Ok(p)) = parse_tempurl_query(&q) {
                let _ = verify_tempurl(&p, &method, &path, &["k"], 0, &DEFAULT_ALLOWED_DIGESTS);
            }
        }
    }
}
