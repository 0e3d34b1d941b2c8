//! Transmission requests: parsing and validation against the export's limits.

use super::*;

/// Commands. `Unknown` is answered with EINVAL; the frame itself is still well-formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Read,
    Write,
    Disc,
    Flush,
    Trim,
    Cache,
    WriteZeroes,
    BlockStatus,
    Unknown(u16),
}

impl Command {
    fn from_wire(t: u16) -> Self {
        match t {
            0 => Self::Read,
            1 => Self::Write,
            2 => Self::Disc,
            3 => Self::Flush,
            4 => Self::Trim,
            5 => Self::Cache,
            6 => Self::WriteZeroes,
            7 => Self::BlockStatus,
            other => Self::Unknown(other),
        }
    }

    /// Flags meaningful for this command. FUA is accepted on every command, as the spec
    /// requires once NBD_FLAG_SEND_FUA is advertised (it has no effect on reads).
    fn allowed_flags(self) -> u16 {
        CMD_FLAG_FUA
            | match self {
                Self::Read => CMD_FLAG_DF,
                Self::WriteZeroes => CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO,
                Self::BlockStatus => CMD_FLAG_REQ_ONE,
                _ => 0,
            }
    }
}

/// A transmission request header (28 bytes on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub flags: u16,
    pub command: Command,
    pub cookie: u64,
    pub offset: u64,
    pub len: u32,
}

impl Request {
    pub fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }

    /// Bytes that follow this header on the wire.
    pub fn payload_len(&self) -> u32 {
        if self.command == Command::Write {
            self.len
        } else {
            0
        }
    }
}

pub const REQUEST_LEN: usize = 28;

/// Only the magic can make a header unusable; everything else is checked by [`validate`] so the
/// client gets an errno instead of a dropped connection.
pub fn parse_request(b: &[u8; REQUEST_LEN]) -> Result<Request, FrameError> {
    let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    if magic != REQUEST_MAGIC {
        return Err(FrameError::BadMagic(u64::from(magic)));
    }
    let flags = u16::from_be_bytes([b[4], b[5]]);
    let command = Command::from_wire(u16::from_be_bytes([b[6], b[7]]));
    let cookie = u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
    let offset = u64::from_be_bytes([b[16], b[17], b[18], b[19], b[20], b[21], b[22], b[23]]);
    let len = u32::from_be_bytes([b[24], b[25], b[26], b[27]]);
    Ok(Request {
        flags,
        command,
        cookie,
        offset,
        len,
    })
}

/// What a request is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub size: u64,
    pub read_only: bool,
    pub structured: bool,
    pub base_allocation: bool,
    pub fast_zero: bool,
    /// Minimum block size: offsets and lengths must be multiples of it.
    pub min_block: u32,
    /// Maximum READ/WRITE/CACHE length.
    pub max_block: u32,
}

/// Checks a request before it reaches the export; `Err` is the errno to reply with.
pub fn validate(req: &Request, lim: &Limits) -> Result<(), u32> {
    let cmd = req.command;
    if let Command::Unknown(_) = cmd {
        return Err(EINVAL);
    }
    if req.flags & !cmd.allowed_flags() != 0 {
        return Err(EINVAL);
    }
    if req.has(CMD_FLAG_DF) && !lim.structured {
        return Err(EINVAL);
    }
    match cmd {
        Command::Flush | Command::Disc => return Ok(()),
        Command::BlockStatus if !(lim.structured && lim.base_allocation) => return Err(EINVAL),
        Command::Write | Command::Trim | Command::WriteZeroes if lim.read_only => {
            return Err(EPERM);
        }
        _ => {}
    }
    if req.len == 0 {
        return Err(EINVAL);
    }
    if matches!(cmd, Command::Read | Command::Write | Command::Cache)
        && req.len > lim.max_block.min(MAX_PAYLOAD)
    {
        return Err(EINVAL);
    }
    let min = u64::from(lim.min_block.max(1));
    if !req.offset.is_multiple_of(min) || !u64::from(req.len).is_multiple_of(min) {
        return Err(EINVAL);
    }
    let past_end = req
        .offset
        .checked_add(u64::from(req.len))
        .is_none_or(|end| end > lim.size);
    if past_end {
        // The spec asks for ENOSPC on writes past the end, EINVAL for everything else.
        return Err(match cmd {
            Command::Write | Command::WriteZeroes => ENOSPC,
            _ => EINVAL,
        });
    }
    if cmd == Command::WriteZeroes && req.has(CMD_FLAG_FAST_ZERO) && !lim.fast_zero {
        return Err(ENOTSUP);
    }
    Ok(())
}
