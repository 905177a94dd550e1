//! Which rack drives a BMC: an online rack with an interface on the BMC's
//! network, or one that reports a routed BMC network containing it; the most
//! specific match wins, ties go to the lowest rack id (stable, so one BMC is
//! always driven by one rack while nothing changes).

use std::net::{IpAddr, Ipv4Addr};

use edgemetal_protocol::{InterfaceInfo, Ipv4Cidr};

use crate::store::RackRecord;

/// The networks (with prefix lengths) through which `rack` reaches BMCs.
fn reachable(rack: &RackRecord) -> Vec<Ipv4Cidr> {
    let interfaces: Vec<InterfaceInfo> =
        serde_json::from_value(rack.interfaces.clone()).unwrap_or_default();
    let routed: Vec<Ipv4Cidr> =
        serde_json::from_value(rack.bmc_networks.clone()).unwrap_or_default();
    interfaces
        .iter()
        .flat_map(|interface| &interface.addresses)
        .filter_map(|address| match address.address {
            IpAddr::V4(v4) => Ipv4Cidr::containing(v4, address.prefix_len).ok(),
            IpAddr::V6(_) => None,
        })
        .chain(routed)
        .collect()
}

/// The rack to drive the BMC at `bmc`, among `racks`; `None` when no online rack reaches it.
pub fn choose(racks: &[RackRecord], bmc: Ipv4Addr) -> Option<&RackRecord> {
    racks
        .iter()
        .filter(|rack| rack.status == "online")
        .filter_map(|rack| {
            reachable(rack)
                .into_iter()
                .filter(|network| network.contains(bmc))
                .map(|network| network.prefix_len())
                .max()
                .map(|prefix| (prefix, rack))
        })
        .max_by(|(a, rack_a), (b, rack_b)| a.cmp(b).then_with(|| rack_b.id.cmp(&rack_a.id)))
        .map(|(_, rack)| rack)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rack(id: &str, online: bool, address: &str, prefix: u8, routed: &[&str]) -> RackRecord {
        RackRecord {
            id: id.into(),
            hostname: id.into(),
            software_version: "0".into(),
            protocol_version: 1,
            status: if online { "online" } else { "offline" }.into(),
            first_seen_ms: 0,
            last_seen_ms: 0,
            applied_generation: None,
            config_generation: 1,
            in_sync: false,
            last_apply_error: None,
            interfaces: json!([{"name": "eth0", "mac": null,
                "addresses": [{"address": address, "prefix_len": prefix}]}]),
            services: json!([]),
            health: json!([]),
            bmc_networks: json!(routed),
        }
    }

    #[test]
    fn the_most_specific_online_rack_wins() {
        let bmc = Ipv4Addr::new(10, 5, 1, 9);
        let racks = [
            rack("wide", true, "10.5.0.2", 16, &[]),
            rack("narrow", true, "10.5.1.2", 24, &[]),
            rack("down", false, "10.5.1.3", 28, &[]),
        ];
        assert_eq!(choose(&racks, bmc).unwrap().id, "narrow");
        assert!(choose(&racks, Ipv4Addr::new(192, 168, 0, 1)).is_none());
    }

    #[test]
    fn routed_bmc_networks_count_and_ties_go_to_the_lowest_id() {
        let bmc = Ipv4Addr::new(172, 16, 4, 4);
        let racks = [
            rack("rack-b", true, "10.0.0.2", 24, &["172.16.4.0/24"]),
            rack(
                "rack-a",
                true,
                "10.0.0.3",
                24,
                &["172.16.0.0/16", "172.16.4.0/24"],
            ),
        ];
        assert_eq!(choose(&racks, bmc).unwrap().id, "rack-a");
    }
}
