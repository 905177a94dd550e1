//! This rack's share of a subnet that several racks serve: which addresses it
//! may hand out, which clients it answers, and which peers' clients it takes
//! over. The scheme itself lives in [`edgemetal_protocol::dhcp_peers`], so
//! that the region computes the same partition.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use edgemetal_protocol::{dhcp_peers, RackId, SubnetConfig};

/// One subnet's peers as seen from this rack.
#[derive(Debug, Clone)]
pub struct Peers {
    me: RackId,
    subnet: SubnetConfig,
    held_by_others: HashSet<Ipv4Addr>,
}

/// Whether a request about an address outside this rack's slice is ours to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takeover {
    /// The address is in this rack's slice, or the subnet is not shared.
    Own,
    /// The slice's owner is offline: renew the client in its place.
    OwnerOffline,
    /// The slice's owner is online and answers.
    OwnerOnline,
    /// The address is in no slice (outside the dynamic ranges).
    NoSlice,
}

impl Peers {
    /// `me`'s view of `subnet`.
    pub fn new(subnet: &SubnetConfig, me: &RackId) -> Self {
        let held_by_others = subnet
            .held_elsewhere
            .iter()
            .filter(|held| held.rack_id != *me)
            .map(|held| held.address)
            .collect();
        Peers {
            me: me.clone(),
            subnet: subnet.clone(),
            held_by_others,
        }
    }

    /// Whether other racks serve this subnet too.
    pub fn is_shared(&self) -> bool {
        !self.subnet.dhcp_racks.is_empty()
    }

    /// The ranges this rack allocates new addresses from; `None` for all of
    /// the pool (the subnet is not shared).
    pub fn own_ranges(&self) -> Option<Vec<RangeInclusive<u32>>> {
        let index = self
            .subnet
            .dhcp_racks
            .iter()
            .position(|peer| peer.rack_id == self.me)?;
        Some(
            dhcp_peers::slice_ranges(&self.subnet, index)
                .into_iter()
                .map(|(start, end)| u32::from(start)..=u32::from(end))
                .collect(),
        )
    }

    /// Whether this rack answers the DISCOVERs of the client with `client_id`.
    pub fn answers(&self, client_id: &[u8]) -> bool {
        dhcp_peers::client_owner(&self.subnet, &self.me, client_id)
            .is_none_or(|owner| *owner == self.me)
    }

    /// Whether another rack holds a lease on `address` outside its own slice.
    pub fn held_by_other(&self, address: Ipv4Addr) -> bool {
        self.held_by_others.contains(&address)
    }

    /// Who answers requests for `address`.
    pub fn takeover(&self, address: Ipv4Addr) -> Takeover {
        if !self.is_shared() {
            return Takeover::Own;
        }
        match dhcp_peers::slice_owner(&self.subnet, address) {
            None => Takeover::NoSlice,
            Some(index) => {
                let owner = &self.subnet.dhcp_racks[index];
                if owner.rack_id == self.me {
                    Takeover::Own
                } else if owner.online {
                    Takeover::OwnerOnline
                } else {
                    Takeover::OwnerOffline
                }
            }
        }
    }
}
