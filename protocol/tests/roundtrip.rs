use core::net::{IpAddr, Ipv4Addr};

use edgemetal_protocol::*;
use proptest::prelude::*;

fn rack_id() -> impl Strategy<Value = RackId> {
    "[a-z0-9-]{1,64}".prop_map(|s| RackId::new(&s).unwrap())
}

fn mac() -> impl Strategy<Value = MacAddress> {
    any::<[u8; 6]>().prop_map(MacAddress)
}

fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

fn cidr() -> impl Strategy<Value = Ipv4Cidr> {
    (any::<u32>(), 0u8..=32).prop_map(|(addr, len)| {
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        Ipv4Cidr::new(Ipv4Addr::from(addr & mask), len).unwrap()
    })
}

fn subnet() -> impl Strategy<Value = SubnetConfig> {
    (
        ".{0,16}",
        ".{0,16}",
        cidr(),
        proptest::option::of(ipv4()),
        proptest::collection::vec(ipv4(), 0..3),
        proptest::option::of("[a-z.]{1,20}"),
        any::<u32>(),
        proptest::collection::vec(
            (ipv4(), ipv4(), any::<bool>()).prop_map(|(start, end, dynamic)| IpRange {
                start,
                end,
                purpose: if dynamic {
                    RangePurpose::Dynamic
                } else {
                    RangePurpose::Reserved
                },
            }),
            0..4,
        ),
        proptest::collection::vec(
            (mac(), ipv4(), proptest::option::of("[a-z]{1,10}")).prop_map(
                |(mac, address, hostname)| Reservation {
                    mac,
                    address,
                    hostname,
                },
            ),
            0..4,
        ),
    )
        .prop_map(
            |(id, name, cidr, gateway, dns_servers, domain, lease, ranges, reservations)| {
                SubnetConfig {
                    id,
                    name,
                    cidr,
                    gateway,
                    dns_servers,
                    domain,
                    lease_time_secs: lease,
                    ranges,
                    reservations,
                    dhcp_racks: Vec::new(),
                    held_elsewhere: Vec::new(),
                    services: Default::default(),
                    boot: Default::default(),
                    router_advertisements: Default::default(),
                }
            },
        )
}

fn up_message() -> impl Strategy<Value = UpMessage> {
    prop_oneof![
        (
            rack_id(),
            ".{0,12}",
            proptest::collection::vec((".{1,8}", proptest::option::of(mac()), any::<u32>()), 0..3),
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(rack_id, version, ifaces, gen)| UpMessage::Hello(Hello {
                rack_id,
                software_version: version,
                protocol_version: PROTOCOL_VERSION,
                hostname: "rack".into(),
                interfaces: ifaces
                    .into_iter()
                    .map(|(name, mac, addr)| InterfaceInfo {
                        name,
                        mac,
                        addresses: vec![InterfaceAddress {
                            address: IpAddr::V4(Ipv4Addr::from(addr)),
                            prefix_len: 24
                        }],
                    })
                    .collect(),
                services: vec![ServiceKind::Link, ServiceKind::Dhcp],
                applied_generation: gen.map(Generation),
                bmc_networks: Vec::new(),
            })),
        (
            any::<u64>(),
            proptest::option::of(any::<u64>()),
            any::<u64>()
        )
            .prop_map(|(up, gen, count)| {
                UpMessage::Heartbeat(Heartbeat {
                    uptime_secs: up,
                    applied_generation: gen.map(Generation),
                    services: vec![ServiceHealth {
                        service: ServiceKind::Link,
                        state: HealthState::Degraded,
                        detail: "slow".into(),
                    }],
                    counters: vec![Counter {
                        name: "x_total".into(),
                        value: count,
                    }],
                })
            }),
        (any::<u64>(), proptest::option::of(".{0,20}")).prop_map(|(gen, reason)| {
            UpMessage::SnapshotAck(SnapshotAck {
                generation: Generation(gen),
                outcome: match reason {
                    None => ApplyOutcome::Applied,
                    Some(reason) => ApplyOutcome::Failed { reason },
                },
            })
        }),
        Just(UpMessage::Status(RackStatus::Offline)),
    ]
}

proptest! {
    #[test]
    fn up_messages_round_trip(body in up_message(), id in any::<[u8; 16]>(), at in any::<u64>()) {
        let envelope = Envelope::new(MessageId(id), at, body);
        let bytes = envelope.encode().unwrap();
        prop_assert_eq!(Envelope::<UpMessage>::decode(&bytes).unwrap(), envelope);
    }

    #[test]
    fn snapshots_round_trip(gen in any::<u64>(), subnets in proptest::collection::vec(subnet(), 0..4)) {
        let envelope = Envelope::new(MessageId([7; 16]), 1, DownMessage::SnapshotV5(ConfigSnapshot {
            boot_resources: Vec::new(),
            dns: Default::default(),
            generation: Generation(gen),
            subnets, gateway: Default::default(),  machine_boot: Default::default(), }));
        let bytes = envelope.encode().unwrap();
        prop_assert_eq!(Envelope::<DownMessage>::decode(&bytes).unwrap(), envelope);
    }

    #[test]
    fn garbage_never_panics_and_is_a_typed_error(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        // Either a valid message by chance, or one of the typed errors: never a panic.
        let _ = Envelope::<UpMessage>::decode(&bytes);
        let _ = Envelope::<DownMessage>::decode(&bytes);
    }

    #[test]
    fn topics_round_trip(rack in rack_id(), which in 0usize..9) {
        let channel = [Channel::Hello, Channel::Heartbeat, Channel::SnapshotAck, Channel::Status, Channel::Snapshot, Channel::Rekey, Channel::RekeyAck, Channel::Events, Channel::EventsAck, Channel::Power, Channel::PowerResult, Channel::BlobRequest, Channel::BlobChunk, Channel::BootQuery, Channel::BootAnswer][which % 15];
        let topic = Topic::new(rack, channel);
        prop_assert_eq!(Topic::parse(&topic.to_string()).unwrap(), topic);
    }

    #[test]
    fn mac_addresses_round_trip(mac in mac()) {
        prop_assert_eq!(mac.to_string().parse::<MacAddress>().unwrap(), mac);
    }
}

#[test]
fn unknown_version_is_refused_before_the_body() {
    let mut envelope = Envelope::new(MessageId([1; 16]), 5, UpMessage::Status(RackStatus::Online));
    envelope.version = PROTOCOL_VERSION + 1;
    let bytes = envelope.encode().unwrap();
    assert_eq!(
        Envelope::<UpMessage>::decode(&bytes),
        Err(DecodeError::UnsupportedVersion {
            got: PROTOCOL_VERSION + 1,
            min: 1,
            max: PROTOCOL_VERSION
        })
    );
}

#[test]
fn empty_truncated_and_padded_payloads_are_typed_errors() {
    assert_eq!(Envelope::<UpMessage>::decode(&[]), Err(DecodeError::Empty));
    let bytes = Envelope::new(MessageId([1; 16]), 5, UpMessage::Status(RackStatus::Online))
        .encode()
        .unwrap();
    assert!(matches!(
        Envelope::<UpMessage>::decode(&bytes[..bytes.len() - 1]),
        Err(DecodeError::Malformed(_))
    ));
    let mut padded = bytes.clone();
    padded.push(0);
    assert_eq!(
        Envelope::<UpMessage>::decode(&padded),
        Err(DecodeError::TrailingBytes(1))
    );
}

#[test]
fn topics_outside_the_scheme_are_refused() {
    for bad in [
        "other/v1/rack/a/up/hello",
        "edgemetal/v1/rack/A/up/hello",
        "edgemetal/v1/rack/a/up/snapshot",
        "edgemetal/v1/rack/a/down/hello",
        "edgemetal/v1/rack/a/up/hello/extra",
        "edgemetal/v1/rack//up/hello",
        "edgemetal/v1/rack/+/up/hello",
    ] {
        assert!(Topic::parse(bad).is_err(), "{bad} should be refused");
    }
}

#[test]
fn cidr_validation() {
    assert!("10.0.0.0/24".parse::<Ipv4Cidr>().is_ok());
    assert!(matches!(
        "10.0.0.1/24".parse::<Ipv4Cidr>(),
        Err(InvalidCidr::HostBitsSet(_))
    ));
    assert!(matches!(
        "10.0.0.0/33".parse::<Ipv4Cidr>(),
        Err(InvalidCidr::PrefixTooLong(33))
    ));
    assert!("10.0.0.0".parse::<Ipv4Cidr>().is_err());
    let net: Ipv4Cidr = "10.0.0.0/24".parse().unwrap();
    assert!(net.contains(Ipv4Addr::new(10, 0, 0, 200)));
    assert!(!net.contains(Ipv4Addr::new(10, 0, 1, 0)));
    assert_eq!(net.broadcast(), Ipv4Addr::new(10, 0, 0, 255));
    assert!(net.overlaps(&"10.0.0.128/25".parse().unwrap()));
    assert!(!net.overlaps(&"10.0.1.0/24".parse().unwrap()));
}

#[test]
fn broker_urls_parse() {
    let url: BrokerUrl = "mqtt://127.0.0.1:1883".parse().unwrap();
    assert_eq!((url.host.as_str(), url.port), ("127.0.0.1", 1883));
    assert_eq!(url.to_string(), "mqtt://127.0.0.1:1883");
    assert!(!url.tls);
    let url: BrokerUrl = "mqtts://broker.example:8883".parse().unwrap();
    assert!(url.tls);
    assert_eq!(url.to_string(), "mqtts://broker.example:8883");
    for bad in [
        "127.0.0.1:1883",
        "mqtt://:1",
        "mqtt://h",
        "mqtt://h:x",
        "http://h:1",
    ] {
        assert!(bad.parse::<BrokerUrl>().is_err(), "{bad}");
    }
}
