//! Network boot: the boot resources (kernel, initrd, squashfs) racks cache
//! and serve, how a rack fetches them from the region over the link, and the
//! region's decision of what a machine boots.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::types::MacAddress;

/// What a boot resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BootResourceKind {
    /// A Linux kernel.
    Kernel,
    /// An initial ramdisk.
    Initrd,
    /// A squashfs image: for the ephemeral image, its tools (the hardware
    /// tests), fetched by the agent when a run needs them.
    Squashfs,
    /// An operating system to deploy: a root filesystem archive (protocol v3).
    Rootfs,
    /// A file of the operator's boot-files tree, served as is over TFTP and
    /// HTTP under [`crate::boot_settings::BOOT_FILES_PREFIX`]; its name is
    /// its path in the tree (protocol v5).
    File,
}

/// A boot resource racks must cache, content-addressed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootResource {
    /// Name/release, e.g. `ephemeral` or `noble`.
    pub name: String,
    /// Architecture, MAAS-style (`amd64`, `arm64`, …).
    pub architecture: String,
    /// Kernel, initrd or squashfs.
    pub kind: BootResourceKind,
    /// SHA-256 of the content: its identity, and what the rack verifies.
    pub sha256: [u8; 32],
    /// Size in bytes.
    pub size: u64,
}

/// A rack's request for part of a blob it is caching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRequest {
    /// The blob.
    pub sha256: [u8; 32],
    /// First byte wanted.
    pub offset: u64,
    /// How many bytes (the region may send fewer at the end).
    pub len: u32,
}

/// Part of a blob, the answer to a [`BlobRequest`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobChunk {
    /// The blob.
    pub sha256: [u8; 32],
    /// Where `data` starts.
    pub offset: u64,
    /// The bytes; empty when the region does not have the blob.
    pub data: Vec<u8>,
    /// The blob's whole size (0 when the region does not have it).
    pub total: u64,
}

impl core::fmt::Debug for BlobChunk {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BlobChunk")
            .field("offset", &self.offset)
            .field("len", &self.data.len())
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

/// A rack asking what a network-booting machine should boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootQuery {
    /// Correlates the answer.
    pub request_id: u64,
    /// The machine's boot interface.
    pub mac: MacAddress,
    /// Its DHCP option 93 architecture, if known.
    pub arch: Option<u16>,
}

/// The region's answer to a [`BootQuery`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootAnswer {
    /// The query's id.
    pub request_id: u64,
    /// The machine asked about.
    pub mac: MacAddress,
    /// What it boots.
    pub decision: BootDecision,
    /// What its ephemeral system reads from the rack's metadata endpoint;
    /// present when it boots the ephemeral image as a known machine.
    pub metadata: Option<crate::commissioning::MachineMetadata>,
}

/// What a machine boots next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BootDecision {
    /// Its installed system, from local disk.
    LocalDisk,
    /// An ephemeral (in-memory) image: enlistment, commissioning, rescue.
    Ephemeral(EphemeralBoot),
}

/// An ephemeral image to boot, by content address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EphemeralBoot {
    /// Why it boots it, e.g. `enlist` or `commission`.
    pub purpose: String,
    /// The kernel.
    pub kernel: [u8; 32],
    /// The initrd.
    pub initrd: [u8; 32],
    /// The image's tools squashfs, when it has one (fetched by the agent,
    /// not by the boot loader).
    pub squashfs: Option<[u8; 32]>,
    /// Extra kernel command line; the rack adds where to reach it.
    pub cmdline: String,
}

/// What a machine boots, pushed by the region to the racks that serve it
/// ahead of any boot (on every lifecycle change, and in full on resync), so
/// that no step of a machine's boot waits on the region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootIntent {
    /// The machine's boot interface.
    pub mac: MacAddress,
    /// Grows with every change of the machine (region clock, ms, read before
    /// the machine is): a rack keeps the highest it was given and ignores older
    /// ones, so reordered or replayed pushes cannot roll a machine back.
    pub generation: u64,
    /// After this (ms since the epoch) the intent is stale: the rack boots the
    /// machine from local disk and serves no metadata until a newer one
    /// arrives. `None`: it does not expire.
    pub expires_at_ms: Option<u64>,
    /// What it boots.
    pub decision: BootDecision,
    /// What its ephemeral system reads from the rack's metadata endpoint.
    pub metadata: Option<crate::commissioning::MachineMetadata>,
}

/// A set of boot intents for one rack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentBatch {
    /// The batch is every intent the rack should hold: it forgets the others.
    pub full: bool,
    /// The intents, one per machine.
    pub intents: Vec<BootIntent>,
    /// Machines the region no longer knows (deleted): the rack forgets them
    /// and treats them as never seen.
    pub forget: Vec<MacAddress>,
}

/// The architecture name (MAAS-style) for a DHCP option 93 client
/// architecture: [`Architecture::from_option93`] by name. Unknown or absent
/// codes are `amd64`.
///
/// [`Architecture::from_option93`]: crate::Architecture::from_option93
pub fn architecture_of_option93(arch: Option<u16>) -> &'static str {
    crate::Architecture::from_option93(arch).as_str()
}
