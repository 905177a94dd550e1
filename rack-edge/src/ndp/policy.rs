//! Where the responder stays silent: on a link whose subnet the operator
//! set to `router_advertisements = off` (a real IPv6 router serves it).
//! Links no subnet names, and a rack without a snapshot yet, are answered:
//! that is what spares first boots the IPv6 wait.

use std::net::IpAddr;

use edgemetal_protocol::{ConfigSnapshot, RouterAdvertisements};
use tokio::sync::watch;

/// The operator's Router Advertisement setting per link, from the snapshot.
#[derive(Clone, Default)]
pub struct LinkPolicy {
    snapshots: Option<watch::Receiver<Option<ConfigSnapshot>>>,
}

impl LinkPolicy {
    /// Answers on every link.
    pub fn always() -> Self {
        LinkPolicy::default()
    }

    /// Follows the subnets of the rack's snapshot.
    pub fn following(snapshots: watch::Receiver<Option<ConfigSnapshot>>) -> Self {
        LinkPolicy {
            snapshots: Some(snapshots),
        }
    }

    /// Whether `interface`'s link belongs to a subnet with advertisements off.
    pub fn silent_on(&self, interface: &str) -> bool {
        let Some(snapshots) = &self.snapshots else {
            return false;
        };
        let addresses: Vec<_> = crate::system::interfaces()
            .into_iter()
            .filter(|i| i.name == interface)
            .flat_map(|i| i.addresses)
            .filter_map(|a| match a.address {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            })
            .collect();
        let snapshot = snapshots.borrow();
        silent(snapshot.as_ref(), &addresses)
    }
}

/// The rule: silent when a subnet containing one of the link's addresses
/// has advertisements off.
fn silent(snapshot: Option<&ConfigSnapshot>, addresses: &[std::net::Ipv4Addr]) -> bool {
    snapshot.is_some_and(|snapshot| {
        snapshot.subnets.iter().any(|subnet| {
            subnet.router_advertisements == RouterAdvertisements::Off
                && addresses.iter().any(|a| subnet.cidr.contains(*a))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgemetal_protocol::Generation;

    fn snapshot(mode: RouterAdvertisements) -> ConfigSnapshot {
        let mut subnet: edgemetal_protocol::SubnetConfig = edgemetal_protocol::v4::SubnetConfig {
            id: "s".into(),
            name: "s".into(),
            cidr: "10.0.0.0/24".parse().unwrap(),
            gateway: None,
            dns_servers: Vec::new(),
            domain: None,
            lease_time_secs: 600,
            ranges: Vec::new(),
            reservations: Vec::new(),
            dhcp_racks: Vec::new(),
            held_elsewhere: Vec::new(),
            services: Default::default(),
        }
        .into();
        subnet.router_advertisements = mode;
        ConfigSnapshot {
            generation: Generation(1),
            subnets: vec![subnet],
            boot_resources: Vec::new(),
            dns: Default::default(),
            gateway: Default::default(),
            machine_boot: Vec::new(),
        }
    }

    #[test]
    fn only_a_link_inside_a_subnet_set_to_off_is_silent() {
        let on_link = ["10.0.0.2".parse().unwrap()];
        let elsewhere = ["10.9.0.2".parse().unwrap()];
        let off = snapshot(RouterAdvertisements::Off);
        assert!(silent(Some(&off), &on_link));
        assert!(!silent(Some(&off), &elsewhere));
        assert!(!silent(Some(&off), &[]));
        let default = snapshot(RouterAdvertisements::NotARouter);
        assert!(!silent(Some(&default), &on_link));
        assert!(!silent(None, &on_link), "no snapshot yet: answer");
    }
}
