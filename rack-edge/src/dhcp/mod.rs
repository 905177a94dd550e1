//! The rack's DHCPv4 server, as a sans-IO core.
//!
//! [`Engine`] takes datagrams and the time and returns [`Action`]s: journal
//! records to make durable, replies to send and lease events to report. It
//! never touches a socket, a clock or a disk; a separate adapter owns those.
//! The pieces, each one concern:
//!
//! - [`pool`]: which addresses of a subnet a client may have, from the snapshot.
//! - [`peers`]: this rack's share of a subnet that several racks serve.
//! - [`leases`]: the lease table and its expiry.
//! - [`boot`]: the network-boot answer (PXE, iPXE, UEFI HTTP) as a data table.
//! - [`journal`]: crash-safe persistence of the lease table (the one part
//!   that does file I/O, behind [`Journal`]); [`commit`] is its one writer.
//! - [`wire`]: strict request parsing and reply encoding.
//! - [`engine`]: the protocol state machine tying them together; its inputs
//!   and outputs are in [`config`] and [`action`], its drop counts in [`counters`].
//!
//! Start-up: [`Journal::open`] replays the lease table, [`Engine::with_leases`]
//! takes it. Then for each datagram, carry out the actions in order, making
//! every [`Action::Persist`] durable before the next [`Action::Send`]; call
//! [`Engine::poll_expired`] on a timer (see [`Engine::next_expiry`]) and
//! [`Journal::compact`] with [`JournalRecord::live`] when the journal asks.
//! The server ([`server`]) does this with group commit ([`commit`]): one
//! writer thread makes many batches durable with one fsync while the engine
//! goes on with the next datagrams.

pub mod action;
pub mod arp;
pub mod boot;
pub mod client_id;
pub mod commit;
pub mod config;
pub mod counters;
pub mod directory;
pub mod engine;
pub mod journal;
pub mod leases;
pub mod peers;
pub mod pool;
pub mod server;
pub mod wire;

pub use action::{Action, Destination, LeaseEvent, RecvMeta};
pub use config::{EngineConfig, ServedSubnet};
pub use counters::{Counters, DropReason};
pub use directory::LeaseDirectory;
pub use engine::Engine;
pub use journal::{Journal, JournalRecord, Replayed};
pub use leases::{ClientId, Lease, LeaseState, LeaseTable, SubnetId};
