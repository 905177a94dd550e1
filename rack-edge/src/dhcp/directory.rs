//! Which machine holds which address, as this rack's DHCP server leased it:
//! the read-only view the metadata service uses to know who is asking (a
//! machine reads its own metadata only, like a cloud's metadata service).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};

use edgemetal_protocol::MacAddress;

use super::{LeaseEvent, LeaseTable};

/// Address → hardware address of the bound leases, shared with readers.
#[derive(Clone, Default)]
pub struct LeaseDirectory {
    bound: Arc<RwLock<HashMap<Ipv4Addr, MacAddress>>>,
    /// The option 93 architecture network-booting machines the rack holds
    /// nothing for sent: what their enlistment image is built for.
    architectures: Arc<RwLock<HashMap<MacAddress, u16>>>,
}

impl LeaseDirectory {
    /// The machine that holds `address`, if this rack leased it.
    pub fn holder(&self, address: Ipv4Addr) -> Option<MacAddress> {
        self.bound
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&address)
            .copied()
    }

    /// The option 93 architecture `mac` sent when it network-booted unknown.
    pub fn architecture(&self, mac: MacAddress) -> Option<u16> {
        self.architectures
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&mac)
            .copied()
    }

    /// Starts from the leases replayed from the journal.
    pub fn fill(&self, leases: &LeaseTable, now: u64) {
        let mut bound = self.bound.write().unwrap_or_else(|e| e.into_inner());
        bound.clear();
        bound.extend(
            leases
                .iter()
                .filter(|lease| lease.is_bound(now))
                .map(|lease| (lease.address, lease.mac)),
        );
    }

    /// Follows the DHCP engine's lease events.
    pub fn apply(&self, event: &LeaseEvent) {
        let mut bound = self.bound.write().unwrap_or_else(|e| e.into_inner());
        match event {
            LeaseEvent::New(lease) | LeaseEvent::Renewed(lease) => {
                bound.insert(lease.address, lease.mac);
            }
            LeaseEvent::Released(lease)
            | LeaseEvent::Expired(lease)
            | LeaseEvent::Declined(lease) => {
                if bound.get(&lease.address) == Some(&lease.mac) {
                    bound.remove(&lease.address);
                }
            }
            LeaseEvent::UnknownPxeClient { mac, arch } => {
                drop(bound);
                let mut architectures = self
                    .architectures
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                match arch {
                    Some(arch) => architectures.insert(*mac, *arch),
                    None => architectures.remove(mac),
                };
            }
        }
    }

    /// Records a holder directly (tests, and leases made elsewhere).
    pub fn insert(&self, address: Ipv4Addr, mac: MacAddress) {
        self.bound
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(address, mac);
    }
}
