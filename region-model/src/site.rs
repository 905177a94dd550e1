//! What racks reported and the region holds about its sites, as plain
//! records: the leases racks saw and the racks themselves. The store reads
//! and writes them; zones and snapshots are built from them.

use serde::Serialize;
use utoipa::ToSchema;

/// A lease as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LeaseRecord {
    /// The subnet's id.
    pub subnet_id: String,
    /// The address.
    pub address: String,
    /// The client's hardware address.
    pub mac: String,
    /// `bound`, `released`, `expired` or `declined`.
    pub state: String,
    /// When it ends, ms since the epoch.
    pub expires_ms: i64,
    /// The rack that reported it.
    pub rack_id: String,
    /// Last report, ms since the epoch.
    pub updated_ms: i64,
}

/// A rack as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RackRecord {
    /// The rack's id.
    pub id: String,
    /// Host name of the appliance.
    pub hostname: String,
    /// Rack software version.
    pub software_version: String,
    /// Protocol version the rack speaks.
    pub protocol_version: u16,
    /// `online` or `offline`.
    pub status: String,
    /// First hello, ms since the epoch.
    pub first_seen_ms: i64,
    /// Last message, ms since the epoch.
    pub last_seen_ms: i64,
    /// Generation of the snapshot the rack serves from.
    pub applied_generation: Option<u64>,
    /// The generation of this rack's own current configuration (the
    /// region's, when it has not been sent one yet).
    pub config_generation: u64,
    /// Whether the rack serves its current configuration.
    pub in_sync: bool,
    /// Why the last snapshot was refused, if it was.
    pub last_apply_error: Option<String>,
    /// Interfaces and addresses the rack reported.
    #[schema(value_type = Object)]
    pub interfaces: serde_json::Value,
    /// Services the rack runs.
    #[schema(value_type = Object)]
    pub services: serde_json::Value,
    /// Service health from the last heartbeat.
    #[schema(value_type = Object)]
    pub health: serde_json::Value,
    /// Routed networks through which the rack reaches BMCs, besides its interfaces'.
    #[schema(value_type = Vec<String>)]
    pub bmc_networks: serde_json::Value,
}

/// Everything a snapshot is built from, read from the store at one
/// generation: DHCP, DNS and boot resources all derive from it, so each is
/// read once.
#[derive(Debug, Clone, Default)]
pub struct SiteData {
    /// The configuration generation, read before the data (so a change
    /// landing in between gives newer data under an older generation, and
    /// the newer generation follows: never stale data labelled current).
    pub generation: u64,
    /// When the data was read, ms since the epoch (leases past it are over).
    pub now_ms: i64,
    /// All subnets.
    pub subnets: Vec<crate::ipam::SubnetRecord>,
    /// All reservations.
    pub reservations: Vec<crate::ipam::ReservationRecord>,
    /// All leases racks reported.
    pub leases: Vec<LeaseRecord>,
    /// All racks, with presence and interfaces.
    pub racks: Vec<RackRecord>,
    /// Enrolled, unrevoked racks, sorted: who serves a subnet that names none.
    pub enrolled: Vec<edgemetal_protocol::RackId>,
    /// The boot resources racks cache.
    pub boot_resources: Vec<edgemetal_protocol::BootResource>,
    /// Operator domains.
    pub domains: Vec<crate::dns::DomainRecord>,
    /// Operator records that parse (the reader skips, and logs, any that don't).
    pub dns_records: Vec<OperatorRecord>,
    /// Machines' host names by MAC (`52:54:00:…`).
    pub machine_hostnames: std::collections::HashMap<String, String>,
    /// Machines with boot settings of their own, by MAC.
    pub machine_boot: Vec<(
        edgemetal_protocol::MacAddress,
        crate::boot_table::BootSettingsSpec,
    )>,
}

/// An operator's DNS record, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRecord {
    /// The domain's id.
    pub domain_id: String,
    /// Owner name relative to the domain, `@` for the apex.
    pub name: String,
    /// TTL in seconds.
    pub ttl: u32,
    /// The data.
    pub data: edgemetal_protocol::RecordData,
}
