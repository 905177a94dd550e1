//! What the engine serves: subnets from the snapshot and the rack's side of them.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use edgemetal_protocol::{BootSettings, ConfigSnapshot, MacAddress, RackId, SubnetConfig};

/// How long an offered address is held for the client's REQUEST.
pub const DEFAULT_OFFER_SECS: u64 = 60;
/// How long a declined address stays out of the pool: whoever answered the
/// client's ARP probe is usually a statically configured host, not transient.
pub const DEFAULT_QUARANTINE_SECS: u64 = 3600;

/// One subnet the rack serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedSubnet {
    /// The subnet from the snapshot.
    pub config: SubnetConfig,
    /// The rack's address facing it: on the subnet itself, or for a relayed
    /// subnet the address its relays forward to. Next-server and boot URLs use it.
    pub local_addr: Ipv4Addr,
}

/// What the engine serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// This rack: decides its share of subnets other racks serve too.
    pub rack_id: RackId,
    /// The served subnets.
    pub subnets: Vec<ServedSubnet>,
    /// Option 54 in every reply; clients unicast renewals to it.
    pub server_id: Ipv4Addr,
    /// Port of the rack's HTTP boot server.
    pub http_port: u16,
    /// How long an offer is held.
    pub offer_secs: u64,
    /// How long a declined address is quarantined.
    pub quarantine_secs: u64,
    /// Machines' own boot settings, over their subnet's.
    pub machine_boot: HashMap<MacAddress, BootSettings>,
}

impl EngineConfig {
    /// Serves the subnets of `snapshot` that list `rack_id` among their DHCP
    /// racks, or list none. A subnet's local address is the rack address
    /// inside it; subnets with none are relayed and face `server_id`.
    pub fn from_snapshot(
        snapshot: &ConfigSnapshot,
        rack_id: &RackId,
        rack_addresses: &[Ipv4Addr],
        server_id: Ipv4Addr,
        http_port: u16,
    ) -> Self {
        let subnets = snapshot
            .subnets
            .iter()
            .filter(|subnet| {
                subnet.dhcp_racks.is_empty()
                    || subnet
                        .dhcp_racks
                        .iter()
                        .any(|peer| peer.rack_id == *rack_id)
            })
            .map(|subnet| ServedSubnet {
                local_addr: rack_addresses
                    .iter()
                    .copied()
                    .find(|address| subnet.cidr.contains(*address))
                    .unwrap_or(server_id),
                config: subnet.clone(),
            })
            .collect();
        EngineConfig {
            rack_id: rack_id.clone(),
            subnets,
            server_id,
            http_port,
            offer_secs: DEFAULT_OFFER_SECS,
            quarantine_secs: DEFAULT_QUARANTINE_SECS,
            machine_boot: snapshot
                .machine_boot
                .iter()
                .map(|machine| (machine.mac, machine.settings.clone()))
                .collect(),
        }
    }
}
