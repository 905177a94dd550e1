//! Builds the configuration snapshot racks serve from: the region-wide one
//! ([`build`]), from which each rack's own is cut ([`per_rack`]).

pub mod per_rack;

use std::collections::HashSet;

use edgemetal_protocol::{
    dhcp_peers, BootResource, ConfigSnapshot, DhcpPeer, GatewayConfig, GatewayServices, Generation,
    HeldAddress, IpRange, RackId, Reservation, SubnetConfig,
};

use crate::store::{now_ms, parse_kind, Store, StoreError};

/// The region-wide snapshot: every subnet, with the racks that serve DHCP
/// on it (see [`edgemetal_protocol::dhcp_peers`]); [`per_rack::for_rack`]
/// cuts each rack's part out of it.
///
/// The generation is read *before* the data: if a change lands in between,
/// the snapshot carries newer data under an older generation (and the newer
/// generation follows), never stale data labelled as current.
pub async fn build(
    store: &Store,
    dns: &crate::zones::DnsSettings,
    gateway: &GatewayConfig,
) -> Result<ConfigSnapshot, StoreError> {
    let generation = store.generation().await?;
    // Read once: DHCP and DNS both derive from these.
    let site = crate::zones::SiteData {
        subnets: store.list_subnets().await?,
        reservations: store.list_reservations(None).await?,
        leases: store.list_leases(None, None).await?,
        racks: store.list_racks().await?,
    };
    let dns = crate::zones::build(store, generation, dns, &site).await?;
    let online: HashSet<&str> = site
        .racks
        .iter()
        .filter(|rack| rack.status == "online")
        .map(|rack| rack.id.as_str())
        .collect();
    let mut enrolled: Vec<RackId> = store
        .list_identities()
        .await?
        .into_iter()
        .filter(|identity| identity.revoked_ms.is_none())
        .filter_map(|identity| RackId::new(&identity.rack_id).ok())
        .collect();
    enrolled.sort();
    let now = now_ms();
    let boot_resources = store
        .list_boot_resources()
        .await?
        .into_iter()
        .filter_map(|record| {
            let mut sha256 = [0u8; 32];
            hex::decode_to_slice(&record.sha256, &mut sha256).ok()?;
            Some(BootResource {
                kind: parse_kind(&record.kind)?,
                name: record.name,
                architecture: record.architecture,
                sha256,
                size: record.size,
            })
        })
        .collect();

    let mut configs = Vec::with_capacity(site.subnets.len());
    for subnet in site.subnets.iter().cloned() {
        let mut racks = if subnet.spec.dhcp_racks.is_empty() {
            enrolled.clone()
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
    Ok(ConfigSnapshot {
        boot_resources,
        dns,
        generation: Generation(generation),
        subnets: configs,
        gateway: gateway.clone(),
    })
}
