//! The configuration snapshot racks serve from: the region-wide one
//! ([`build`], from the site's data), from which each rack's own is cut
//! ([`per_rack`]).

pub mod per_rack;

use std::collections::HashSet;

use edgemetal_protocol::{
    dhcp_peers, ConfigSnapshot, DhcpPeer, GatewayConfig, GatewayServices, Generation, HeldAddress,
    IpRange, MachineBoot, RackId, Reservation, SubnetConfig,
};

use crate::dns::DnsSettings;
use crate::site::SiteData;

/// The region-wide snapshot: every subnet, with the racks that serve DHCP
/// on it (see [`edgemetal_protocol::dhcp_peers`]); [`per_rack::for_rack`]
/// cuts each rack's part out of it.
pub fn build(site: &SiteData, dns: &DnsSettings, gateway: &GatewayConfig) -> ConfigSnapshot {
    let dns = crate::dns::zones::build(dns, site);
    let online: HashSet<&str> = site
        .racks
        .iter()
        .filter(|rack| rack.status == "online")
        .map(|rack| rack.id.as_str())
        .collect();
    let now = site.now_ms;

    let mut configs = Vec::with_capacity(site.subnets.len());
    for subnet in site.subnets.iter().cloned() {
        let mut racks = if subnet.spec.dhcp_racks.is_empty() {
            site.enrolled.clone()
        } else {
            subnet.spec.dhcp_racks.clone()
        };
        racks.sort();
        let mut config = SubnetConfig {
            id: subnet.id.clone(),
            name: subnet.spec.name,
            cidr: subnet.spec.cidr,
            gateway: subnet.spec.gateway,
            dns_servers: subnet.spec.dns_servers,
            domain: subnet.spec.domain,
            lease_time_secs: subnet.spec.lease_time_secs,
            ranges: subnet
                .ranges
                .into_iter()
                .map(|range| IpRange {
                    start: range.spec.start,
                    end: range.spec.end,
                    purpose: range.spec.purpose.into(),
                })
                .collect(),
            reservations: site
                .reservations
                .iter()
                .filter(|r| r.subnet_id == subnet.id)
                .map(|r| Reservation {
                    mac: r.spec.mac,
                    address: r.spec.address,
                    hostname: r.spec.hostname.clone(),
                })
                .collect(),
            dhcp_racks: racks
                .into_iter()
                .map(|rack_id| DhcpPeer {
                    online: online.contains(rack_id.as_str()),
                    rack_id,
                })
                .collect(),
            held_elsewhere: Vec::new(),
            services: GatewayServices {
                syslog: subnet.spec.services.syslog,
                proxy: subnet.spec.services.proxy,
                ntp: subnet.spec.services.ntp,
            },
            boot: subnet.spec.boot.to_protocol(),
            router_advertisements: subnet.spec.router_advertisements.into(),
        };
        // Bindings a rack holds outside its own slice (takeovers, or slices
        // moved by a change of racks): the slice's owner must not reuse them.
        config.held_elsewhere = site
            .leases
            .iter()
            .filter(|lease| lease.subnet_id == config.id)
            .filter(|lease| lease.state == "bound" && lease.expires_ms > now)
            .filter_map(|lease| {
                let address = lease.address.parse().ok()?;
                let owner = dhcp_peers::slice_owner(&config, address)?;
                (config.dhcp_racks[owner].rack_id.as_str() != lease.rack_id).then(|| {
                    Some(HeldAddress {
                        address,
                        rack_id: RackId::new(&lease.rack_id).ok()?,
                    })
                })?
            })
            .collect();
        configs.push(config);
    }
    ConfigSnapshot {
        boot_resources: site.boot_resources.clone(),
        dns,
        generation: Generation(site.generation),
        subnets: configs,
        gateway: gateway.clone(),
        machine_boot: site
            .machine_boot
            .iter()
            .filter(|(_, settings)| !settings.is_empty())
            .map(|(mac, settings)| MachineBoot {
                mac: *mac,
                settings: settings.to_protocol(),
            })
            .collect(),
    }
}
