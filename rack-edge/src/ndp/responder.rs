//! The decision for one interface: given a received message, its sender and
//! hop limit and the time, whether to send a Router Advertisement and where.
//! No sockets and no clock of its own, so every rule is tested directly.

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use super::counters::{Counters, DropReason};
use super::wire::{self, RouterAdvertisement, ADVERTISEMENT_LEN};

/// MIN_DELAY_BETWEEN_RAS (RFC 4861 §10): advertisements to the all-nodes
/// group are at most this frequent on one interface.
pub const MIN_DELAY_BETWEEN_MULTICASTS: Duration = Duration::from_secs(3);

/// What the kernel told us about a received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The IPv6 source address.
    pub source: Ipv6Addr,
    /// The IPv6 hop limit it arrived with; `None` if the kernel gave none.
    pub hop_limit: Option<u8>,
}

/// A Router Advertisement to send on the interface the solicitation came in
/// on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The soliciting host's address, or ff02::1 if it had none.
    pub destination: Ipv6Addr,
    /// The ICMPv6 message (checksum left for [`super::frame`]).
    pub message: [u8; ADVERTISEMENT_LEN],
}

/// Answers Router Solicitations on one interface.
///
/// Answers go out at once rather than after the random 0–500 ms delay of
/// RFC 4861 §6.2.6: that delay spreads the answers of several routers on a
/// link, and the whole point here is to spare a booting machine time (radvd
/// answers unicast solicitations at once too). Unicast answers are not rate
/// limited: each costs one solicitation of at least the same size, so a
/// flood gains nothing, and a limit keyed by source would need memory the
/// sender controls. Answers to the all-nodes group reach every host and are
/// limited as the RFC requires.
#[derive(Debug, Default)]
pub struct Responder {
    last_multicast: Option<Instant>,
}

impl Responder {
    /// A responder that has sent nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles one received ICMPv6 message; `Some` is the advertisement to
    /// send. Every message is counted, as received and then as answered or
    /// dropped with its reason.
    pub fn handle(
        &mut self,
        message: &[u8],
        received: Received,
        now: Instant,
        counters: &Counters,
    ) -> Option<Reply> {
        counters.count_received();
        match self.decide(message, received, now) {
            Ok(reply) => {
                counters.count_answered();
                Some(reply)
            }
            Err(reason) => {
                counters.count_drop(reason);
                None
            }
        }
    }

    fn decide(
        &mut self,
        message: &[u8],
        received: Received,
        now: Instant,
    ) -> Result<Reply, DropReason> {
        let solicitation = wire::parse_router_solicitation(message)?;
        match received.hop_limit {
            None => return Err(DropReason::MissingHopLimit),
            Some(wire::HOP_LIMIT) => {}
            Some(_) => return Err(DropReason::BadHopLimit),
        }
        if received.source.is_multicast() {
            return Err(DropReason::MulticastSource);
        }
        let destination = if received.source.is_unspecified() {
            if solicitation.has_source_link_layer {
                return Err(DropReason::LinkLayerFromUnspecified);
            }
            if let Some(last) = self.last_multicast {
                if now.saturating_duration_since(last) < MIN_DELAY_BETWEEN_MULTICASTS {
                    // The host solicits again (every 4 s for an RFC 4861
                    // host, faster for iPXE) and a later one gets through.
                    return Err(DropReason::RateLimited);
                }
            }
            self.last_multicast = Some(now);
            wire::ALL_NODES
        } else {
            // Normally the host's link-local address (RFC 4861 hosts and
            // iPXE solicit from it); answering whatever unicast address it
            // used reaches only the host that asked.
            received.source
        };
        Ok(Reply {
            destination,
            message: RouterAdvertisement::NOTHING_TO_CONFIGURE.encode(),
        })
    }
}
