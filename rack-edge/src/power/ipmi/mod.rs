//! IPMI 2.0 over LAN: the [`IpmiLanDriver`].
//!
//! ipmi-rs (crates.io `ipmi-rs`) opens RMCP+ sessions with cipher suite 3 and
//! carries any command that implements its public `IpmiCommand` trait; it
//! has no chassis commands, so [`chassis`] adds those the driver needs and
//! [`session`] the session-management ones (privilege, close).
//!
//! - [`chassis`]: command encodings and answer decodings, no I/O.
//! - [`session`]: one session's life: open, raise privilege, close on drop.
//! - `errors`: how ipmi-rs's failures map to [`crate::power::PowerError`].
//! - [`lanplus`]: the driver: one session per call, bounded waits, retries.
//!
//! Known limits, all from ipmi-rs 0.6: only cipher suite 3; RAKP requests
//! administrator privilege, so an operator-only BMC user cannot log in; no
//! BMC key (K_g); a BMC that offers only IPMI 1.5 is logged in to with 1.5
//! (MD2 or a straight password, ipmi-rs's choice) before the driver sees it
//! and refuses the session; and the local socket is bound to `[::]`, so the
//! rack's kernel must have IPv6 enabled (IPv4 BMCs are reached through
//! IPv4-mapped addresses).

pub mod chassis;
mod errors;
pub mod lanplus;
pub mod session;

pub use errors::completion_code_meaning;
pub use lanplus::{IpmiLanDriver, IpmiLanOptions};
