//! Shared pieces of the fuzz targets: the fixed link secret of `sealed_open`
//! and a few realistic messages, used by `examples/make_seeds.rs` to write
//! the seed corpora under `fuzz/seeds/<target>/`.

use std::net::{IpAddr, Ipv4Addr};

use edgemetal_protocol::seal::{FrameHeader, LinkSecret};
use edgemetal_protocol::*;

/// The secret `sealed_open` opens every frame with; seeds are sealed under it.
pub const FUZZ_SECRET: LinkSecret = LinkSecret(*b"edgemetal fuzz link secret 32 B!");

/// The rack every seed message belongs to.
pub fn rack() -> RackId {
    RackId::new("rack-fuzz-1").unwrap()
}

/// A frame header of the current protocol version.
pub fn header(direction: Direction, sequence: u64) -> FrameHeader {
    FrameHeader {
        version: PROTOCOL_VERSION,
        rack_id: rack(),
        direction,
        key_epoch: 1,
        sequence,
    }
}

fn id(n: u8) -> MessageId {
    MessageId([n; 16])
}

/// One envelope of every rack-to-region message kind.
pub fn up_messages() -> Vec<(&'static str, Envelope<UpMessage>)> {
    let hello = Hello {
        rack_id: rack(),
        software_version: "0.1.0".into(),
        protocol_version: PROTOCOL_VERSION,
        hostname: "rack-edge-01".into(),
        interfaces: vec![InterfaceInfo {
            name: "eth0".into(),
            mac: Some(MacAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56])),
            addresses: vec![
                InterfaceAddress {
                    address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                    prefix_len: 24,
                },
                InterfaceAddress {
                    address: "fe80::5054:ff:fe12:3456".parse().unwrap(),
                    prefix_len: 64,
                },
            ],
        }],
        services: vec![ServiceKind::Link, ServiceKind::Dhcp, ServiceKind::Dns],
        applied_generation: Some(Generation(3)),
        bmc_networks: Vec::new(),
    };
    let heartbeat = Heartbeat {
        uptime_secs: 3600,
        applied_generation: Some(Generation(3)),
        services: vec![
            ServiceHealth {
                service: ServiceKind::Dhcp,
                state: HealthState::Healthy,
                detail: String::new(),
            },
            ServiceHealth {
                service: ServiceKind::Dns,
                state: HealthState::Degraded,
                detail: "upstream slow".into(),
            },
        ],
        counters: vec![Counter {
            name: "link_malformed_payloads_total".into(),
            value: 2,
        }],
    };
    vec![
        (
            "hello",
            Envelope::new(id(1), 1_700_000_000_000, UpMessage::Hello(hello)),
        ),
        (
            "heartbeat",
            Envelope::new(id(2), 1_700_000_001_000, UpMessage::Heartbeat(heartbeat)),
        ),
        (
            "ack_applied",
            Envelope::new(
                id(3),
                1_700_000_002_000,
                UpMessage::SnapshotAck(SnapshotAck {
                    generation: Generation(4),
                    outcome: ApplyOutcome::Applied,
                }),
            ),
        ),
        (
            "ack_failed",
            Envelope::new(
                id(4),
                1_700_000_003_000,
                UpMessage::SnapshotAck(SnapshotAck {
                    generation: Generation(5),
                    outcome: ApplyOutcome::Failed {
                        reason: "overlapping subnets".into(),
                    },
                }),
            ),
        ),
        (
            "status_online",
            Envelope::new(
                id(5),
                1_700_000_004_000,
                UpMessage::Status(RackStatus::Online),
            ),
        ),
        (
            "status_offline",
            Envelope::new(id(6), 0, UpMessage::Status(RackStatus::Offline)),
        ),
    ]
}

/// A snapshot with one subnet and `reservations` fixed addresses.
pub fn snapshot(generation: u64, reservations: u32) -> ConfigSnapshot {
    ConfigSnapshot {
        boot_resources: Vec::new(),
        dns: Default::default(),
        gateway: Default::default(),
        generation: Generation(generation),
        subnets: vec![SubnetConfig {
            id: "subnet-1".into(),
            name: "provisioning".into(),
            cidr: "10.0.0.0/16".parse().unwrap(),
            gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
            dns_servers: vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(9, 9, 9, 9)],
            domain: Some("site.example".into()),
            lease_time_secs: 3600,
            ranges: vec![
                IpRange {
                    start: Ipv4Addr::new(10, 0, 1, 0),
                    end: Ipv4Addr::new(10, 0, 1, 255),
                    purpose: RangePurpose::Dynamic,
                },
                IpRange {
                    start: Ipv4Addr::new(10, 0, 0, 1),
                    end: Ipv4Addr::new(10, 0, 0, 9),
                    purpose: RangePurpose::Reserved,
                },
            ],
            reservations: (0..reservations)
                .map(|n| Reservation {
                    mac: MacAddress([0x52, 0x54, 0, (n >> 16) as u8, (n >> 8) as u8, n as u8]),
                    address: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 2, 0)) + n),
                    hostname: (n % 3 != 0).then(|| format!("node-{n:05}")),
                })
                .collect(),
            dhcp_racks: Vec::new(),
            held_elsewhere: Vec::new(),
            services: Default::default(),
        }],
        machine_boot: Default::default(),
    }
}

/// One envelope of every region-to-rack message kind, in a few sizes.
pub fn down_messages() -> Vec<(&'static str, Envelope<DownMessage>)> {
    let empty = ConfigSnapshot {
        boot_resources: Vec::new(),
        dns: Default::default(),
        generation: Generation(1),
        subnets: vec![],
        gateway: Default::default(),
        machine_boot: Default::default(),
    };
    vec![
        (
            "snapshot_empty",
            Envelope::new(id(7), 1_700_000_005_000, DownMessage::SnapshotV5(empty)),
        ),
        (
            "snapshot_small",
            Envelope::new(
                id(8),
                1_700_000_006_000,
                DownMessage::SnapshotV5(snapshot(2, 4)),
            ),
        ),
        (
            "snapshot_medium",
            Envelope::new(
                id(9),
                1_700_000_007_000,
                DownMessage::SnapshotV5(snapshot(3, 40)),
            ),
        ),
    ]
}
