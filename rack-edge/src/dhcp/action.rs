//! What the engine takes in besides the datagram, and what it asks the adapter to do.

use std::net::{Ipv4Addr, SocketAddrV4};

use edgemetal_protocol::MacAddress;

use super::journal::JournalRecord;
use super::leases::Lease;
use super::wire::Request;

/// Where a datagram came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvMeta {
    /// The rack's address on the interface the datagram arrived on.
    pub local_addr: Ipv4Addr,
    /// The sender's address and port.
    pub source: SocketAddrV4,
}

/// Where to send a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// To 255.255.255.255 on the arrival interface.
    Broadcast {
        /// UDP port, 68.
        port: u16,
    },
    /// To an address the kernel can route to: a relay (port 67) or a client
    /// that already has its address (port 68).
    Unicast {
        /// The address.
        ip: Ipv4Addr,
        /// UDP port.
        port: u16,
    },
    /// To a client that has no address yet, on port 68: the adapter needs a
    /// raw socket or a static ARP entry for `ip` -> `mac`.
    UnicastToHardware {
        /// The client's hardware address.
        mac: MacAddress,
        /// The address it is being given.
        ip: Ipv4Addr,
    },
}

impl Destination {
    /// Where a reply to `request` giving `yiaddr` goes (RFC 2131 section
    /// 4.1): relays get everything; NAKs are broadcast; a
    /// client with an address gets unicast; else the broadcast flag decides.
    pub(super) fn for_reply(request: &Request, yiaddr: Ipv4Addr, nak: bool) -> Self {
        if !request.giaddr.is_unspecified() {
            Destination::Unicast {
                ip: request.giaddr,
                port: 67,
            }
        } else if nak {
            Destination::Broadcast { port: 68 }
        } else if !request.ciaddr.is_unspecified() {
            Destination::Unicast {
                ip: request.ciaddr,
                port: 68,
            }
        } else if request.broadcast_flag() || yiaddr.is_unspecified() {
            Destination::Broadcast { port: 68 }
        } else {
            Destination::UnicastToHardware {
                mac: request.mac,
                ip: yiaddr,
            }
        }
    }
}

/// Something that happened to a lease, for the region and the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEvent {
    /// A client was bound to an address it did not hold.
    New(Lease),
    /// A client extended a binding it held.
    Renewed(Lease),
    /// A client gave its address back.
    Released(Lease),
    /// A binding ran out.
    Expired(Lease),
    /// A client found its address in use; the address is quarantined.
    Declined(Lease),
    /// A network-booting machine the snapshot has no reservation for.
    UnknownPxeClient {
        /// Its hardware address.
        mac: MacAddress,
        /// Its option 93 architecture, if it sent one.
        arch: Option<u16>,
    },
}

/// What the adapter must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Append to the journal and make it durable before any later `Send`.
    Persist(JournalRecord),
    /// Send a datagram.
    Send {
        /// The encoded reply.
        bytes: Vec<u8>,
        /// Where to.
        to: Destination,
    },
    /// Report a lease event.
    Event(LeaseEvent),
}
