//! Router Solicitations in and Router Advertisements out as whole Ethernet
//! frames, for a packet socket (AF_PACKET): the answer must not depend on
//! the kernel's IPv6 stack, which operators often switch off on IPv4-only
//! site networks (`disable_ipv6=1`). With it off, the kernel drops every
//! IPv6 packet on the interface and a raw ICMPv6 socket can neither receive
//! the solicitation nor send the advertisement; a packet socket still can.
//!
//! So this module does what the kernel did for the raw socket: checks the
//! IPv6 header and the ICMPv6 checksum on the way in, and on the way out
//! builds the IPv6 header from a link-local source derived from the
//! interface's MAC (modified EUI-64, RFC 4291 appendix A) and computes the
//! checksum (RFC 4443 §2.3). Hand-written for the same reasons as [`super::wire`]:
//! two fixed headers and a checksum.

use std::net::Ipv6Addr;

use super::counters::DropReason;
use super::responder::Received;
use super::wire::{ADVERTISEMENT_LEN, HOP_LIMIT};

/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// IPv6's next-header number for ICMPv6.
const ICMPV6: u8 = 58;
const ETHERNET_HEADER: usize = 14;
const IPV6_HEADER: usize = 40;
/// Where the ICMPv6 message starts in a frame without extension headers.
pub const ICMPV6_OFFSET: usize = ETHERNET_HEADER + IPV6_HEADER;
/// Size of the advertisement frame this module builds.
pub const ADVERTISEMENT_FRAME_LEN: usize = ICMPV6_OFFSET + ADVERTISEMENT_LEN;

/// A hardware address.
pub type Mac = [u8; 6];

/// A solicitation's frame, taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inbound<'a> {
    /// The sender's hardware address (the Ethernet source).
    pub source_mac: Mac,
    /// The IPv6 source and hop limit, for the responder.
    pub received: Received,
    /// The ICMPv6 message, checksum verified.
    pub message: &'a [u8],
}

/// Takes an Ethernet frame apart down to its ICMPv6 message. Only IPv6
/// without extension headers carrying ICMPv6 is accepted (a solicitation
/// has none); the checksum must be right.
pub fn parse(frame: &[u8]) -> Result<Inbound<'_>, DropReason> {
    if frame.len() < ICMPV6_OFFSET {
        return Err(DropReason::Truncated);
    }
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let ip = &frame[ETHERNET_HEADER..];
    if ethertype != ETHERTYPE_IPV6 || ip[0] >> 4 != 6 || ip[6] != ICMPV6 {
        return Err(DropReason::NotRouterSolicitation);
    }
    let payload_len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    // Ethernet pads short frames: the IPv6 payload length says where it ends.
    let Some(message) = frame[ICMPV6_OFFSET..].get(..payload_len) else {
        return Err(DropReason::Truncated);
    };
    let source = address(&ip[8..24]);
    let destination = address(&ip[24..40]);
    if checksum(source, destination, message) != 0 {
        return Err(DropReason::BadChecksum);
    }
    let mut source_mac = [0u8; 6];
    source_mac.copy_from_slice(&frame[6..12]);
    Ok(Inbound {
        source_mac,
        received: Received {
            source,
            hop_limit: Some(ip[7]),
        },
        message,
    })
}

/// The frame carrying `message` (an encoded advertisement, checksum field
/// ignored) from `our_mac` to `destination`: multicast destinations go to
/// their 33:33 group address (RFC 2464 §7), unicast ones to `to_mac`, the
/// soliciting host's hardware address.
pub fn advertisement(
    our_mac: Mac,
    to_mac: Mac,
    destination: Ipv6Addr,
    message: [u8; ADVERTISEMENT_LEN],
) -> [u8; ADVERTISEMENT_FRAME_LEN] {
    let mut frame = [0u8; ADVERTISEMENT_FRAME_LEN];
    let octets = destination.octets();
    let ethernet_destination = if destination.is_multicast() {
        [0x33, 0x33, octets[12], octets[13], octets[14], octets[15]]
    } else {
        to_mac
    };
    frame[..6].copy_from_slice(&ethernet_destination);
    frame[6..12].copy_from_slice(&our_mac);
    frame[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    let source = link_local(our_mac);
    let ip = &mut frame[ETHERNET_HEADER..ICMPV6_OFFSET];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&(ADVERTISEMENT_LEN as u16).to_be_bytes());
    ip[6] = ICMPV6;
    ip[7] = HOP_LIMIT;
    ip[8..24].copy_from_slice(&source.octets());
    ip[24..40].copy_from_slice(&octets);
    let mut message = message;
    message[2..4].fill(0);
    let sum = checksum(source, destination, &message);
    message[2..4].copy_from_slice(&sum.to_be_bytes());
    frame[ICMPV6_OFFSET..].copy_from_slice(&message);
    frame
}

/// The link-local address a host derives from `mac` (fe80::/64 with the
/// modified EUI-64 interface identifier).
pub fn link_local(mac: Mac) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets[0] = 0xfe;
    octets[1] = 0x80;
    octets[8] = mac[0] ^ 0x02;
    octets[9] = mac[1];
    octets[10] = mac[2];
    octets[11] = 0xff;
    octets[12] = 0xfe;
    octets[13..16].copy_from_slice(&mac[3..6]);
    Ipv6Addr::from(octets)
}

/// The ICMPv6 checksum of `message` between `source` and `destination`:
/// the value to put in the field (with the field zeroed), or 0 when a
/// message carrying its checksum verifies.
pub fn checksum(source: Ipv6Addr, destination: Ipv6Addr, message: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let word = match *pair {
                [high, low] => u16::from_be_bytes([high, low]),
                [high] => u16::from_be_bytes([high, 0]),
                _ => 0,
            };
            sum += u64::from(word);
        }
    };
    add(&source.octets());
    add(&destination.octets());
    add(&(message.len() as u32).to_be_bytes());
    add(&[0, 0, 0, ICMPV6]);
    add(message);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn address(bytes: &[u8]) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(bytes);
    Ipv6Addr::from(octets)
}
