//! Parser and encoder tests, including property tests that feed arbitrary and truncated
//! frames to every parser.

// Test frames are tiny; their lengths always fit the wire fields.
#![allow(clippy::cast_possible_truncation)]

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::nbd::export::{Extent, Span};

fn option_frame(option: u32, data: &[u8]) -> Vec<u8> {
    let mut b = IHAVEOPT.to_be_bytes().to_vec();
    b.extend_from_slice(&option.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    b
}

fn info_data(name: &str, infos: &[u16]) -> Vec<u8> {
    let mut b = (name.len() as u32).to_be_bytes().to_vec();
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(&(infos.len() as u16).to_be_bytes());
    for i in infos {
        b.extend_from_slice(&i.to_be_bytes());
    }
    b
}

fn meta_data(name: &str, queries: &[&str]) -> Vec<u8> {
    let mut b = (name.len() as u32).to_be_bytes().to_vec();
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(&(queries.len() as u32).to_be_bytes());
    for q in queries {
        b.extend_from_slice(&(q.len() as u32).to_be_bytes());
        b.extend_from_slice(q.as_bytes());
    }
    b
}

fn request(flags: u16, cmd: u16, offset: u64, len: u32) -> [u8; REQUEST_LEN] {
    let mut b = [0u8; REQUEST_LEN];
    b[..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
    b[4..6].copy_from_slice(&flags.to_be_bytes());
    b[6..8].copy_from_slice(&cmd.to_be_bytes());
    b[8..16].copy_from_slice(&7u64.to_be_bytes());
    b[16..24].copy_from_slice(&offset.to_be_bytes());
    b[24..].copy_from_slice(&len.to_be_bytes());
    b
}

/// Parses a whole option frame the way the server does: header, then exactly `len` bytes.
fn parse_frame(frame: &[u8]) -> Option<Result<ClientOption, String>> {
    let hdr: &[u8; 16] = frame.get(..16)?.try_into().ok()?;
    let hdr = match parse_option_header(hdr) {
        Ok(h) => h,
        Err(e) => return Some(Err(e.to_string())),
    };
    let data = frame.get(16..16 + hdr.len as usize)?;
    Some(parse_option(hdr.option, data).map_err(|e| format!("{e:?}")))
}

const LIMITS: Limits = Limits {
    size: 1 << 20,
    read_only: false,
    structured: true,
    base_allocation: true,
    fast_zero: true,
    min_block: 1,
    max_block: 32 << 20,
};

#[test]
fn parses_valid_options() {
    let go = parse_frame(&option_frame(
        OPT_GO,
        &info_data("disk", &[INFO_BLOCK_SIZE]),
    ));
    assert_eq!(
        go,
        Some(Ok(ClientOption::Go(InfoRequest {
            name: "disk".into(),
            requests: vec![3]
        })))
    );
    let set = parse_frame(&option_frame(
        OPT_SET_META_CONTEXT,
        &meta_data("d", &[BASE_ALLOCATION]),
    ));
    assert_eq!(
        set,
        Some(Ok(ClientOption::SetMetaContext(MetaRequest {
            name: "d".into(),
            queries: vec![BASE_ALLOCATION.into()]
        })))
    );
    assert_eq!(
        parse_option(OPT_LIST, b"x"),
        Err(Ok(InvalidOption("NBD_OPT_LIST takes no data".into())))
    );
    assert_eq!(
        parse_option(OPT_EXTENDED_HEADERS, &[]),
        Ok(ClientOption::Unsupported(11))
    );
    assert_eq!(
        parse_option(OPT_EXPORT_NAME, &[0xff]),
        Err(Err(FrameError::BadExportName))
    );
}

#[test]
fn rejects_bad_headers() {
    let mut f = option_frame(OPT_LIST, &[]);
    f[0] ^= 1;
    assert!(matches!(parse_frame(&f), Some(Err(_))));
    let mut big = option_frame(OPT_LIST, &[]);
    big[12..16].copy_from_slice(&(MAX_OPTION_LEN + 1).to_be_bytes());
    assert!(matches!(parse_frame(&big), Some(Err(_))));
    assert!(parse_client_flags(&[0, 0, 0, 4]).is_err());
    let mut r = request(0, 0, 0, 512);
    r[3] = 0;
    assert!(parse_request(&r).is_err());
}

#[test]
fn validates_requests() {
    let v = |flags, cmd, off, len, lim: &Limits| {
        validate(&parse_request(&request(flags, cmd, off, len)).unwrap(), lim)
    };
    assert_eq!(v(0, 0, 0, 4096, &LIMITS), Ok(()));
    assert_eq!(v(0, 0, (1 << 20) - 1, 2, &LIMITS), Err(EINVAL));
    assert_eq!(v(0, 1, (1 << 20) - 1, 2, &LIMITS), Err(ENOSPC));
    assert_eq!(v(0, 6, u64::MAX, 2, &LIMITS), Err(ENOSPC));
    assert_eq!(v(0, 0, 0, 0, &LIMITS), Err(EINVAL));
    assert_eq!(v(0, 99, 0, 1, &LIMITS), Err(EINVAL));
    assert_eq!(v(CMD_FLAG_NO_HOLE, 1, 0, 1, &LIMITS), Err(EINVAL));
    assert_eq!(v(1 << 9, 0, 0, 1, &LIMITS), Err(EINVAL));
    assert_eq!(v(CMD_FLAG_FUA, 0, 0, 1, &LIMITS), Ok(()));
    assert_eq!(v(CMD_FLAG_REQ_ONE, 7, 0, 1, &LIMITS), Ok(()));
    assert_eq!(
        v(
            0,
            7,
            0,
            1,
            &Limits {
                base_allocation: false,
                ..LIMITS
            }
        ),
        Err(EINVAL)
    );
    assert_eq!(
        v(
            CMD_FLAG_DF,
            0,
            0,
            1,
            &Limits {
                structured: false,
                ..LIMITS
            }
        ),
        Err(EINVAL)
    );
    assert_eq!(
        v(
            0,
            1,
            0,
            1,
            &Limits {
                read_only: true,
                ..LIMITS
            }
        ),
        Err(EPERM)
    );
    assert_eq!(
        v(
            0,
            4,
            0,
            1,
            &Limits {
                read_only: true,
                ..LIMITS
            }
        ),
        Err(EPERM)
    );
    assert_eq!(
        v(
            0,
            0,
            0,
            1,
            &Limits {
                read_only: true,
                ..LIMITS
            }
        ),
        Ok(())
    );
    assert_eq!(
        v(
            0,
            0,
            1,
            512,
            &Limits {
                min_block: 512,
                ..LIMITS
            }
        ),
        Err(EINVAL)
    );
    let no_fast = Limits {
        fast_zero: false,
        ..LIMITS
    };
    assert_eq!(v(CMD_FLAG_FAST_ZERO, 6, 0, 1, &no_fast), Err(ENOTSUP));
    assert_eq!(v(0, 3, 0, 0, &LIMITS), Ok(()));
}

#[test]
fn structured_read_reply_chunks() {
    let spans = vec![
        Span::Data(Bytes::from_static(b"abcd")),
        Span::Hole(4),
        Span::Hole(0),
    ];
    let frames = read_reply(9, 100, spans, true, false);
    // data header, data, hole chunk (zero-length span dropped)
    assert_eq!(frames.len(), 3);
    let Frame::Bytes(last) = &frames[2] else {
        panic!("hole chunk expected")
    };
    assert_eq!(u16::from_be_bytes([last[4], last[5]]), REPLY_FLAG_DONE);
    assert_eq!(
        u16::from_be_bytes([last[6], last[7]]),
        REPLY_TYPE_OFFSET_HOLE
    );
    assert_eq!(&last[20..28], &104u64.to_be_bytes());
    let simple = read_reply(9, 100, vec![Span::Hole(4)], false, false);
    assert_eq!(simple[1], Frame::Zeros(4));
    let df = read_reply(
        9,
        0,
        vec![Span::Hole(4), Span::Data(Bytes::from_static(b"x"))],
        true,
        true,
    );
    let Frame::Bytes(h) = &df[0] else {
        panic!("header expected")
    };
    assert_eq!(u32::from_be_bytes([h[16], h[17], h[18], h[19]]), 8 + 5);
    assert!(check_spans(&[Span::Hole(3)], 4).is_err());
}

#[test]
fn block_status_merges_and_clips() {
    let e = |len, hole| Extent {
        len,
        hole,
        zero: hole,
    };
    let d = block_status_descriptors(
        &[e(0, true), e(10, true), e(5, true), e(100, false)],
        20,
        false,
    );
    assert_eq!(d, vec![(15, STATE_HOLE | STATE_ZERO), (5, 0)]);
    let one = block_status_descriptors(&[e(10, true), e(5, false)], 20, true);
    assert_eq!(one, vec![(10, 3)]);
}

proptest! {
    #[test]
    fn request_parser_total(bytes in prop::array::uniform28(any::<u8>())) {
        let checked = parse_request(&bytes).ok().filter(|r| validate(r, &LIMITS).is_ok());
        if let Some(req) = checked.filter(|r| !matches!(r.command, Command::Flush | Command::Disc)) {
            prop_assert!(req.offset + u64::from(req.len) <= LIMITS.size);
            prop_assert!(req.len > 0);
        }
    }

    #[test]
    fn option_parser_total(option in 0u32..16, data in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_option(option, &data);
        let _ = parse_frame(&option_frame(option, &data));
    }

    #[test]
    fn truncated_frames_never_panic(cut in 0usize..200, which in 0usize..4, flip in any::<(usize, u8)>()) {
        let frames = [
            option_frame(OPT_GO, &info_data("disk", &[0, 1, 2, 3])),
            option_frame(OPT_LIST_META_CONTEXT, &meta_data("disk", &["base:", "base:allocation"])),
            option_frame(OPT_SET_META_CONTEXT, &meta_data("", &[BASE_ALLOCATION])),
            option_frame(OPT_EXPORT_NAME, b"disk"),
        ];
        let mut f = frames[which].clone();
        f.truncate(cut);
        if !f.is_empty() {
            let at = flip.0 % f.len();
            f[at] ^= flip.1;
        }
        // Re-frame the damaged bytes with a consistent length field so the data parser, not
        // just the header check, sees them.
        let data = f.get(16..).unwrap_or(&[]).to_vec();
        let _ = parse_frame(&f);
        let _ = parse_option(OPT_GO, &data);
        let _ = parse_option(OPT_SET_META_CONTEXT, &data);
        let _ = parse_option(OPT_LIST_META_CONTEXT, &data);
    }

    #[test]
    fn read_reply_covers_the_range(lens in prop::collection::vec((0u64..5000, any::<bool>()), 0..20), structured: bool, df: bool) {
        let spans: Vec<Span> = lens.iter().map(|&(n, hole)| if hole { Span::Hole(n) } else {
            Span::Data(Bytes::from(vec![1u8; n as usize]))
        }).collect();
        let total: u64 = spans.iter().map(Span::len).sum();
        let frames = read_reply(1, 0, spans, structured, df && structured);
        let body: u64 = frames.iter().skip(1).map(Frame::len).sum();
        if !structured || df {
            prop_assert_eq!(body, total);
        }
    }

    #[test]
    fn block_status_within_request(lens in prop::collection::vec((0u64..1 << 33, any::<bool>()), 0..50), len in 1u32.., req_one: bool) {
        let extents: Vec<Extent> = lens.iter().map(|&(len, hole)| Extent { len, hole, zero: false }).collect();
        let d = block_status_descriptors(&extents, len, req_one);
        let sum: u64 = d.iter().map(|&(l, _)| u64::from(l)).sum();
        prop_assert!(sum <= u64::from(len));
        prop_assert!(d.iter().all(|&(l, _)| l > 0));
        if req_one { prop_assert!(d.len() <= 1); }
    }
}
