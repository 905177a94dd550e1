//! The contract between the edgemetal region and its rack-edge appliances.
//!
//! Everything that crosses the MQTT link is defined here: the topic scheme
//! ([`topic`]), the versioned envelope every payload travels in ([`envelope`]),
//! and the messages themselves ([`message`]). The crate is `no_std` + `alloc`
//! so that the same types can run on a firmware-style rack later.
//!
//! Compatibility rule: postcard is not self-describing, so a message's layout
//! is fixed for a protocol version. New enum variants are appended at the end
//! (old decoders reject only the new variant), and new fields arrive with a new
//! [`PROTOCOL_VERSION`]; the region keeps speaking the older versions its racks
//! announce in their hello (see [`SUPPORTED_VERSIONS`]).
#![no_std]
#![warn(missing_docs)]

extern crate alloc;

pub mod architecture;
pub mod boot;
pub mod boot_settings;
pub mod broker_url;
pub mod commissioning;
pub mod delta;
pub mod deploy;
pub mod dhcp_peers;
pub mod dns;
pub mod enrolment;
pub mod envelope;
pub mod frame;
pub mod gateway;
pub mod message;
pub mod power;
pub mod seal;
pub mod syslog;
pub mod topic;
pub mod types;
pub mod v4;

pub use architecture::{Architecture, ClientArch, Firmware, UnknownArchitecture};
pub use boot::*;
pub use boot_settings::{
    BootSettings, IpxeScript, Loader, LoaderSlot, MachineBoot, RouterAdvertisements,
    BOOT_FILES_PREFIX,
};
pub use broker_url::{BrokerUrl, InvalidBrokerUrl};
pub use commissioning::*;
pub use delta::{ConfigDelta, DeltaError, Edits};
pub use deploy::*;
pub use dns::{DnsConfig, DnsRecord, RecordData, Zone};
pub use envelope::{DecodeError, Envelope};
pub use gateway::{GatewayConfig, GatewayServices, NtpConfig, ProxyConfig, SyslogConfig};
pub use message::*;
pub use power::*;
pub use syslog::{LogBatch, LogLine};
pub use topic::{Channel, Direction, Topic, TopicError};
pub use types::*;

/// The protocol version this build speaks natively.
///
/// - v1: snapshots, events, power, blobs; racks ask the region what a
///   machine boots ([`BootQuery`] / [`BootAnswer`]).
/// - v2: the region pushes each machine's [`BootIntent`] ahead of its boot
///   ([`DownMessage::Intents`]), and presence is tied to the connection: a
///   rack seals its last will with the sequence number just before the
///   `Online` status of the same connection, and the region accepts an
///   offline status only as the will of the connection it last saw come
///   online (once), so a replayed will from an earlier connection changes
///   nothing. Configuration changes travel as [`ConfigDelta`]s against the
///   generation the rack holds; a full snapshot only on resync.
/// - v3: deploy and release. Intents travel with the machines' [`Plan`]s
///   ([`DownMessage::IntentsV3`]); boot resources include root filesystem
///   images ([`BootResourceKind::Rootfs`]); racks report
///   [`RackEventKind::InstallProgress`] and [`RackEventKind::PhoneHome`].
/// - v4: commissioning with hardware tests and LLDP: [`Plan::Commission`]
///   ([`CommissionPlan`]). A v3 rack gets its intents without those plans
///   (its machines commission with the inventory only).
/// - v5: the operator's boot table ([`BootSettings`]: iPXE script or URL,
///   NBP per firmware, per subnet and per machine), boot files
///   ([`BootResourceKind::File`]), Router Advertisements per subnet, and
///   DNS forwarders with a port, in [`DownMessage::SnapshotV5`] and
///   [`DownMessage::ConfigDeltaV5`]. A v4 rack gets the [`v4`] layouts
///   without them.
pub const PROTOCOL_VERSION: u16 = 5;

/// The inclusive range of protocol versions this build can decode.
pub const SUPPORTED_VERSIONS: core::ops::RangeInclusive<u16> = 1..=PROTOCOL_VERSION;
