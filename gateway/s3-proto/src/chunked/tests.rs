//! aws-chunked tests: the AWS documentation example, round trips over
//! random splits, garbage input and tampering.

use bytes::BytesMut;
use proptest::prelude::*;

use super::*;
use crate::error::S3ErrorCode;
use crate::sigv4::{self, HttpRequestParts, SigningContext};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const SCOPE: &str = "20130524/us-east-1/s3/aws4_request";
const AMZ_DATE: &str = "20130524T000000Z";
const SEED: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";

fn ctx() -> SigningContext {
    SigningContext::new(SECRET, AMZ_DATE, SCOPE, SEED)
}

type Trailers = Vec<(String, String)>;

/// Decode everything in `pieces`, returning data and trailers.
fn decode_pieces(
    mode: ChunkedMode,
    len: Option<u64>,
    pieces: &[&[u8]],
) -> Result<(Vec<u8>, Trailers), crate::S3Error> {
    let mut dec = ChunkedDecoder::new(mode, len);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut trailers = None;
    for p in pieces {
        buf.extend_from_slice(p);
        while let Some(ev) = dec.feed(&mut buf)? {
            match ev {
                Decoded::Data(d) => {
                    assert!(!d.is_empty());
                    out.extend_from_slice(&d);
                }
                Decoded::End { trailers: t } => trailers = Some(t),
            }
        }
    }
    dec.finish_input()?;
    Ok((out, trailers.unwrap_or_default()))
}

#[test]
fn aws_streaming_example() {
    // The seed signature of the documented request is reproduced by verify().
    let headers: Vec<(String, String)> = [
        ("content-encoding", "aws-chunked"),
        ("content-length", "66824"),
        ("host", "s3.amazonaws.com"),
        ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
        ("x-amz-date", AMZ_DATE),
        ("x-amz-decoded-content-length", "66560"),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;\
             x-amz-decoded-content-length;x-amz-storage-class,\
             Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        ),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let req = HttpRequestParts {
        method: "PUT",
        raw_path: "/examplebucket/chunkObject.txt",
        raw_query: "",
        headers: &headers,
    };
    let auth = sigv4::parse_auth(&req).unwrap().unwrap();
    let server = sigv4::verify(&req, &auth, SECRET, 1_369_353_600).unwrap();
    assert_eq!(server.seed_signature, SEED);

    let c = ctx();
    let s1 = c.chunk_signature(SEED, &[b'a'; 65_536]);
    assert_eq!(
        s1,
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
    );
    let s2 = c.chunk_signature(&s1, &[b'a'; 1024]);
    assert_eq!(
        s2,
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
    );
    let s3 = c.chunk_signature(&s2, b"");
    assert_eq!(
        s3,
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"
    );

    let body = encode_chunked(
        &ChunkedMode::Signed(server.clone()),
        &[b'a'; 66_560],
        &[65_536],
        &[],
    );
    assert_eq!(body.len(), 66_824);
    let (data, trailers) =
        decode_pieces(ChunkedMode::Signed(server), Some(66_560), &[&body]).unwrap();
    assert_eq!(data.len(), 66_560);
    assert!(trailers.is_empty());
}

#[test]
fn boto3_style_unsigned_trailer() {
    let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n";
    let (data, trailers) =
        decode_pieces(ChunkedMode::UnsignedWithTrailer, Some(11), &[body]).unwrap();
    assert_eq!(data, b"hello world");
    assert_eq!(
        trailers,
        vec![("x-amz-checksum-crc32".to_owned(), "DUoRhQ==".to_owned())]
    );
}

#[test]
fn unsigned_data_is_streamed_before_chunk_end() {
    let mut dec = ChunkedDecoder::new(ChunkedMode::UnsignedWithTrailer, None);
    let mut buf = BytesMut::from(&b"a\r\nhel"[..]);
    assert_eq!(
        dec.feed(&mut buf).unwrap(),
        Some(Decoded::Data("hel".into()))
    );
    assert_eq!(dec.feed(&mut buf).unwrap(), None);
    assert!(dec.finish_input().is_err());
}

#[test]
fn signed_trailer_round_trip_and_tamper() {
    let trailers = vec![("x-amz-checksum-crc32c".to_owned(), "sOO8/Q==".to_owned())];
    let mode = ChunkedMode::SignedWithTrailer(ctx());
    let body = encode_chunked(&mode, b"0123456789", &[4], &trailers);
    let (data, got) = decode_pieces(mode.clone(), Some(10), &[&body]).unwrap();
    assert_eq!(data, b"0123456789");
    assert_eq!(got, trailers);

    // Changing the trailer value breaks the trailer signature.
    let text = String::from_utf8(body.clone()).unwrap();
    let bad = text.replace("sOO8/Q==", "sOO8/R==");
    let err = decode_pieces(mode.clone(), None, &[bad.as_bytes()]).unwrap_err();
    assert_eq!(err.code, S3ErrorCode::SignatureDoesNotMatch);

    // Dropping the trailer signature line is refused.
    let pos = text.find("x-amz-trailer-signature").unwrap();
    let dropped = format!("{}\r\n", &text[..pos]);
    assert!(decode_pieces(mode, None, &[dropped.as_bytes()]).is_err());
}

#[test]
fn framing_errors() {
    let u = || ChunkedMode::UnsignedWithTrailer;
    let cases: &[&[u8]] = &[
        b"zz\r\n",
        b"5\r\nhelloXX",
        b"5\r\nhello\r\n0\r\nno-colon\r\n\r\n",
        b"0\r\n\r\nextra",
        b"11111111111111111\r\n",
        b"1000001\r\n",
    ];
    for c in cases {
        let err = decode_pieces(u(), None, &[c]).unwrap_err();
        assert_eq!(
            err.code,
            S3ErrorCode::InvalidRequest,
            "{:?}",
            String::from_utf8_lossy(c)
        );
    }
    // Length mismatch against x-amz-decoded-content-length.
    assert_eq!(
        decode_pieces(u(), Some(6), &[b"5\r\nhello\r\n0\r\n\r\n"])
            .unwrap_err()
            .code,
        S3ErrorCode::IncompleteBody
    );
    assert_eq!(
        decode_pieces(u(), Some(4), &[b"5\r\nhello\r\n0\r\n\r\n"])
            .unwrap_err()
            .code,
        S3ErrorCode::InvalidRequest
    );
    // Truncated body.
    assert_eq!(
        decode_pieces(u(), None, &[b"5\r\nhello\r\n"])
            .unwrap_err()
            .code,
        S3ErrorCode::IncompleteBody
    );
    // Over-long header line.
    let long = vec![b'1'; MAX_CHUNK_HEADER_LINE + 10];
    assert!(decode_pieces(u(), None, &[&long]).is_err());
    // Signed mode: trailers are not allowed, signature is required.
    let signed = encode_chunked(&ChunkedMode::Signed(ctx()), b"abc", &[], &[]);
    let with_trailer = [&signed[..signed.len() - 2], b"x:y\r\n\r\n"].concat();
    assert!(decode_pieces(ChunkedMode::Signed(ctx()), None, &[&with_trailer]).is_err());
    assert!(decode_pieces(ChunkedMode::Signed(ctx()), None, &[b"3\r\nabc\r\n"]).is_err());
    // Oversized trailer section.
    let mut big = b"0\r\n".to_vec();
    for _ in 0..2000 {
        big.extend_from_slice(b"x-amz-meta-a:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\n");
    }
    assert!(decode_pieces(u(), None, &[&big]).is_err());
}

#[test]
fn for_payload_maps_modes() {
    use crate::sigv4::PayloadMode as P;
    assert!(ChunkedMode::for_payload(&P::UnsignedPayload, Some(ctx())).is_none());
    assert!(ChunkedMode::for_payload(&P::StreamingSigned, None).is_none());
    assert!(matches!(
        ChunkedMode::for_payload(&P::StreamingSignedTrailer, Some(ctx())),
        Some(ChunkedMode::SignedWithTrailer(_))
    ));
    assert!(matches!(
        ChunkedMode::for_payload(&P::StreamingUnsignedTrailer, None),
        Some(ChunkedMode::UnsignedWithTrailer)
    ));
}

fn any_mode() -> impl Strategy<Value = ChunkedMode> {
    prop_oneof![
        Just(ChunkedMode::Signed(ctx())),
        Just(ChunkedMode::SignedWithTrailer(ctx())),
        Just(ChunkedMode::UnsignedWithTrailer),
    ]
}

/// Split `data` at the given (sorted, deduplicated) cut points.
fn split_at_points<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut last = 0;
    for p in points {
        out.push(&data[last..p]);
        last = p;
    }
    out.push(&data[last..]);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn round_trip_random_splits(
        mode in any_mode(),
        data in proptest::collection::vec(any::<u8>(), 0..3000),
        sizes in proptest::collection::vec(1usize..700, 0..5),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        with_trailer in any::<bool>(),
    ) {
        let trailers = if with_trailer && mode.has_trailers() {
            vec![("x-amz-checksum-crc32".to_owned(), "AAAAAA==".to_owned())]
        } else {
            vec![]
        };
        let body = encode_chunked(&mode, &data, &sizes, &trailers);
        let pieces = split_at_points(&body, &cuts);
        let (out, got) = decode_pieces(mode, Some(data.len() as u64), &pieces).unwrap();
        prop_assert_eq!(out, data);
        prop_assert_eq!(got, trailers);
    }

    #[test]
    fn flipped_bit_never_corrupts_silently(
        signed_trailer in any::<bool>(),
        data in proptest::collection::vec(any::<u8>(), 1..500),
        size in 1usize..200,
        flip in any::<usize>(),
        bit in 0u8..8,
    ) {
        let mode = if signed_trailer {
            ChunkedMode::SignedWithTrailer(ctx())
        } else {
            ChunkedMode::Signed(ctx())
        };
        let trailers = if signed_trailer {
            vec![("x-amz-checksum-sha256".to_owned(), "abc=".to_owned())]
        } else {
            vec![]
        };
        let mut body = encode_chunked(&mode, &data, &[size], &trailers);
        let i = flip % body.len();
        body[i] ^= 1 << bit;
        // A flip is either refused, or harmless (hex digit or header-name
        // case): the decoded data can never silently differ.
        if let Ok((out, got)) = decode_pieces(mode, Some(data.len() as u64), &[&body]) {
            prop_assert_eq!(out, data);
            prop_assert_eq!(got, trailers);
        }
    }

    #[test]
    fn altered_signature_is_refused(
        signed_trailer in any::<bool>(),
        data in proptest::collection::vec(any::<u8>(), 0..500),
        size in 1usize..200,
        which in any::<usize>(),
        offset in 0usize..64,
        delta in 1u8..16,
    ) {
        let mode = if signed_trailer {
            ChunkedMode::SignedWithTrailer(ctx())
        } else {
            ChunkedMode::Signed(ctx())
        };
        let mut body = encode_chunked(&mode, &data, &[size], &[]);
        let mut starts = Vec::new();
        for needle in [&b"chunk-signature="[..], &b"x-amz-trailer-signature:"[..]] {
            for (i, w) in body.windows(needle.len()).enumerate() {
                if w == needle {
                    starts.push(i + needle.len());
                }
            }
        }
        let at = starts[which % starts.len()] + offset;
        let digit = u8::try_from((body[at] as char).to_digit(16).unwrap()).unwrap();
        let new_digit = (digit + delta) % 16;
        body[at] = b"0123456789abcdef"[usize::from(new_digit)];
        let err = decode_pieces(mode, Some(data.len() as u64), &[&body]).unwrap_err();
        prop_assert_eq!(err.code, S3ErrorCode::SignatureDoesNotMatch);
    }

    #[test]
    fn garbage_never_panics(
        mode in any_mode(),
        garbage in proptest::collection::vec(any::<u8>(), 0..2000),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
        len in proptest::option::of(0u64..5000),
    ) {
        let pieces = split_at_points(&garbage, &cuts);
        let _ = decode_pieces(mode, len, &pieces);
    }

    #[test]
    fn chunkish_garbage_never_panics(
        parts in proptest::collection::vec("[0-9a-fA-F;=\r\n:x-]{0,12}|chunk-signature=|\r\n", 0..40),
    ) {
        let text: String = parts.concat();
        let _ = decode_pieces(ChunkedMode::UnsignedWithTrailer, None, &[text.as_bytes()]);
        let _ = decode_pieces(ChunkedMode::SignedWithTrailer(ctx()), None, &[text.as_bytes()]);
    }
}
