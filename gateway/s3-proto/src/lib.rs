//! S3's wire protocol as pure functions: no I/O, no async. The gateway
//! owns sockets and storage; this crate answers "what does this request
//! mean / is it authentic / what bytes go back".
//!
//! # Modules and entry points
//!
//! | module | what |
//! |---|---|
//! | [`error`] | [`S3ErrorCode`] (with AWS status), [`S3Error`] and its XML body |
//! | [`sigv4`] | SigV4 header + presigned verification, client-side signing |
//! | [`chunked`] | incremental `aws-chunked` decoder and an encoder |
//! | [`checksum`] | `x-amz-checksum-*` algorithms, `Content-MD5` |
//! | [`xml`] | request body parsers and response renderers |
//! | [`range`] | single-range `Range` header |
//! | [`conditional`] | `If-Match` & co. for reads and writes |
//! | [`names`] | bucket names, key length, user metadata size |
//! | [`time`] | ISO 8601 / HTTP / SigV4 date formats |
//!
//! ## Errors
//!
//! ```
//! use cairn_s3_proto::{S3Error, S3ErrorCode};
//! let err = S3Error::new(S3ErrorCode::NoSuchKey, "The specified key does not exist.")
//!     .with_resource("/bucket/key");
//! assert_eq!(err.code.status(), 404);
//! let body = err.to_xml("request-id-1");
//! assert!(body.contains("<Code>NoSuchKey</Code>"));
//! ```
//!
//! ## Authentication
//!
//! [`sigv4::parse_auth`] needs no secret (so the access key can be looked
//! up first); [`sigv4::verify`] checks time and signature and returns the
//! [`sigv4::SigningContext`] used by `aws-chunked` bodies.
//!
//! ```
//! use cairn_s3_proto::sigv4::{self, HttpRequestParts, SigningInput, UNSIGNED_PAYLOAD};
//! let mut headers = vec![
//!     ("host".to_string(), "s3.local".to_string()),
//!     ("x-amz-date".to_string(), "20250101T000000Z".to_string()),
//!     ("x-amz-content-sha256".to_string(), UNSIGNED_PAYLOAD.to_string()),
//! ];
//! // Client side (load generator, tests):
//! let authorization = sigv4::sign_request(&SigningInput {
//!     method: "GET", raw_path: "/bucket/key", raw_query: "", headers: &headers,
//!     payload_hash: UNSIGNED_PAYLOAD, access_key: "AK", secret_key: "SK",
//!     region: "us-east-1", amz_date: "20250101T000000Z",
//! });
//! headers.push(("authorization".to_string(), authorization));
//! // Server side:
//! let req = HttpRequestParts { method: "GET", raw_path: "/bucket/key", raw_query: "", headers: &headers };
//! let auth = sigv4::parse_auth(&req)?.expect("signed request");
//! assert_eq!(auth.access_key, "AK");
//! let ctx = sigv4::verify(&req, &auth, "SK", 1_735_689_600)?;
//! assert_eq!(ctx.scope, "20250101/us-east-1/s3/aws4_request");
//! # Ok::<(), cairn_s3_proto::S3Error>(())
//! ```
//!
//! Presigned URLs go through the same two calls; [`sigv4::presign_url`]
//! makes them:
//!
//! ```
//! use cairn_s3_proto::sigv4::{self, HttpRequestParts, PresignInput};
//! let headers = vec![("host".to_string(), "s3.local".to_string())];
//! let url = sigv4::presign_url(&PresignInput {
//!     method: "GET", raw_path: "/bucket/key", raw_query: "", headers: &headers,
//!     access_key: "AK", secret_key: "SK", region: "us-east-1",
//!     amz_date: "20250101T000000Z", expires_s: 3600,
//! });
//! let (path, query) = url.split_once('?').unwrap();
//! let req = HttpRequestParts { method: "GET", raw_path: path, raw_query: query, headers: &headers };
//! let auth = sigv4::parse_auth(&req)?.unwrap();
//! assert_eq!(auth.presigned_expires_s, Some(3600));
//! sigv4::verify(&req, &auth, "SK", 1_735_689_600 + 60)?;
//! # Ok::<(), cairn_s3_proto::S3Error>(())
//! ```
//!
//! ## `aws-chunked` bodies
//!
//! ```
//! use bytes::BytesMut;
//! use cairn_s3_proto::chunked::{ChunkedDecoder, ChunkedMode, Decoded, encode_chunked};
//! let trailers = vec![("x-amz-checksum-crc32".to_string(), "DUoRhQ==".to_string())];
//! let body = encode_chunked(&ChunkedMode::UnsignedWithTrailer, b"hello world", &[4], &trailers);
//! let mut dec = ChunkedDecoder::new(ChunkedMode::UnsignedWithTrailer, Some(11));
//! let mut input = BytesMut::from(&body[..]);
//! let mut data = Vec::new();
//! while let Some(event) = dec.feed(&mut input)? {
//!     match event {
//!         Decoded::Data(bytes) => data.extend_from_slice(&bytes),
//!         Decoded::End { trailers: t } => assert_eq!(t, trailers),
//!     }
//! }
//! dec.finish_input()?; // at EOF: IncompleteBody unless the body ended
//! assert_eq!(data, b"hello world");
//! # Ok::<(), cairn_s3_proto::S3Error>(())
//! ```
//!
//! For signed modes pass `ChunkedMode::Signed(ctx)` /
//! `ChunkedMode::SignedWithTrailer(ctx)` with the context from `verify`
//! (or use [`chunked::ChunkedMode::for_payload`]).
//!
//! ## Checksums
//!
//! ```
//! use cairn_s3_proto::checksum::{ChecksumAlgorithm, ChecksumHasher, content_md5_matches};
//! let alg = ChecksumAlgorithm::from_header_name("x-amz-checksum-crc32").unwrap();
//! let mut h = ChecksumHasher::new(alg);
//! h.update(b"hello world");
//! assert_eq!(h.finish(), "DUoRhQ==");
//! assert_eq!(ChecksumAlgorithm::from_algorithm_value("CRC32C"), Some(ChecksumAlgorithm::Crc32c));
//! assert!(content_md5_matches("not base64!", &[0; 16]).is_err()); // InvalidDigest
//! ```
//!
//! ## XML
//!
//! ```
//! use cairn_s3_proto::xml;
//! let parts = xml::parse_complete_multipart(
//!     b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"e1\"</ETag></Part></CompleteMultipartUpload>",
//! )?;
//! assert_eq!((parts[0].part_number, parts[0].etag.as_str()), (1, "e1"));
//! let del = xml::parse_delete(b"<Delete><Object><Key>a</Key></Object><Quiet>true</Quiet></Delete>")?;
//! assert!(del.quiet);
//! assert_eq!(xml::parse_create_bucket(b"")?, None);
//!
//! let body = xml::render_list_objects_v2(&xml::ListObjectsV2 {
//!     bucket: "b".into(),
//!     max_keys: 1000,
//!     contents: vec![xml::ObjectEntry {
//!         key: "k".into(), last_modified_unix_ms: 0, etag: "e".into(), size: 1, owner: None,
//!     }],
//!     ..Default::default()
//! });
//! assert!(body.contains("<KeyCount>1</KeyCount>"));
//! # Ok::<(), cairn_s3_proto::S3Error>(())
//! ```
//!
//! ## Ranges, conditions, names
//!
//! ```
//! use cairn_s3_proto::range::{parse_range, ByteRange, RangeError};
//! use cairn_s3_proto::conditional::{Conditions, CondFailure};
//! use cairn_s3_proto::names;
//!
//! let r = parse_range("bytes=0-9", 100).unwrap().unwrap();
//! assert_eq!((r.start, r.end, r.content_range(100)), (0, 10, "bytes 0-9/100".to_string()));
//! assert_eq!(parse_range("bytes=200-", 100), Err(RangeError::Unsatisfiable));
//! assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None)); // ignored: whole object
//!
//! let cond = Conditions::from_headers(&[("if-none-match".to_string(), "\"e\"".to_string())]);
//! assert_eq!(cond.evaluate_read(Some(("e", 0))), Err(CondFailure::NotModified));
//! let put = Conditions::from_headers(&[("if-none-match".to_string(), "*".to_string())]);
//! assert_eq!(put.evaluate_write(Some(("e", 0))), Err(CondFailure::PreconditionFailed));
//!
//! assert!(names::validate_bucket_name("my-bucket").is_ok());
//! assert!(names::validate_object_key(&"k".repeat(1025)).is_err());
//! assert!(names::user_metadata_size_ok(&[("x-amz-meta-a".to_string(), "b".to_string())]));
//! ```
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod checksum;
pub mod chunked;
pub mod conditional;
pub mod error;
pub mod names;
pub mod range;
pub mod sigv4;
pub mod time;
pub mod xml;

pub use error::{S3Error, S3ErrorCode};
