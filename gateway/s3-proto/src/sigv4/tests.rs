//! SigV4 tests: the AWS documentation vectors and sign/verify round trips.

use super::*;
use crate::error::S3ErrorCode;

const AK: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// 2013-05-24T00:00:00Z, the time of all AWS examples.
const T0: u64 = 1_369_353_600;

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn req<'a>(
    method: &'a str,
    path: &'a str,
    query: &'a str,
    headers: &'a [(String, String)],
) -> HttpRequestParts<'a> {
    HttpRequestParts {
        method,
        raw_path: path,
        raw_query: query,
        headers,
    }
}

fn check(r: &HttpRequestParts<'_>, now: u64) -> Result<SigningContext, crate::S3Error> {
    let auth =
        parse_auth(r)?.ok_or_else(|| crate::S3Error::new(S3ErrorCode::AccessDenied, "anon"))?;
    verify(r, &auth, SECRET, now)
}

#[test]
fn aws_vector_get_object_with_range() {
    let headers = h(&[
        ("host", "examplebucket.s3.amazonaws.com"),
        ("range", "bytes=0-9"),
        ("x-amz-content-sha256", EMPTY),
        ("x-amz-date", "20130524T000000Z"),
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        ),
    ]);
    let r = req("GET", "/test.txt", "", &headers);
    let auth = parse_auth(&r).unwrap().unwrap();
    assert_eq!(auth.access_key, AK);
    assert_eq!(auth.region, "us-east-1");
    assert_eq!(auth.request_time_unix, T0);
    assert_eq!(auth.payload, PayloadMode::Sha256(EMPTY.to_owned()));
    let ctx = verify(&r, &auth, SECRET, T0 + 60).unwrap();
    assert_eq!(ctx.scope, "20130524/us-east-1/s3/aws4_request");
    assert!(!format!("{ctx:?}").contains("signing_key: ["));

    // The client helper produces the same signature.
    let signed = sign_request(&SigningInput {
        method: "GET",
        raw_path: "/test.txt",
        raw_query: "",
        headers: &headers[..4],
        payload_hash: EMPTY,
        access_key: AK,
        secret_key: SECRET,
        region: "us-east-1",
        amz_date: "20130524T000000Z",
    });
    assert!(signed.ends_with("f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"));

    // Wrong secret, tampered header, skewed clock.
    assert_eq!(
        verify(&r, &auth, "nope", T0).unwrap_err().code,
        S3ErrorCode::SignatureDoesNotMatch
    );
    let mut tampered = headers.clone();
    tampered[1].1 = "bytes=0-10".to_owned();
    assert_eq!(
        check(&req("GET", "/test.txt", "", &tampered), T0)
            .unwrap_err()
            .code,
        S3ErrorCode::SignatureDoesNotMatch
    );
    assert_eq!(
        verify(&r, &auth, SECRET, T0 + MAX_CLOCK_SKEW_SECS + 1)
            .unwrap_err()
            .code,
        S3ErrorCode::RequestTimeTooSkewed
    );
    assert_eq!(
        verify(&r, &auth, SECRET, T0 - MAX_CLOCK_SKEW_SECS - 1)
            .unwrap_err()
            .code,
        S3ErrorCode::RequestTimeTooSkewed
    );
}

#[test]
fn aws_vector_put_object_with_date_and_storage_class() {
    let headers = h(&[
        ("host", "examplebucket.s3.amazonaws.com"),
        ("date", "Fri, 24 May 2013 00:00:00 GMT"),
        ("x-amz-date", "20130524T000000Z"),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        (
            "x-amz-content-sha256",
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
        ),
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, \
             Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
        ),
    ]);
    check(&req("PUT", "/test%24file.text", "", &headers), T0).unwrap();
    // A client that did not encode `$` signed the same canonical URI.
    check(&req("PUT", "/test$file.text", "", &headers), T0).unwrap();
}

#[test]
fn aws_vector_get_lifecycle_and_list() {
    let lifecycle = h(&[
        ("host", "examplebucket.s3.amazonaws.com"),
        ("x-amz-date", "20130524T000000Z"),
        ("x-amz-content-sha256", EMPTY),
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;x-amz-content-sha256;x-amz-date,\
             Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
        ),
    ]);
    check(&req("GET", "/", "lifecycle", &lifecycle), T0).unwrap();

    let list = h(&[
        ("host", "examplebucket.s3.amazonaws.com"),
        ("x-amz-date", "20130524T000000Z"),
        ("x-amz-content-sha256", EMPTY),
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;x-amz-content-sha256;x-amz-date,\
             Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
        ),
    ]);
    check(&req("GET", "/", "max-keys=2&prefix=J", &list), T0).unwrap();
    // Parameter order on the wire does not matter.
    check(&req("GET", "/", "prefix=J&max-keys=2", &list), T0).unwrap();
}

const PRESIGNED_QUERY: &str = "X-Amz-Algorithm=AWS4-HMAC-SHA256\
    &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
    &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
    &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

#[test]
fn aws_vector_presigned_get() {
    let headers = h(&[("host", "examplebucket.s3.amazonaws.com")]);
    let r = req("GET", "/test.txt", PRESIGNED_QUERY, &headers);
    let auth = parse_auth(&r).unwrap().unwrap();
    assert_eq!(auth.presigned_expires_s, Some(86_400));
    assert_eq!(auth.payload, PayloadMode::UnsignedPayload);
    verify(&r, &auth, SECRET, T0 + 86_400).unwrap();
    let err = verify(&r, &auth, SECRET, T0 + 86_401).unwrap_err();
    assert_eq!(err.code, S3ErrorCode::AccessDenied);
    assert_eq!(err.message, "Request has expired");
    assert_eq!(
        verify(&r, &auth, SECRET, T0 - MAX_CLOCK_SKEW_SECS - 1)
            .unwrap_err()
            .code,
        S3ErrorCode::AccessDenied
    );

    let url = presign_url(&PresignInput {
        method: "GET",
        raw_path: "/test.txt",
        raw_query: "",
        headers: &headers,
        access_key: AK,
        secret_key: SECRET,
        region: "us-east-1",
        amz_date: "20130524T000000Z",
        expires_s: 86_400,
    });
    assert!(url.ends_with("aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"));
    assert!(url.starts_with("/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&"));
}

#[test]
fn presign_round_trip_with_extra_query() {
    let headers = h(&[("host", "localhost:9000")]);
    let url = presign_url(&PresignInput {
        method: "PUT",
        raw_path: "/bucket/some%20key",
        raw_query: "partNumber=3&uploadId=abc",
        headers: &headers,
        access_key: "ak",
        secret_key: "sk",
        region: "eu-1",
        amz_date: "20250101T000000Z",
        expires_s: 60,
    });
    let (path, query) = url.split_once('?').unwrap();
    let r = req("PUT", path, query, &headers);
    let auth = parse_auth(&r).unwrap().unwrap();
    verify(&r, &auth, "sk", 1_735_689_600).unwrap();
    assert_eq!(
        verify(&r, &auth, "sk2", 1_735_689_600).unwrap_err().code,
        S3ErrorCode::SignatureDoesNotMatch
    );
    let tampered = query.replace("partNumber=3", "partNumber=4");
    let r2 = req("PUT", path, &tampered, &headers);
    assert_eq!(
        verify(&r2, &parse_auth(&r2).unwrap().unwrap(), "sk", 1_735_689_600)
            .unwrap_err()
            .code,
        S3ErrorCode::SignatureDoesNotMatch
    );
}

fn signed_headers_for(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut headers = h(&[
        ("host", "s3.local"),
        ("x-amz-date", "20250101T000000Z"),
        ("x-amz-content-sha256", UNSIGNED_PAYLOAD),
    ]);
    headers.extend(h(extra));
    let auth = sign_request(&SigningInput {
        method: "GET",
        raw_path: "/b/k",
        raw_query: "",
        headers: &headers,
        payload_hash: UNSIGNED_PAYLOAD,
        access_key: "ak",
        secret_key: SECRET,
        region: "us-east-1",
        amz_date: "20250101T000000Z",
    });
    headers.push(("authorization".to_owned(), auth));
    headers
}

#[test]
fn header_values_are_normalised_and_joined() {
    let mut headers =
        signed_headers_for(&[("x-amz-meta-a", "one"), ("x-amz-meta-a", "two  three")]);
    check(&req("GET", "/b/k", "", &headers), 1_735_689_600).unwrap();
    // Extra whitespace on the wire is not significant.
    headers[4].1 = "  two    three ".to_owned();
    check(&req("GET", "/b/k", "", &headers), 1_735_689_600).unwrap();
}

#[test]
fn unsigned_amz_header_is_refused() {
    let mut headers = signed_headers_for(&[]);
    headers.push(("x-amz-copy-source".to_owned(), "/other/key".to_owned()));
    let err = check(&req("GET", "/b/k", "", &headers), 1_735_689_600).unwrap_err();
    assert_eq!(err.code, S3ErrorCode::AccessDenied);
}

#[test]
fn anonymous_and_sigv2() {
    let headers = h(&[("host", "x")]);
    assert_eq!(parse_auth(&req("GET", "/", "", &headers)).unwrap(), None);
    let v2 = h(&[("host", "x"), ("authorization", "AWS AKID:c2lnbmF0dXJl")]);
    let err = parse_auth(&req("GET", "/", "", &v2)).unwrap_err();
    assert_eq!(err.code, S3ErrorCode::InvalidRequest);
    assert!(err.message.contains("Version 2"));
    let err = parse_auth(&req(
        "GET",
        "/",
        "AWSAccessKeyId=a&Signature=b&Expires=1",
        &headers,
    ))
    .unwrap_err();
    assert_eq!(err.code, S3ErrorCode::InvalidRequest);
}

fn header_err(auth: &str, extra: &[(&str, &str)]) -> S3Error {
    let mut headers = h(&[
        ("host", "x"),
        ("x-amz-date", "20250101T000000Z"),
        ("x-amz-content-sha256", UNSIGNED_PAYLOAD),
        ("authorization", auth),
    ]);
    for (k, v) in extra {
        headers.retain(|(n, _)| n != k);
        if !v.is_empty() {
            headers.push(((*k).to_owned(), (*v).to_owned()));
        }
    }
    parse_auth(&req("GET", "/", "", &headers)).unwrap_err()
}

use crate::S3Error;

#[test]
fn malformed_header_auth() {
    let sig = "0".repeat(64);
    let ok = format!(
        "AWS4-HMAC-SHA256 Credential=ak/20250101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature={sig}"
    );
    let cases = [
        format!("AWS4-HMAC-SHA512 Credential=ak/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature={sig}"),
        format!("AWS4-HMAC-SHA256 Credential=ak/20250101/us-east-1/s3, SignedHeaders=host, Signature={sig}"),
        format!("AWS4-HMAC-SHA256 Credential=ak/20250102/us-east-1/s3/aws4_request, SignedHeaders=host, Signature={sig}"),
        format!("AWS4-HMAC-SHA256 Credential=ak/20250101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature={sig}"),
        format!("AWS4-HMAC-SHA256 Credential=ak/20250101/us-east-1/s3/aws4_request, SignedHeaders=x-amz-date, Signature={sig}"),
        "AWS4-HMAC-SHA256 Credential=ak/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=zz".to_owned(),
        "AWS4-HMAC-SHA256 Credential=ak/20250101/us-east-1/s3/aws4_request, SignedHeaders=host".to_owned(),
        format!("AWS4-HMAC-SHA256 Credential=ak/20250101/us-east-1/s3/aws4_request, Foo=1, SignedHeaders=host, Signature={sig}"),
        format!("AWS4-HMAC-SHA256 Credential=ak/20250101/us-east-1/s3/aws4_request,, SignedHeaders=Host, Signature={sig}"),
        "AWS4-HMAC-SHA256".to_owned(),
        String::new(),
    ];
    for c in &cases {
        assert_eq!(
            header_err(c, &[]).code,
            S3ErrorCode::AuthorizationHeaderMalformed,
            "{c}"
        );
    }
    // Missing / bad date, missing content hash.
    assert_eq!(
        header_err(&ok, &[("x-amz-date", "")]).code,
        S3ErrorCode::AccessDenied
    );
    assert_eq!(
        header_err(&ok, &[("x-amz-date", "yesterday")]).code,
        S3ErrorCode::AccessDenied
    );
    assert_eq!(
        header_err(&ok, &[("x-amz-content-sha256", "")]).code,
        S3ErrorCode::InvalidRequest
    );
    assert_eq!(
        header_err(&ok, &[("x-amz-content-sha256", "abc")]).code,
        S3ErrorCode::InvalidArgument
    );
    // No space after commas is fine.
    let tight = ok.replace(", ", ",");
    let headers = h(&[
        ("host", "x"),
        ("x-amz-date", "20250101T000000Z"),
        ("x-amz-content-sha256", STREAMING_UNSIGNED_TRAILER),
        ("authorization", &tight),
    ]);
    let a = parse_auth(&req("GET", "/", "", &headers)).unwrap().unwrap();
    assert_eq!(a.payload, PayloadMode::StreamingUnsignedTrailer);
    assert_eq!(a.signed_headers, vec!["host", "x-amz-date"]);
}

#[test]
fn date_header_fallback() {
    let sig = "a".repeat(64);
    let headers = h(&[
        ("host", "x"),
        ("date", "Wed, 01 Jan 2025 00:00:00 GMT"),
        ("x-amz-content-sha256", STREAMING_SIGNED),
        (
            "authorization",
            &format!(
                "AWS4-HMAC-SHA256 Credential=ak/20250101/r/s3/aws4_request,SignedHeaders=date;host,Signature={sig}"
            ),
        ),
    ]);
    let a = parse_auth(&req("GET", "/", "", &headers)).unwrap().unwrap();
    assert_eq!(a.amz_date, "20250101T000000Z");
    assert_eq!(a.payload, PayloadMode::StreamingSigned);
}

#[test]
fn malformed_presigned() {
    let headers = h(&[("host", "x")]);
    let base = PRESIGNED_QUERY;
    let cases = [
        base.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1"),
        base.replace("X-Amz-Expires=86400", "X-Amz-Expires=604801"),
        base.replace("X-Amz-Expires=86400", "X-Amz-Expires=0"),
        base.replace("X-Amz-Expires=86400", "X-Amz-Expires=-5"),
        base.replace("X-Amz-Expires=86400&", ""),
        base.replace("X-Amz-Date=20130524T000000Z", "X-Amz-Date=2013-05-24"),
        base.replace("X-Amz-Date=20130524T000000Z", "X-Amz-Date=20130525T000000Z"),
        base.replace("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=range"),
    ];
    for c in &cases {
        let err = parse_auth(&req("GET", "/test.txt", c, &headers)).unwrap_err();
        assert_eq!(
            err.code,
            S3ErrorCode::AuthorizationQueryParametersError,
            "{c}"
        );
    }
    let both = h(&[("host", "x"), ("authorization", "AWS4-HMAC-SHA256 x")]);
    assert_eq!(
        parse_auth(&req("GET", "/test.txt", base, &both))
            .unwrap_err()
            .code,
        S3ErrorCode::InvalidArgument
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    #[test]
    fn random_auth_never_panics(auth in ".{0,200}", query in "[A-Za-z0-9=&%-]{0,200}") {
        let headers = h(&[("host", "x"), ("authorization", &auth), ("x-amz-date", "20250101T000000Z")]);
        let r = req("GET", "/", &query, &headers);
        if let Ok(Some(a)) = parse_auth(&r) {
            let _ = verify(&r, &a, "s", 0);
        }
        let headers = h(&[("host", "x")]);
        let q = format!("X-Amz-Algorithm=AWS4-HMAC-SHA256&{query}");
        let r = req("GET", "/", &q, &headers);
        if let Ok(Some(a)) = parse_auth(&r) {
            let _ = verify(&r, &a, "s", u64::MAX);
        }
    }

    #[test]
    fn sign_verify_round_trip(
        path in "(/[A-Za-z0-9 ._~!$'()*+,;=:@%-]{0,12}){1,4}",
        query in proptest::collection::vec(("[A-Za-z0-9-]{1,8}", "[A-Za-z0-9 /+=]{0,8}"), 0..4),
        meta in "[ -~]{0,20}",
    ) {
        // Encode the path and query the way an SDK would.
        let raw_path: String = path
            .split('/')
            .map(|s| canonical::uri_encode(s.as_bytes()))
            .collect::<Vec<_>>()
            .join("/");
        let raw_query = query
            .iter()
            .map(|(k, v)| format!("{k}={}", canonical::uri_encode(v.as_bytes())))
            .collect::<Vec<_>>()
            .join("&");
        let mut headers = h(&[
            ("host", "s3.local:9000"),
            ("x-amz-date", "20250101T000000Z"),
            ("x-amz-content-sha256", EMPTY),
            ("x-amz-meta-m", &meta),
        ]);
        let (authz, ctx) = sign_request_with_context(&SigningInput {
            method: "PUT",
            raw_path: &raw_path,
            raw_query: &raw_query,
            headers: &headers,
            payload_hash: EMPTY,
            access_key: "ak",
            secret_key: "secret",
            region: "us-east-1",
            amz_date: "20250101T000000Z",
        });
        headers.push(("authorization".to_owned(), authz));
        let r = req("PUT", &raw_path, &raw_query, &headers);
        let a = parse_auth(&r).unwrap().unwrap();
        let server_ctx = verify(&r, &a, "secret", 1_735_689_600).unwrap();
        proptest::prop_assert_eq!(server_ctx.seed_signature, ctx.seed_signature);
    }
}
