//! How several racks share one subnet's DHCP service without ever handing
//! out one address twice.
//!
//! The scheme (region-assigned disjoint pools, hash ownership with takeover):
//!
//! * **Addresses.** The subnet's dynamic ranges, taken in address order, are
//!   cut into one contiguous slice per rack in [`SubnetConfig::dhcp_racks`]
//!   (offline ones included). A rack allocates new addresses only from its own
//!   slice, so two racks can never offer the same free address. The slices
//!   depend only on the ranges and the rack list, never on presence, so a rack
//!   going offline does not move anybody's addresses.
//! * **Clients.** Each client is answered by one rack: the online one with
//!   the highest rendezvous hash of (client id, rack id). When a rack goes
//!   offline, only its own clients move, each to one survivor; the others keep
//!   their server.
//! * **Takeover.** A survivor renews a client of an offline rack at the
//!   address it already holds (the client's RENEWING/REBINDING request proves
//!   the binding; the offline rack gave that address to this client only), and
//!   reports the lease. The region then lists it in
//!   [`SubnetConfig::held_elsewhere`] so the slice's owner, when back, does not
//!   hand it out again.
//!
//! Both sides of the link compute the partition with these functions, so they
//! cannot disagree about who owns what.

use core::net::Ipv4Addr;

use crate::message::{RangePurpose, SubnetConfig};
use crate::types::RackId;

/// The index in `subnet.dhcp_racks` of the rack whose slice holds `address`;
/// `None` when the address is not in a dynamic range or no racks are listed.
pub fn slice_owner(subnet: &SubnetConfig, address: Ipv4Addr) -> Option<usize> {
    let racks = subnet.dhcp_racks.len() as u64;
    if racks == 0 {
        return None;
    }
    let target = u32::from(address);
    let mut ranges = dynamic_ranges(subnet);
    ranges.sort_unstable();
    let total: u64 = ranges
        .iter()
        .map(|(start, end)| u64::from(end - start) + 1)
        .sum();
    let mut position = 0u64;
    for (start, end) in ranges {
        if (start..=end).contains(&target) {
            let index = position + u64::from(target - start);
            return Some((index * racks / total) as usize);
        }
        position += u64::from(end - start) + 1;
    }
    None
}

/// The address ranges (inclusive, in address order) of the slice that
/// belongs to `subnet.dhcp_racks[index]`; empty when the index is out of
/// bounds or the slice has no addresses. Agrees with [`slice_owner`].
pub fn slice_ranges(subnet: &SubnetConfig, index: usize) -> alloc::vec::Vec<(Ipv4Addr, Ipv4Addr)> {
    let racks = subnet.dhcp_racks.len() as u64;
    let mut ranges = dynamic_ranges(subnet);
    ranges.sort_unstable();
    let total: u64 = ranges
        .iter()
        .map(|(start, end)| u64::from(end - start) + 1)
        .sum();
    if index as u64 >= racks || total == 0 {
        return alloc::vec::Vec::new();
    }
    // Position k belongs to rack floor(k * racks / total), so rack i holds
    // positions ceil(i * total / racks) up to, not including, ceil((i + 1) * total / racks).
    let first = (index as u64 * total).div_ceil(racks);
    let past = ((index as u64 + 1) * total).div_ceil(racks);
    let mut slice = alloc::vec::Vec::new();
    let mut position = 0u64;
    for (start, end) in ranges {
        let size = u64::from(end - start) + 1;
        let lo = first.max(position);
        let hi = past.min(position + size);
        if lo < hi {
            let from = start + (lo - position) as u32;
            let to = start + (hi - position - 1) as u32;
            slice.push((Ipv4Addr::from(from), Ipv4Addr::from(to)));
        }
        position += size;
    }
    slice
}

fn dynamic_ranges(subnet: &SubnetConfig) -> alloc::vec::Vec<(u32, u32)> {
    subnet
        .ranges
        .iter()
        .filter(|range| range.purpose == RangePurpose::Dynamic)
        .map(|range| (u32::from(range.start), u32::from(range.end)))
        .filter(|(start, end)| start <= end)
        .collect()
}

/// Whether `rack` may hand out `address` as a new lease on `subnet`.
/// With no racks listed, every rack serves the whole pool.
pub fn owns_address(subnet: &SubnetConfig, rack: &RackId, address: Ipv4Addr) -> bool {
    if subnet.dhcp_racks.is_empty() {
        return true;
    }
    slice_owner(subnet, address).is_some_and(|index| subnet.dhcp_racks[index].rack_id == *rack)
}

/// The rack that answers the client with `client_id` on `subnet`: the
/// online rack (or `me`, which is always up from its own point of view) with
/// the highest rendezvous hash. `None` when no racks are listed.
pub fn client_owner<'a>(
    subnet: &'a SubnetConfig,
    me: &RackId,
    client_id: &[u8],
) -> Option<&'a RackId> {
    subnet
        .dhcp_racks
        .iter()
        .filter(|peer| peer.online || peer.rack_id == *me)
        .max_by_key(|peer| rendezvous_hash(client_id, peer.rack_id.as_str()))
        .map(|peer| &peer.rack_id)
}

/// Whether `rack` is listed and seen online on `subnet`.
pub fn is_online(subnet: &SubnetConfig, rack: &RackId) -> bool {
    subnet
        .dhcp_racks
        .iter()
        .any(|peer| peer.rack_id == *rack && peer.online)
}

/// FNV-1a (64-bit) over the client id, a separator and the rack id: stable
/// across builds and machines, which `std`'s randomly keyed hasher is not.
fn rendezvous_hash(client_id: &[u8], rack: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    client_id
        .iter()
        .chain(&[0xff])
        .chain(rack.as_bytes())
        .fold(OFFSET, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{DhcpPeer, IpRange};
    use crate::types::Ipv4Cidr;
    use alloc::vec;
    use alloc::vec::Vec;

    fn subnet(racks: &[(&str, bool)]) -> SubnetConfig {
        SubnetConfig {
            id: "s".into(),
            name: "s".into(),
            cidr: "10.0.0.0/24".parse::<Ipv4Cidr>().unwrap(),
            gateway: None,
            dns_servers: vec![],
            domain: None,
            lease_time_secs: 600,
            ranges: vec![
                IpRange {
                    start: Ipv4Addr::new(10, 0, 0, 200),
                    end: Ipv4Addr::new(10, 0, 0, 209),
                    purpose: RangePurpose::Dynamic,
                },
                IpRange {
                    start: Ipv4Addr::new(10, 0, 0, 100),
                    end: Ipv4Addr::new(10, 0, 0, 109),
                    purpose: RangePurpose::Dynamic,
                },
                IpRange {
                    start: Ipv4Addr::new(10, 0, 0, 150),
                    end: Ipv4Addr::new(10, 0, 0, 159),
                    purpose: RangePurpose::Reserved,
                },
            ],
            reservations: vec![],
            dhcp_racks: racks
                .iter()
                .map(|(id, online)| DhcpPeer {
                    rack_id: RackId::new(id).unwrap(),
                    online: *online,
                })
                .collect(),
            held_elsewhere: vec![],
            services: Default::default(),
            boot: Default::default(),
            router_advertisements: Default::default(),
        }
    }

    #[test]
    fn slices_are_contiguous_disjoint_and_cover_the_dynamic_ranges() {
        let config = subnet(&[("a", true), ("b", false)]);
        let owners: Vec<Option<usize>> = (100..=109)
            .chain(200..=209)
            .map(|last| slice_owner(&config, Ipv4Addr::new(10, 0, 0, last)))
            .collect();
        // Twenty addresses in address order: the first ten to a, the rest to b.
        assert!(owners[..10].iter().all(|o| *o == Some(0)));
        assert!(owners[10..].iter().all(|o| *o == Some(1)));
        assert_eq!(slice_owner(&config, Ipv4Addr::new(10, 0, 0, 150)), None);
        assert_eq!(slice_owner(&config, Ipv4Addr::new(10, 0, 0, 1)), None);
    }

    #[test]
    fn slice_ranges_agree_with_slice_owner() {
        for racks in 1..=7usize {
            let names: Vec<alloc::string::String> =
                (0..racks).map(|i| alloc::format!("r{i}")).collect();
            let list: Vec<(&str, bool)> = names.iter().map(|n| (n.as_str(), true)).collect();
            let config = subnet(&list);
            for index in 0..racks {
                let listed: Vec<u8> = slice_ranges(&config, index)
                    .into_iter()
                    .flat_map(|(a, b)| a.octets()[3]..=b.octets()[3])
                    .collect();
                let owned: Vec<u8> = (100..=109)
                    .chain(200..=209)
                    .filter(|last| {
                        slice_owner(&config, Ipv4Addr::new(10, 0, 0, *last)) == Some(index)
                    })
                    .collect();
                assert_eq!(listed, owned, "{racks} racks, slice {index}");
            }
        }
    }

    #[test]
    fn every_rack_owns_addresses_when_there_are_enough() {
        let config = subnet(&[("a", true), ("b", true), ("c", true)]);
        for rack in ["a", "b", "c"] {
            let id = RackId::new(rack).unwrap();
            assert!((100..=109).chain(200..=209).any(|last| owns_address(
                &config,
                &id,
                Ipv4Addr::new(10, 0, 0, last)
            )));
        }
    }

    #[test]
    fn an_offline_rack_loses_only_its_own_clients() {
        let both = subnet(&[("a", true), ("b", true), ("c", true)]);
        let without_c = subnet(&[("a", true), ("b", true), ("c", false)]);
        let me = RackId::new("a").unwrap();
        let mut moved = 0;
        for client in 0u16..500 {
            let id = client.to_be_bytes();
            let before = client_owner(&both, &me, &id).unwrap().clone();
            let after = client_owner(&without_c, &me, &id).unwrap().clone();
            if before.as_str() != "c" {
                assert_eq!(before, after, "client {client} moved needlessly");
            } else {
                assert_ne!(after.as_str(), "c");
                moved += 1;
            }
        }
        // About a third of the clients belonged to c.
        assert!((100..250).contains(&moved), "{moved}");
    }

    #[test]
    fn a_rack_always_counts_itself_online() {
        let config = subnet(&[("a", false), ("b", false)]);
        let me = RackId::new("a").unwrap();
        for client in 0u8..50 {
            assert_eq!(client_owner(&config, &me, &[client]).unwrap(), &me);
        }
    }

    #[test]
    fn no_listed_racks_means_one_rack_serves_everything() {
        let config = subnet(&[]);
        let me = RackId::new("a").unwrap();
        assert!(owns_address(&config, &me, Ipv4Addr::new(10, 0, 0, 100)));
        assert_eq!(client_owner(&config, &me, b"x"), None);
    }
}
