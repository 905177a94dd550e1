//! The two Neighbor Discovery messages the responder handles (RFC 4861 §4.1
//! and §4.2), as ICMPv6 message bytes, without the IPv6 header.
//!
//! Hand-written rather than taken from `pnet_packet`: we need an 8-byte
//! header check, an option walk and a 16-byte encoder, while `pnet_packet`
//! brings its own macro crates and does not treat a message without options
//! well (libpnet issue #583); the RFC's validation rules are clearer written
//! out here.
//!
//! The checksum field is left 0 on encode and not checked on parse: the
//! framing around these messages ([`super::frame`]) computes and verifies
//! it, since it covers the IPv6 addresses too.

use std::net::Ipv6Addr;

use super::counters::DropReason;

/// ICMPv6 type of a Router Solicitation.
pub const ROUTER_SOLICITATION: u8 = 133;
/// ICMPv6 type of a Router Advertisement.
pub const ROUTER_ADVERTISEMENT: u8 = 134;
/// The IPv6 hop limit every Neighbor Discovery message is sent with and
/// must arrive with: a router decrements it, so 255 proves the sender is
/// on the link (RFC 4861 §3.1).
pub const HOP_LIMIT: u8 = 255;
/// The all-routers group (ff02::2) Router Solicitations are sent to.
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
/// The all-nodes group (ff02::1): where a solicitation from the unspecified
/// address is answered, since the host has no address to answer to.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// Size of a Router Solicitation without options: type, code, checksum and
/// 4 reserved bytes.
const SOLICITATION_HEADER: usize = 8;
/// Neighbor Discovery option lengths count 8-byte units (RFC 4861 §4.6).
const OPTION_UNIT: usize = 8;
/// The Source Link-Layer Address option type.
const OPTION_SOURCE_LINK_LAYER: u8 = 1;

/// A Router Solicitation whose ICMPv6 body passed the checks of RFC 4861
/// §6.1.1 (the hop limit and source address are checked by the caller, who
/// has them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterSolicitation {
    /// Whether it carries a Source Link-Layer Address option.
    pub has_source_link_layer: bool,
}

/// Parses and validates a Router Solicitation: type 133, code 0, at least 8
/// bytes, and every option of non-zero length within the message. The
/// reserved field is ignored and unknown options are skipped, as the RFC
/// requires of receivers.
pub fn parse_router_solicitation(message: &[u8]) -> Result<RouterSolicitation, DropReason> {
    let Some((header, mut options)) = message.split_at_checked(SOLICITATION_HEADER) else {
        return Err(DropReason::Truncated);
    };
    if header[0] != ROUTER_SOLICITATION {
        return Err(DropReason::NotRouterSolicitation);
    }
    if header[1] != 0 {
        return Err(DropReason::BadCode);
    }
    let mut has_source_link_layer = false;
    while let [kind, units, ..] = *options {
        let len = usize::from(units) * OPTION_UNIT;
        // Length 0 would never advance: the RFC says to discard the message.
        if len == 0 || len > options.len() {
            return Err(DropReason::BadOption);
        }
        has_source_link_layer |= kind == OPTION_SOURCE_LINK_LAYER;
        options = &options[len..];
    }
    // A single stray byte after the last option cannot be an option header.
    if !options.is_empty() {
        return Err(DropReason::BadOption);
    }
    Ok(RouterSolicitation {
        has_source_link_layer,
    })
}

/// Size of an encoded Router Advertisement without options.
pub const ADVERTISEMENT_LEN: usize = 16;

/// The fixed part of a Router Advertisement (RFC 4861 §4.2). Zero in the
/// hop limit, reachable time and retransmission timer means "unspecified":
/// hosts keep their own values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterAdvertisement {
    /// Hop limit hosts should use; 0 leaves theirs alone.
    pub cur_hop_limit: u8,
    /// M flag: addresses are available from DHCPv6.
    pub managed: bool,
    /// O flag: other configuration is available from DHCPv6.
    pub other_config: bool,
    /// Seconds this router may be a default router; 0: not a default router.
    pub router_lifetime: u16,
    /// Milliseconds a neighbour counts as reachable; 0 leaves hosts' value.
    pub reachable_time: u32,
    /// Milliseconds between Neighbor Solicitations; 0 leaves hosts' value.
    pub retrans_timer: u32,
}

impl RouterAdvertisement {
    /// The answer that lets a host finish autoconfiguration at once and
    /// changes nothing: not a default router, nothing to get from DHCPv6,
    /// no prefixes (so no addresses or on-link routes), no other options.
    /// iPXE's configurator ends as soon as it sees an RA without M or O
    /// (`ipv6conf_rx_router_advertisement` in its `src/net/ndp.c`).
    pub const NOTHING_TO_CONFIGURE: RouterAdvertisement = RouterAdvertisement {
        cur_hop_limit: 0,
        managed: false,
        other_config: false,
        router_lifetime: 0,
        reachable_time: 0,
        retrans_timer: 0,
    };

    /// The ICMPv6 message, checksum 0 for [`super::frame`] to fill in. The
    /// default router preference bits stay 00, as RFC 4191 §2.2 requires
    /// when the router lifetime is 0.
    pub fn encode(&self) -> [u8; ADVERTISEMENT_LEN] {
        let mut message = [0u8; ADVERTISEMENT_LEN];
        message[0] = ROUTER_ADVERTISEMENT;
        message[4] = self.cur_hop_limit;
        message[5] = (u8::from(self.managed) << 7) | (u8::from(self.other_config) << 6);
        message[6..8].copy_from_slice(&self.router_lifetime.to_be_bytes());
        message[8..12].copy_from_slice(&self.reachable_time.to_be_bytes());
        message[12..16].copy_from_slice(&self.retrans_timer.to_be_bytes());
        message
    }
}
