//! Incremental `aws-chunked` decoder.

use bytes::{Bytes, BytesMut};

use super::{
    ChunkedMode, MAX_CHUNK_HEADER_LINE, MAX_CHUNK_SIZE, MAX_TRAILER_SECTION, TRAILER_SIGNATURE_NAME,
};
use crate::error::{S3Error, S3ErrorCode};

/// Length of a hex SHA-256 signature.
const SIGNATURE_HEX_LEN: usize = 64;
/// Longest hex size field accepted (a u64).
const MAX_SIZE_DIGITS: usize = 16;
const CHUNK_SIGNATURE_EXT: &str = "chunk-signature=";

/// What [`ChunkedDecoder::feed`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// Payload bytes, in order. Never empty.
    Data(Bytes),
    /// The body is complete; trailers (names lowercased, values trimmed,
    /// without `x-amz-trailer-signature`) are included for checksum checks.
    End { trailers: Vec<(String, String)> },
}

#[derive(Debug)]
enum State {
    /// Expecting a chunk header line.
    Header,
    /// Inside a chunk's data. `signature` is set in signed modes.
    Data {
        remaining: u64,
        signature: Option<String>,
    },
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the final chunk: reading trailer lines until an empty one.
    Trailers,
    /// Trailer signature checked; expecting the closing CRLF.
    Closing,
    Done,
    Failed,
}

/// Decodes an `aws-chunked` body fed in arbitrary pieces.
///
/// Unsigned data is yielded as soon as it arrives. A signed chunk is only
/// yielded after its signature was verified, so its bytes stay in the
/// caller's buffer until the whole chunk is there: memory per request is
/// bounded by [`MAX_CHUNK_SIZE`] plus one read.
#[derive(Debug)]
pub struct ChunkedDecoder {
    mode: ChunkedMode,
    decoded_length: Option<u64>,
    total: u64,
    previous_signature: String,
    state: State,
    trailers: Vec<(String, String)>,
    canonical_trailers: Vec<u8>,
    trailer_bytes: usize,
}

fn invalid(msg: impl Into<String>) -> S3Error {
    S3Error::new(S3ErrorCode::InvalidRequest, msg)
}

fn sig_mismatch(what: &str) -> S3Error {
    S3Error::new(
        S3ErrorCode::SignatureDoesNotMatch,
        format!("The {what} signature we calculated does not match the signature you provided."),
    )
}

/// Position of the first CRLF within the first `limit` bytes.
fn find_crlf(buf: &[u8], limit: usize) -> Option<usize> {
    let end = buf.len().min(limit);
    buf.get(..end)?.windows(2).position(|w| w == b"\r\n")
}

impl ChunkedDecoder {
    /// A decoder for one body. `decoded_length` is `x-amz-decoded-content-length`
    /// when the client sent it; the decoded total must then match exactly.
    pub fn new(mode: ChunkedMode, decoded_length: Option<u64>) -> Self {
        let previous_signature = mode
            .context()
            .map(|c| c.seed_signature.clone())
            .unwrap_or_default();
        Self {
            mode,
            decoded_length,
            total: 0,
            previous_signature,
            state: State::Header,
            trailers: Vec::new(),
            canonical_trailers: Vec::new(),
            trailer_bytes: 0,
        }
    }

    /// Bytes of payload decoded so far.
    pub fn decoded_so_far(&self) -> u64 {
        self.total
    }

    /// Consume from `input` and return the next event, or `Ok(None)` when
    /// more input is needed. After an error the decoder stays failed.
    pub fn feed(&mut self, input: &mut BytesMut) -> Result<Option<Decoded>, S3Error> {
        let result = self.step(input);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    /// Call at end of input: fails unless the body was complete.
    pub fn finish_input(&self) -> Result<(), S3Error> {
        match self.state {
            State::Done => Ok(()),
            _ => Err(S3Error::new(
                S3ErrorCode::IncompleteBody,
                "The aws-chunked body ended before its final chunk and trailers.",
            )),
        }
    }

    fn step(&mut self, input: &mut BytesMut) -> Result<Option<Decoded>, S3Error> {
        loop {
            match &mut self.state {
                State::Header => {
                    let Some(pos) = find_crlf(input, MAX_CHUNK_HEADER_LINE + 2) else {
                        if input.len() >= MAX_CHUNK_HEADER_LINE + 2 {
                            return Err(invalid("aws-chunked chunk header line is too long"));
                        }
                        return Ok(None);
                    };
                    let line = input.split_to(pos + 2);
                    let (size, signature) = self.parse_header(&line[..pos])?;
                    self.start_chunk(size, signature)?;
                }
                State::Data {
                    remaining,
                    signature,
                } => {
                    let Some(sig) = signature.take() else {
                        // Unsigned: stream what we have.
                        if input.is_empty() {
                            return Ok(None);
                        }
                        let n = usize::try_from(*remaining)
                            .unwrap_or(usize::MAX)
                            .min(input.len());
                        let data = input.split_to(n).freeze();
                        *remaining -= n as u64;
                        if *remaining == 0 {
                            self.state = State::DataEnd;
                        }
                        self.total += n as u64;
                        return Ok(Some(Decoded::Data(data)));
                    };
                    let need = usize::try_from(*remaining).unwrap_or(usize::MAX);
                    if input.len() < need {
                        *signature = Some(sig);
                        return Ok(None);
                    }
                    let data = input.split_to(need).freeze();
                    self.check_chunk_signature(&sig, &data)?;
                    self.total += need as u64;
                    self.state = State::DataEnd;
                    return Ok(Some(Decoded::Data(data)));
                }
                State::DataEnd => {
                    if input.len() < 2 {
                        return Ok(None);
                    }
                    if &input[..2] != b"\r\n" {
                        return Err(invalid("aws-chunked chunk data is not followed by CRLF"));
                    }
                    let _ = input.split_to(2);
                    self.state = State::Header;
                }
                State::Trailers => {
                    let budget = MAX_TRAILER_SECTION.saturating_sub(self.trailer_bytes);
                    let Some(pos) = find_crlf(input, budget) else {
                        if input.len() >= budget {
                            return Err(invalid("aws-chunked trailer section is too large"));
                        }
                        return Ok(None);
                    };
                    let line = input.split_to(pos + 2);
                    self.trailer_bytes += pos + 2;
                    if pos == 0 {
                        if matches!(self.mode, ChunkedMode::SignedWithTrailer(_)) {
                            return Err(S3Error::new(
                                S3ErrorCode::AccessDenied,
                                "aws-chunked trailer section lacks x-amz-trailer-signature",
                            ));
                        }
                        return self.finish().map(Some);
                    }
                    self.trailer_line(&line[..pos])?;
                }
                State::Closing => {
                    if input.len() < 2 {
                        return Ok(None);
                    }
                    if &input[..2] != b"\r\n" {
                        return Err(invalid(
                            "aws-chunked trailer signature is not followed by an empty line",
                        ));
                    }
                    let _ = input.split_to(2);
                    return self.finish().map(Some);
                }
                State::Done => {
                    if input.is_empty() {
                        return Ok(None);
                    }
                    return Err(invalid("data after the end of the aws-chunked body"));
                }
                State::Failed => {
                    return Err(invalid("aws-chunked decoding already failed"));
                }
            }
        }
    }

    /// `hex-size[;chunk-signature=sig]`.
    fn parse_header(&self, line: &[u8]) -> Result<(u64, Option<String>), S3Error> {
        let line = std::str::from_utf8(line)
            .map_err(|_| invalid("aws-chunked chunk header is not valid UTF-8"))?;
        let (size_hex, ext) = match line.split_once(';') {
            Some((s, e)) => (s, Some(e)),
            None => (line, None),
        };
        if size_hex.is_empty()
            || size_hex.len() > MAX_SIZE_DIGITS
            || !size_hex.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(invalid(format!(
                "aws-chunked chunk size '{}' is not a hexadecimal number",
                size_hex.chars().take(32).collect::<String>()
            )));
        }
        let size = u64::from_str_radix(size_hex, 16)
            .map_err(|_| invalid("aws-chunked chunk size is out of range"))?;
        if self.mode.context().is_none() {
            // Unsigned: extensions carry nothing we need.
            return Ok((size, None));
        }
        let sig = ext
            .and_then(|e| e.strip_prefix(CHUNK_SIGNATURE_EXT))
            .ok_or_else(|| invalid("aws-chunked chunk header lacks chunk-signature"))?;
        if sig.len() != SIGNATURE_HEX_LEN || !sig.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(
                "aws-chunked chunk-signature must be 64 hex characters",
            ));
        }
        Ok((size, Some(sig.to_owned())))
    }

    fn start_chunk(&mut self, size: u64, signature: Option<String>) -> Result<(), S3Error> {
        if size > MAX_CHUNK_SIZE {
            return Err(invalid(format!(
                "aws-chunked chunk of {size} bytes exceeds the {MAX_CHUNK_SIZE}-byte limit"
            )));
        }
        if let Some(expected) = self.decoded_length
            && self.total.saturating_add(size) > expected
        {
            return Err(invalid(format!(
                "aws-chunked body is longer than x-amz-decoded-content-length ({expected})"
            )));
        }
        if size > 0 {
            self.state = State::Data {
                remaining: size,
                signature,
            };
            return Ok(());
        }
        if let Some(sig) = signature {
            self.check_chunk_signature(&sig, b"")?;
        }
        self.state = State::Trailers;
        Ok(())
    }

    fn check_chunk_signature(&mut self, provided: &str, data: &[u8]) -> Result<(), S3Error> {
        let Some(ctx) = self.mode.context() else {
            return Ok(());
        };
        let expected = ctx.chunk_signature(&self.previous_signature, data);
        if !crate::sigv4::constant_time_eq(expected.as_bytes(), provided.as_bytes()) {
            return Err(sig_mismatch("chunk"));
        }
        self.previous_signature = expected;
        Ok(())
    }

    fn trailer_line(&mut self, line: &[u8]) -> Result<(), S3Error> {
        if !self.mode.has_trailers() {
            return Err(invalid(
                "aws-chunked final chunk must be followed by CRLF (no trailers in this mode)",
            ));
        }
        let line = std::str::from_utf8(line)
            .map_err(|_| invalid("aws-chunked trailer is not valid UTF-8"))?;
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid("aws-chunked trailer line lacks ':'"))?;
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid("aws-chunked trailer has an invalid name"));
        }
        if name == TRAILER_SIGNATURE_NAME {
            let Some(ctx) = self.mode.context() else {
                return Err(invalid(
                    "x-amz-trailer-signature in an unsigned aws-chunked body",
                ));
            };
            let expected =
                ctx.trailer_signature(&self.previous_signature, &self.canonical_trailers);
            if !crate::sigv4::constant_time_eq(expected.as_bytes(), value.as_bytes()) {
                return Err(sig_mismatch("trailer"));
            }
            self.state = State::Closing;
            return Ok(());
        }
        self.canonical_trailers
            .extend_from_slice(format!("{name}:{value}\n").as_bytes());
        self.trailers.push((name, value.to_owned()));
        Ok(())
    }

    fn finish(&mut self) -> Result<Decoded, S3Error> {
        if let Some(expected) = self.decoded_length
            && self.total != expected
        {
            return Err(S3Error::new(
                S3ErrorCode::IncompleteBody,
                format!(
                    "aws-chunked body decoded to {} bytes but x-amz-decoded-content-length is {expected}",
                    self.total
                ),
            ));
        }
        self.state = State::Done;
        Ok(Decoded::End {
            trailers: std::mem::take(&mut self.trailers),
        })
    }
}
