//! Each rack's own configuration, cut from the region's: only the subnets
//! it serves DHCP on, their reservations, the DNS zones of those subnets
//! (plus the operator's zones and its sites' internal names), and the DNS
//! forwarder's clients on its own networks. Pure: no store, no clock.
//!
//! A rack is sent a snapshot only when its own cut changed: the content
//! digest leaves out the generation and zone serials (which move with every
//! region-wide change), so a lease on one site republishes nothing to
//! racks of other sites.

use std::collections::HashSet;

use edgemetal_protocol::{ConfigSnapshot, Generation, Ipv4Cidr, RackId, RecordData};
use sha2::{Digest, Sha256};

use crate::dns::{reverse_zones, INTERNAL_DOMAIN};

/// The part of `site` that concerns `rack`.
pub fn for_rack(site: &ConfigSnapshot, rack: &RackId) -> ConfigSnapshot {
    let subnets: Vec<_> = site
        .subnets
        .iter()
        .filter(|subnet| subnet.dhcp_racks.iter().any(|peer| &peer.rack_id == rack))
        .cloned()
        .collect();
    let served: Vec<Ipv4Cidr> = subnets.iter().map(|s| s.cidr).collect();
    let lower = |name: &str| name.to_ascii_lowercase();
    let own_domains: HashSet<String> = subnets
        .iter()
        .filter_map(|s| s.domain.as_deref().map(lower))
        .collect();
    let other_domains: HashSet<String> = site
        .subnets
        .iter()
        .filter_map(|s| s.domain.as_deref().map(lower))
        .filter(|domain| !own_domains.contains(domain))
        .collect();
    let own_reverse: HashSet<String> = served.iter().flat_map(reverse_zones).collect();
    let other_reverse: HashSet<String> = site
        .subnets
        .iter()
        .flat_map(|s| reverse_zones(&s.cidr))
        .filter(|zone| !own_reverse.contains(zone))
        .collect();
    let mut dns = site.dns.clone();
    dns.zones.retain(|zone| {
        let name = lower(&zone.name);
        !other_domains.contains(&name) && !other_reverse.contains(&name)
    });
    for zone in dns.zones.iter_mut().filter(|z| z.name == INTERNAL_DOMAIN) {
        // The internal names of the rack's own sites (their racks' addresses).
        zone.records.retain(|record| match record.data {
            RecordData::A(address) => served.iter().any(|cidr| cidr.contains(address)),
            _ => true,
        });
    }
    // The forwarder serves the rack's machines, on its own networks, and the
    // networks the operator allowed everywhere.
    let every_subnet: HashSet<Ipv4Cidr> = site.subnets.iter().map(|s| s.cidr).collect();
    dns.allowed_networks
        .retain(|network| served.contains(network) || !every_subnet.contains(network));
    // In the order deltas rebuild it, so a rack's applied copy equals it.
    edgemetal_protocol::delta::canonical(ConfigSnapshot {
        generation: site.generation,
        subnets,
        boot_resources: site.boot_resources.clone(),
        dns,
        gateway: site.gateway.clone(),
        machine_boot: site.machine_boot.clone(),
    })
}

/// What identifies a rack's configuration apart from its numbering: the
/// SHA-256 of its encoding with generation and zone serials zeroed.
pub fn content_digest(snapshot: &ConfigSnapshot) -> String {
    let mut unnumbered = snapshot.clone();
    unnumbered.generation = Generation(0);
    for zone in &mut unnumbered.dns.zones {
        zone.serial = 0;
    }
    let bytes = postcard::to_allocvec(&unnumbered).unwrap_or_default();
    hex::encode(Sha256::digest(bytes))
}

/// `snapshot` numbered as `generation` (its zones' serials follow it).
pub fn numbered(mut snapshot: ConfigSnapshot, generation: u64) -> ConfigSnapshot {
    snapshot.generation = Generation(generation);
    for zone in &mut snapshot.dns.zones {
        zone.serial = generation as u32;
    }
    snapshot
}

#[cfg(test)]
#[path = "per_rack_tests.rs"]
mod tests;
