//! AWS Signature Version 4, header form, as S3 clients send it (path-style, no
//! double encoding, `x-amz-content-sha256` signed). Written here rather than
//! borrowed from `cairn-s3-proto` so that the load generator is an independent
//! client: the tests check it against AWS's published example and against the
//! gateway's verifier.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const SERVICE: &str = "s3";

/// Lowercase hex SHA-256 of the empty string: the payload hash of every
/// request without a body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Percent-encode with the SigV4 rules: everything but the RFC 3986
/// unreserved characters (and `/` when `keep_slash`) becomes `%XX`.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else if b == b'/' && keep_slash {
            out.push('/');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time (UTC): the gateway's own formatter.
pub fn amz_date(unix_s: u64) -> String {
    cairn_s3_proto::time::amz_date(unix_s)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (UTC), as loadgen.py's `meta.date`.
pub fn iso_date(unix_s: u64) -> String {
    let ms = cairn_s3_proto::time::iso8601_ms(unix_s.saturating_mul(1000));
    // `...:SS.000Z` without the milliseconds.
    match ms.strip_suffix(".000Z") {
        Some(head) => format!("{head}Z"),
        None => ms,
    }
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What one request's signature covers.
#[derive(Debug)]
pub struct RequestToSign<'a> {
    pub method: &'a str,
    /// The path exactly as sent, already percent-encoded (`/bucket/key`).
    pub path: &'a str,
    /// Query parameters, not encoded; they are encoded and sorted here.
    pub query: &'a [(&'a str, &'a str)],
    /// Headers to sign, names lowercase (must include `host`,
    /// `x-amz-date` and `x-amz-content-sha256`).
    pub headers: &'a [(&'a str, &'a str)],
    /// Hex SHA-256 of the body (the `x-amz-content-sha256` value).
    pub payload_hash: &'a str,
    /// `YYYYMMDDTHHMMSSZ`, the `x-amz-date` value.
    pub amz_date: &'a str,
}

/// Signs requests for one access key and region; keeps the derived signing
/// key of the current day so a request costs two SHA-256 and one HMAC.
#[derive(Debug)]
pub struct Signer {
    access_key: String,
    secret_key: String,
    region: String,
    /// (`YYYYMMDD`, signing key of that day).
    cached_key: Option<(String, [u8; 32])>,
}

impl Signer {
    pub fn new(access_key: &str, secret_key: &str, region: &str) -> Signer {
        Signer {
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            region: region.to_owned(),
            cached_key: None,
        }
    }

    fn signing_key(&mut self, date: &str) -> [u8; 32] {
        if let Some((d, k)) = &self.cached_key
            && d == date
        {
            return *k;
        }
        let k_date = hmac_sha256(
            format!("AWS4{}", self.secret_key).as_bytes(),
            date.as_bytes(),
        );
        let k_region = hmac_sha256(&k_date, self.region.as_bytes());
        let k_service = hmac_sha256(&k_region, SERVICE.as_bytes());
        let key = hmac_sha256(&k_service, b"aws4_request");
        self.cached_key = Some((date.to_owned(), key));
        key
    }

    /// The `Authorization` header value for `req`.
    pub fn authorization(&mut self, req: &RequestToSign<'_>) -> String {
        let date = req.amz_date.get(..8).unwrap_or(req.amz_date);
        let scope = format!("{date}/{}/{SERVICE}/aws4_request", self.region);

        let mut headers: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.to_ascii_lowercase(),
                    v.split_ascii_whitespace().collect::<Vec<_>>().join(" "),
                )
            })
            .collect();
        headers.sort();
        let signed_headers = headers
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(";");

        let mut query: Vec<(String, String)> = req
            .query
            .iter()
            .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
            .collect();
        query.sort();
        let query = query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");

        let mut creq = String::with_capacity(256);
        creq.push_str(req.method);
        creq.push('\n');
        creq.push_str(if req.path.is_empty() { "/" } else { req.path });
        creq.push('\n');
        creq.push_str(&query);
        creq.push('\n');
        for (n, v) in &headers {
            creq.push_str(n);
            creq.push(':');
            creq.push_str(v);
            creq.push('\n');
        }
        creq.push('\n');
        creq.push_str(&signed_headers);
        creq.push('\n');
        creq.push_str(req.payload_hash);

        let sts = format!(
            "{ALGORITHM}\n{}\n{scope}\n{}",
            req.amz_date,
            sha256_hex(creq.as_bytes())
        );
        let key = self.signing_key(date);
        let signature = hex::encode(hmac_sha256(&key, sts.as_bytes()));
        format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            self.access_key
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(1_369_353_600), "20130524T000000Z");
        assert_eq!(amz_date(951_827_696), "20000229T123456Z");
        assert_eq!(iso_date(1_798_761_599), "2026-12-31T23:59:59Z");
    }

    #[test]
    fn encoding() {
        assert_eq!(uri_encode("4KiB/c1/obj-000001", true), "4KiB/c1/obj-000001");
        assert_eq!(uri_encode("a b/c~", false), "a%20b%2Fc~");
        assert_eq!(EMPTY_SHA256, sha256_hex(b""));
    }

    /// AWS's documented example "GET Object" (S3 API reference,
    /// "Signature Calculations for the Authorization Header").
    #[test]
    fn aws_get_object_example() {
        let mut s = Signer::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "us-east-1",
        );
        let auth = s.authorization(&RequestToSign {
            method: "GET",
            path: "/test.txt",
            query: &[],
            headers: &[
                ("host", "examplebucket.s3.amazonaws.com"),
                ("range", "bytes=0-9"),
                ("x-amz-content-sha256", EMPTY_SHA256),
                ("x-amz-date", "20130524T000000Z"),
            ],
            payload_hash: EMPTY_SHA256,
            amz_date: "20130524T000000Z",
        });
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    /// The gateway's own verifier accepts what this signer produces.
    #[test]
    fn gateway_verifier_accepts() {
        use cairn_s3_proto::sigv4::{HttpRequestParts, parse_auth, verify};
        let now = 1_790_000_000;
        let date = amz_date(now);
        let body = b"hello world";
        let hash = sha256_hex(body);
        let mut s = Signer::new("AK", "secret/key+x", "garage-1");
        for (method, path, hash) in [
            ("PUT", "/loadgen-abc/4KiB/c16/obj-000042", hash.as_str()),
            ("GET", "/loadgen-abc/4KiB/c16/obj-000042", EMPTY_SHA256),
            ("HEAD", "/loadgen-abc", EMPTY_SHA256),
        ] {
            let auth = s.authorization(&RequestToSign {
                method,
                path,
                query: &[],
                headers: &[
                    ("host", "127.0.0.1:9000"),
                    ("x-amz-content-sha256", hash),
                    ("x-amz-date", &date),
                ],
                payload_hash: hash,
                amz_date: &date,
            });
            let headers: Vec<(String, String)> = [
                ("host", "127.0.0.1:9000"),
                ("x-amz-content-sha256", hash),
                ("x-amz-date", date.as_str()),
                ("authorization", auth.as_str()),
            ]
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
            let parts = HttpRequestParts {
                method,
                raw_path: path,
                raw_query: "",
                headers: &headers,
            };
            let parsed = parse_auth(&parts).unwrap().expect("auth present");
            verify(&parts, &parsed, "secret/key+x", now).unwrap();
            assert!(verify(&parts, &parsed, "other", now).is_err());
        }
    }
}
