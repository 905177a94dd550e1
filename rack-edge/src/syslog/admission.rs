//! Who may send syslog to the rack, and which machine a sender is: only
//! addresses inside a subnet whose `services.syslog` is on are accepted, and
//! each is attributed to the machine that holds the address (this rack's
//! DHCP lease, else the subnet's reservation). Built from the snapshot; no I/O.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use edgemetal_protocol::{ConfigSnapshot, Ipv4Cidr, MacAddress};

/// The relay's view of the applied snapshot.
#[derive(Debug, Clone, Default)]
pub struct Admission {
    served: Vec<Ipv4Cidr>,
    reserved: HashMap<Ipv4Addr, MacAddress>,
    /// Messages are cut at this many bytes.
    pub max_message_bytes: usize,
    /// The disk queue's bound.
    pub queue_bytes: u64,
}

/// Why a sender was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not inside any subnet with the syslog relay on (or not IPv4).
    NotServed,
}

impl Admission {
    /// The rules of `snapshot`; with none yet, everyone is refused.
    pub fn from_snapshot(snapshot: Option<&ConfigSnapshot>) -> Admission {
        let Some(snapshot) = snapshot else {
            let defaults = edgemetal_protocol::SyslogConfig::default();
            return Admission {
                max_message_bytes: defaults.max_message_bytes as usize,
                queue_bytes: defaults.queue_bytes,
                ..Admission::default()
            };
        };
        let on = snapshot.subnets.iter().filter(|s| s.services.syslog);
        Admission {
            served: on.clone().map(|s| s.cidr).collect(),
            reserved: on
                .flat_map(|s| s.reservations.iter().map(|r| (r.address, r.mac)))
                .collect(),
            max_message_bytes: (snapshot.gateway.syslog.max_message_bytes as usize).max(64),
            queue_bytes: snapshot.gateway.syslog.queue_bytes,
        }
    }

    /// Accepts `source` or says why not; `leased` is who this rack's DHCP
    /// server leased the address to, which wins over a reservation.
    pub fn admit(
        &self,
        source: IpAddr,
        leased: impl FnOnce(Ipv4Addr) -> Option<MacAddress>,
    ) -> Result<Option<MacAddress>, Refusal> {
        let address = match source {
            IpAddr::V4(address) => address,
            IpAddr::V6(v6) => v6.to_ipv4_mapped().ok_or(Refusal::NotServed)?,
        };
        if !self.served.iter().any(|cidr| cidr.contains(address)) {
            return Err(Refusal::NotServed);
        }
        Ok(leased(address).or_else(|| self.reserved.get(&address).copied()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgemetal_protocol::{GatewayServices, Generation, Reservation, SubnetConfig};

    fn subnet(cidr: &str, syslog: bool) -> SubnetConfig {
        let (network, len) = cidr.split_once('/').unwrap();
        SubnetConfig {
            id: cidr.into(),
            name: cidr.into(),
            cidr: Ipv4Cidr::new(network.parse().unwrap(), len.parse().unwrap()).unwrap(),
            gateway: None,
            dns_servers: vec![],
            domain: None,
            lease_time_secs: 600,
            ranges: vec![],
            reservations: vec![Reservation {
                mac: MacAddress([2, 0, 0, 0, 0, 9]),
                address: "10.1.0.9".parse().unwrap(),
                hostname: None,
            }],
            dhcp_racks: vec![],
            held_elsewhere: vec![],
            services: GatewayServices {
                syslog,
                ..GatewayServices::default()
            },
            boot: Default::default(),
            router_advertisements: Default::default(),
        }
    }

    fn snapshot() -> ConfigSnapshot {
        ConfigSnapshot {
            generation: Generation(3),
            subnets: vec![subnet("10.1.0.0/24", true), subnet("10.2.0.0/24", false)],
            boot_resources: vec![],
            dns: Default::default(),
            gateway: Default::default(),
            machine_boot: Default::default(),
        }
    }

    #[test]
    fn only_subnets_with_syslog_on_are_accepted() {
        let admission = Admission::from_snapshot(Some(&snapshot()));
        let none = |_| None;
        assert_eq!(
            admission.admit("10.1.0.50".parse().unwrap(), none),
            Ok(None)
        );
        assert_eq!(
            admission.admit("10.2.0.50".parse().unwrap(), none),
            Err(Refusal::NotServed)
        );
        assert_eq!(
            admission.admit("192.0.2.1".parse().unwrap(), none),
            Err(Refusal::NotServed)
        );
        assert_eq!(
            admission.admit("fe80::1".parse().unwrap(), none),
            Err(Refusal::NotServed)
        );
        let unconfigured = Admission::from_snapshot(None);
        assert!(unconfigured
            .admit("10.1.0.50".parse().unwrap(), none)
            .is_err());
    }

    #[test]
    fn a_lease_wins_over_a_reservation() {
        let admission = Admission::from_snapshot(Some(&snapshot()));
        let leased = MacAddress([2, 0, 0, 0, 0, 1]);
        assert_eq!(
            admission.admit("10.1.0.9".parse().unwrap(), |_| None),
            Ok(Some(MacAddress([2, 0, 0, 0, 0, 9])))
        );
        assert_eq!(
            admission.admit("10.1.0.9".parse().unwrap(), |_| Some(leased)),
            Ok(Some(leased))
        );
    }
}
