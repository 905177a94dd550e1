//! The configuration's layouts as protocol v2 to v4 encoded them, kept so
//! that a v5 region can still configure v4 racks and a v5 rack can still
//! read what a v4 region sends (postcard is positional: v5's new fields
//! change the layout of the types that hold them).
//!
//! Going down loses what v4 cannot say: the boot table, RA settings, boot
//! files, and forwarders on a port other than 53. Going up fills v5's
//! defaults, which are v4's behaviour.

use alloc::string::String;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::delta::Edits;
use crate::dns::{DnsRecord, Zone};
use crate::gateway::{GatewayConfig, GatewayServices};
use crate::message::{DhcpPeer, HeldAddress, IpRange, Reservation};
use crate::types::{Generation, Ipv4Cidr, MacAddress};
use crate::{BootResource, BootResourceKind};

/// [`crate::ConfigSnapshot`] in the v4 layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSnapshot {
    /// See [`crate::ConfigSnapshot::generation`].
    pub generation: Generation,
    /// See [`crate::ConfigSnapshot::subnets`].
    pub subnets: Vec<SubnetConfig>,
    /// See [`crate::ConfigSnapshot::boot_resources`]; no boot files.
    pub boot_resources: Vec<BootResource>,
    /// See [`crate::ConfigSnapshot::dns`].
    pub dns: DnsConfig,
    /// See [`crate::ConfigSnapshot::gateway`].
    pub gateway: GatewayConfig,
}

/// [`crate::SubnetConfig`] in the v4 layout: no boot table, no RA setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)] // the fields are crate::SubnetConfig's
pub struct SubnetConfig {
    pub id: String,
    pub name: String,
    pub cidr: Ipv4Cidr,
    pub gateway: Option<Ipv4Addr>,
    pub dns_servers: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub lease_time_secs: u32,
    pub ranges: Vec<IpRange>,
    pub reservations: Vec<Reservation>,
    pub dhcp_racks: Vec<DhcpPeer>,
    pub held_elsewhere: Vec<HeldAddress>,
    pub services: GatewayServices,
}

/// [`crate::DnsConfig`] in the v4 layout: forwarders are addresses (port 53).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    /// See [`crate::DnsConfig::zones`].
    pub zones: Vec<Zone>,
    /// Forwarders, all on port 53.
    pub forwarders: Vec<IpAddr>,
    /// See [`crate::DnsConfig::allowed_networks`].
    pub allowed_networks: Vec<Ipv4Cidr>,
}

/// [`crate::ConfigDelta`] in the v4 layout.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)] // the fields are crate::ConfigDelta's
pub struct ConfigDelta {
    pub base: Generation,
    pub generation: Generation,
    pub subnets: Edits<String, SubnetConfig>,
    pub reservations: Edits<(String, MacAddress), (String, Reservation)>,
    pub held_elsewhere: Edits<(String, Ipv4Addr), (String, HeldAddress)>,
    pub boot_resources: Option<Vec<BootResource>>,
    pub zones: Edits<String, Zone>,
    pub records: Edits<(String, DnsRecord), (String, DnsRecord)>,
    pub forwarders: Option<Vec<IpAddr>>,
    pub allowed_networks: Option<Vec<Ipv4Cidr>>,
    pub gateway: Option<GatewayConfig>,
}

/// The forwarders a v4 rack can use: those on port 53.
fn forwarders_down(forwarders: &[SocketAddr]) -> Vec<IpAddr> {
    forwarders
        .iter()
        .filter(|forwarder| forwarder.port() == 53)
        .map(SocketAddr::ip)
        .collect()
}

fn forwarders_up(forwarders: Vec<IpAddr>) -> Vec<SocketAddr> {
    forwarders
        .into_iter()
        .map(|address| SocketAddr::new(address, 53))
        .collect()
}

/// The boot resources a v4 rack can decode: no boot files.
fn resources_down(resources: &[BootResource]) -> Vec<BootResource> {
    resources
        .iter()
        .filter(|resource| resource.kind != BootResourceKind::File)
        .cloned()
        .collect()
}

impl From<&crate::SubnetConfig> for SubnetConfig {
    fn from(subnet: &crate::SubnetConfig) -> Self {
        SubnetConfig {
            id: subnet.id.clone(),
            name: subnet.name.clone(),
            cidr: subnet.cidr,
            gateway: subnet.gateway,
            dns_servers: subnet.dns_servers.clone(),
            domain: subnet.domain.clone(),
            lease_time_secs: subnet.lease_time_secs,
            ranges: subnet.ranges.clone(),
            reservations: subnet.reservations.clone(),
            dhcp_racks: subnet.dhcp_racks.clone(),
            held_elsewhere: subnet.held_elsewhere.clone(),
            services: subnet.services,
        }
    }
}

impl From<SubnetConfig> for crate::SubnetConfig {
    fn from(subnet: SubnetConfig) -> Self {
        crate::SubnetConfig {
            id: subnet.id,
            name: subnet.name,
            cidr: subnet.cidr,
            gateway: subnet.gateway,
            dns_servers: subnet.dns_servers,
            domain: subnet.domain,
            lease_time_secs: subnet.lease_time_secs,
            ranges: subnet.ranges,
            reservations: subnet.reservations,
            dhcp_racks: subnet.dhcp_racks,
            held_elsewhere: subnet.held_elsewhere,
            services: subnet.services,
            boot: Default::default(),
            router_advertisements: Default::default(),
        }
    }
}

impl From<&crate::ConfigSnapshot> for ConfigSnapshot {
    fn from(snapshot: &crate::ConfigSnapshot) -> Self {
        ConfigSnapshot {
            generation: snapshot.generation,
            subnets: snapshot.subnets.iter().map(SubnetConfig::from).collect(),
            boot_resources: resources_down(&snapshot.boot_resources),
            dns: DnsConfig {
                zones: snapshot.dns.zones.clone(),
                forwarders: forwarders_down(&snapshot.dns.forwarders),
                allowed_networks: snapshot.dns.allowed_networks.clone(),
            },
            gateway: snapshot.gateway.clone(),
        }
    }
}

impl From<ConfigSnapshot> for crate::ConfigSnapshot {
    fn from(snapshot: ConfigSnapshot) -> Self {
        crate::ConfigSnapshot {
            generation: snapshot.generation,
            subnets: snapshot.subnets.into_iter().map(Into::into).collect(),
            boot_resources: snapshot.boot_resources,
            dns: crate::DnsConfig {
                zones: snapshot.dns.zones,
                forwarders: forwarders_up(snapshot.dns.forwarders),
                allowed_networks: snapshot.dns.allowed_networks,
            },
            gateway: snapshot.gateway,
            machine_boot: Vec::new(),
        }
    }
}

impl From<&crate::ConfigDelta> for ConfigDelta {
    /// The delta without what v4 cannot say (machines' boot settings).
    fn from(delta: &crate::ConfigDelta) -> Self {
        ConfigDelta {
            base: delta.base,
            generation: delta.generation,
            subnets: Edits {
                upsert: delta.subnets.upsert.iter().map(Into::into).collect(),
                remove: delta.subnets.remove.clone(),
            },
            reservations: delta.reservations.clone(),
            held_elsewhere: delta.held_elsewhere.clone(),
            boot_resources: delta.boot_resources.as_deref().map(resources_down),
            zones: delta.zones.clone(),
            records: delta.records.clone(),
            forwarders: delta.forwarders.as_deref().map(forwarders_down),
            allowed_networks: delta.allowed_networks.clone(),
            gateway: delta.gateway.clone(),
        }
    }
}

impl From<ConfigDelta> for crate::ConfigDelta {
    fn from(delta: ConfigDelta) -> Self {
        crate::ConfigDelta {
            base: delta.base,
            generation: delta.generation,
            subnets: Edits {
                upsert: delta.subnets.upsert.into_iter().map(Into::into).collect(),
                remove: delta.subnets.remove,
            },
            reservations: delta.reservations,
            held_elsewhere: delta.held_elsewhere,
            boot_resources: delta.boot_resources,
            zones: delta.zones,
            records: delta.records,
            forwarders: delta.forwarders.map(forwarders_up),
            allowed_networks: delta.allowed_networks,
            gateway: delta.gateway,
            machine_boot: Edits::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot_settings::{BootSettings, IpxeScript, MachineBoot, RouterAdvertisements};

    fn snapshot() -> crate::ConfigSnapshot {
        crate::ConfigSnapshot {
            generation: Generation(7),
            subnets: alloc::vec![crate::SubnetConfig {
                id: "s1".into(),
                name: "site".into(),
                cidr: "10.0.0.0/24".parse().unwrap(),
                gateway: None,
                dns_servers: Vec::new(),
                domain: None,
                lease_time_secs: 600,
                ranges: Vec::new(),
                reservations: Vec::new(),
                dhcp_racks: Vec::new(),
                held_elsewhere: Vec::new(),
                services: GatewayServices::default(),
                boot: BootSettings {
                    ipxe: Some(IpxeScript::Url("http://x/y.ipxe".into())),
                    loaders: Vec::new(),
                },
                router_advertisements: RouterAdvertisements::Off,
            }],
            boot_resources: alloc::vec![BootResource {
                name: "menu.ipxe".into(),
                architecture: "amd64".into(),
                kind: BootResourceKind::File,
                sha256: [1; 32],
                size: 3,
            }],
            dns: crate::DnsConfig {
                zones: Vec::new(),
                forwarders: alloc::vec![
                    "192.0.2.1:53".parse().unwrap(),
                    "192.0.2.2:5353".parse().unwrap(),
                ],
                allowed_networks: Vec::new(),
            },
            gateway: GatewayConfig::default(),
            machine_boot: alloc::vec![MachineBoot {
                mac: MacAddress([2, 0, 0, 0, 0, 1]),
                settings: BootSettings::default(),
            }],
        }
    }

    #[test]
    fn going_down_keeps_what_v4_can_say_and_going_up_restores_v4s_behaviour() {
        let v5 = snapshot();
        let v4 = ConfigSnapshot::from(&v5);
        assert!(v4.boot_resources.is_empty(), "v4 racks cannot decode files");
        assert_eq!(v4.dns.forwarders, [IpAddr::from([192, 0, 2, 1])]);
        let bytes = postcard::to_allocvec(&v4).unwrap();
        let back: crate::ConfigSnapshot = postcard::from_bytes::<ConfigSnapshot>(&bytes)
            .unwrap()
            .into();
        assert_eq!(back.subnets[0].boot, BootSettings::default());
        assert_eq!(
            back.subnets[0].router_advertisements,
            RouterAdvertisements::NotARouter
        );
        assert_eq!(
            back.dns.forwarders,
            ["192.0.2.1:53".parse::<SocketAddr>().unwrap()]
        );
        assert!(back.machine_boot.is_empty());
    }

    #[test]
    fn a_v4_delta_carries_the_subnets_without_their_boot_table() {
        let new = snapshot();
        let mut old = new.clone();
        old.generation = Generation(6);
        old.subnets[0].name = "before".into();
        old.machine_boot.clear();
        let delta = crate::delta::diff(&old, &new);
        assert_eq!(delta.machine_boot.upsert.len(), 1);
        let down = ConfigDelta::from(&delta);
        assert_eq!(down.subnets.upsert[0].name, "site");
        let up = crate::ConfigDelta::from(down);
        assert!(up.machine_boot.is_empty());
        assert_eq!(up.subnets.upsert[0].boot, BootSettings::default());
    }
}
