//! An S3 request body on its way to the cluster: `aws-chunked` decoding (signed or not, with
//! trailers), and the checks S3 makes before acknowledging — `x-amz-content-sha256`,
//! `Content-MD5` and `x-amz-checksum-*` (sent as a header or a trailer).

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use cairn_node::body_digest::BodyDigestCell;
use cairn_s3_proto::checksum::{ChecksumAlgorithm, ChecksumHasher, content_md5_matches};
use cairn_s3_proto::chunked::{ChunkedDecoder, ChunkedMode, Decoded};
use cairn_s3_proto::sigv4::PayloadMode;
use cairn_s3_proto::{S3Error, S3ErrorCode};
use sha2::{Digest, Sha256};

use super::{S3Request, S3Result, err};
use crate::body::{BodyDecoder, IngestTask, Ingested, ingest};
use crate::objects::SYS_CHECKSUM_PREFIX;

/// Decodes and checks one S3 body.
pub(crate) struct S3Body {
    chunked: Option<(ChunkedDecoder, BytesMut)>,
    sha256: Option<(Sha256, String)>,
    checksum: Option<(ChecksumHasher, Option<String>)>,
    /// The computed checksum, once the body ended: `(algorithm, base64)`.
    pub computed: Option<(ChecksumAlgorithm, String)>,
    content_md5: Option<String>,
}

impl std::fmt::Debug for S3Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Body")
            .field("chunked", &self.chunked.is_some())
            .field("computed", &self.computed)
            .finish_non_exhaustive()
    }
}

impl BodyDecoder for S3Body {
    type Error = S3Error;

    fn push(&mut self, raw: Bytes, out: &mut Vec<Bytes>) -> Result<(), S3Error> {
        match &mut self.chunked {
            None => {
                self.observe(&raw);
                out.push(raw);
            }
            Some((decoder, buf)) => {
                buf.extend_from_slice(&raw);
                let mut data = Vec::new();
                let mut trailers = None;
                while let Some(event) = decoder.feed(buf)? {
                    match event {
                        Decoded::Data(d) => data.push(d),
                        Decoded::End { trailers: t } => {
                            trailers = Some(t);
                            break;
                        }
                    }
                }
                for d in data {
                    self.observe(&d);
                    out.push(d);
                }
                if let Some(t) = trailers {
                    self.take_trailers(t)?;
                }
            }
        }
        Ok(())
    }

    fn end(&mut self, _out: &mut Vec<Bytes>) -> Result<(), S3Error> {
        if let Some((decoder, _)) = &self.chunked {
            decoder.finish_input()?;
        }
        if let Some((hasher, expected)) = self.checksum.take() {
            let algorithm = hasher.algorithm();
            let got = hasher.finish();
            match expected {
                Some(e) if e != got => {
                    return Err(err(
                        S3ErrorCode::BadDigest,
                        format!(
                            "The {} you specified did not match the calculated checksum.",
                            algorithm.algorithm_value()
                        ),
                    ));
                }
                None => {
                    return Err(err(
                        S3ErrorCode::InvalidRequest,
                        format!("the {} trailer never came", algorithm.header_name()),
                    ));
                }
                _ => {}
            }
            self.computed = Some((algorithm, got));
        }
        if let Some((hasher, expected)) = self.sha256.take() {
            let got = hex::encode(hasher.finalize());
            if got != expected {
                return Err(err(
                    S3ErrorCode::XAmzContentSHA256Mismatch,
                    "The provided 'x-amz-content-sha256' header does not match what was computed.",
                ));
            }
        }
        Ok(())
    }

    /// The verified checksum, so a GET with `x-amz-checksum-mode: ENABLED` can return it
    /// (one sent as a header is also in the request's metadata; the same key and value).
    fn kept_meta(&self) -> BTreeMap<String, String> {
        self.computed
            .iter()
            .map(|(a, v)| (checksum_meta_key(*a), v.clone()))
            .collect()
    }
}

/// The metadata key a checksum is kept under.
fn checksum_meta_key(a: ChecksumAlgorithm) -> String {
    format!(
        "{SYS_CHECKSUM_PREFIX}{}",
        a.algorithm_value().to_ascii_lowercase()
    )
}

impl S3Body {
    fn observe(&mut self, data: &[u8]) {
        if let Some((h, _)) = &mut self.sha256 {
            h.update(data);
        }
        if let Some((h, _)) = &mut self.checksum {
            h.update(data);
        }
    }

    fn take_trailers(&mut self, trailers: Vec<(String, String)>) -> Result<(), S3Error> {
        for (name, value) in trailers {
            if let Some(a) = ChecksumAlgorithm::from_header_name(&name.to_ascii_lowercase()) {
                match &mut self.checksum {
                    Some((h, expected)) if h.algorithm() == a => *expected = Some(value),
                    _ => {
                        return Err(err(
                            S3ErrorCode::InvalidRequest,
                            format!("trailer {name} was not announced in x-amz-trailer"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// How `req`'s body is framed and what it must be checked against.
    pub fn for_request(req: &S3Request) -> S3Result<(S3Body, u64)> {
        let content_length = req
            .header("content-length")
            .map(|l| {
                l.parse::<u64>()
                    .map_err(|_| err(S3ErrorCode::InvalidArgument, "bad Content-Length"))
            })
            .transpose()?;
        let mode = ChunkedMode::for_payload(&req.payload, Some(req.signing.clone()));
        let (chunked, size) = match mode {
            Some(mode) => {
                let decoded = req
                    .header("x-amz-decoded-content-length")
                    .ok_or_else(|| {
                        err(
                            S3ErrorCode::MissingContentLength,
                            "aws-chunked uploads need x-amz-decoded-content-length",
                        )
                    })?
                    .parse::<u64>()
                    .map_err(|_| {
                        err(
                            S3ErrorCode::InvalidArgument,
                            "bad x-amz-decoded-content-length",
                        )
                    })?;
                (
                    Some((ChunkedDecoder::new(mode, Some(decoded)), BytesMut::new())),
                    decoded,
                )
            }
            None => {
                let size = content_length.ok_or_else(|| {
                    err(
                        S3ErrorCode::MissingContentLength,
                        "You must provide the Content-Length HTTP header.",
                    )
                })?;
                (None, size)
            }
        };
        let sha256 = match &req.payload {
            PayloadMode::Sha256(hex) => Some((Sha256::new(), hex.clone())),
            _ => None,
        };
        // A checksum comes as a header (value known now) or as a trailer named in
        // x-amz-trailer (value at the end).
        let mut checksum = None;
        for a in ChecksumAlgorithm::ALL {
            if let Some(v) = req.header(a.header_name()) {
                if checksum.is_some() {
                    // S3 verifies one; two would leave one unverified but stored.
                    return Err(err(
                        S3ErrorCode::InvalidRequest,
                        "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
                    ));
                }
                checksum = Some((ChecksumHasher::new(a), Some(v.to_string())));
            }
        }
        if checksum.is_none()
            && let Some(t) = req.header("x-amz-trailer")
        {
            let a = ChecksumAlgorithm::from_header_name(&t.trim().to_ascii_lowercase())
                .ok_or_else(|| {
                    err(
                        S3ErrorCode::InvalidRequest,
                        format!("unsupported trailer {t}"),
                    )
                })?;
            checksum = Some((ChecksumHasher::new(a), None));
        }
        Ok((
            S3Body {
                chunked,
                sha256,
                checksum,
                computed: None,
                content_md5: req.header("content-md5").map(str::to_string),
            },
            size,
        ))
    }

    /// Streams the body into a cluster body, checked before it completes.
    pub fn start(
        self,
        body: axum::body::Body,
        size: u64,
    ) -> (cairn_net::Body, IngestTask<S3Body>, BodyDigestCell) {
        ingest(body, self, size, |done: &Ingested<S3Body>| {
            if let Some(m) = &done.decoder.content_md5
                && !content_md5_matches(m, &done.md5)?
            {
                return Err(err(
                    S3ErrorCode::BadDigest,
                    "The Content-MD5 you specified did not match what we received.",
                ));
            }
            Ok(())
        })
    }
}

/// The checksum to keep with the object, as metadata, when it was sent as a header (it is
/// verified before the write completes). One sent as a trailer reaches the object through
/// the body's digest trailer instead ([`BodyDecoder::kept_meta`]).
pub(crate) fn header_checksum_meta(req: &S3Request, meta: &mut BTreeMap<String, String>) {
    for a in ChecksumAlgorithm::ALL {
        if let Some(v) = req.header(a.header_name()) {
            meta.insert(checksum_meta_key(a), v.to_string());
        }
    }
}
