//! The rack's read-only TFTP server, as a sans-IO core with a tokio adapter.
//!
//! Protocol: RFC 1350 with options (RFC 2347) blksize (RFC 2348), timeout
//! and tsize (RFC 2349) and windowsize (RFC 7440), negotiated with an OACK;
//! unknown options are ignored. Write requests get "access violation".
//! Only octet mode is served: netascii is refused with "illegal operation"
//! (see [`engine::accept`] for why). Block numbers roll over 65535 -> 0,
//! so files of any size are served.
//!
//! The pieces, each one concern:
//!
//! - [`packet`]: the wire format, parse and emit.
//! - [`path`]: requested names normalised and confined to the root.
//! - [`source`]: where files come from ([`FileSource`]: a directory, memory
//!   for generated per-machine files, or a chain of both).
//! - [`options`]: option negotiation; [`config`]: the server's limits.
//! - [`engine`]: request admission and the per-transfer state machine
//!   ([`Transfer`]), driven with an explicit clock.
//! - [`counters`]: what happened, for metrics.
//! - [`server`]: the tokio adapter ([`TftpServer`]).
//!
//! Wiring: `TftpServer::bind(addr, Arc::new(source), TftpConfig::default())`,
//! keep `server.counters()` for metrics, then spawn `server.run()`.

pub mod config;
pub mod counters;
pub mod engine;
pub mod options;
pub mod packet;
pub mod path;
pub mod server;
pub mod source;

#[cfg(test)]
mod accept_tests;
#[cfg(test)]
mod engine_tests;

pub use config::TftpConfig;
pub use counters::{Counters, DropReason, ErrorKind, Failure};
pub use engine::{accept, Accept, ReadRequest, Transfer};
pub use path::{NormalisedPath, PathError};
pub use server::{ServerError, TftpServer};
pub use source::{Chain, DirSource, FileSource, MemorySource, OpenError, TftpFile};
