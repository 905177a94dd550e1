//! Configuration deltas: a delta from the snapshot a rack holds turns it into
//! exactly the region's new one; one that does not fit is refused.

use core::net::Ipv4Addr;

use edgemetal_protocol::delta::{apply, canonical, diff};
use edgemetal_protocol::*;
use proptest::prelude::*;

/// Snapshots drawn from a small universe, so that two of them share most
/// subnets, reservations, zones and records and differ in a few.
/// One subnet slot: its lease time, reservations (mac index → host index), held addresses.
type SubnetShape = (u32, Vec<(u8, Option<u8>)>, Vec<u8>);
/// One zone slot: its serial and records (name index → address).
type ZoneShape = (u32, Vec<(u8, u8)>);

#[derive(Debug, Clone)]
struct Shape {
    generation: u64,
    /// Per subnet slot: present, its lease time, its reservations (mac index → host), held.
    subnets: Vec<Option<SubnetShape>>,
    /// Per zone slot: present, its serial, its records (index → address).
    zones: Vec<Option<ZoneShape>>,
    forwarders: Vec<u8>,
    boot_size: u64,
}

fn shape() -> impl Strategy<Value = Shape> {
    let subnet = proptest::option::of((
        prop_oneof![Just(600u32), Just(3600)],
        proptest::collection::btree_map(0u8..8, proptest::option::of(0u8..3), 0..8),
        proptest::collection::btree_set(0u8..4, 0..3),
    ));
    let zone = proptest::option::of((0u32..3, proptest::collection::vec((0u8..6, 0u8..3), 0..8)));
    (
        1u64..1000,
        proptest::collection::vec(subnet, 3),
        proptest::collection::vec(zone, 3),
        proptest::collection::vec(0u8..3, 0..3),
        0u64..2,
    )
        .prop_map(
            |(generation, subnets, zones, forwarders, boot_size)| Shape {
                generation,
                subnets: subnets
                    .into_iter()
                    .map(|subnet| {
                        subnet.map(|(lease, reservations, held)| {
                            (
                                lease,
                                reservations.into_iter().collect(),
                                held.into_iter().collect(),
                            )
                        })
                    })
                    .collect(),
                zones,
                forwarders,
                boot_size,
            },
        )
}

fn snapshot(shape: &Shape) -> ConfigSnapshot {
    let subnets = shape
        .subnets
        .iter()
        .enumerate()
        .filter_map(|(slot, subnet)| {
            let (lease_time_secs, reservations, held) = subnet.as_ref()?;
            Some(SubnetConfig {
                id: format!("subnet-{slot}"),
                name: format!("net {slot}"),
                cidr: Ipv4Cidr::new(Ipv4Addr::new(10, slot as u8, 0, 0), 24).unwrap(),
                gateway: Some(Ipv4Addr::new(10, slot as u8, 0, 1)),
                dns_servers: vec![],
                domain: Some(format!("site{slot}.example")),
                lease_time_secs: *lease_time_secs,
                ranges: vec![],
                reservations: reservations
                    .iter()
                    .map(|(mac, host)| Reservation {
                        mac: MacAddress([0x52, 0x54, 0, 0, slot as u8, *mac]),
                        address: Ipv4Addr::new(10, slot as u8, 0, 10 + mac),
                        hostname: host.map(|h| format!("host-{h}")),
                    })
                    .collect(),
                dhcp_racks: vec![],
                held_elsewhere: held
                    .iter()
                    .map(|a| HeldAddress {
                        address: Ipv4Addr::new(10, slot as u8, 0, 100 + a),
                        rack_id: RackId::new("other").unwrap(),
                    })
                    .collect(),
                services: GatewayServices::default(),
                boot: Default::default(),
                router_advertisements: Default::default(),
            })
        })
        .collect();
    let zones = shape
        .zones
        .iter()
        .enumerate()
        .filter_map(|(slot, zone)| {
            let (serial, records) = zone.as_ref()?;
            Some(Zone {
                name: format!("zone{slot}.example"),
                serial: *serial,
                negative_ttl: 60,
                records: records
                    .iter()
                    .map(|(name, address)| DnsRecord {
                        name: format!("m{name}.zone{slot}.example"),
                        ttl: 30,
                        data: RecordData::A(Ipv4Addr::new(10, 9, 0, *address)),
                    })
                    .collect(),
            })
        })
        .collect();
    ConfigSnapshot {
        generation: Generation(shape.generation),
        subnets,
        boot_resources: (0..shape.boot_size)
            .map(|_| BootResource {
                name: "ephemeral".into(),
                architecture: "amd64".into(),
                kind: BootResourceKind::Kernel,
                sha256: [7; 32],
                size: 42,
            })
            .collect(),
        dns: DnsConfig {
            zones,
            forwarders: shape
                .forwarders
                .iter()
                .map(|f| std::net::SocketAddr::from((Ipv4Addr::new(192, 0, 2, *f), 53)))
                .collect(),
            allowed_networks: vec![],
        },
        gateway: GatewayConfig::default(),
        // Machines' boot settings come and go with the same shape.
        machine_boot: shape
            .forwarders
            .iter()
            .map(|f| edgemetal_protocol::MachineBoot {
                mac: MacAddress([2, 0, 0, 0, 0, *f % 4]),
                settings: edgemetal_protocol::BootSettings {
                    ipxe: (*f % 2 == 0)
                        .then(|| edgemetal_protocol::IpxeScript::Url(format!("http://boot/{f}"))),
                    loaders: vec![],
                },
            })
            .collect(),
    }
}

proptest! {
    #[test]
    fn a_delta_turns_the_held_snapshot_into_the_new_one(old in shape(), new in shape()) {
        let old = canonical(snapshot(&old));
        let new = canonical(snapshot(&new));
        let delta = diff(&old, &new);
        prop_assert_eq!(apply(&old, &delta), Ok(new.clone()));
        // And it survives the wire.
        let bytes = postcard::to_allocvec(&delta).unwrap();
        let decoded: ConfigDelta = postcard::from_bytes(&bytes).unwrap();
        prop_assert_eq!(decoded, delta);
    }

    #[test]
    fn a_delta_for_another_base_is_refused(old in shape(), new in shape()) {
        let old = canonical(snapshot(&old));
        let mut new = canonical(snapshot(&new));
        new.generation = Generation(old.generation.0 + 1);
        let mut other = old.clone();
        other.generation = Generation(old.generation.0 + 5);
        let refused = apply(&other, &diff(&old, &new));
        prop_assert!(matches!(refused, Err(DeltaError::BaseMismatch { .. })), "{:?}", refused);
    }

    #[test]
    fn canonical_order_is_idempotent_and_ignores_input_order(shape in shape()) {
        let once = canonical(snapshot(&shape));
        prop_assert_eq!(canonical(once.clone()), once.clone());
        let mut reversed = snapshot(&shape);
        reversed.subnets.reverse();
        for subnet in &mut reversed.subnets {
            subnet.reservations.reverse();
        }
        for zone in &mut reversed.dns.zones {
            zone.records.reverse();
        }
        prop_assert_eq!(canonical(reversed), once);
    }
}

fn base() -> Shape {
    Shape {
        generation: 10,
        subnets: vec![
            Some((600, (0..8).map(|m| (m, Some(1))).collect(), vec![])),
            None,
            None,
        ],
        zones: vec![Some((10, (0..6).map(|r| (r, 1)).collect())), None, None],
        forwarders: vec![1],
        boot_size: 1,
    }
}

#[test]
fn one_new_record_and_serial_travel_without_the_rest() {
    let before = base();
    let mut after = base();
    after.generation = 11;
    let zone = after.zones[0].as_mut().unwrap();
    zone.0 = 11;
    zone.1.retain(|(name, _)| *name != 5);
    zone.1.push((5, 2));
    let (old, new) = (canonical(snapshot(&before)), canonical(snapshot(&after)));
    let delta = diff(&old, &new);
    assert!(delta.subnets.is_empty() && delta.reservations.is_empty());
    assert_eq!(delta.zones.upsert.len(), 1, "the zone's serial moved");
    assert!(
        delta.zones.upsert[0].records.is_empty(),
        "headers carry no records"
    );
    assert_eq!(delta.records.upsert.len(), 1);
    assert_eq!(delta.records.remove.len(), 1);
    assert_eq!(delta.boot_resources, None);
    assert_eq!(delta.forwarders, None);
    let full = postcard::to_allocvec(&new).unwrap().len();
    let sent = postcard::to_allocvec(&delta).unwrap().len();
    assert!(sent * 3 < full, "delta {sent} B vs snapshot {full} B");
    assert_eq!(apply(&old, &delta), Ok(new));
}

#[test]
fn edits_of_what_the_rack_lacks_are_refused() {
    let old = canonical(snapshot(&base()));
    let mut removes_missing = ConfigDelta {
        base: old.generation,
        generation: Generation(11),
        ..ConfigDelta::default()
    };
    removes_missing
        .reservations
        .remove
        .push(("subnet-0".into(), MacAddress([1, 2, 3, 4, 5, 6])));
    assert!(matches!(
        apply(&old, &removes_missing),
        Err(DeltaError::Diverged(_))
    ));
    let mut unknown_subnet = ConfigDelta {
        base: old.generation,
        generation: Generation(11),
        ..ConfigDelta::default()
    };
    unknown_subnet
        .reservations
        .upsert
        .push(("subnet-9".into(), old.subnets[0].reservations[0].clone()));
    assert!(matches!(
        apply(&old, &unknown_subnet),
        Err(DeltaError::Diverged(_))
    ));
}

#[test]
fn a_changed_subnet_keeps_its_reservations() {
    let before = base();
    let mut after = base();
    after.generation = 11;
    after.subnets[0].as_mut().unwrap().0 = 3600;
    let (old, new) = (canonical(snapshot(&before)), canonical(snapshot(&after)));
    let delta = diff(&old, &new);
    assert_eq!(delta.subnets.upsert.len(), 1);
    assert!(delta.subnets.upsert[0].reservations.is_empty());
    assert!(delta.reservations.is_empty());
    let applied = apply(&old, &delta).unwrap();
    assert_eq!(applied.subnets[0].reservations.len(), 8);
    assert_eq!(applied, new);
}
