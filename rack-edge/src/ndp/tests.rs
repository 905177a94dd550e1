//! Tests of the sans-IO core: parsing, encoding and the responder's rules.

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::counters::{Counters, DropReason};
use super::responder::{Received, Responder, MIN_DELAY_BETWEEN_MULTICASTS};
use super::wire::{self, parse_router_solicitation, RouterAdvertisement, RouterSolicitation};

/// A solicitation as iPXE sends it: header plus a Source Link-Layer
/// Address option for 52:54:00:12:34:56 (checksum as on the wire; unused).
const IPXE_SOLICITATION: [u8; 16] = [
    133, 0, 0x3c, 0x11, 0, 0, 0, 0, // type, code, checksum, reserved
    1, 1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // SLLAO, 1 unit
];

const HOST: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x5054, 0xff, 0xfe12, 0x3456);

fn from(source: Ipv6Addr) -> Received {
    Received {
        source,
        hop_limit: Some(255),
    }
}

#[test]
fn a_bare_solicitation_parses() {
    assert_eq!(
        parse_router_solicitation(&[133, 0, 0, 0, 0, 0, 0, 0]),
        Ok(RouterSolicitation {
            has_source_link_layer: false
        })
    );
}

#[test]
fn the_source_link_layer_option_is_seen() {
    assert_eq!(
        parse_router_solicitation(&IPXE_SOLICITATION),
        Ok(RouterSolicitation {
            has_source_link_layer: true
        })
    );
}

#[test]
fn reserved_bits_and_unknown_options_are_ignored() {
    // RFC 4861: receivers ignore the reserved field and skip unknown options.
    let mut message = vec![133, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
    message.extend_from_slice(&[200, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        parse_router_solicitation(&message),
        Ok(RouterSolicitation {
            has_source_link_layer: false
        })
    );
}

#[test]
fn short_messages_are_truncated() {
    for len in 0..8 {
        assert_eq!(
            parse_router_solicitation(&IPXE_SOLICITATION[..len]),
            Err(DropReason::Truncated),
            "{len} bytes"
        );
    }
}

#[test]
fn other_types_and_codes_are_refused() {
    // A Router Advertisement, a Neighbor Solicitation, an echo request.
    for kind in [134u8, 135, 128] {
        let mut message = IPXE_SOLICITATION;
        message[0] = kind;
        assert_eq!(
            parse_router_solicitation(&message),
            Err(DropReason::NotRouterSolicitation)
        );
    }
    let mut message = IPXE_SOLICITATION;
    message[1] = 1;
    assert_eq!(
        parse_router_solicitation(&message),
        Err(DropReason::BadCode)
    );
}

#[test]
fn malformed_options_are_refused() {
    let header = [133u8, 0, 0, 0, 0, 0, 0, 0];
    let cases: [&[u8]; 5] = [
        // Length 0: a parser that followed it would loop forever.
        &[1, 0, 0, 0, 0, 0, 0, 0],
        // Length 2 (16 bytes) with 8 present.
        &[1, 2, 0, 0, 0, 0, 0, 0],
        // A valid option, then one stray byte.
        &[1, 1, 0, 0, 0, 0, 0, 0, 9],
        // An option header cut after its type.
        &[1],
        // Length 255 (2040 bytes) with 2 present.
        &[1, 255],
    ];
    for options in cases {
        let message = [&header[..], options].concat();
        assert_eq!(
            parse_router_solicitation(&message),
            Err(DropReason::BadOption),
            "{options:?}"
        );
    }
}

#[test]
fn the_advertisement_configures_nothing() {
    assert_eq!(
        RouterAdvertisement::NOTHING_TO_CONFIGURE.encode(),
        [
            134, 0, 0, 0, // type, code, checksum (the kernel fills it in)
            0, // cur hop limit: unspecified
            0, // M=0, O=0, preference 00
            0, 0, // router lifetime 0: not a default router
            0, 0, 0, 0, // reachable time: unspecified
            0, 0, 0, 0, // retrans timer: unspecified
        ]
    );
}

#[test]
fn advertisement_fields_land_where_rfc_4861_puts_them() {
    let advertisement = RouterAdvertisement {
        cur_hop_limit: 64,
        managed: true,
        other_config: true,
        router_lifetime: 1800,
        reachable_time: 30_000,
        retrans_timer: 1_000,
    };
    assert_eq!(
        advertisement.encode(),
        [134, 0, 0, 0, 64, 0xc0, 0x07, 0x08, 0, 0, 0x75, 0x30, 0, 0, 0x03, 0xe8]
    );
    let other_only = RouterAdvertisement {
        other_config: true,
        ..RouterAdvertisement::NOTHING_TO_CONFIGURE
    };
    assert_eq!(other_only.encode()[5], 0x40);
}

#[test]
fn a_solicitation_is_answered_unicast_to_its_source() {
    let counters = Counters::default();
    let reply = Responder::new()
        .handle(&IPXE_SOLICITATION, from(HOST), Instant::now(), &counters)
        .expect("answered");
    assert_eq!(reply.destination, HOST);
    assert_eq!(
        reply.message,
        RouterAdvertisement::NOTHING_TO_CONFIGURE.encode()
    );
    assert_eq!((counters.received(), counters.answered()), (1, 1));
}

#[test]
fn a_solicitation_from_the_unspecified_address_is_answered_to_all_nodes() {
    let counters = Counters::default();
    let reply = Responder::new()
        .handle(
            &[133, 0, 0, 0, 0, 0, 0, 0],
            from(Ipv6Addr::UNSPECIFIED),
            Instant::now(),
            &counters,
        )
        .expect("answered");
    assert_eq!(reply.destination, wire::ALL_NODES);
}

#[test]
fn the_unspecified_address_with_a_link_layer_option_is_dropped() {
    let counters = Counters::default();
    let reply = Responder::new().handle(
        &IPXE_SOLICITATION,
        from(Ipv6Addr::UNSPECIFIED),
        Instant::now(),
        &counters,
    );
    assert_eq!(reply, None);
    assert_eq!(counters.dropped(DropReason::LinkLayerFromUnspecified), 1);
}

#[test]
fn only_hop_limit_255_is_answered() {
    let counters = Counters::default();
    let mut responder = Responder::new();
    for hop_limit in [Some(254), Some(0), Some(64), None] {
        let received = Received {
            source: HOST,
            hop_limit,
        };
        assert_eq!(
            responder.handle(&IPXE_SOLICITATION, received, Instant::now(), &counters),
            None,
            "{hop_limit:?}"
        );
    }
    assert_eq!(counters.dropped(DropReason::BadHopLimit), 3);
    assert_eq!(counters.dropped(DropReason::MissingHopLimit), 1);
    assert_eq!(counters.answered(), 0);
}

#[test]
fn a_multicast_source_is_dropped() {
    let counters = Counters::default();
    let reply = Responder::new().handle(
        &[133, 0, 0, 0, 0, 0, 0, 0],
        from(wire::ALL_NODES),
        Instant::now(),
        &counters,
    );
    assert_eq!(reply, None);
    assert_eq!(counters.dropped(DropReason::MulticastSource), 1);
}

#[test]
fn answers_to_all_nodes_are_rate_limited_but_unicast_ones_are_not() {
    let counters = Counters::default();
    let mut responder = Responder::new();
    let bare = [133, 0, 0, 0, 0, 0, 0, 0];
    let start = Instant::now();
    let unspecified = from(Ipv6Addr::UNSPECIFIED);
    assert!(responder
        .handle(&bare, unspecified, start, &counters)
        .is_some());
    let soon = start + MIN_DELAY_BETWEEN_MULTICASTS - Duration::from_millis(1);
    assert_eq!(responder.handle(&bare, unspecified, soon, &counters), None);
    assert_eq!(counters.dropped(DropReason::RateLimited), 1);
    // Unicast answers in the same window still go out.
    for _ in 0..10 {
        assert!(responder
            .handle(&IPXE_SOLICITATION, from(HOST), soon, &counters)
            .is_some());
    }
    let later = start + MIN_DELAY_BETWEEN_MULTICASTS;
    assert!(responder
        .handle(&bare, unspecified, later, &counters)
        .is_some());
    assert_eq!(counters.answered(), 12);
    assert_eq!(counters.received(), 13);
}

#[test]
fn malformed_messages_are_counted_by_reason() {
    let counters = Counters::default();
    let mut responder = Responder::new();
    let now = Instant::now();
    for message in [&[133u8, 0][..], &[133, 0, 0, 0, 0, 0, 0, 0, 1, 0]] {
        assert_eq!(responder.handle(message, from(HOST), now, &counters), None);
    }
    assert_eq!(counters.dropped(DropReason::Truncated), 1);
    assert_eq!(counters.dropped(DropReason::BadOption), 1);
    assert_eq!(counters.received(), 2);
}

#[test]
fn drop_reason_labels_are_distinct() {
    let mut labels: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
    labels.sort_unstable();
    labels.dedup();
    assert_eq!(labels.len(), DropReason::ALL.len());
}

proptest! {
    /// Any bytes: no panic, and what is accepted is a well-formed
    /// solicitation whose options tile the rest of the message exactly.
    #[test]
    fn parsing_never_panics(message in proptest::collection::vec(any::<u8>(), 0..64)) {
        if parse_router_solicitation(&message).is_ok() {
            prop_assert!(message.len() >= 8);
            prop_assert_eq!(message[0], 133);
            prop_assert_eq!(message[1], 0);
            let mut offset = 8;
            while offset < message.len() {
                let len = usize::from(message[offset + 1]) * 8;
                prop_assert!(len > 0);
                offset += len;
            }
            prop_assert_eq!(offset, message.len());
        }
    }

    /// Solicitations built from arbitrary options of valid lengths parse.
    #[test]
    fn well_formed_solicitations_parse(
        options in proptest::collection::vec((any::<u8>(), 1u8..4), 0..5),
    ) {
        let mut message = vec![133, 0, 0, 0, 0, 0, 0, 0];
        for (kind, units) in &options {
            message.push(*kind);
            message.push(*units);
            message.extend(std::iter::repeat_n(0u8, usize::from(*units) * 8 - 2));
        }
        let parsed = parse_router_solicitation(&message);
        prop_assert_eq!(
            parsed,
            Ok(RouterSolicitation {
                has_source_link_layer: options.iter().any(|(kind, _)| *kind == 1),
            })
        );
    }

    /// The responder never panics on any input and answers only hop limit 255.
    #[test]
    fn the_responder_never_panics(
        message in proptest::collection::vec(any::<u8>(), 0..48),
        source in any::<[u8; 16]>(),
        hop_limit in proptest::option::of(any::<u8>()),
    ) {
        let counters = Counters::default();
        let received = Received { source: Ipv6Addr::from(source), hop_limit };
        let reply = Responder::new().handle(&message, received, Instant::now(), &counters);
        if reply.is_some() {
            prop_assert_eq!(hop_limit, Some(255));
        }
        prop_assert_eq!(counters.received(), 1);
    }
}

mod frames {
    use super::*;
    use crate::ndp::frame::{self, ADVERTISEMENT_FRAME_LEN, ICMPV6_OFFSET};

    const HOST_MAC: frame::Mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    const RACK_MAC: frame::Mac = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];

    /// A solicitation frame from HOST to ff02::2 as iPXE sends it, with its
    /// checksum computed, padded as Ethernet pads short frames.
    fn solicitation_frame(hop_limit: u8) -> Vec<u8> {
        let mut message = IPXE_SOLICITATION;
        message[2..4].fill(0);
        let sum = frame::checksum(HOST, wire::ALL_ROUTERS, &message);
        message[2..4].copy_from_slice(&sum.to_be_bytes());
        let mut out = vec![0x33, 0x33, 0, 0, 0, 2];
        out.extend(HOST_MAC);
        out.extend([
            0x86,
            0xdd,
            0x60,
            0,
            0,
            0,
            0,
            message.len() as u8,
            58,
            hop_limit,
        ]);
        out.extend(HOST.octets());
        out.extend(wire::ALL_ROUTERS.octets());
        out.extend(message);
        out.extend([0u8; 4]);
        out
    }

    #[test]
    fn the_link_local_source_is_the_modified_eui_64_of_the_mac() {
        assert_eq!(frame::link_local(HOST_MAC), HOST);
    }

    #[test]
    fn a_solicitation_frame_parses_down_to_its_message() {
        let bytes = solicitation_frame(255);
        let inbound = frame::parse(&bytes).unwrap();
        assert_eq!(inbound.source_mac, HOST_MAC);
        assert_eq!(inbound.received, from(HOST));
        assert_eq!(
            inbound.message.len(),
            IPXE_SOLICITATION.len(),
            "padding cut"
        );
        assert!(parse_router_solicitation(inbound.message).is_ok());
    }

    #[test]
    fn bad_checksums_short_frames_and_other_protocols_are_refused() {
        let mut bytes = solicitation_frame(255);
        bytes[ICMPV6_OFFSET + 9] ^= 1;
        assert_eq!(frame::parse(&bytes), Err(DropReason::BadChecksum));
        let bytes = solicitation_frame(255);
        assert_eq!(frame::parse(&bytes[..40]), Err(DropReason::Truncated));
        assert_eq!(
            frame::parse(&bytes[..ICMPV6_OFFSET + 4]),
            Err(DropReason::Truncated),
            "payload length past the frame"
        );
        let mut udp = solicitation_frame(255);
        udp[20] = 17;
        assert_eq!(frame::parse(&udp), Err(DropReason::NotRouterSolicitation));
        let mut ipv4 = solicitation_frame(255);
        ipv4[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(frame::parse(&ipv4), Err(DropReason::NotRouterSolicitation));
    }

    #[test]
    fn the_advertisement_frame_is_addressed_and_checksummed() {
        let message = RouterAdvertisement::NOTHING_TO_CONFIGURE.encode();
        let unicast = frame::advertisement(RACK_MAC, HOST_MAC, HOST, message);
        assert_eq!(unicast.len(), ADVERTISEMENT_FRAME_LEN);
        assert_eq!(unicast[..6], HOST_MAC);
        assert_eq!(unicast[6..12], RACK_MAC);
        // Hop limit 255, from the rack's link-local address, to the host.
        assert_eq!(unicast[21], 255);
        assert_eq!(unicast[22..38], frame::link_local(RACK_MAC).octets());
        assert_eq!(unicast[38..54], HOST.octets());
        // It verifies as a receiver checks it.
        let parsed = frame::parse(&unicast).unwrap();
        assert_eq!(parsed.message[0], wire::ROUTER_ADVERTISEMENT);
        assert_eq!(parsed.received.source, frame::link_local(RACK_MAC));

        let multicast = frame::advertisement(RACK_MAC, HOST_MAC, wire::ALL_NODES, message);
        assert_eq!(multicast[..6], [0x33, 0x33, 0, 0, 0, 1]);
        assert!(frame::parse(&multicast).is_ok());
    }

    proptest! {
        #[test]
        fn frame_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = frame::parse(&bytes);
        }
    }
}
