//! The DNS zones racks serve, built from the region's data:
//!
//! - operator domains and their records;
//! - machine names: `hostname.<subnet domain>` for each machine with a
//!   reservation or a bound lease on a subnet that has a domain, and the
//!   matching PTR records in reverse zones (one per /24 of the subnet);
//! - the internal rack domain [`INTERNAL_DOMAIN`]: `<subnet>.edgemetal-internal`
//!   resolves to every online rack's address on that subnet (machines reach
//!   their rack's services through it), and `<rack-id>.edgemetal-internal`
//!   to each rack.
//!
//! Zone serials are the configuration generation (truncated), so they grow
//! with every change that reaches racks.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use edgemetal_protocol::{DnsConfig, DnsRecord, InterfaceInfo, Ipv4Cidr, RecordData, Zone};
use serde::Deserialize;

use super::records::DomainRecord;
use crate::site::SiteData;

/// The zone of rack service names.
pub const INTERNAL_DOMAIN: &str = edgemetal_protocol::gateway::INTERNAL_DOMAIN;
/// TTL of derived records: short, since leases and presence move them.
const DERIVED_TTL: u32 = 30;

/// DNS settings from the region's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsSettings {
    /// Upstream resolvers racks forward to, in order, each with its port.
    pub forwarders: Vec<super::Forwarder>,
    /// Client networks allowed recursion besides the managed subnets.
    /// Loopback (127.0.0.0/8, which also stands for ::1) is in the default,
    /// for programs on the rack host itself; leave it out to refuse them.
    pub allowed_networks: Vec<Ipv4Cidr>,
}

/// 127.0.0.0/8: the rack host's own programs.
pub fn loopback() -> Ipv4Cidr {
    Ipv4Cidr::new(core::net::Ipv4Addr::new(127, 0, 0, 0), 8).expect("127.0.0.0/8 is a network")
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            forwarders: Vec::new(),
            allowed_networks: vec![loopback()],
        }
    }
}

/// A DNS label from a subnet or rack name (the racks compute the same).
fn label(name: &str) -> String {
    edgemetal_protocol::gateway::dns_label(name)
}

/// The /24 reverse zones covering `cidr` (at most 256 of them).
pub fn reverse_zones(cidr: &Ipv4Cidr) -> Vec<String> {
    let network = u32::from(cidr.network());
    let count = 1u32 << 24u8.saturating_sub(cidr.prefix_len()).min(8);
    (0..count)
        .map(|n| {
            let [a, b, c, _] = Ipv4Addr::from(network + (n << 8)).octets();
            format!("{c}.{b}.{a}.in-addr.arpa")
        })
        .collect()
}

fn reverse_name(address: Ipv4Addr) -> String {
    let [a, b, c, d] = address.octets();
    format!("{d}.{c}.{b}.{a}.in-addr.arpa")
}

/// Zones under construction, by apex.
#[derive(Default)]
struct Zones(BTreeMap<String, Zone>);

impl Zones {
    fn zone(&mut self, apex: &str, serial: u32, negative_ttl: u32) -> &mut Zone {
        self.0.entry(apex.to_string()).or_insert_with(|| Zone {
            name: apex.to_string(),
            serial,
            negative_ttl,
            records: Vec::new(),
        })
    }

    fn add(&mut self, apex: &str, serial: u32, record: DnsRecord) {
        let zone = self.zone(apex, serial, DERIVED_TTL);
        if !zone.records.contains(&record) {
            zone.records.push(record);
        }
    }
}

/// The DNS part of the snapshot.
pub fn build(settings: &DnsSettings, site: &SiteData) -> DnsConfig {
    let serial = site.generation as u32;
    let mut zones = Zones::default();

    let domains: &[DomainRecord] = &site.domains;
    for domain in domains {
        zones.zone(&domain.name, serial, domain.ttl.min(3600));
    }
    for record in &site.dns_records {
        let Some(domain) = domains.iter().find(|d| d.id == record.domain_id) else {
            continue;
        };
        let data = record.data.clone();
        let name = if record.name == "@" {
            domain.name.clone()
        } else {
            format!("{}.{}", record.name, domain.name)
        };
        zones.add(
            &domain.name,
            serial,
            DnsRecord {
                name,
                ttl: record.ttl,
                data,
            },
        );
    }

    let subnets = &site.subnets;
    let machines = &site.machine_hostnames;
    let now = site.now_ms;
    let mut addresses: Vec<(String, String, Ipv4Addr)> = Vec::new(); // (subnet id, hostname, address)
    for reservation in &site.reservations {
        let hostname = reservation
            .spec
            .hostname
            .clone()
            .or_else(|| machines.get(&reservation.spec.mac.to_string()).cloned());
        if let Some(hostname) = hostname {
            addresses.push((
                reservation.subnet_id.clone(),
                hostname,
                reservation.spec.address,
            ));
        }
    }
    for lease in &site.leases {
        if lease.state != "bound" || lease.expires_ms <= now {
            continue;
        }
        if let (Some(hostname), Ok(address)) = (machines.get(&lease.mac), lease.address.parse()) {
            addresses.push((lease.subnet_id.clone(), hostname.clone(), address));
        }
    }
    for subnet in subnets {
        let reverse = reverse_zones(&subnet.spec.cidr);
        for apex in &reverse {
            zones.zone(apex, serial, DERIVED_TTL);
        }
        let Some(domain) = &subnet.spec.domain else {
            continue;
        };
        let domain = domain.to_ascii_lowercase();
        for (_, hostname, address) in addresses.iter().filter(|(id, ..)| *id == subnet.id) {
            let name = format!("{hostname}.{domain}");
            zones.add(
                &domain,
                serial,
                DnsRecord {
                    name: name.clone(),
                    ttl: DERIVED_TTL,
                    data: RecordData::A(*address),
                },
            );
            let [a, b, c, _] = address.octets();
            let apex = format!("{c}.{b}.{a}.in-addr.arpa");
            zones.add(
                &apex,
                serial,
                DnsRecord {
                    name: reverse_name(*address),
                    ttl: DERIVED_TTL,
                    data: RecordData::Ptr(name),
                },
            );
        }
    }

    // Rack service names: online racks only, so clients are never sent to a dead rack.
    zones.zone(INTERNAL_DOMAIN, serial, DERIVED_TTL);
    for rack in site.racks.iter().filter(|r| r.status == "online") {
        let interfaces: Vec<InterfaceInfo> =
            serde_json::from_value(rack.interfaces.clone()).unwrap_or_default();
        let rack_addresses: Vec<Ipv4Addr> = interfaces
            .iter()
            .flat_map(|i| &i.addresses)
            .filter_map(|a| match a.address {
                IpAddr::V4(v4) if !v4.is_loopback() => Some(v4),
                _ => None,
            })
            .collect();
        for subnet in subnets {
            for address in rack_addresses
                .iter()
                .filter(|a| subnet.spec.cidr.contains(**a))
            {
                let record = |name: String| DnsRecord {
                    name,
                    ttl: DERIVED_TTL,
                    data: RecordData::A(*address),
                };
                zones.add(
                    INTERNAL_DOMAIN,
                    serial,
                    record(format!("{}.{INTERNAL_DOMAIN}", label(&subnet.spec.name))),
                );
                zones.add(
                    INTERNAL_DOMAIN,
                    serial,
                    record(format!("{}.{INTERNAL_DOMAIN}", label(&rack.id))),
                );
            }
        }
    }

    let mut allowed_networks: Vec<Ipv4Cidr> = subnets.iter().map(|s| s.spec.cidr).collect();
    allowed_networks.extend(settings.allowed_networks.iter().copied());
    DnsConfig {
        zones: zones.0.into_values().collect(),
        forwarders: settings.forwarders.iter().map(|f| f.0).collect(),
        allowed_networks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_zones_cover_the_subnet_by_24s() {
        let cidr: Ipv4Cidr = "10.20.4.0/22".parse().unwrap();
        assert_eq!(
            reverse_zones(&cidr),
            [
                "4.20.10.in-addr.arpa",
                "5.20.10.in-addr.arpa",
                "6.20.10.in-addr.arpa",
                "7.20.10.in-addr.arpa"
            ]
        );
        let small: Ipv4Cidr = "10.20.4.128/25".parse().unwrap();
        assert_eq!(reverse_zones(&small), ["4.20.10.in-addr.arpa"]);
        assert_eq!(
            reverse_name(Ipv4Addr::new(10, 20, 4, 7)),
            "7.4.20.10.in-addr.arpa"
        );
        assert_eq!(label("Site_A.lab"), "site-a-lab");
    }

    fn site() -> SiteData {
        let subnet: crate::ipam::SubnetSpec = serde_json::from_value(serde_json::json!({
            "name": "lab", "cidr": "10.20.0.0/24", "domain": "Lab.Example"
        }))
        .unwrap();
        let lease = |mac: &str, address: &str, state: &str, expires_ms| crate::site::LeaseRecord {
            subnet_id: "s1".into(),
            address: address.into(),
            mac: mac.into(),
            state: state.into(),
            expires_ms,
            rack_id: "rack-a".into(),
            updated_ms: 0,
        };
        SiteData {
            generation: 7,
            now_ms: 1_000,
            subnets: vec![crate::ipam::SubnetRecord {
                id: "s1".into(),
                spec: subnet,
                ranges: Vec::new(),
                created_ms: 0,
                updated_ms: 0,
            }],
            leases: vec![
                lease("52:54:00:00:00:01", "10.20.0.50", "bound", 2_000),
                // Over, or not bound: no name.
                lease("52:54:00:00:00:02", "10.20.0.51", "bound", 500),
                lease("52:54:00:00:00:03", "10.20.0.52", "released", 2_000),
            ],
            machine_hostnames: [
                ("52:54:00:00:00:01", "node-1"),
                ("52:54:00:00:00:02", "node-2"),
                ("52:54:00:00:00:03", "node-3"),
            ]
            .into_iter()
            .map(|(mac, name)| (mac.to_string(), name.to_string()))
            .collect(),
            domains: vec![DomainRecord {
                id: "d1".into(),
                name: "ops.example".into(),
                ttl: 300,
                created_ms: 0,
            }],
            dns_records: vec![crate::site::OperatorRecord {
                domain_id: "d1".into(),
                name: "www".into(),
                ttl: 60,
                data: RecordData::A(Ipv4Addr::new(192, 0, 2, 1)),
            }],
            ..SiteData::default()
        }
    }

    #[test]
    fn zones_hold_operator_records_and_current_machine_names_with_ptrs() {
        let dns = build(&DnsSettings::default(), &site());
        let zone = |apex: &str| dns.zones.iter().find(|z| z.name == apex).unwrap();
        assert!(dns.zones.iter().all(|z| z.serial == 7));
        let www = &zone("ops.example").records;
        assert_eq!(www.len(), 1);
        assert_eq!(www[0].name, "www.ops.example");
        let lab = &zone("lab.example").records;
        assert_eq!(
            lab.len(),
            1,
            "only the current bound lease has a name: {lab:?}"
        );
        assert_eq!(lab[0].name, "node-1.lab.example");
        assert_eq!(lab[0].data, RecordData::A(Ipv4Addr::new(10, 20, 0, 50)));
        let reverse = &zone("0.20.10.in-addr.arpa").records;
        assert_eq!(reverse[0].name, "50.0.20.10.in-addr.arpa");
        assert_eq!(
            reverse[0].data,
            RecordData::Ptr("node-1.lab.example".into())
        );
        assert!(zone(INTERNAL_DOMAIN).records.is_empty(), "no rack online");
        assert_eq!(
            dns.allowed_networks,
            ["10.20.0.0/24".parse().unwrap(), loopback()],
            "the subnets, and loopback by default"
        );
    }
}
