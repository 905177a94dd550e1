//! The messages exchanged on the link.
//!
//! [`UpMessage`] travels from a rack to the region, [`DownMessage`] from the
//! region to a rack. Each variant belongs to one [`Channel`](crate::Channel).

use alloc::string::String;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::boot::{BlobChunk, BlobRequest, BootAnswer, BootQuery, BootResource};
use crate::power::{PowerOutcome, PowerRequest};
use crate::topic::Channel;
use crate::types::{Generation, Ipv4Cidr, MacAddress, RackId};

/// A message from a rack to the region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpMessage {
    /// Sent after every connect: who the rack is and what it sees.
    Hello(Hello),
    /// Sent periodically: the rack is alive, and how its services are.
    Heartbeat(Heartbeat),
    /// The outcome of applying a configuration snapshot.
    SnapshotAck(SnapshotAck),
    /// Presence; the offline form is the rack's MQTT last will.
    Status(RackStatus),
    /// The rack now seals with the key of this epoch (itself sealed with it).
    RekeyAck(RekeyAck),
    /// Events the rack queued on disk, oldest first.
    Events(Vec<RackEvent>),
    /// The outcome of a [`DownMessage::Power`] command.
    PowerResult(PowerResult),
    /// Part of a boot resource the rack is caching.
    BlobRequest(BlobRequest),
    /// What should this machine boot?
    BootQuery(BootQuery),
    /// Machine log lines the syslog relay queued, oldest first.
    Logs(crate::syslog::LogBatch),
    /// How far the rack's cache holds each boot resource it was given
    /// (protocol v3; sent when it changes, with a heartbeat).
    Resources(Vec<ResourceHeld>),
}

/// One boot resource in a rack's cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceHeld {
    /// The resource, by content address.
    pub sha256: [u8; 32],
    /// Its size.
    pub size: u64,
    /// Bytes cached so far.
    pub cached: u64,
    /// Complete, verified and served.
    pub ready: bool,
}

impl UpMessage {
    /// The channel this message is published on.
    pub fn channel(&self) -> Channel {
        match self {
            UpMessage::Hello(_) => Channel::Hello,
            UpMessage::Heartbeat(_) => Channel::Heartbeat,
            UpMessage::SnapshotAck(_) => Channel::SnapshotAck,
            UpMessage::Status(_) => Channel::Status,
            UpMessage::RekeyAck(_) => Channel::RekeyAck,
            UpMessage::Events(_) => Channel::Events,
            UpMessage::PowerResult(_) => Channel::PowerResult,
            UpMessage::BlobRequest(_) => Channel::BlobRequest,
            UpMessage::BootQuery(_) => Channel::BootQuery,
            UpMessage::Logs(_) => Channel::Logs,
            UpMessage::Resources(_) => Channel::Resources,
        }
    }
}

/// A message from the region to a rack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DownMessage {
    /// The rack's full configuration in the layout of protocol v4 and
    /// before; published retained. v5 racks get [`DownMessage::SnapshotV5`].
    Snapshot(crate::v4::ConfigSnapshot),
    /// A new link secret for the next key epoch (key rotation).
    Rekey(Rekey),
    /// Every queued event up to and including this id is stored; the rack may forget them.
    EventsAck(u64),
    /// Act on one machine's BMC and report the outcome.
    Power(PowerCommand),
    /// Part of a boot resource.
    BlobChunk(BlobChunk),
    /// What a machine boots.
    BootAnswer(BootAnswer),
    /// Every log line up to and including this id is stored; the rack may forget them.
    LogsAck(u64),
    /// What machines boot, pushed ahead of their boots (protocol v2).
    Intents(crate::boot::IntentBatch),
    /// What changed in the rack's configuration since the generation it
    /// holds (protocol v2 to v4 layout); not retained.
    ConfigDelta(crate::v4::ConfigDelta),
    /// Boot intents with the machines' deploy or release plans (protocol v3;
    /// replaces [`DownMessage::Intents`] for v3 racks).
    IntentsV3(crate::deploy::PlannedIntents),
    /// The rack's full configuration with the operator's boot table, RA
    /// settings and forwarder ports (protocol v5); published retained.
    SnapshotV5(ConfigSnapshot),
    /// A configuration delta in the v5 layout (protocol v5).
    ConfigDeltaV5(crate::delta::ConfigDelta),
}

impl DownMessage {
    /// `snapshot` in the layout a rack speaking `version` decodes.
    pub fn snapshot_for(version: u16, snapshot: &ConfigSnapshot) -> DownMessage {
        if version >= 5 {
            DownMessage::SnapshotV5(snapshot.clone())
        } else {
            DownMessage::Snapshot(snapshot.into())
        }
    }

    /// `delta` in the layout a rack speaking `version` decodes.
    pub fn delta_for(version: u16, delta: crate::delta::ConfigDelta) -> DownMessage {
        if version >= 5 {
            DownMessage::ConfigDeltaV5(delta)
        } else {
            DownMessage::ConfigDelta((&delta).into())
        }
    }

    /// The channel this message is published on.
    pub fn channel(&self) -> Channel {
        match self {
            DownMessage::Snapshot(_) => Channel::Snapshot,
            DownMessage::Rekey(_) => Channel::Rekey,
            DownMessage::EventsAck(_) => Channel::EventsAck,
            DownMessage::Power(_) => Channel::Power,
            DownMessage::BlobChunk(_) => Channel::BlobChunk,
            DownMessage::BootAnswer(_) => Channel::BootAnswer,
            DownMessage::LogsAck(_) => Channel::LogsAck,
            DownMessage::Intents(_) => Channel::Intents,
            DownMessage::ConfigDelta(_) => Channel::ConfigDelta,
            DownMessage::IntentsV3(_) => Channel::Intents,
            DownMessage::SnapshotV5(_) => Channel::Snapshot,
            DownMessage::ConfigDeltaV5(_) => Channel::ConfigDelta,
        }
    }
}

/// A service a rack can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServiceKind {
    /// The MQTT link to the region.
    Link,
    /// DHCPv4 server.
    Dhcp,
    /// TFTP boot file server.
    Tftp,
    /// HTTP boot file server.
    Http,
    /// DNS server and forwarder.
    Dns,
    /// Metadata proxy for booting machines.
    Metadata,
    /// Syslog relay.
    Syslog,
    /// APT/HTTP caching proxy.
    Proxy,
    /// NTP server.
    Ntp,
    /// BMC power control.
    Power,
}

/// An address configured on one of the rack's interfaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceAddress {
    /// The address.
    pub address: IpAddr,
    /// Its prefix length on that interface.
    pub prefix_len: u8,
}

/// A network interface the rack sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceInfo {
    /// Kernel name, e.g. `eth0`.
    pub name: String,
    /// Hardware address, if the interface has one.
    pub mac: Option<MacAddress>,
    /// Addresses configured on it.
    pub addresses: Vec<InterfaceAddress>,
}

/// The rack's introduction, sent after every connect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The rack's identity.
    pub rack_id: RackId,
    /// Version of the rack software, e.g. `0.1.0`.
    pub software_version: String,
    /// Newest protocol version the rack speaks; the region answers in it.
    pub protocol_version: u16,
    /// Host name of the rack appliance.
    pub hostname: String,
    /// Interfaces and addresses the rack sees.
    pub interfaces: Vec<InterfaceInfo>,
    /// Services the rack runs.
    pub services: Vec<ServiceKind>,
    /// Generation of the snapshot the rack currently serves from, if any.
    pub applied_generation: Option<Generation>,
    /// Networks beyond its own interfaces' through which the rack reaches
    /// BMCs (routed management networks, from its configuration).
    pub bmc_networks: Vec<Ipv4Cidr>,
}

/// A power command from the region, answered by a [`PowerResult`] with the same id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerCommand {
    /// Correlates the result with the command; unique per region process.
    pub request_id: u64,
    /// Region time (ms since the epoch) after which the region has given up
    /// waiting: a rack that gets the command later must not act on it.
    pub deadline_ms: u64,
    /// What to do, to which BMC.
    pub request: PowerRequest,
}

/// A rack's answer to a [`PowerCommand`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerResult {
    /// The command's id.
    pub request_id: u64,
    /// What the BMC said.
    pub outcome: PowerOutcome,
}

/// Health of one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealthState {
    /// Serving normally.
    Healthy,
    /// Serving, but something is wrong (see the detail).
    Degraded,
    /// Not serving.
    Down,
}

/// Health of one service, with a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceHealth {
    /// Which service.
    pub service: ServiceKind,
    /// Its state.
    pub state: HealthState,
    /// Why it is in that state, empty when healthy.
    pub detail: String,
}

/// A monotonically increasing counter the rack reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// Counter name, in Prometheus style, e.g. `link_malformed_payloads_total`.
    pub name: String,
    /// Current value.
    pub value: u64,
}

/// The rack's periodic sign of life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Seconds since the rack process started.
    pub uptime_secs: u64,
    /// Generation of the snapshot the rack serves from, if any.
    pub applied_generation: Option<Generation>,
    /// Health of each service it runs.
    pub services: Vec<ServiceHealth>,
    /// Counters worth showing centrally.
    pub counters: Vec<Counter>,
}

/// Whether a rack is connected; the offline form is its MQTT last will.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RackStatus {
    /// Connected and serving.
    Online,
    /// Disconnected (last will) or shutting down cleanly.
    Offline,
}

/// One event a rack queued durably and delivers until the region acks it.
/// Ids grow by one per rack, so the region can apply each exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RackEvent {
    /// Position in the rack's queue.
    pub id: u64,
    /// When it happened, ms since the epoch (rack clock).
    pub at_ms: u64,
    /// What happened.
    pub kind: RackEventKind,
}

/// What a rack reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RackEventKind {
    /// A DHCP lease changed.
    Lease(LeaseReport),
    /// A machine the rack has no reservation for is network-booting.
    Discovery(Discovery),
    /// A machine took a step of its network boot from this rack.
    BootProgress(crate::commissioning::BootProgress),
    /// A machine posted its commissioning results to this rack.
    CommissioningResults(crate::commissioning::CommissioningResults),
    /// The installer or eraser reported a step (protocol v3).
    InstallProgress(crate::deploy::InstallProgress),
    /// An installed system's first boot called home (protocol v3).
    PhoneHome(crate::deploy::PhoneHome),
}

/// What happened to a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseChange {
    /// Bound to an address the client did not hold.
    New,
    /// Extended.
    Renewed,
    /// Given back.
    Released,
    /// Ran out.
    Expired,
    /// The client found the address in use; it is quarantined.
    Declined,
}

/// A lease as the rack holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseReport {
    /// What happened.
    pub change: LeaseChange,
    /// The region's subnet id.
    pub subnet_id: String,
    /// The address.
    pub address: Ipv4Addr,
    /// The client's hardware address.
    pub mac: MacAddress,
    /// When the lease ends, seconds since the epoch.
    pub expires_at_secs: u64,
}

/// A network-booting machine the rack has no reservation for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovery {
    /// Its hardware address.
    pub mac: MacAddress,
    /// Its DHCP option 93 client architecture, if sent.
    pub arch: Option<u16>,
}

/// A new link secret, sent sealed under the current one.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rekey {
    /// The epoch the new secret belongs to (current + 1).
    pub key_epoch: u32,
    /// The new link secret.
    pub link_secret: [u8; 32],
}

impl core::fmt::Debug for Rekey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Secrets never reach logs through Debug.
        f.debug_struct("Rekey")
            .field("key_epoch", &self.key_epoch)
            .finish_non_exhaustive()
    }
}

/// The rack's answer to a [`Rekey`], sealed under the new key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RekeyAck {
    /// The epoch the rack switched to.
    pub key_epoch: u32,
}

/// The outcome of applying a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyOutcome {
    /// Applied and persisted; the rack now serves from it.
    Applied,
    /// Refused; the rack keeps serving its previous snapshot.
    Failed {
        /// Why it was refused.
        reason: String,
    },
    /// A delta did not fit what the rack holds (another base, or edits of
    /// what it lacks): the rack keeps serving its snapshot and wants the
    /// full one (protocol v2).
    Resync {
        /// Why the delta did not fit.
        reason: String,
    },
}

/// The rack's answer to a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotAck {
    /// The generation the ack is about.
    pub generation: Generation,
    /// Whether it was applied.
    pub outcome: ApplyOutcome,
}

/// Everything a rack needs to serve its site, as one versioned document.
///
/// It grows with the services (DHCP options, DNS zones, boot settings): new
/// sections arrive as new fields with a new protocol version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSnapshot {
    /// Bumped by the region on every change; racks apply only newer ones.
    pub generation: Generation,
    /// The subnets the rack serves.
    pub subnets: Vec<SubnetConfig>,
    /// Boot resources the rack caches and serves.
    pub boot_resources: Vec<BootResource>,
    /// The DNS zones and forwarding the rack serves.
    pub dns: crate::dns::DnsConfig,
    /// The syslog relay, proxy and NTP server the rack offers machines.
    #[serde(default)]
    pub gateway: crate::gateway::GatewayConfig,
    /// Machines whose boot settings override their subnet's, by MAC
    /// (protocol v5).
    pub machine_boot: Vec<crate::boot_settings::MachineBoot>,
}

/// One managed subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetConfig {
    /// The region's id for the subnet.
    pub id: String,
    /// Operator-given name.
    pub name: String,
    /// The network.
    pub cidr: Ipv4Cidr,
    /// Default gateway handed to machines.
    pub gateway: Option<Ipv4Addr>,
    /// DNS servers handed to machines.
    pub dns_servers: Vec<Ipv4Addr>,
    /// DNS domain of the subnet's machines.
    pub domain: Option<String>,
    /// Lease time in seconds for dynamic leases.
    pub lease_time_secs: u32,
    /// Address ranges inside the subnet.
    pub ranges: Vec<IpRange>,
    /// Fixed addresses for known machines.
    pub reservations: Vec<Reservation>,
    /// The racks that serve DHCP on this subnet, sorted by id, with their
    /// presence as the region sees it. Empty: every rack that receives the
    /// subnet serves all of it. See [`crate::dhcp_peers`] for how they share it.
    pub dhcp_racks: Vec<DhcpPeer>,
    /// Addresses leased by a rack outside its own slice of the pool (after a
    /// takeover, or a change of `dhcp_racks`). The slice's owner must not
    /// hand them out while they are listed.
    pub held_elsewhere: Vec<HeldAddress>,
    /// Which gateway services (syslog, proxy, NTP) the subnet's machines get.
    #[serde(default)]
    pub services: crate::gateway::GatewayServices,
    /// The operator's boot table for the subnet's machines (protocol v5).
    pub boot: crate::boot_settings::BootSettings,
    /// Whether the rack answers Router Solicitations on the subnet's link
    /// (protocol v5).
    pub router_advertisements: crate::boot_settings::RouterAdvertisements,
}

/// One rack serving DHCP on a subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpPeer {
    /// The rack.
    pub rack_id: RackId,
    /// Whether the region sees it online; its clients are taken over when not.
    pub online: bool,
}

/// An address some rack holds a lease on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldAddress {
    /// The leased address.
    pub address: Ipv4Addr,
    /// The rack holding the lease.
    pub rack_id: RackId,
}

/// What an address range is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RangePurpose {
    /// Handed out by DHCP to any client.
    Dynamic,
    /// Kept out of DHCP (infrastructure, static hosts).
    Reserved,
}

/// An inclusive range of addresses inside a subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpRange {
    /// First address, inclusive.
    pub start: Ipv4Addr,
    /// Last address, inclusive.
    pub end: Ipv4Addr,
    /// What the range is for.
    pub purpose: RangePurpose,
}

/// A fixed address for one machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// The machine's hardware address.
    pub mac: MacAddress,
    /// Its fixed address.
    pub address: Ipv4Addr,
    /// Host name handed to it.
    pub hostname: Option<String>,
}
