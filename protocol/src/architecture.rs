//! Client architectures: the one reading of DHCP option 93 (RFC 4578, IANA
//! "Processor Architecture Types") that the region and the racks share.
//!
//! A code says two things: the processor [`Architecture`] (which images a
//! machine boots, by its MAAS-style name) and the [`Firmware`] it network
//! boots from, plus whether that firmware boots over HTTP rather than TFTP.
//! [`ClientArch`] names the codes we serve; every other code is unknown.

use core::fmt;
use core::str::FromStr;

/// A processor architecture, as boot resources are named (MAAS-style).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Architecture {
    /// 64-bit x86.
    Amd64,
    /// 32-bit x86.
    I386,
    /// 64-bit ARM.
    Arm64,
    /// 32-bit ARM with hardware floating point.
    Armhf,
}

impl Architecture {
    /// Every architecture, in declaration order.
    pub const ALL: [Architecture; 4] = [
        Architecture::Amd64,
        Architecture::I386,
        Architecture::Arm64,
        Architecture::Armhf,
    ];

    /// The architecture of a client that sent option 93 `arch` (its first
    /// entry). Unknown or absent codes are `amd64`, the architecture of
    /// nearly every network-booting machine.
    pub const fn from_option93(arch: Option<u16>) -> Architecture {
        match arch {
            Some(code) => match ClientArch::from_code(code) {
                Some(client) => client.architecture(),
                None => Architecture::Amd64,
            },
            None => Architecture::Amd64,
        }
    }

    /// The MAAS-style name (`amd64`, `i386`, `arm64`, `armhf`), as boot
    /// resources carry it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Architecture::Amd64 => "amd64",
            Architecture::I386 => "i386",
            Architecture::Arm64 => "arm64",
            Architecture::Armhf => "armhf",
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of the [`Architecture`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownArchitecture;

impl fmt::Display for UnknownArchitecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown architecture: expected amd64, i386, arm64 or armhf")
    }
}

impl FromStr for Architecture {
    type Err = UnknownArchitecture;

    /// Parses the MAAS-style name exactly as [`Architecture::as_str`] writes it.
    fn from_str(name: &str) -> Result<Architecture, UnknownArchitecture> {
        Architecture::ALL
            .into_iter()
            .find(|arch| arch.as_str() == name)
            .ok_or(UnknownArchitecture)
    }
}

/// The firmware a client network boots from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Firmware {
    /// Legacy PC BIOS (PXE ROM).
    Bios,
    /// UEFI.
    Uefi,
}

impl Firmware {
    /// The firmware of a client that sent option 93 `arch`; `None` when the
    /// code is absent or unknown.
    pub const fn from_option93(arch: Option<u16>) -> Option<Firmware> {
        match arch {
            Some(code) => match ClientArch::from_code(code) {
                Some(client) => Some(client.firmware()),
                None => None,
            },
            None => None,
        }
    }
}

/// The option 93 codes the rack and region know, each with its meaning.
/// Codes are the IANA numbers; [`ClientArch::code`] gives them back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ClientArch {
    /// 0: x86 BIOS (PXE).
    X86Bios = 0,
    /// 6: 32-bit x86 UEFI.
    X86Uefi = 6,
    /// 7: x64 UEFI.
    X64Uefi = 7,
    /// 9: EFI byte code; x64 UEFI firmware sends it too, so it counts as
    /// amd64 UEFI.
    Ebc = 9,
    /// 10: 32-bit ARM UEFI.
    Arm32Uefi = 10,
    /// 11: 64-bit ARM UEFI.
    Arm64Uefi = 11,
    /// 16: x64 UEFI booting over HTTP.
    X64UefiHttp = 16,
    /// 19: 64-bit ARM UEFI booting over HTTP.
    Arm64UefiHttp = 19,
}

impl ClientArch {
    /// Every known code, in code order.
    pub const ALL: [ClientArch; 8] = [
        ClientArch::X86Bios,
        ClientArch::X86Uefi,
        ClientArch::X64Uefi,
        ClientArch::Ebc,
        ClientArch::Arm32Uefi,
        ClientArch::Arm64Uefi,
        ClientArch::X64UefiHttp,
        ClientArch::Arm64UefiHttp,
    ];

    /// The known meaning of option 93 code `code`, if any.
    pub const fn from_code(code: u16) -> Option<ClientArch> {
        Some(match code {
            0 => ClientArch::X86Bios,
            6 => ClientArch::X86Uefi,
            7 => ClientArch::X64Uefi,
            9 => ClientArch::Ebc,
            10 => ClientArch::Arm32Uefi,
            11 => ClientArch::Arm64Uefi,
            16 => ClientArch::X64UefiHttp,
            19 => ClientArch::Arm64UefiHttp,
            _ => return None,
        })
    }

    /// The IANA code.
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// The processor architecture the client runs.
    pub const fn architecture(self) -> Architecture {
        match self {
            ClientArch::X86Bios
            | ClientArch::X64Uefi
            | ClientArch::Ebc
            | ClientArch::X64UefiHttp => Architecture::Amd64,
            ClientArch::X86Uefi => Architecture::I386,
            ClientArch::Arm32Uefi => Architecture::Armhf,
            ClientArch::Arm64Uefi | ClientArch::Arm64UefiHttp => Architecture::Arm64,
        }
    }

    /// The firmware it boots from.
    pub const fn firmware(self) -> Firmware {
        match self {
            ClientArch::X86Bios => Firmware::Bios,
            _ => Firmware::Uefi,
        }
    }

    /// Whether the firmware boots over HTTP (UEFI HTTP boot) rather than
    /// PXE over TFTP.
    pub const fn over_http(self) -> bool {
        matches!(self, ClientArch::X64UefiHttp | ClientArch::Arm64UefiHttp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn absent_and_unknown_codes_are_amd64() {
        assert_eq!(Architecture::from_option93(None), Architecture::Amd64);
        for code in [1, 2, 8, 12, 15, 17, 18, 20, 42, u16::MAX] {
            assert_eq!(
                Architecture::from_option93(Some(code)),
                Architecture::Amd64,
                "{code}"
            );
            assert_eq!(ClientArch::from_code(code), None, "{code}");
            assert_eq!(Firmware::from_option93(Some(code)), None, "{code}");
        }
        assert_eq!(Firmware::from_option93(None), None);
    }

    #[test]
    fn known_codes_name_their_architecture() {
        let expected = [
            (0, "amd64"),
            (6, "i386"),
            (7, "amd64"),
            (9, "amd64"),
            (10, "armhf"),
            (11, "arm64"),
            (16, "amd64"),
            (19, "arm64"),
        ];
        for (code, name) in expected {
            assert_eq!(Architecture::from_option93(Some(code)).as_str(), name);
        }
    }

    #[test]
    fn only_x86_bios_is_bios_and_only_the_http_codes_boot_over_http() {
        for client in ClientArch::ALL {
            let bios = client == ClientArch::X86Bios;
            assert_eq!(client.firmware() == Firmware::Bios, bios, "{client:?}");
            assert_eq!(
                client.over_http(),
                matches!(client.code(), 16 | 19),
                "{client:?}"
            );
        }
        assert_eq!(Firmware::from_option93(Some(0)), Some(Firmware::Bios));
        assert_eq!(Firmware::from_option93(Some(7)), Some(Firmware::Uefi));
    }

    #[test]
    fn codes_round_trip() {
        for client in ClientArch::ALL {
            assert_eq!(ClientArch::from_code(client.code()), Some(client));
        }
    }

    #[test]
    fn names_round_trip_through_display_and_from_str() {
        for arch in Architecture::ALL {
            assert_eq!(arch.to_string(), arch.as_str());
            assert_eq!(arch.as_str().parse(), Ok(arch));
        }
        assert_eq!("x86_64".parse::<Architecture>(), Err(UnknownArchitecture));
        assert_eq!("AMD64".parse::<Architecture>(), Err(UnknownArchitecture));
    }

    #[test]
    fn the_legacy_function_keeps_its_table() {
        // The table `architecture_of_option93` had before it delegated here.
        let before = |arch: Option<u16>| match arch {
            Some(10) => "armhf",
            Some(11 | 19) => "arm64",
            Some(6) => "i386",
            _ => "amd64",
        };
        for code in (0..=64).map(Some).chain([None, Some(u16::MAX)]) {
            assert_eq!(
                crate::architecture_of_option93(code),
                before(code),
                "{code:?}"
            );
        }
    }
}
