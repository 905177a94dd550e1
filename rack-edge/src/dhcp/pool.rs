//! Which address a client may have on one subnet.
//!
//! Built from the subnet's part of the snapshot. Only `Dynamic` ranges are
//! handed out; `Reserved` ranges, reservation addresses, the network and
//! broadcast addresses, the gateway and the rack's own addresses never are,
//! even when a range covers them (a region bug must not give a machine the
//! router's address). A reservation wins for its MAC: that machine gets its
//! fixed address and nothing else.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use edgemetal_protocol::{MacAddress, RangePurpose, SubnetConfig};

use super::leases::{ClientId, LeaseTable};
use super::peers::Peers;

/// One subnet's allocatable addresses.
#[derive(Debug, Clone)]
pub struct Pool {
    subnet_id: String,
    dynamic: Vec<RangeInclusive<u32>>,
    /// Where new addresses come from: this rack's slice of `dynamic` when
    /// the subnet is shared with other racks, else all of it.
    allocatable: Vec<RangeInclusive<u32>>,
    peers: Peers,
    kept_out: Vec<RangeInclusive<u32>>,
    reservations: HashMap<MacAddress, Ipv4Addr>,
    /// Reservation addresses, the network, broadcast, gateway and rack addresses.
    excluded: BTreeSet<Ipv4Addr>,
    /// Where the next scan starts: just past the last address handed out.
    /// Without it every allocation rescans all the leased addresses before
    /// it, which makes filling a /16 quadratic.
    cursor: std::cell::Cell<u32>,
}

impl Pool {
    /// The pool of `subnet` for the rack `peers` describes; `rack_addresses`
    /// are the rack's own addresses there.
    pub fn new(subnet: &SubnetConfig, rack_addresses: &[Ipv4Addr], peers: Peers) -> Self {
        let cidr = subnet.cidr;
        let inside = |range: &edgemetal_protocol::IpRange| {
            let (start, end) = (u32::from(range.start), u32::from(range.end));
            // The snapshot is validated upstream; clipping again costs nothing
            // and keeps a bad range from leaking addresses off the subnet.
            let start = start.max(u32::from(cidr.network()));
            let end = end.min(u32::from(cidr.broadcast()));
            (start <= end).then_some(start..=end)
        };
        let ranges_of = |purpose| {
            subnet
                .ranges
                .iter()
                .filter(|r| r.purpose == purpose)
                .filter_map(inside)
                .collect::<Vec<_>>()
        };
        let mut excluded: BTreeSet<Ipv4Addr> = [cidr.network(), cidr.broadcast()]
            .into_iter()
            .chain(subnet.gateway)
            .chain(rack_addresses.iter().copied())
            .collect();
        let mut reservations = HashMap::new();
        for reservation in &subnet.reservations {
            excluded.insert(reservation.address);
            if cidr.contains(reservation.address) {
                reservations.insert(reservation.mac, reservation.address);
            }
        }
        // A reservation must still not be the router or the rack itself.
        reservations.retain(|_, address| {
            let reserved = *address;
            reserved != cidr.network()
                && reserved != cidr.broadcast()
                && Some(reserved) != subnet.gateway
                && !rack_addresses.contains(&reserved)
        });
        let dynamic = ranges_of(RangePurpose::Dynamic);
        Pool {
            subnet_id: subnet.id.clone(),
            allocatable: peers.own_ranges().unwrap_or_else(|| dynamic.clone()),
            peers,
            dynamic,
            kept_out: ranges_of(RangePurpose::Reserved),
            reservations,
            excluded,
            cursor: std::cell::Cell::new(0),
        }
    }

    /// How this rack shares the subnet with others.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// Whether this rack may hand `address` out as a new lease: in its own
    /// slice and not leased by another rack.
    fn allocates(&self, address: Ipv4Addr) -> bool {
        let value = u32::from(address);
        self.allocatable.iter().any(|r| r.contains(&value)) && !self.peers.held_by_other(address)
    }

    /// The fixed address of `mac` on this subnet, if it has one.
    pub fn reservation(&self, mac: MacAddress) -> Option<Ipv4Addr> {
        self.reservations.get(&mac).copied()
    }

    /// Whether `mac` has a reservation on this subnet.
    pub fn is_reserved_mac(&self, mac: MacAddress) -> bool {
        self.reservations.contains_key(&mac)
    }

    /// Whether the configuration lets `mac` have `address`, leases aside.
    pub fn permits(&self, mac: MacAddress, address: Ipv4Addr) -> bool {
        match self.reservation(mac) {
            Some(reserved) => address == reserved,
            None => self.is_dynamic(address),
        }
    }

    /// Whether `address` is one DHCP may hand to any client.
    fn is_dynamic(&self, address: Ipv4Addr) -> bool {
        let value = u32::from(address);
        self.dynamic.iter().any(|r| r.contains(&value))
            && !self.kept_out.iter().any(|r| r.contains(&value))
            && !self.excluded.contains(&address)
    }

    /// Whether `address` is free for `client` at `now` (never held, held by
    /// `client` itself, or its holder's claim has lapsed).
    fn free_for(
        &self,
        leases: &LeaseTable,
        client: &ClientId,
        address: Ipv4Addr,
        now: u64,
    ) -> bool {
        match leases.get(address) {
            None => true,
            Some(lease) if lease.is_quarantined(now) => false,
            Some(lease) => &lease.client_id == client || !lease.holds_address(now),
        }
    }

    /// Whether `client` (`mac`) may be given `address` at `now`: allowed by the
    /// configuration and not claimed by another client or quarantined.
    pub fn is_available(
        &self,
        leases: &LeaseTable,
        client: &ClientId,
        mac: MacAddress,
        address: Ipv4Addr,
        now: u64,
    ) -> bool {
        if self.reservation(mac) == Some(address) {
            // The reservation wins over a dynamic lease that predates it,
            // but not over a quarantine: that address is in use by someone.
            return !leases.get(address).is_some_and(|l| l.is_quarantined(now));
        }
        self.permits(mac, address) && self.free_for(leases, client, address, now)
    }

    /// The address to offer `client`: its reservation, else the address it
    /// already has, else the one it asks for, else a never-used one, else one
    /// whose previous holder let it go. `None` when the pool is exhausted.
    pub fn choose(
        &self,
        leases: &LeaseTable,
        client: &ClientId,
        mac: MacAddress,
        requested: Option<Ipv4Addr>,
        now: u64,
    ) -> Option<Ipv4Addr> {
        if let Some(reserved) = self.reservation(mac) {
            return self
                .is_available(leases, client, mac, reserved, now)
                .then_some(reserved);
        }
        let own = leases
            .find_client(&self.subnet_id, client)
            .map(|lease| lease.address);
        // A requested address outside this rack's slice is another rack's to give.
        let requested = requested.filter(|address| self.allocates(*address));
        if let Some(address) = own
            .into_iter()
            .chain(requested)
            .find(|address| self.is_available(leases, client, mac, *address, now))
        {
            return Some(address);
        }
        // Untouched addresses first, so a client that went away briefly
        // still finds its released address free when it comes back.
        self.scan(|address| leases.get(address).is_none())
            .or_else(|| self.scan(|address| self.free_for(leases, client, address, now)))
    }

    fn scan(&self, mut usable: impl FnMut(Ipv4Addr) -> bool) -> Option<Ipv4Addr> {
        let cursor = self.cursor.get();
        // From the cursor to the end of the ranges, then from their start back to it.
        let after = self.allocatable.iter().filter_map(|range| {
            let start = (*range.start()).max(cursor);
            (start <= *range.end()).then(|| start..=*range.end())
        });
        let before = self.allocatable.iter().filter_map(|range| {
            let end = (*range.end()).min(cursor.checked_sub(1)?);
            (*range.start() <= end).then(|| *range.start()..=end)
        });
        let found = after
            .chain(before)
            .flatten()
            .map(Ipv4Addr::from)
            .find(|address| {
                self.is_dynamic(*address) && !self.peers.held_by_other(*address) && usable(*address)
            });
        if let Some(address) = found {
            self.cursor.set(u32::from(address).wrapping_add(1));
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::leases::{Lease, LeaseState};
    use edgemetal_protocol::{IpRange, RackId, Reservation};

    const MAC: MacAddress = MacAddress([2, 0, 0, 0, 0, 1]);
    const OTHER: MacAddress = MacAddress([2, 0, 0, 0, 0, 2]);
    const RESERVED: MacAddress = MacAddress([2, 0, 0, 0, 0, 9]);

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, last)
    }

    fn range(start: u8, end: u8, purpose: RangePurpose) -> IpRange {
        IpRange {
            start: ip(start),
            end: ip(end),
            purpose,
        }
    }

    fn subnet(ranges: Vec<IpRange>) -> SubnetConfig {
        SubnetConfig {
            id: "s1".into(),
            name: "lab".into(),
            cidr: "10.0.0.0/24".parse().unwrap(),
            gateway: Some(ip(1)),
            dns_servers: vec![],
            domain: None,
            lease_time_secs: 600,
            ranges,
            reservations: vec![Reservation {
                mac: RESERVED,
                address: ip(5),
                hostname: None,
            }],
            dhcp_racks: vec![],
            held_elsewhere: vec![],
            services: Default::default(),
            boot: Default::default(),
            router_advertisements: Default::default(),
        }
    }

    fn me() -> RackId {
        RackId::new("rack-a").unwrap()
    }

    fn pool_of(subnet: &SubnetConfig, rack_addresses: &[Ipv4Addr]) -> Pool {
        Pool::new(subnet, rack_addresses, Peers::new(subnet, &me()))
    }

    fn held(table: &mut LeaseTable, mac: MacAddress, address: Ipv4Addr, state: LeaseState) {
        table.insert(Lease {
            client_id: ClientId::from_mac(mac),
            mac,
            address,
            subnet_id: "s1".into(),
            expires_at: 100,
            state,
        });
    }

    fn choose(
        pool: &Pool,
        table: &LeaseTable,
        mac: MacAddress,
        requested: Option<Ipv4Addr>,
    ) -> Option<Ipv4Addr> {
        pool.choose(table, &ClientId::from_mac(mac), mac, requested, 10)
    }

    #[test]
    fn never_hands_out_network_gateway_broadcast_reserved_or_rack_addresses() {
        let pool = pool_of(
            &subnet(vec![
                range(0, 255, RangePurpose::Dynamic),
                range(2, 3, RangePurpose::Reserved),
            ]),
            &[ip(4)],
        );
        for excluded in [0, 1, 2, 3, 4, 5, 255] {
            assert!(!pool.permits(MAC, ip(excluded)), "{excluded}");
        }
        assert_eq!(choose(&pool, &LeaseTable::new(), MAC, None), Some(ip(6)));
    }

    #[test]
    fn only_dynamic_ranges_are_used() {
        let pool = pool_of(&subnet(vec![range(100, 101, RangePurpose::Dynamic)]), &[]);
        assert!(!pool.permits(MAC, ip(50)));
        assert_eq!(
            choose(&pool, &LeaseTable::new(), MAC, Some(ip(50))),
            Some(ip(100))
        );
    }

    #[test]
    fn held_and_quarantined_addresses_are_skipped_and_exhaustion_is_none() {
        let pool = pool_of(&subnet(vec![range(100, 102, RangePurpose::Dynamic)]), &[]);
        let mut table = LeaseTable::new();
        held(&mut table, OTHER, ip(100), LeaseState::Bound);
        held(
            &mut table,
            MacAddress([2, 0, 0, 0, 0, 3]),
            ip(101),
            LeaseState::Declined,
        );
        assert_eq!(choose(&pool, &table, MAC, Some(ip(100))), Some(ip(102)));
        held(
            &mut table,
            MacAddress([2, 0, 0, 0, 0, 4]),
            ip(102),
            LeaseState::Offered,
        );
        assert_eq!(choose(&pool, &table, MAC, None), None);
    }

    #[test]
    fn a_client_gets_its_own_address_back_and_released_ones_are_reused_last() {
        let pool = pool_of(&subnet(vec![range(100, 101, RangePurpose::Dynamic)]), &[]);
        let mut table = LeaseTable::new();
        held(&mut table, OTHER, ip(100), LeaseState::Released);
        assert_eq!(choose(&pool, &table, OTHER, None), Some(ip(100)));
        assert_eq!(choose(&pool, &table, MAC, None), Some(ip(101)));
        held(
            &mut table,
            MacAddress([2, 0, 0, 0, 0, 3]),
            ip(101),
            LeaseState::Bound,
        );
        assert_eq!(choose(&pool, &table, MAC, None), Some(ip(100)));
    }

    #[test]
    fn a_reservation_wins_for_its_mac_only() {
        let pool = pool_of(&subnet(vec![range(5, 10, RangePurpose::Dynamic)]), &[]);
        let mut table = LeaseTable::new();
        held(&mut table, OTHER, ip(5), LeaseState::Bound);
        assert_eq!(choose(&pool, &table, RESERVED, Some(ip(7))), Some(ip(5)));
        assert!(!pool.permits(RESERVED, ip(7)));
        assert_eq!(
            choose(&pool, &LeaseTable::new(), MAC, Some(ip(5))),
            Some(ip(6))
        );
        held(&mut table, OTHER, ip(5), LeaseState::Declined);
        assert_eq!(
            choose(&pool, &table, RESERVED, None),
            None,
            "quarantine beats it"
        );
    }
}

#[cfg(test)]
mod shared_tests {
    use super::*;
    use edgemetal_protocol::{DhcpPeer, HeldAddress, IpRange, RackId};

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, last)
    }

    fn shared(held_elsewhere: Vec<HeldAddress>) -> SubnetConfig {
        SubnetConfig {
            id: "s1".into(),
            name: "lab".into(),
            cidr: "10.0.0.0/24".parse().unwrap(),
            gateway: Some(ip(1)),
            dns_servers: vec![],
            domain: None,
            lease_time_secs: 600,
            ranges: vec![IpRange {
                start: ip(100),
                end: ip(109),
                purpose: RangePurpose::Dynamic,
            }],
            reservations: vec![],
            dhcp_racks: ["rack-a", "rack-b"]
                .into_iter()
                .map(|id| DhcpPeer {
                    rack_id: RackId::new(id).unwrap(),
                    online: true,
                })
                .collect(),
            held_elsewhere,
            services: Default::default(),
            boot: Default::default(),
            router_advertisements: Default::default(),
        }
    }

    #[test]
    fn each_rack_allocates_only_from_its_own_slice() {
        let config = shared(vec![]);
        let mut given = std::collections::BTreeMap::new();
        for rack in ["rack-a", "rack-b"] {
            let me = RackId::new(rack).unwrap();
            let pool = Pool::new(&config, &[], Peers::new(&config, &me));
            let mut table = LeaseTable::new();
            for n in 0..10u8 {
                let mac = MacAddress([2, 0, 0, 0, 0, n]);
                let client = ClientId::from_mac(mac);
                let Some(address) = pool.choose(&table, &client, mac, Some(ip(100)), 10) else {
                    break;
                };
                table.insert(crate::dhcp::leases::Lease {
                    client_id: client,
                    mac,
                    address,
                    subnet_id: "s1".into(),
                    expires_at: 1000,
                    state: crate::dhcp::leases::LeaseState::Bound,
                });
                assert!(given.insert(address, rack).is_none(), "{address} twice");
            }
        }
        // Five each, and the requested .100 went only to its owner.
        assert_eq!(given.values().filter(|r| **r == "rack-a").count(), 5);
        assert_eq!(given[&ip(100)], "rack-a");
        assert_eq!(given[&ip(105)], "rack-b");
    }

    #[test]
    fn an_address_another_rack_took_over_is_not_handed_out() {
        let config = shared(vec![HeldAddress {
            address: ip(100),
            rack_id: RackId::new("rack-b").unwrap(),
        }]);
        let me = RackId::new("rack-a").unwrap();
        let pool = Pool::new(&config, &[], Peers::new(&config, &me));
        let mac = MacAddress([2, 0, 0, 0, 0, 1]);
        let chosen = pool.choose(
            &LeaseTable::new(),
            &ClientId::from_mac(mac),
            mac,
            Some(ip(100)),
            10,
        );
        assert_eq!(chosen, Some(ip(101)));
    }
}
