//! The TFTP wire format (RFC 1350, with RFC 2347 options and OACK): bytes
//! are parsed into a plain [`Packet`] that borrows from the datagram, and a
//! `Packet` is emitted back into bytes. No policy lives here.
//!
//! Written by hand rather than taken from crates.io: `tftp-packet` has a
//! single 2022 release and knows no options or OACK; `async-tftp` keeps its
//! packet module private behind a whole async server; `sawp-tftp` only
//! parses; `tftp_client` is a client. None is a maintained parse-and-emit
//! codec with RFC 2347 options that a sans-IO engine could borrow, and the
//! format is six opcodes.
//!
//! Parsing is strict where a mistake would change meaning (unterminated file
//! name or mode, an option name without a value) and lenient where real
//! clients are sloppy but the meaning is clear (bytes after an ACK's block
//! number, an ERROR message without its NUL, NUL padding after the options).

/// One RFC 2347 option as sent: `(name, value)`, both without their NUL.
pub type RawOption<'a> = (&'a [u8], &'a [u8]);

/// A TFTP error code (RFC 1350 section 5, RFC 2347 for code 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 0: not defined, see the message.
    NotDefined,
    /// 1: file not found.
    FileNotFound,
    /// 2: access violation.
    AccessViolation,
    /// 3: disk full or allocation exceeded.
    DiskFull,
    /// 4: illegal TFTP operation.
    IllegalOperation,
    /// 5: unknown transfer ID.
    UnknownTid,
    /// 6: file already exists.
    FileExists,
    /// 7: no such user.
    NoSuchUser,
    /// 8: the client refuses the options of an OACK (RFC 2347).
    OptionRefused,
    /// Any other value.
    Other(u16),
}

impl ErrorCode {
    /// The number on the wire.
    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::NotDefined => 0,
            ErrorCode::FileNotFound => 1,
            ErrorCode::AccessViolation => 2,
            ErrorCode::DiskFull => 3,
            ErrorCode::IllegalOperation => 4,
            ErrorCode::UnknownTid => 5,
            ErrorCode::FileExists => 6,
            ErrorCode::NoSuchUser => 7,
            ErrorCode::OptionRefused => 8,
            ErrorCode::Other(code) => code,
        }
    }

    /// The code for a number on the wire.
    pub fn from_u16(code: u16) -> Self {
        match code {
            0 => ErrorCode::NotDefined,
            1 => ErrorCode::FileNotFound,
            2 => ErrorCode::AccessViolation,
            3 => ErrorCode::DiskFull,
            4 => ErrorCode::IllegalOperation,
            5 => ErrorCode::UnknownTid,
            6 => ErrorCode::FileExists,
            7 => ErrorCode::NoSuchUser,
            8 => ErrorCode::OptionRefused,
            other => ErrorCode::Other(other),
        }
    }
}

/// A transfer mode, compared case-insensitively as RFC 1350 says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Raw bytes.
    Octet,
    /// Text with CR LF line ends.
    Netascii,
    /// Obsolete mail delivery.
    Mail,
    /// Anything else.
    Unknown,
}

/// An RRQ or WRQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The file name as sent, without its NUL.
    pub filename: &'a [u8],
    /// The mode string as sent, without its NUL.
    pub mode: &'a [u8],
    /// RFC 2347 options, `(name, value)` in the order sent; not yet
    /// interpreted (names are case-insensitive, unknown ones are ignored).
    pub options: Vec<RawOption<'a>>,
}

impl Request<'_> {
    /// The mode, case-insensitively.
    pub fn mode(&self) -> Mode {
        if self.mode.eq_ignore_ascii_case(b"octet") {
            Mode::Octet
        } else if self.mode.eq_ignore_ascii_case(b"netascii") {
            Mode::Netascii
        } else if self.mode.eq_ignore_ascii_case(b"mail") {
            Mode::Mail
        } else {
            Mode::Unknown
        }
    }
}

/// One TFTP datagram, borrowing from the bytes it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Opcode 1: read request.
    Rrq(Request<'a>),
    /// Opcode 2: write request.
    Wrq(Request<'a>),
    /// Opcode 3: a block of the file.
    Data {
        /// Block number (wraps after 65535).
        block: u16,
        /// The payload.
        data: &'a [u8],
    },
    /// Opcode 4: acknowledgement.
    Ack {
        /// The block acknowledged; 0 acknowledges an OACK.
        block: u16,
    },
    /// Opcode 5: error; ends the transfer.
    Error {
        /// The code.
        code: ErrorCode,
        /// Human-readable text, without its NUL.
        message: &'a [u8],
    },
    /// Opcode 6: option acknowledgement (RFC 2347).
    Oack {
        /// The options the server accepted, with their final values.
        options: Vec<RawOption<'a>>,
    },
}

/// Why bytes are not a TFTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Shorter than its fixed fields.
    #[error("packet too short")]
    Truncated,
    /// The opcode is not 1 to 6.
    #[error("unknown opcode {0}")]
    UnknownOpcode(u16),
    /// A file name, mode or option is missing its NUL terminator.
    #[error("string not NUL-terminated")]
    Unterminated,
    /// An option name has no value.
    #[error("option without a value")]
    OptionWithoutValue,
}

const RRQ: u16 = 1;
const WRQ: u16 = 2;
const DATA: u16 = 3;
const ACK: u16 = 4;
const ERROR: u16 = 5;
const OACK: u16 = 6;

impl<'a> Packet<'a> {
    /// Parses one datagram. Never panics, whatever the bytes.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ParseError> {
        let (opcode, body) = split_u16(bytes)?;
        match opcode {
            RRQ => Ok(Packet::Rrq(parse_request(body)?)),
            WRQ => Ok(Packet::Wrq(parse_request(body)?)),
            DATA => {
                let (block, data) = split_u16(body)?;
                Ok(Packet::Data { block, data })
            }
            ACK => {
                let (block, _padding) = split_u16(body)?;
                Ok(Packet::Ack { block })
            }
            ERROR => {
                let (code, rest) = split_u16(body)?;
                // Some clients leave the NUL off; the message is still clear.
                let message = match rest.iter().position(|b| *b == 0) {
                    Some(end) => &rest[..end],
                    None => rest,
                };
                Ok(Packet::Error {
                    code: ErrorCode::from_u16(code),
                    message,
                })
            }
            OACK => Ok(Packet::Oack {
                options: parse_options(body)?,
            }),
            other => Err(ParseError::UnknownOpcode(other)),
        }
    }

    /// Appends the encoded packet to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        match self {
            Packet::Rrq(request) | Packet::Wrq(request) => {
                let opcode = if matches!(self, Packet::Rrq(_)) {
                    RRQ
                } else {
                    WRQ
                };
                out.extend_from_slice(&opcode.to_be_bytes());
                push_string(out, request.filename);
                push_string(out, request.mode);
                push_options(out, &request.options);
            }
            Packet::Data { block, data } => {
                emit_data_header(*block, out);
                out.extend_from_slice(data);
            }
            Packet::Ack { block } => {
                out.extend_from_slice(&ACK.to_be_bytes());
                out.extend_from_slice(&block.to_be_bytes());
            }
            Packet::Error { code, message } => {
                out.extend_from_slice(&ERROR.to_be_bytes());
                out.extend_from_slice(&code.to_u16().to_be_bytes());
                push_string(out, message);
            }
            Packet::Oack { options } => {
                out.extend_from_slice(&OACK.to_be_bytes());
                push_options(out, options);
            }
        }
    }

    /// The packet as a fresh byte vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.emit(&mut out);
        out
    }
}

/// Appends a DATA header; the caller appends the payload. This lets the
/// engine read file bytes straight into the datagram buffer.
pub fn emit_data_header(block: u16, out: &mut Vec<u8>) {
    out.extend_from_slice(&DATA.to_be_bytes());
    out.extend_from_slice(&block.to_be_bytes());
}

/// Appends an ERROR packet with `message`.
pub fn emit_error(code: ErrorCode, message: &str, out: &mut Vec<u8>) {
    Packet::Error {
        code,
        message: message.as_bytes(),
    }
    .emit(out);
}

fn split_u16(bytes: &[u8]) -> Result<(u16, &[u8]), ParseError> {
    match bytes {
        [high, low, rest @ ..] => Ok((u16::from_be_bytes([*high, *low]), rest)),
        _ => Err(ParseError::Truncated),
    }
}

/// Splits off one NUL-terminated string.
fn take_string(bytes: &[u8]) -> Result<(&[u8], &[u8]), ParseError> {
    let end = bytes
        .iter()
        .position(|b| *b == 0)
        .ok_or(ParseError::Unterminated)?;
    Ok((&bytes[..end], &bytes[end + 1..]))
}

fn parse_request(body: &[u8]) -> Result<Request<'_>, ParseError> {
    let (filename, rest) = take_string(body)?;
    let (mode, rest) = take_string(rest)?;
    Ok(Request {
        filename,
        mode,
        options: parse_options(rest)?,
    })
}

fn parse_options(mut rest: &[u8]) -> Result<Vec<RawOption<'_>>, ParseError> {
    let mut options = Vec::new();
    // Some PXE ROMs pad requests with NULs after the last option.
    while !rest.iter().all(|b| *b == 0) {
        let (name, after_name) = take_string(rest)?;
        let (value, after_value) =
            take_string(after_name).map_err(|_| ParseError::OptionWithoutValue)?;
        options.push((name, value));
        rest = after_value;
    }
    Ok(options)
}

/// Appends `text` and its NUL; a NUL inside `text` would end the string
/// early on the wire, so the text is cut there.
fn push_string(out: &mut Vec<u8>, text: &[u8]) {
    let end = text.iter().position(|b| *b == 0).unwrap_or(text.len());
    out.extend_from_slice(&text[..end]);
    out.push(0);
}

fn push_options(out: &mut Vec<u8>, options: &[RawOption<'_>]) {
    for (name, value) in options {
        push_string(out, name);
        push_string(out, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rrq_with_options_round_trips() {
        let bytes = b"\x00\x01pxelinux.0\x00OCTET\x00blksize\x001468\x00tsize\x000\x00";
        let packet = Packet::parse(bytes).unwrap();
        let Packet::Rrq(request) = &packet else {
            panic!("not an RRQ: {packet:?}");
        };
        assert_eq!(request.filename, b"pxelinux.0");
        assert_eq!(request.mode(), Mode::Octet);
        assert_eq!(
            request.options,
            vec![(&b"blksize"[..], &b"1468"[..]), (&b"tsize"[..], &b"0"[..])]
        );
        assert_eq!(packet.to_bytes(), bytes);
    }

    #[test]
    fn nul_padding_after_the_options_is_tolerated() {
        let packet = Packet::parse(b"\x00\x01f\x00octet\x00\x00\x00\x00").unwrap();
        assert!(matches!(packet, Packet::Rrq(r) if r.options.is_empty()));
    }

    #[test]
    fn malformed_requests_are_errors_not_panics() {
        assert_eq!(Packet::parse(b""), Err(ParseError::Truncated));
        assert_eq!(Packet::parse(b"\x00"), Err(ParseError::Truncated));
        assert_eq!(
            Packet::parse(b"\x00\x09"),
            Err(ParseError::UnknownOpcode(9))
        );
        assert_eq!(
            Packet::parse(b"\x00\x01file"),
            Err(ParseError::Unterminated)
        );
        assert_eq!(
            Packet::parse(b"\x00\x01file\x00octet"),
            Err(ParseError::Unterminated)
        );
        assert_eq!(
            Packet::parse(b"\x00\x01f\x00octet\x00blksize\x00"),
            Err(ParseError::OptionWithoutValue)
        );
        assert_eq!(Packet::parse(b"\x00\x04\x00"), Err(ParseError::Truncated));
        assert_eq!(Packet::parse(b"\x00\x03"), Err(ParseError::Truncated));
    }

    #[test]
    fn data_ack_error_and_oack_round_trip() {
        let packets = [
            Packet::Data {
                block: 65535,
                data: b"abc",
            },
            Packet::Data {
                block: 0,
                data: b"",
            },
            Packet::Ack { block: 7 },
            Packet::Error {
                code: ErrorCode::OptionRefused,
                message: b"no thanks",
            },
            Packet::Error {
                code: ErrorCode::Other(42),
                message: b"",
            },
            Packet::Oack {
                options: vec![(b"windowsize", b"16")],
            },
        ];
        for packet in packets {
            assert_eq!(Packet::parse(&packet.to_bytes()).unwrap(), packet);
        }
    }

    #[test]
    fn sloppy_acks_and_errors_still_parse() {
        assert_eq!(
            Packet::parse(b"\x00\x04\x00\x05junk").unwrap(),
            Packet::Ack { block: 5 }
        );
        assert_eq!(
            Packet::parse(b"\x00\x05\x00\x01gone").unwrap(),
            Packet::Error {
                code: ErrorCode::FileNotFound,
                message: b"gone"
            }
        );
    }

    #[test]
    fn an_emitted_error_message_cannot_smuggle_a_nul() {
        let mut out = Vec::new();
        emit_error(ErrorCode::NotDefined, "a\0b", &mut out);
        assert_eq!(out, b"\x00\x05\x00\x00a\x00");
    }

    #[test]
    fn modes_compare_case_insensitively() {
        for (mode, expected) in [
            (&b"NetASCII"[..], Mode::Netascii),
            (b"mail", Mode::Mail),
            (b"binary", Mode::Unknown),
        ] {
            let request = Request {
                filename: b"f",
                mode,
                options: vec![],
            };
            assert_eq!(request.mode(), expected);
        }
    }
}
