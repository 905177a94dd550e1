use super::*;
use edgemetal_protocol::{DhcpPeer, DnsConfig, DnsRecord, Reservation, SubnetConfig, Zone};

fn rack(id: &str) -> RackId {
    RackId::new(id).unwrap()
}

fn subnet(id: &str, cidr: &str, domain: &str, racks: &[&str]) -> SubnetConfig {
    SubnetConfig {
        id: id.into(),
        name: id.into(),
        cidr: cidr.parse().unwrap(),
        gateway: None,
        dns_servers: Vec::new(),
        domain: Some(domain.into()),
        lease_time_secs: 600,
        ranges: Vec::new(),
        reservations: Vec::new(),
        dhcp_racks: racks
            .iter()
            .map(|r| DhcpPeer {
                rack_id: rack(r),
                online: true,
            })
            .collect(),
        held_elsewhere: Vec::new(),
        services: Default::default(),
        boot: Default::default(),
        router_advertisements: Default::default(),
    }
}

fn zone(name: &str, serial: u32, records: Vec<DnsRecord>) -> Zone {
    Zone {
        name: name.into(),
        serial,
        negative_ttl: 30,
        records,
    }
}

fn a(name: &str, address: &str) -> DnsRecord {
    DnsRecord {
        name: name.into(),
        ttl: 30,
        data: RecordData::A(address.parse().unwrap()),
    }
}

fn site(generation: u64) -> ConfigSnapshot {
    let serial = generation as u32;
    ConfigSnapshot {
        generation: Generation(generation),
        subnets: vec![
            subnet("a", "10.1.0.0/24", "a.example", &["rack-a"]),
            subnet("b", "10.2.0.0/24", "b.example", &["rack-b"]),
        ],
        boot_resources: Vec::new(),
        dns: DnsConfig {
            zones: vec![
                zone("a.example", serial, vec![a("m1.a.example", "10.1.0.5")]),
                zone("b.example", serial, vec![a("m2.b.example", "10.2.0.5")]),
                zone("0.1.10.in-addr.arpa", serial, Vec::new()),
                zone("0.2.10.in-addr.arpa", serial, Vec::new()),
                zone("operator.example", serial, Vec::new()),
                zone(
                    INTERNAL_DOMAIN,
                    serial,
                    vec![
                        a(&format!("a.{INTERNAL_DOMAIN}"), "10.1.0.1"),
                        a(&format!("b.{INTERNAL_DOMAIN}"), "10.2.0.1"),
                    ],
                ),
            ],
            forwarders: Vec::new(),
            allowed_networks: vec![
                "10.1.0.0/24".parse().unwrap(),
                "10.2.0.0/24".parse().unwrap(),
                "192.168.0.0/16".parse().unwrap(),
            ],
        },
        gateway: Default::default(),
        machine_boot: Default::default(),
    }
}

#[test]
fn a_rack_gets_only_its_subnets_zones_and_networks() {
    let cut = for_rack(&site(7), &rack("rack-a"));
    assert_eq!(cut.subnets.len(), 1);
    assert_eq!(cut.subnets[0].id, "a");
    // Zones come in canonical order (by name).
    let zones: Vec<&str> = cut.dns.zones.iter().map(|z| z.name.as_str()).collect();
    let mut expected = [
        "a.example",
        "0.1.10.in-addr.arpa",
        "operator.example",
        INTERNAL_DOMAIN,
    ];
    expected.sort();
    assert_eq!(zones, expected);
    let internal = cut
        .dns
        .zones
        .iter()
        .find(|z| z.name == INTERNAL_DOMAIN)
        .unwrap();
    assert_eq!(
        internal.records.len(),
        1,
        "only its own site's internal names"
    );
    assert_eq!(
        cut.dns.allowed_networks,
        [
            "10.1.0.0/24".parse().unwrap(),
            "192.168.0.0/16".parse().unwrap()
        ]
    );
}

#[test]
fn the_digest_ignores_numbering_and_changes_on_other_sites() {
    let rack_a = rack("rack-a");
    let before = content_digest(&for_rack(&site(7), &rack_a));
    assert_eq!(before, content_digest(&for_rack(&site(8), &rack_a)));
    // A reservation on the other rack's subnet, and that site's DNS name.
    let mut elsewhere = site(9);
    elsewhere.subnets[1].reservations.push(Reservation {
        mac: edgemetal_protocol::MacAddress([2, 0, 0, 0, 0, 9]),
        address: "10.2.0.9".parse().unwrap(),
        hostname: None,
    });
    elsewhere.dns.zones[1]
        .records
        .push(a("m9.b.example", "10.2.0.9"));
    assert_eq!(before, content_digest(&for_rack(&elsewhere, &rack_a)));
    assert_ne!(
        content_digest(&for_rack(&site(9), &rack("rack-b"))),
        content_digest(&for_rack(&elsewhere, &rack("rack-b")))
    );
    // Its own site changing does change it.
    let mut own = site(10);
    own.dns.zones[0].records.push(a("m3.a.example", "10.1.0.3"));
    assert_ne!(before, content_digest(&for_rack(&own, &rack_a)));
}

#[test]
fn numbering_sets_the_generation_and_every_zone_serial() {
    let numbered = numbered(site(1), 42);
    assert_eq!(numbered.generation, Generation(42));
    assert!(numbered.dns.zones.iter().all(|z| z.serial == 42));
}
