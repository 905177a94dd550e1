//! The TFTP server as sans-IO state machines: [`accept`] decides what a
//! datagram on the listening port asks for, and a [`Transfer`] sends one
//! file to one client. Time and datagrams go in; datagrams to send and
//! deadlines come out. No sockets, no clock.
//!
//! The one I/O a transfer does is positional reads of its already open
//! [`TftpFile`] (a block at a time, from the page cache in practice), so
//! that a DATA packet is read straight into the datagram buffer.
//!
//! Sending is RFC 7440's window scheme, of which RFC 1350 is the case
//! windowsize = 1: send the window, wait for the ACK of its last block; an
//! ACK of an earlier block means the client lost what followed, so the
//! next window starts right after it. Only an ACK that advances triggers
//! sending: a repeated or stale ACK is ignored (the Sorcerer's Apprentice
//! fix), and loss is repaired by the retransmission timer alone.

use std::sync::Arc;
use std::time::Instant;

use super::config::TftpConfig;
use super::counters::{Counters, DropReason, ErrorKind, Failure};
use super::options::{negotiate, Negotiated, Requested};
use super::packet::{emit_data_header, emit_error, ErrorCode, Mode, Packet, ParseError, RawOption};
use super::path::{NormalisedPath, PathError};
use super::source::{OpenError, TftpFile};

/// What to do with a datagram that arrived on the listening port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accept {
    /// Nothing: it was dropped (and counted).
    Drop(DropReason),
    /// Answer with this TFTP ERROR; no transfer (already counted).
    Refuse {
        /// Why.
        kind: ErrorKind,
        /// The encoded ERROR packet.
        packet: Vec<u8>,
    },
    /// A read request: open the file, then start a [`Transfer`].
    Read(ReadRequest),
}

/// A read request that passed the checks that need no file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    /// The file asked for, normalised and confined to the root.
    pub path: NormalisedPath,
    /// The options understood, with usable values.
    pub options: Requested,
}

/// Decides what a datagram on the listening port asks for.
///
/// Write requests are refused (the server is read-only), as are modes
/// other than octet: netascii would need the file rewritten on the fly
/// (and `tsize` would no longer be the file's size), and no boot client
/// uses it, so a clear "use binary mode" error beats silently serving
/// bytes the client would then mangle.
pub fn accept(datagram: &[u8], counters: &Counters) -> Accept {
    let packet = match Packet::parse(datagram) {
        Ok(packet) => packet,
        // A request is answered even when its options are malformed, as
        // RFC 2347 asks (ERROR 8), so the client stops retrying at once.
        Err(ParseError::OptionWithoutValue) if is_request(datagram) => {
            counters.count_request();
            return refuse(counters, ErrorKind::BadOptions);
        }
        Err(error) => return dropped(counters, drop_reason(error)),
    };
    let request = match packet {
        Packet::Rrq(request) => request,
        Packet::Wrq(_) => {
            counters.count_request();
            return refuse(counters, ErrorKind::WriteRefused);
        }
        // Never answer an ERROR (no error loops); the rest belongs to a
        // transfer's port, not this one.
        _ => return dropped(counters, DropReason::Unexpected),
    };
    counters.count_request();
    if request.mode() != Mode::Octet {
        return refuse(counters, ErrorKind::BadMode);
    }
    let path = match NormalisedPath::parse(request.filename) {
        Ok(path) => path,
        Err(error) => return refuse(counters, path_error_kind(error)),
    };
    Accept::Read(ReadRequest {
        path,
        options: Requested::parse(&request.options),
    })
}

/// Whether a datagram's opcode is RRQ or WRQ, whatever follows it.
fn is_request(datagram: &[u8]) -> bool {
    matches!(datagram, [0, 1 | 2, ..])
}

fn dropped(counters: &Counters, reason: DropReason) -> Accept {
    counters.count_drop(reason);
    Accept::Drop(reason)
}

fn refuse(counters: &Counters, kind: ErrorKind) -> Accept {
    Accept::Refuse {
        kind,
        packet: error_packet(counters, kind),
    }
}

/// Counts and encodes the ERROR packet for `kind`. The messages say what
/// was wrong without revealing the file system layout.
pub fn error_packet(counters: &Counters, kind: ErrorKind) -> Vec<u8> {
    counters.count_error(kind);
    let (code, message) = match kind {
        ErrorKind::WriteRefused => (
            ErrorCode::AccessViolation,
            "read-only server: write requests are refused",
        ),
        ErrorKind::BadMode => (
            ErrorCode::IllegalOperation,
            "only octet (binary) mode is served",
        ),
        ErrorKind::BadPath | ErrorKind::NotFound | ErrorKind::NotAFile => {
            (ErrorCode::FileNotFound, "file not found")
        }
        ErrorKind::NulInPath
        | ErrorKind::PathEscape
        | ErrorKind::SymlinkEscape
        | ErrorKind::PermissionDenied => (ErrorCode::AccessViolation, "access violation"),
        ErrorKind::Io => (ErrorCode::NotDefined, "cannot read the file"),
        ErrorKind::Busy => (
            ErrorCode::NotDefined,
            "server busy: too many transfers in progress, retry later",
        ),
        ErrorKind::UnknownTid => (ErrorCode::UnknownTid, "unknown transfer ID"),
        ErrorKind::FileChanged => (ErrorCode::NotDefined, "file changed during the transfer"),
        ErrorKind::BadOptions => (
            ErrorCode::OptionRefused,
            "malformed options: an option has no value",
        ),
    };
    let mut out = Vec::new();
    emit_error(code, message, &mut out);
    out
}

/// The answer to a datagram that reached a transfer's port from someone
/// other than its client: ERROR 5 (RFC 1350 section 4), except to an ERROR,
/// so two confused servers cannot bounce errors forever.
pub fn stray(datagram: &[u8], counters: &Counters) -> Option<Vec<u8>> {
    match Packet::parse(datagram) {
        Ok(Packet::Error { .. }) => None,
        Ok(_) => Some(error_packet(counters, ErrorKind::UnknownTid)),
        Err(error) => {
            counters.count_drop(drop_reason(error));
            None
        }
    }
}

/// The error kind for a file source's refusal.
pub fn open_error_kind(error: &OpenError) -> ErrorKind {
    match error {
        OpenError::NotFound => ErrorKind::NotFound,
        OpenError::OutsideRoot => ErrorKind::SymlinkEscape,
        OpenError::NotAFile => ErrorKind::NotAFile,
        OpenError::PermissionDenied => ErrorKind::PermissionDenied,
        OpenError::Io(_) => ErrorKind::Io,
    }
}

fn path_error_kind(error: PathError) -> ErrorKind {
    match error {
        PathError::Escape => ErrorKind::PathEscape,
        PathError::Nul => ErrorKind::NulInPath,
        PathError::Empty
        | PathError::ControlCharacter
        | PathError::NotUtf8
        | PathError::TooLong => ErrorKind::BadPath,
    }
}

/// The drop reason for bytes that are not a TFTP packet.
pub fn drop_reason(error: ParseError) -> DropReason {
    match error {
        ParseError::Truncated => DropReason::Truncated,
        ParseError::UnknownOpcode(_) => DropReason::UnknownOpcode,
        ParseError::Unterminated => DropReason::Unterminated,
        ParseError::OptionWithoutValue => DropReason::BadOptions,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Options negotiated; the OACK is due (`queued`) or awaits ACK 0.
    Oack { queued: bool },
    /// Sending DATA windows.
    Sending,
    /// An ERROR is due, then the transfer ends with `Failure::ReadError`.
    Failing(ErrorKind),
    /// Over.
    Done(Result<(), Failure>),
}

/// One file being sent to one client.
///
/// Drive it with [`Transfer::handle`] for every datagram from the client,
/// [`Transfer::handle_timeout`] when [`Transfer::poll_timeout`] is reached,
/// and after each of these send every datagram [`Transfer::poll_transmit`]
/// yields. It is over when [`Transfer::outcome`] is `Some`.
#[derive(Debug)]
pub struct Transfer {
    file: TftpFile,
    params: Negotiated,
    /// Blocks are numbered from 1 as u64; the wire carries the low 16 bits,
    /// so files of any size work (block numbers roll over 65535 -> 0, as
    /// tftp-hpa, atftp and curl expect).
    last_block: u64,
    /// Highest block the client acknowledged (0 before any).
    acked: u64,
    /// Next block to send in the current window.
    next: u64,
    /// Last block of the current window.
    window_end: u64,
    /// Highest block sent so far: ACKs beyond it are bogus.
    highest_sent: u64,
    state: State,
    deadline: Option<Instant>,
    retries: u32,
    max_retries: u32,
    client_error: Option<String>,
    counters: Arc<Counters>,
}

impl Transfer {
    /// Starts sending `file` for `request`: an OACK first if any option was
    /// accepted, else DATA block 1 straight away.
    pub fn new(
        now: Instant,
        request: &ReadRequest,
        file: TftpFile,
        config: &TftpConfig,
        counters: Arc<Counters>,
    ) -> Self {
        let params = negotiate(&request.options, config, file.len());
        let last_block = file.len() / u64::from(params.blksize) + 1;
        counters.count_started();
        let mut transfer = Transfer {
            file,
            last_block,
            acked: 0,
            next: 1,
            window_end: 0,
            highest_sent: 0,
            state: State::Sending,
            deadline: None,
            retries: 0,
            max_retries: config.max_retries,
            client_error: None,
            counters,
            params,
        };
        if transfer.params.oack.is_empty() {
            transfer.start_window(now);
        } else {
            transfer.state = State::Oack { queued: true };
            transfer.deadline = Some(now + transfer.params.timeout);
        }
        transfer
    }

    /// The parameters in force.
    pub fn negotiated(&self) -> &Negotiated {
        &self.params
    }

    /// The size of the file being sent.
    pub fn file_len(&self) -> u64 {
        self.file.len()
    }

    /// `Some` once the transfer is over: `Ok` when the last block was
    /// acknowledged.
    pub fn outcome(&self) -> Option<Result<(), Failure>> {
        match self.state {
            State::Done(outcome) => Some(outcome),
            _ => None,
        }
    }

    /// The message of the ERROR the client ended the transfer with.
    pub fn client_error(&self) -> Option<&str> {
        self.client_error.as_deref()
    }

    /// When [`Transfer::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Handles a datagram from the client (the adapter has checked that it
    /// came from the client's address and port).
    pub fn handle(&mut self, now: Instant, datagram: &[u8]) {
        let packet = match Packet::parse(datagram) {
            Ok(packet) => packet,
            Err(error) => return self.counters.count_drop(drop_reason(error)),
        };
        match (packet, self.state) {
            (_, State::Done(_) | State::Failing(_)) => {
                self.counters.count_drop(DropReason::Unexpected)
            }
            (Packet::Error { message, .. }, state) => {
                self.client_error = Some(String::from_utf8_lossy(message).into_owned());
                self.finish(Err(if matches!(state, State::Oack { .. }) {
                    Failure::EndedAtOack
                } else {
                    Failure::ClientError
                }));
            }
            (Packet::Ack { block: 0 }, State::Oack { .. }) => {
                self.state = State::Sending;
                self.start_window(now);
            }
            (Packet::Ack { block }, State::Sending) => self.on_ack(now, block),
            _ => self.counters.count_drop(DropReason::Unexpected),
        }
    }

    fn on_ack(&mut self, now: Instant, block: u16) {
        // Map the 16-bit number to the u64 block it names: the distance
        // forward from the last acknowledged block.
        let advance = u64::from(block.wrapping_sub(self.acked as u16));
        if advance == 0 || advance > self.highest_sent - self.acked {
            // A repeat of the last ACK, an older one, or one for a block
            // never sent: sending on it would double the traffic for good.
            if advance == 0 || advance > u64::from(u16::MAX / 2) {
                self.counters.count_duplicate_ack();
            } else {
                self.counters.count_drop(DropReason::Unexpected);
            }
            return;
        }
        self.acked += advance;
        if self.acked == self.last_block {
            return self.finish(Ok(()));
        }
        // The client acknowledged short of what was sent: it lost the rest,
        // which the next window sends again.
        self.counters
            .count_retransmits((self.next - 1).saturating_sub(self.acked));
        self.retries = 0;
        self.start_window(now);
    }

    /// Retransmits on a passed deadline; gives up after the configured
    /// number of retries.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.deadline {
            Some(deadline) if now >= deadline => {}
            _ => return,
        }
        if self.retries >= self.max_retries {
            return self.finish(Err(Failure::Timeout));
        }
        self.retries += 1;
        match &mut self.state {
            State::Oack { queued } => {
                *queued = true;
                self.counters.count_retransmits(1);
            }
            State::Sending => {
                self.counters.count_retransmits(self.next - 1 - self.acked);
                self.next = self.acked + 1;
            }
            State::Failing(_) | State::Done(_) => return,
        }
        self.deadline = Some(now + self.params.timeout);
    }

    /// Writes the next datagram to send into `out` (replacing its
    /// contents); `false` when there is nothing to send now.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        out.clear();
        match self.state {
            State::Oack { queued: true } => {
                let options: Vec<RawOption<'_>> = self
                    .params
                    .oack
                    .iter()
                    .map(|(name, value)| (name.as_bytes(), value.as_bytes()))
                    .collect();
                Packet::Oack { options }.emit(out);
                self.state = State::Oack { queued: false };
                true
            }
            State::Failing(kind) => {
                out.extend_from_slice(&error_packet(&self.counters, kind));
                self.finish(Err(Failure::ReadError));
                true
            }
            State::Sending if self.next <= self.window_end => {
                if let Err(kind) = self.emit_data(out) {
                    out.clear();
                    self.state = State::Failing(kind);
                    return self.poll_transmit(out);
                }
                self.highest_sent = self.highest_sent.max(self.next);
                self.next += 1;
                true
            }
            _ => false,
        }
    }

    fn emit_data(&mut self, out: &mut Vec<u8>) -> Result<(), ErrorKind> {
        let blksize = u64::from(self.params.blksize);
        let offset = (self.next - 1) * blksize;
        let want = self.file.len().saturating_sub(offset).min(blksize) as usize;
        emit_data_header(self.next as u16, out);
        out.resize(4 + want, 0);
        match self.file.read_at(offset, &mut out[4..]) {
            Ok(read) if read == want => {
                self.counters.count_bytes(want as u64);
                Ok(())
            }
            Ok(_) => Err(ErrorKind::FileChanged),
            Err(_) => Err(ErrorKind::Io),
        }
    }

    fn start_window(&mut self, now: Instant) {
        self.next = self.acked + 1;
        self.window_end = self
            .last_block
            .min(self.acked + u64::from(self.params.windowsize));
        self.deadline = Some(now + self.params.timeout);
    }

    fn finish(&mut self, outcome: Result<(), Failure>) {
        self.state = State::Done(outcome);
        self.deadline = None;
        self.counters.count_finished(outcome);
    }
}

impl Drop for Transfer {
    /// A transfer dropped mid-way (the server stopping) still leaves the
    /// active gauge right.
    fn drop(&mut self) {
        if !matches!(self.state, State::Done(_)) {
            self.counters.count_finished(Err(Failure::Aborted));
        }
    }
}
