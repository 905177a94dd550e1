//! Answers IPv6 Router Solicitations on the DHCP interfaces, so that a
//! booting machine finishes IPv6 autoconfiguration at once.
//!
//! iPXE (QEMU's ROM among others) configures its NIC with DHCPv4 and IPv6
//! autoconfiguration together and waits for both. On a link without an IPv6
//! router nobody answers its Router Solicitations, and it waits about 13 s
//! for its configurator to time out before fetching its boot script. Any
//! Router Advertisement ends that wait; the one sent here changes nothing
//! on the link: router lifetime 0 (not a default router), M and O clear
//! (nothing to get from DHCPv6), no prefix and no other option. It goes
//! unicast to the soliciting host, or to ff02::1 when the host solicited
//! from the unspecified address, with hop limit 255.
//!
//! A link that has a real IPv6 router does not need this: that router
//! answers, and its M/O flags are what hosts should follow. The operator
//! turns it off per subnet ([`policy`]).
//!
//! It works at layer 2 (a packet socket, whole Ethernet frames), so it
//! answers whether the kernel's IPv6 is on or off on the interface: site
//! networks that are IPv4-only often have it off, and then the kernel can
//! neither receive a solicitation nor send an advertisement.
//!
//! The pieces:
//!
//! - [`wire`]: Router Solicitation parsing, Router Advertisement encoding.
//! - [`frame`]: the Ethernet and IPv6 headers around them, and the checksum.
//! - [`responder`]: the per-interface decision (validation, destination,
//!   rate limit), driven with an explicit clock.
//! - [`counters`]: what happened, for metrics.
//! - [`policy`]: the links the operator turned it off on.
//! - [`server`]: the tokio adapter, one packet socket per interface.
//!
//! Wiring: spawn [`run`] with the DHCP interface names (or [`serve`] with an
//! `Arc<Counters>` kept for metrics and the snapshot's [`LinkPolicy`]).

pub mod counters;
pub mod frame;
pub mod policy;
pub mod responder;
pub mod server;
pub mod wire;

#[cfg(test)]
mod tests;

pub use counters::{Counters, DropReason};
pub use policy::LinkPolicy;
pub use responder::{Received, Reply, Responder};
pub use server::{run, serve};
pub use wire::{parse_router_solicitation, RouterAdvertisement, RouterSolicitation};
