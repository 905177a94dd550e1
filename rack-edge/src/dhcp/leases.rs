//! The lease table: who holds which address until when.
//!
//! Keyed by address, so an address has at most one record and the table can
//! never hold two claims on it; a per-subnet index finds a client's record.
//! Time is the engine's clock in whole seconds, passed in: the table never
//! reads a clock, so expiry is as deterministic as everything else.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use edgemetal_protocol::MacAddress;
use serde::{Deserialize, Serialize};

pub use super::client_id::ClientId;

/// The region's id of a subnet. Shared: every lease of a subnet points at
/// one copy (tens of thousands of leases, a handful of subnets).
pub type SubnetId = Arc<str>;

/// Where a lease is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    /// Offered, not yet requested; held briefly so two clients are not offered one address.
    Offered,
    /// Acknowledged: the client uses the address until `expires_at`.
    Bound,
    /// Given back by the client. Free; kept so the client gets the same address again.
    Released,
    /// Ran out without renewal. Free; kept for the same reason as `Released`.
    Expired,
    /// A client found the address in use (DHCPDECLINE): quarantined until `expires_at`.
    Declined,
}

/// One address's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The client's identity (option 61 or derived from the MAC).
    pub client_id: ClientId,
    /// The client's hardware address.
    pub mac: MacAddress,
    /// The address.
    pub address: Ipv4Addr,
    /// The region's id of the subnet the address belongs to.
    pub subnet_id: SubnetId,
    /// When the hold ends, in seconds on the engine's clock.
    pub expires_at: u64,
    /// Where the lease is in its life.
    pub state: LeaseState,
}

impl Lease {
    /// Whether the record keeps the address from anyone else at `now`.
    pub fn holds_address(&self, now: u64) -> bool {
        match self.state {
            LeaseState::Offered | LeaseState::Bound | LeaseState::Declined => self.expires_at > now,
            LeaseState::Released | LeaseState::Expired => false,
        }
    }

    /// Whether the record is a binding still in force at `now`.
    pub fn is_bound(&self, now: u64) -> bool {
        self.state == LeaseState::Bound && self.expires_at > now
    }

    /// Whether the address is quarantined at `now`.
    pub fn is_quarantined(&self, now: u64) -> bool {
        self.state == LeaseState::Declined && self.expires_at > now
    }
}

/// Leases by address, with a per-subnet index by client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseTable {
    by_address: BTreeMap<Ipv4Addr, Lease>,
    /// Subnet id -> client -> address. Declined records are not indexed: a
    /// client that declined an address must be offered another one. Nested
    /// so a lookup borrows its keys instead of building a tuple per packet.
    by_client: HashMap<SubnetId, HashMap<ClientId, Ipv4Addr>>,
}

impl LeaseTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The record for `address`, whatever its state.
    pub fn get(&self, address: Ipv4Addr) -> Option<&Lease> {
        self.by_address.get(&address)
    }

    /// The client's record in `subnet_id`, whatever its state (never a declined one).
    pub fn find_client(&self, subnet_id: &str, client: &ClientId) -> Option<&Lease> {
        let address = self.by_client.get(subnet_id)?.get(client)?;
        self.by_address.get(address)
    }

    /// All records, by address.
    pub fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.by_address.values()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.by_address.len()
    }

    /// Whether the table has no record.
    pub fn is_empty(&self) -> bool {
        self.by_address.is_empty()
    }

    /// Stores `lease`, replacing whatever record held its address and the
    /// client's previous record in the same subnet (a client holds one
    /// address per subnet).
    pub fn insert(&mut self, mut lease: Lease) {
        if let Some(displaced) = self.by_address.remove(&lease.address) {
            self.unindex(&displaced);
        }
        // One copy of each subnet id, however the lease was built (a
        // journal replay decodes a fresh one per record).
        if let Some((shared, _)) = self.by_client.get_key_value(&*lease.subnet_id) {
            lease.subnet_id = shared.clone();
        }
        let clients = self.by_client.entry(lease.subnet_id.clone()).or_default();
        if lease.state != LeaseState::Declined {
            if let Some(previous) = clients.insert(lease.client_id.clone(), lease.address) {
                if previous != lease.address {
                    // The client moves: its old address is not its own any more.
                    self.by_address.remove(&previous);
                }
            }
        }
        self.by_address.insert(lease.address, lease);
    }

    /// Drops the record for `address`.
    pub fn remove(&mut self, address: Ipv4Addr) -> Option<Lease> {
        let lease = self.by_address.remove(&address)?;
        self.unindex(&lease);
        Some(lease)
    }

    /// Applies the passage of time up to `now`: lapsed offers and
    /// quarantines are forgotten, lapsed bindings become `Expired`. Returns
    /// the bindings that lapsed, in their new state, for the caller to
    /// journal and report.
    pub fn expire(&mut self, now: u64) -> Vec<Lease> {
        let mut lapsed = Vec::new();
        let mut forgotten = Vec::new();
        for lease in self.by_address.values_mut() {
            if lease.expires_at > now {
                continue;
            }
            match lease.state {
                LeaseState::Bound => {
                    lease.state = LeaseState::Expired;
                    lapsed.push(lease.clone());
                }
                LeaseState::Offered | LeaseState::Declined => forgotten.push(lease.address),
                LeaseState::Released | LeaseState::Expired => {}
            }
        }
        for address in forgotten {
            self.remove(address);
        }
        lapsed
    }

    fn unindex(&mut self, lease: &Lease) {
        if let Some(clients) = self.by_client.get_mut(&*lease.subnet_id) {
            if clients.get(&lease.client_id) == Some(&lease.address) {
                clients.remove(&lease.client_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(client: u8, last_octet: u8, state: LeaseState, expires_at: u64) -> Lease {
        let mac = MacAddress([2, 0, 0, 0, 0, client]);
        Lease {
            client_id: ClientId::from_mac(mac),
            mac,
            address: Ipv4Addr::new(10, 0, 0, last_octet),
            subnet_id: "s1".into(),
            expires_at,
            state,
        }
    }

    #[test]
    fn lookups_by_client_and_by_address_agree() {
        let mut table = LeaseTable::new();
        let bound = lease(1, 10, LeaseState::Bound, 100);
        table.insert(bound.clone());
        assert_eq!(table.get(bound.address), Some(&bound));
        assert_eq!(table.find_client("s1", &bound.client_id), Some(&bound));
        assert_eq!(table.find_client("s2", &bound.client_id), None);
    }

    #[test]
    fn a_client_holds_one_address_per_subnet() {
        let mut table = LeaseTable::new();
        table.insert(lease(1, 10, LeaseState::Offered, 100));
        table.insert(lease(1, 11, LeaseState::Bound, 100));
        assert_eq!(table.len(), 1);
        assert!(table.get(Ipv4Addr::new(10, 0, 0, 10)).is_none());
    }

    #[test]
    fn a_new_holder_displaces_the_old_record_and_its_index() {
        let mut table = LeaseTable::new();
        let old = lease(1, 10, LeaseState::Released, 0);
        table.insert(old.clone());
        table.insert(lease(2, 10, LeaseState::Bound, 100));
        assert_eq!(table.find_client("s1", &old.client_id), None);
    }

    #[test]
    fn declined_records_are_not_found_by_client() {
        let mut table = LeaseTable::new();
        let declined = lease(1, 10, LeaseState::Declined, 100);
        table.insert(declined.clone());
        assert_eq!(table.find_client("s1", &declined.client_id), None);
        assert!(table.get(declined.address).unwrap().is_quarantined(99));
    }

    #[test]
    fn expiry_lapses_bindings_and_forgets_offers_and_quarantines() {
        let mut table = LeaseTable::new();
        table.insert(lease(1, 10, LeaseState::Bound, 50));
        table.insert(lease(2, 11, LeaseState::Offered, 50));
        table.insert(lease(3, 12, LeaseState::Declined, 50));
        table.insert(lease(4, 13, LeaseState::Bound, 500));
        assert!(table.expire(49).is_empty());
        let lapsed = table.expire(50);
        assert_eq!(lapsed.len(), 1);
        assert_eq!(lapsed[0].state, LeaseState::Expired);
        assert_eq!(table.len(), 2, "the expired binding stays as a hint");
        assert!(!table
            .get(Ipv4Addr::new(10, 0, 0, 10))
            .unwrap()
            .holds_address(50));
        assert!(
            table.expire(1000).len() == 1,
            "only the other binding lapses later"
        );
    }
}
