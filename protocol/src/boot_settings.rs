//! The operator's boot table (protocol v5): per subnet, and per machine over
//! it, an iPXE script or URL that replaces the generated one, the network
//! bootstrap program (NBP) each kind of firmware loads, and whether the rack
//! answers IPv6 Router Solicitations on the subnet's link.
//!
//! Empty settings change nothing: the rack's built-in table answers.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::architecture::ClientArch;
use crate::types::MacAddress;

/// Where boot files from the operator's tree (boot resources of kind
/// [`crate::BootResourceKind::File`]) are served: TFTP `files/<name>`, HTTP
/// `/files/<name>`.
pub const BOOT_FILES_PREFIX: &str = "files/";

/// Boot settings of a subnet or a machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootSettings {
    /// What iPXE runs instead of the rack's generated per-machine script.
    pub ipxe: Option<IpxeScript>,
    /// NBPs replacing the built-in ones, at most one per slot.
    pub loaders: Vec<Loader>,
}

/// An operator's iPXE script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IpxeScript {
    /// The script itself (starts with `#!ipxe`); the rack serves it at the
    /// machine's script URL.
    Contents(String),
    /// An http(s) URL iPXE is pointed at in the DHCP answer.
    Url(String),
}

/// One NBP: what firmware of `slot` loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loader {
    /// Which firmware.
    pub slot: LoaderSlot,
    /// A file the rack serves: an iPXE binary it ships (`ipxe.efi`,
    /// `snponly.efi`, `undionly.kpxe`, …) or one from the boot-files tree
    /// (`files/<name>`).
    pub file: String,
}

/// The kinds of firmware the boot table tells apart, each loading one NBP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LoaderSlot {
    /// x86 BIOS PXE (option 93 code 0), over TFTP.
    Bios,
    /// x86 and x64 UEFI PXE (codes 6, 7, 9), over TFTP.
    UefiX64,
    /// ARM UEFI PXE (codes 10, 11), over TFTP.
    UefiArm64,
    /// x64 UEFI HTTP boot (code 16).
    UefiX64Http,
    /// ARM64 UEFI HTTP boot (code 19).
    UefiArm64Http,
}

impl LoaderSlot {
    /// Every slot, in order.
    pub const ALL: [LoaderSlot; 5] = [
        LoaderSlot::Bios,
        LoaderSlot::UefiX64,
        LoaderSlot::UefiArm64,
        LoaderSlot::UefiX64Http,
        LoaderSlot::UefiArm64Http,
    ];

    /// The operator's name for the slot (API, CLI).
    pub const fn name(self) -> &'static str {
        match self {
            LoaderSlot::Bios => "bios",
            LoaderSlot::UefiX64 => "uefi-x64",
            LoaderSlot::UefiArm64 => "uefi-arm64",
            LoaderSlot::UefiX64Http => "uefi-x64-http",
            LoaderSlot::UefiArm64Http => "uefi-arm64-http",
        }
    }

    /// The slot called `name` ([`LoaderSlot::name`]).
    pub fn from_name(name: &str) -> Option<LoaderSlot> {
        LoaderSlot::ALL.into_iter().find(|slot| slot.name() == name)
    }

    /// The slot of a client that sends option 93 `arch`.
    pub fn of(arch: ClientArch) -> LoaderSlot {
        match arch {
            ClientArch::X86Bios => LoaderSlot::Bios,
            ClientArch::X86Uefi | ClientArch::X64Uefi | ClientArch::Ebc => LoaderSlot::UefiX64,
            ClientArch::Arm32Uefi | ClientArch::Arm64Uefi => LoaderSlot::UefiArm64,
            ClientArch::X64UefiHttp => LoaderSlot::UefiX64Http,
            ClientArch::Arm64UefiHttp => LoaderSlot::UefiArm64Http,
        }
    }
}

impl BootSettings {
    /// Whether these settings change nothing.
    pub fn is_empty(&self) -> bool {
        self.ipxe.is_none() && self.loaders.is_empty()
    }

    /// The NBP these settings name for `slot`.
    pub fn loader(&self, slot: LoaderSlot) -> Option<&str> {
        self.loaders
            .iter()
            .find(|loader| loader.slot == slot)
            .map(|loader| loader.file.as_str())
    }

    /// A machine's settings over its subnet's: the machine's script, else
    /// the subnet's; each slot's loader likewise.
    pub fn over(&self, base: &BootSettings) -> BootSettings {
        let loaders = LoaderSlot::ALL
            .into_iter()
            .filter_map(|slot| {
                let file = self.loader(slot).or_else(|| base.loader(slot))?;
                Some(Loader {
                    slot,
                    file: file.into(),
                })
            })
            .collect();
        BootSettings {
            ipxe: self.ipxe.clone().or_else(|| base.ipxe.clone()),
            loaders,
        }
    }
}

/// One machine's boot settings, keyed by its boot MAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineBoot {
    /// The machine's boot interface.
    pub mac: MacAddress,
    /// Its settings; they override its subnet's.
    pub settings: BootSettings,
}

/// What the rack does with IPv6 Router Solicitations on a subnet's link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouterAdvertisements {
    /// Answer each with a Router Advertisement of lifetime 0 ("not a
    /// router"), sent at layer 2, so that boot firmware stops waiting for
    /// IPv6 autoconfiguration on IPv4-only sites.
    #[default]
    NotARouter,
    /// Stay silent: a real IPv6 router serves the link.
    Off,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loader(slot: LoaderSlot, file: &str) -> Loader {
        Loader {
            slot,
            file: file.into(),
        }
    }

    #[test]
    fn a_machines_settings_override_its_subnets_field_by_field() {
        let subnet = BootSettings {
            ipxe: Some(IpxeScript::Url("http://site/boot.ipxe".into())),
            loaders: alloc::vec![
                loader(LoaderSlot::Bios, "files/site.kpxe"),
                loader(LoaderSlot::UefiX64, "ipxe.efi"),
            ],
        };
        let machine = BootSettings {
            ipxe: None,
            loaders: alloc::vec![loader(LoaderSlot::UefiX64, "snponly.efi")],
        };
        let merged = machine.over(&subnet);
        assert_eq!(merged.ipxe, subnet.ipxe);
        assert_eq!(merged.loader(LoaderSlot::Bios), Some("files/site.kpxe"));
        assert_eq!(merged.loader(LoaderSlot::UefiX64), Some("snponly.efi"));
        assert_eq!(merged.loader(LoaderSlot::UefiX64Http), None);
        assert!(BootSettings::default()
            .over(&BootSettings::default())
            .is_empty());
    }

    #[test]
    fn slot_names_round_trip_and_every_architecture_has_a_slot() {
        for slot in LoaderSlot::ALL {
            assert_eq!(LoaderSlot::from_name(slot.name()), Some(slot));
        }
        assert_eq!(LoaderSlot::from_name("uefi"), None);
        assert_eq!(LoaderSlot::of(ClientArch::Ebc), LoaderSlot::UefiX64);
        assert_eq!(
            LoaderSlot::of(ClientArch::X64UefiHttp),
            LoaderSlot::UefiX64Http
        );
    }
}
