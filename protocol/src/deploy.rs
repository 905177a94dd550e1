//! Deploy and release (protocol v3): what the ephemeral image does for a
//! machine besides commissioning it. The region pushes a [`Plan`] with the
//! machine's boot intent ([`PlannedIntents`]), so the rack can answer the
//! installer, the installed system's first boot and the eraser without the
//! region; what they report comes back as durable rack events
//! ([`InstallProgress`], [`PhoneHome`], and the results upload).

use alloc::string::String;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::boot::IntentBatch;
use crate::types::MacAddress;

/// How the installer lays out the root filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StorageLayout {
    /// ext4 on a partition.
    Flat,
    /// ext4 on a logical volume `vg0/root`.
    Lvm,
}

impl StorageLayout {
    /// The name the API and the installer use: `flat` or `lvm`.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageLayout::Flat => "flat",
            StorageLayout::Lvm => "lvm",
        }
    }

    /// The layout named `name`, if any.
    pub fn parse(name: &str) -> Option<StorageLayout> {
        match name {
            "flat" => Some(StorageLayout::Flat),
            "lvm" => Some(StorageLayout::Lvm),
            _ => None,
        }
    }
}

/// How a released machine's disks are erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EraseMode {
    /// Not erased.
    None,
    /// Signatures wiped, and the first and last MiB of each partition and disk.
    Quick,
    /// Every block overwritten.
    Full,
    /// The drive's own erase (NVMe format/sanitize, ATA security erase), or discard.
    Secure,
}

impl EraseMode {
    /// The name the API and the eraser use.
    pub fn as_str(self) -> &'static str {
        match self {
            EraseMode::None => "none",
            EraseMode::Quick => "quick",
            EraseMode::Full => "full",
            EraseMode::Secure => "secure",
        }
    }

    /// The mode named `name`, if any.
    pub fn parse(name: &str) -> Option<EraseMode> {
        match name {
            "none" => Some(EraseMode::None),
            "quick" => Some(EraseMode::Quick),
            "full" => Some(EraseMode::Full),
            "secure" => Some(EraseMode::Secure),
            _ => None,
        }
    }
}

/// What a `secure` erase does on a disk that has no erase of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SecureFallback {
    /// Overwrite it, as `full`.
    Full,
    /// Fail the release, naming the disk.
    Fail,
}

impl SecureFallback {
    /// The name the eraser uses.
    pub fn as_str(self) -> &'static str {
        match self {
            SecureFallback::Full => "full",
            SecureFallback::Fail => "fail",
        }
    }
}

/// An operating system to install on a machine.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployPlan {
    /// The region's deployment id: the installed system's cloud-init instance id.
    pub deployment_id: String,
    /// The image (a boot resource the rack caches), by content address.
    pub image: [u8; 32],
    /// Its size as stored (compressed).
    pub image_bytes: u64,
    /// Its size unpacked: what the disk must hold.
    pub uncompressed_bytes: u64,
    /// Its format, e.g. `tar.zst`.
    pub format: String,
    /// The root filesystem's layout.
    pub layout: StorageLayout,
    /// The target disk's serial; empty: the first non-removable disk.
    pub disk_serial: String,
    /// The installed system's host name.
    pub hostname: String,
    /// The boot NIC's static address (reserved for the machine), if any;
    /// the rack adds prefix, gateway and DNS from the subnet it serves.
    pub address: Option<Ipv4Addr>,
    /// The operator's cloud-init user data, verbatim (may be empty).
    pub user_data: String,
    /// SSH public keys for the default user.
    pub ssh_keys: Vec<String>,
}

impl core::fmt::Debug for DeployPlan {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // User data may carry secrets: only its size reaches logs.
        f.debug_struct("DeployPlan")
            .field("deployment_id", &self.deployment_id)
            .field("image_bytes", &self.image_bytes)
            .field("format", &self.format)
            .field("layout", &self.layout)
            .field("disk_serial", &self.disk_serial)
            .field("hostname", &self.hostname)
            .field("address", &self.address)
            .field("user_data_len", &self.user_data.len())
            .field("ssh_keys", &self.ssh_keys.len())
            .finish()
    }
}

/// Disks to erase before a machine is Ready again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasePlan {
    /// How.
    pub erase: EraseMode,
    /// What `secure` does where the drive cannot.
    pub secure_fallback: SecureFallback,
}

/// What a machine's ephemeral boot does besides commissioning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Plan {
    /// Install an operating system.
    Deploy(DeployPlan),
    /// Erase the disks.
    Release(ReleasePlan),
    /// Commission with hardware tests or LLDP (protocol v4; not sent to v3 racks).
    Commission(crate::commissioning::CommissionPlan),
}

/// One machine's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachinePlan {
    /// The machine's boot interface.
    pub mac: MacAddress,
    /// Its plan.
    pub plan: Plan,
}

/// Boot intents with the plans of the machines that have one (protocol v3).
/// A plan belongs to its machine's intent in the same batch: the rack takes
/// it, or drops the one it held, exactly when it takes that intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedIntents {
    /// The intents, as in v2.
    pub batch: IntentBatch,
    /// Plans, at most one per machine of `batch`.
    pub plans: Vec<MachinePlan>,
}

/// A step the installer or eraser reported to the rack.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallProgress {
    /// The machine's boot interface.
    pub mac: MacAddress,
    /// The machine id from its metadata.
    pub machine_id: String,
    /// The token of the run, checked again by the region.
    pub token: String,
    /// The step: `disk`, `partitioning`, `image`, `bootloader`, `network`, `seed`, `erase`, `done`.
    pub step: String,
    /// `start`, `progress`, `done` or `failed`.
    pub state: String,
    /// Free text: a percentage, a disk and method, or why it failed.
    pub detail: String,
}

impl core::fmt::Debug for InstallProgress {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("InstallProgress")
            .field("mac", &self.mac)
            .field("machine_id", &self.machine_id)
            .field("step", &self.step)
            .field("state", &self.state)
            .field("detail", &self.detail)
            .finish_non_exhaustive()
    }
}

/// The installed system's first boot, as cloud-init's `phone_home` told the rack.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneHome {
    /// The machine's boot interface.
    pub mac: MacAddress,
    /// The machine id from its metadata.
    pub machine_id: String,
    /// The deployment's token, from the seed URL.
    pub token: String,
    /// The instance id cloud-init reported (the deployment id).
    pub instance_id: String,
    /// The host name it came up with.
    pub hostname: String,
    /// Its SSH host key (ed25519), as cloud-init posted it.
    pub host_key: String,
}

impl core::fmt::Debug for PhoneHome {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PhoneHome")
            .field("mac", &self.mac)
            .field("machine_id", &self.machine_id)
            .field("instance_id", &self.instance_id)
            .field("hostname", &self.hostname)
            .finish_non_exhaustive()
    }
}
