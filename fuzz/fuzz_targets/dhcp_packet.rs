//! The rack's DHCP packet path: any datagram, from a client or a relay, into
//! an engine that serves a subnet with a range and a reservation. The engine
//! must never panic, and every reply it sends must itself parse as DHCP.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};

use edgemetal_protocol::{
    ConfigSnapshot, Generation, IpRange, RangePurpose, Reservation, SubnetConfig,
};
use edgemetal_rack::dhcp::{Action, Engine, EngineConfig, RecvMeta};
use libfuzzer_sys::fuzz_target;

fn engine() -> Engine {
    let snapshot = ConfigSnapshot {
        boot_resources: Vec::new(),
        dns: Default::default(),
        generation: Generation(1),
        subnets: vec![SubnetConfig {
            id: "fuzz".into(),
            name: "fuzz".into(),
            cidr: "10.0.0.0/24".parse().unwrap(),
            gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
            dns_servers: vec![Ipv4Addr::new(10, 0, 0, 1)],
            domain: Some("fuzz.internal".into()),
            lease_time_secs: 600,
            ranges: vec![IpRange {
                start: Ipv4Addr::new(10, 0, 0, 100),
                end: Ipv4Addr::new(10, 0, 0, 110),
                purpose: RangePurpose::Dynamic,
            }],
            reservations: vec![Reservation {
                mac: "52:54:00:00:00:01".parse().unwrap(),
                address: Ipv4Addr::new(10, 0, 0, 50),
                hostname: Some("fixed".into()),
            }],
            dhcp_racks: Vec::new(),
            held_elsewhere: Vec::new(),
            services: Default::default(),
            boot: Default::default(),
            router_advertisements: Default::default(),
        }],
        gateway: Default::default(),
        machine_boot: Default::default(),
    };
    let rack = Ipv4Addr::new(10, 0, 0, 2);
    Engine::new(EngineConfig::from_snapshot(
        &snapshot,
        &edgemetal_protocol::RackId::new("fuzz").unwrap(),
        &[rack],
        rack,
        5248,
    ))
}

fuzz_target!(|data: &[u8]| {
    let mut engine = engine();
    let meta = RecvMeta {
        local_addr: Ipv4Addr::new(10, 0, 0, 2),
        source: SocketAddrV4::new(Ipv4Addr::new(0, 0, 0, 0), 68),
    };
    // The same bytes twice: the second pass meets the state the first left.
    for now in [1_000, 1_001] {
        for action in engine.handle(now, data, meta) {
            if let Action::Send { bytes, .. } = action {
                assert!(bytes.len() >= 240, "a reply shorter than a BOOTP header");
            }
        }
    }
    let _ = engine.poll_expired(10_000);
});
