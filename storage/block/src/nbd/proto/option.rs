//! Handshake frames: greeting, client flags, options and option replies.

use super::*;

/// The server's greeting: NBDMAGIC, IHAVEOPT, handshake flags.
pub fn greeting() -> [u8; 18] {
    let mut b = [0u8; 18];
    b[..8].copy_from_slice(&NBDMAGIC.to_be_bytes());
    b[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    b[16..].copy_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    b
}

/// Client flags as negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientFlags {
    pub fixed_newstyle: bool,
    pub no_zeroes: bool,
}

/// The spec requires dropping clients that set flags we did not offer.
pub fn parse_client_flags(b: &[u8; 4]) -> Result<ClientFlags, FrameError> {
    let flags = u32::from_be_bytes(*b);
    if flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        return Err(FrameError::ClientFlags(flags));
    }
    Ok(ClientFlags {
        fixed_newstyle: flags & FLAG_C_FIXED_NEWSTYLE != 0,
        no_zeroes: flags & FLAG_C_NO_ZEROES != 0,
    })
}

/// An option header: IHAVEOPT, option, data length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionHeader {
    pub option: u32,
    pub len: u32,
}

pub fn parse_option_header(b: &[u8; 16]) -> Result<OptionHeader, FrameError> {
    let magic = u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    if magic != IHAVEOPT {
        return Err(FrameError::BadMagic(magic));
    }
    let option = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
    let len = u32::from_be_bytes([b[12], b[13], b[14], b[15]]);
    if len > MAX_OPTION_LEN {
        return Err(FrameError::OptionTooLong(len));
    }
    Ok(OptionHeader { option, len })
}

/// Payload of NBD_OPT_INFO / NBD_OPT_GO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoRequest {
    pub name: String,
    pub requests: Vec<u16>,
}

/// Payload of NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaRequest {
    pub name: String,
    pub queries: Vec<String>,
}

/// A parsed option. Options we do not implement are `Unsupported` so the caller answers
/// NBD_REP_ERR_UNSUP and carries on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOption {
    ExportName(String),
    Abort,
    List,
    StartTls,
    Info(InfoRequest),
    Go(InfoRequest),
    StructuredReply,
    ListMetaContext(MetaRequest),
    SetMetaContext(MetaRequest),
    Unsupported(u32),
}

/// A syntactically invalid option whose framing was intact: answer NBD_REP_ERR_INVALID.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("{0}")]
pub struct InvalidOption(pub String);

/// Parses an option's data. `Err(Ok(_))` is an invalid option (reply and continue);
/// `Err(Err(_))` would desynchronise nothing but cannot be answered (EXPORT_NAME has no error
/// reply), so the connection must close.
pub fn parse_option(
    option: u32,
    data: &[u8],
) -> Result<ClientOption, Result<InvalidOption, FrameError>> {
    let invalid = |m: &str| Err(Ok(InvalidOption(m.to_owned())));
    match option {
        OPT_EXPORT_NAME => match std::str::from_utf8(data) {
            Ok(s) if s.len() <= MAX_STRING => Ok(ClientOption::ExportName(s.to_owned())),
            _ => Err(Err(FrameError::BadExportName)),
        },
        OPT_ABORT => Ok(ClientOption::Abort),
        OPT_LIST if data.is_empty() => Ok(ClientOption::List),
        OPT_LIST => invalid("NBD_OPT_LIST takes no data"),
        OPT_STARTTLS if data.is_empty() => Ok(ClientOption::StartTls),
        OPT_STARTTLS => invalid("NBD_OPT_STARTTLS takes no data"),
        OPT_STRUCTURED_REPLY if data.is_empty() => Ok(ClientOption::StructuredReply),
        OPT_STRUCTURED_REPLY => invalid("NBD_OPT_STRUCTURED_REPLY takes no data"),
        OPT_INFO | OPT_GO => {
            let req = parse_info(data).map_err(Ok)?;
            Ok(if option == OPT_GO {
                ClientOption::Go(req)
            } else {
                ClientOption::Info(req)
            })
        }
        OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
            let req = parse_meta(data).map_err(Ok)?;
            Ok(if option == OPT_SET_META_CONTEXT {
                ClientOption::SetMetaContext(req)
            } else {
                ClientOption::ListMetaContext(req)
            })
        }
        other => Ok(ClientOption::Unsupported(other)),
    }
}

/// Reads a u32-length-prefixed string at `*at`, advancing it.
fn take_string(data: &[u8], at: &mut usize, what: &str) -> Result<String, InvalidOption> {
    let len =
        be_u32(data, *at).ok_or_else(|| InvalidOption(format!("{what}: truncated length")))?;
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > MAX_STRING {
        return Err(InvalidOption(format!(
            "{what}: longer than {MAX_STRING} bytes"
        )));
    }
    let start = *at + 4;
    let end = start.checked_add(len).filter(|&e| e <= data.len());
    let end = end.ok_or_else(|| InvalidOption(format!("{what}: truncated")))?;
    let s = std::str::from_utf8(&data[start..end])
        .map_err(|_| InvalidOption(format!("{what}: not UTF-8")))?;
    *at = end;
    Ok(s.to_owned())
}

fn parse_info(data: &[u8]) -> Result<InfoRequest, InvalidOption> {
    let mut at = 0;
    let name = take_string(data, &mut at, "export name")?;
    let n = be_u16(data, at).ok_or_else(|| InvalidOption("truncated info count".into()))?;
    at += 2;
    if data.len() != at + 2 * usize::from(n) {
        return Err(InvalidOption(
            "info request count does not match option length".into(),
        ));
    }
    let requests = (0..usize::from(n))
        .filter_map(|i| be_u16(data, at + 2 * i))
        .collect();
    Ok(InfoRequest { name, requests })
}

fn parse_meta(data: &[u8]) -> Result<MetaRequest, InvalidOption> {
    let mut at = 0;
    let name = take_string(data, &mut at, "export name")?;
    let n = be_u32(data, at).ok_or_else(|| InvalidOption("truncated query count".into()))?;
    at += 4;
    // Each query takes at least its 4-byte length, which bounds the loop by the option length.
    if u64::from(n) * 4 > (data.len() - at) as u64 {
        return Err(InvalidOption("query count exceeds option length".into()));
    }
    let mut queries = Vec::new();
    for _ in 0..n {
        queries.push(take_string(data, &mut at, "query")?);
    }
    if at != data.len() {
        return Err(InvalidOption("trailing bytes after queries".into()));
    }
    Ok(MetaRequest { name, queries })
}

/// Whether a meta-context query selects `base:allocation`. `list` is true for
/// NBD_OPT_LIST_META_CONTEXT, where the bare namespace `base:` is a wildcard; during SET the
/// spec says the wildcard must select nothing.
pub fn query_selects_base_allocation(query: &str, list: bool) -> bool {
    query == BASE_ALLOCATION || (list && query == "base:")
}

/// One option reply: magic, option, reply type, data.
pub fn option_reply(option: u32, reply: u32, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(20 + data.len());
    b.extend_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
    b.extend_from_slice(&option.to_be_bytes());
    b.extend_from_slice(&reply.to_be_bytes());
    b.extend_from_slice(&len_u32(data.len()).to_be_bytes());
    b.extend_from_slice(data);
    b
}

/// Truncates to the spec's string limit on a character boundary.
pub fn clamp_string(s: &str) -> &str {
    if s.len() <= MAX_STRING {
        return s;
    }
    let mut end = MAX_STRING;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// NBD_REP_SERVER payload.
pub fn rep_server(name: &str, description: &str) -> Vec<u8> {
    let name = clamp_string(name);
    let description = clamp_string(description);
    let mut b = Vec::with_capacity(4 + name.len() + description.len());
    b.extend_from_slice(&len_u32(name.len()).to_be_bytes());
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(description.as_bytes());
    b
}

/// NBD_REP_INFO payload for NBD_INFO_EXPORT.
pub fn info_export(size: u64, flags: u16) -> Vec<u8> {
    let mut b = Vec::with_capacity(12);
    b.extend_from_slice(&INFO_EXPORT.to_be_bytes());
    b.extend_from_slice(&size.to_be_bytes());
    b.extend_from_slice(&flags.to_be_bytes());
    b
}

/// NBD_REP_INFO payload for NBD_INFO_NAME or NBD_INFO_DESCRIPTION.
pub fn info_string(kind: u16, s: &str) -> Vec<u8> {
    let s = clamp_string(s);
    let mut b = Vec::with_capacity(2 + s.len());
    b.extend_from_slice(&kind.to_be_bytes());
    b.extend_from_slice(s.as_bytes());
    b
}

/// NBD_REP_INFO payload for NBD_INFO_BLOCK_SIZE.
pub fn info_block_size(min: u32, preferred: u32, max: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(14);
    b.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    b.extend_from_slice(&min.to_be_bytes());
    b.extend_from_slice(&preferred.to_be_bytes());
    b.extend_from_slice(&max.to_be_bytes());
    b
}

/// NBD_REP_META_CONTEXT payload.
pub fn meta_context(id: u32, name: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + name.len());
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(name.as_bytes());
    b
}

/// The reply that ends NBD_OPT_EXPORT_NAME: size, flags and (unless NO_ZEROES) 124 zeros.
pub fn export_name_reply(size: u64, flags: u16, no_zeroes: bool) -> Vec<u8> {
    let mut b = Vec::with_capacity(134);
    b.extend_from_slice(&size.to_be_bytes());
    b.extend_from_slice(&flags.to_be_bytes());
    if !no_zeroes {
        b.resize(b.len() + 124, 0);
    }
    b
}
