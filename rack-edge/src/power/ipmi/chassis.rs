//! The IPMI chassis commands that ipmi-rs lacks (IPMI v2.0 specification,
//! chapter 28), as ipmi-rs [`IpmiCommand`]s.
//!
//! Each command is a plain value that encodes its request data, and each
//! answer a plain struct decoded from the response data that follows the
//! completion code. Encoding and decoding never touch a socket, so they are
//! tested with bytes alone; ipmi-rs carries them over a session.

use edgemetal_protocol::{BootDevice, PowerState};
use ipmi_rs::connection::{IpmiCommand, Message, NetFn};

/// Get Chassis Status (NetFn Chassis, command 0x01).
pub const CMD_GET_CHASSIS_STATUS: u8 = 0x01;
/// Chassis Control (NetFn Chassis, command 0x02).
pub const CMD_CHASSIS_CONTROL: u8 = 0x02;
/// Set System Boot Options (NetFn Chassis, command 0x08).
pub const CMD_SET_SYSTEM_BOOT_OPTIONS: u8 = 0x08;
/// Get System Boot Options (NetFn Chassis, command 0x09).
pub const CMD_GET_SYSTEM_BOOT_OPTIONS: u8 = 0x09;
/// The boot options parameter that holds the boot flags (device, persistence).
pub const BOOT_PARAM_BOOT_FLAGS: u8 = 5;

/// An answer that does not have the shape the specification gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer data bytes than the answer needs.
    #[error("answer has {got} data bytes, at least {need} expected")]
    TooShort {
        /// Bytes needed.
        need: usize,
        /// Bytes received.
        got: usize,
    },
    /// A boot options answer for another parameter than the one asked for.
    #[error("answer is for boot parameter {got}, parameter {expected} was asked for")]
    WrongParameter {
        /// The parameter asked for.
        expected: u8,
        /// The parameter answered.
        got: u8,
    },
}

fn need(data: &[u8], need: usize) -> Result<(), DecodeError> {
    if data.len() < need {
        Err(DecodeError::TooShort {
            need,
            got: data.len(),
        })
    } else {
        Ok(())
    }
}

/// Get Chassis Status: the machine's power state and power faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetChassisStatus;

/// What the BMC restores when AC power returns (Get Chassis Status byte 1,
/// bits 6:5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerRestorePolicy {
    /// The machine stays off.
    StayOff,
    /// The machine returns to the state it had when AC was lost.
    Restore,
    /// The machine powers up.
    AlwaysOn,
    /// The BMC does not say.
    Unknown,
}

/// The answer to [`GetChassisStatus`] (the "current power state" byte; the
/// last-power-event and miscellaneous bytes are not needed for power control).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChassisStatus {
    /// The machine's main power is on.
    pub power_on: bool,
    /// The power supply reported an overload.
    pub power_overload: bool,
    /// A chassis interlock switch is open.
    pub interlock: bool,
    /// A fault in the main power subsystem.
    pub power_fault: bool,
    /// The power control (e.g. a power-on) failed.
    pub power_control_fault: bool,
    /// What happens when AC power returns.
    pub restore_policy: PowerRestorePolicy,
}

impl ChassisStatus {
    /// Decodes the response data (after the completion code). The
    /// specification gives 3 or 4 bytes; only the first is used.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        need(data, 1)?;
        let state = data[0];
        Ok(Self {
            power_on: state & 0x01 != 0,
            power_overload: state & 0x02 != 0,
            interlock: state & 0x04 != 0,
            power_fault: state & 0x08 != 0,
            power_control_fault: state & 0x10 != 0,
            restore_policy: match (state >> 5) & 0x03 {
                0 => PowerRestorePolicy::StayOff,
                1 => PowerRestorePolicy::Restore,
                2 => PowerRestorePolicy::AlwaysOn,
                _ => PowerRestorePolicy::Unknown,
            },
        })
    }

    /// The power state as the protocol reports it.
    pub fn power_state(&self) -> PowerState {
        if self.power_on {
            PowerState::On
        } else {
            PowerState::Off
        }
    }
}

impl From<GetChassisStatus> for Message {
    fn from(_: GetChassisStatus) -> Self {
        Message::new_request(NetFn::Chassis, CMD_GET_CHASSIS_STATUS, Vec::new())
    }
}

impl IpmiCommand for GetChassisStatus {
    type Output = ChassisStatus;
    type Error = DecodeError;

    fn parse_success_response(data: &[u8]) -> Result<Self::Output, Self::Error> {
        ChassisStatus::decode(data)
    }
}

/// Chassis Control: what to do to the machine's power. The request is one
/// byte; the answer carries only the completion code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChassisControl {
    /// Hard power off, without telling the operating system.
    PowerDown,
    /// Power on.
    PowerUp,
    /// Power off, then on after a BMC-chosen delay (at least one second).
    PowerCycle,
    /// Pulse the reset line.
    HardReset,
    /// Ask the operating system to shut down (ACPI soft off, emulating a
    /// fatal over-temperature).
    SoftShutdown,
}

impl ChassisControl {
    /// The request byte.
    pub fn code(self) -> u8 {
        match self {
            Self::PowerDown => 0x00,
            Self::PowerUp => 0x01,
            Self::PowerCycle => 0x02,
            Self::HardReset => 0x03,
            Self::SoftShutdown => 0x05,
        }
    }
}

impl From<ChassisControl> for Message {
    fn from(control: ChassisControl) -> Self {
        Message::new_request(NetFn::Chassis, CMD_CHASSIS_CONTROL, vec![control.code()])
    }
}

impl IpmiCommand for ChassisControl {
    type Output = ();
    type Error = DecodeError;

    fn parse_success_response(_data: &[u8]) -> Result<Self::Output, Self::Error> {
        Ok(())
    }
}

/// The boot device selector of the boot flags (parameter 5, data byte 2,
/// bits 5:2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootDeviceSelector {
    /// No override: the BIOS boot order applies.
    NoOverride,
    /// Force PXE (network boot).
    Pxe,
    /// Force boot from the default hard drive.
    Disk,
    /// Force boot from the default hard drive, safe mode.
    DiskSafeMode,
    /// Force boot from the default diagnostic partition.
    Diagnostic,
    /// Force boot from the default CD/DVD.
    CdDvd,
    /// Force boot into the BIOS setup.
    BiosSetup,
    /// Force boot from remotely connected floppy or primary removable media.
    RemoteFloppy,
    /// Force boot from remotely connected CD/DVD.
    RemoteCdDvd,
    /// Force boot from primary remote media.
    PrimaryRemoteMedia,
    /// Force boot from remotely connected hard drive.
    RemoteDisk,
    /// Force boot from floppy or primary removable media.
    Floppy,
    /// A value the specification reserves.
    Reserved(u8),
}

impl BootDeviceSelector {
    /// The 4-bit selector value (before shifting into place).
    pub fn bits(self) -> u8 {
        match self {
            Self::NoOverride => 0x0,
            Self::Pxe => 0x1,
            Self::Disk => 0x2,
            Self::DiskSafeMode => 0x3,
            Self::Diagnostic => 0x4,
            Self::CdDvd => 0x5,
            Self::BiosSetup => 0x6,
            Self::RemoteFloppy => 0x7,
            Self::RemoteCdDvd => 0x8,
            Self::PrimaryRemoteMedia => 0x9,
            Self::RemoteDisk => 0xb,
            Self::Floppy => 0xf,
            Self::Reserved(v) => v & 0x0f,
        }
    }

    /// The selector for a 4-bit value (higher bits are ignored).
    pub fn from_bits(bits: u8) -> Self {
        match bits & 0x0f {
            0x0 => Self::NoOverride,
            0x1 => Self::Pxe,
            0x2 => Self::Disk,
            0x3 => Self::DiskSafeMode,
            0x4 => Self::Diagnostic,
            0x5 => Self::CdDvd,
            0x6 => Self::BiosSetup,
            0x7 => Self::RemoteFloppy,
            0x8 => Self::RemoteCdDvd,
            0x9 => Self::PrimaryRemoteMedia,
            0xb => Self::RemoteDisk,
            0xf => Self::Floppy,
            v => Self::Reserved(v),
        }
    }
}

impl From<BootDevice> for BootDeviceSelector {
    fn from(device: BootDevice) -> Self {
        match device {
            BootDevice::Pxe => Self::Pxe,
            BootDevice::Disk => Self::Disk,
        }
    }
}

/// The boot flags (system boot options parameter 5), the part that chooses
/// the next boot device. The console, verbosity and lock bits of bytes 2–5
/// are written as zero ("BIOS default") and ignored on reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootFlags {
    /// The flags are valid (byte 1, bit 7); BMCs ignore flags without it.
    pub valid: bool,
    /// They apply to all future boots, not only the next one (byte 1, bit 6).
    pub persistent: bool,
    /// Boot in EFI mode rather than legacy BIOS mode (byte 1, bit 5).
    pub efi: bool,
    /// The device (byte 2, bits 5:2).
    pub device: BootDeviceSelector,
}

impl BootFlags {
    /// Length of the parameter data.
    pub const LEN: usize = 5;

    /// Valid, persistent, legacy-mode flags that force `device`: what the
    /// driver writes for "boot from this device until told otherwise".
    pub fn force(device: BootDeviceSelector) -> Self {
        Self {
            valid: true,
            persistent: true,
            efi: false,
            device,
        }
    }

    /// The 5 parameter data bytes.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut byte1 = 0;
        if self.valid {
            byte1 |= 0x80;
        }
        if self.persistent {
            byte1 |= 0x40;
        }
        if self.efi {
            byte1 |= 0x20;
        }
        [byte1, self.device.bits() << 2, 0, 0, 0]
    }

    /// Decodes the parameter data (at least the first 2 bytes are needed;
    /// some BMCs shorten the rest).
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        need(data, 2)?;
        Ok(Self {
            valid: data[0] & 0x80 != 0,
            persistent: data[0] & 0x40 != 0,
            efi: data[0] & 0x20 != 0,
            device: BootDeviceSelector::from_bits(data[1] >> 2),
        })
    }
}

/// Set System Boot Options, parameter 5 (boot flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetBootFlags(pub BootFlags);

impl From<SetBootFlags> for Message {
    fn from(SetBootFlags(flags): SetBootFlags) -> Self {
        // Byte 0: bit 7 clear ("mark parameter valid/unlocked"), bits 6:0
        // the parameter selector; then the parameter data.
        let mut data = Vec::with_capacity(1 + BootFlags::LEN);
        data.push(BOOT_PARAM_BOOT_FLAGS);
        data.extend_from_slice(&flags.encode());
        Message::new_request(NetFn::Chassis, CMD_SET_SYSTEM_BOOT_OPTIONS, data)
    }
}

impl IpmiCommand for SetBootFlags {
    type Output = ();
    type Error = DecodeError;

    fn parse_success_response(_data: &[u8]) -> Result<Self::Output, Self::Error> {
        Ok(())
    }
}

/// Get System Boot Options, parameter 5 (boot flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetBootFlags;

impl From<GetBootFlags> for Message {
    fn from(_: GetBootFlags) -> Self {
        // Parameter selector, set selector 0, block selector 0.
        Message::new_request(
            NetFn::Chassis,
            CMD_GET_SYSTEM_BOOT_OPTIONS,
            vec![BOOT_PARAM_BOOT_FLAGS, 0, 0],
        )
    }
}

impl IpmiCommand for GetBootFlags {
    type Output = BootFlags;
    type Error = DecodeError;

    /// The answer is the parameter version, the parameter selector (bit 7:
    /// "invalid/locked"), then the parameter data.
    fn parse_success_response(data: &[u8]) -> Result<Self::Output, Self::Error> {
        need(data, 2)?;
        let parameter = data[1] & 0x7f;
        if parameter != BOOT_PARAM_BOOT_FLAGS {
            return Err(DecodeError::WrongParameter {
                expected: BOOT_PARAM_BOOT_FLAGS,
                got: parameter,
            });
        }
        BootFlags::decode(&data[2..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(message: impl Into<Message>) -> (u8, u8, Vec<u8>) {
        let message = message.into();
        (message.netfn_raw(), message.cmd(), message.data().to_vec())
    }

    #[test]
    fn get_chassis_status_is_an_empty_chassis_request() {
        assert_eq!(request(GetChassisStatus), (0x00, 0x01, vec![]));
    }

    #[test]
    fn chassis_status_decodes_power_and_faults() {
        let on = GetChassisStatus::parse_success_response(&[0x01, 0x00, 0x00]).unwrap();
        assert!(on.power_on);
        assert_eq!(on.power_state(), PowerState::On);
        assert_eq!(on.restore_policy, PowerRestorePolicy::StayOff);

        let off = ChassisStatus::decode(&[0x00, 0x00, 0x00, 0x00]).unwrap();
        assert_eq!(off.power_state(), PowerState::Off);

        // Restore policy "always on" (0b10 << 5), power fault, interlock, off.
        let faulty = ChassisStatus::decode(&[0x40 | 0x08 | 0x04]).unwrap();
        assert_eq!(
            faulty,
            ChassisStatus {
                power_on: false,
                power_overload: false,
                interlock: true,
                power_fault: true,
                power_control_fault: false,
                restore_policy: PowerRestorePolicy::AlwaysOn,
            }
        );
    }

    #[test]
    fn chassis_status_rejects_an_empty_answer() {
        assert_eq!(
            ChassisStatus::decode(&[]),
            Err(DecodeError::TooShort { need: 1, got: 0 })
        );
    }

    #[test]
    fn chassis_control_encodes_the_specified_codes() {
        for (control, code) in [
            (ChassisControl::PowerDown, 0x00),
            (ChassisControl::PowerUp, 0x01),
            (ChassisControl::PowerCycle, 0x02),
            (ChassisControl::HardReset, 0x03),
            (ChassisControl::SoftShutdown, 0x05),
        ] {
            assert_eq!(request(control), (0x00, 0x02, vec![code]));
        }
    }

    #[test]
    fn set_boot_flags_forces_pxe_or_disk_persistently() {
        let pxe = SetBootFlags(BootFlags::force(BootDevice::Pxe.into()));
        assert_eq!(
            request(pxe),
            (0x00, 0x08, vec![0x05, 0xc0, 0x04, 0x00, 0x00, 0x00])
        );
        let disk = SetBootFlags(BootFlags::force(BootDevice::Disk.into()));
        assert_eq!(
            request(disk),
            (0x00, 0x08, vec![0x05, 0xc0, 0x08, 0x00, 0x00, 0x00])
        );
    }

    #[test]
    fn boot_flags_encode_efi_and_next_boot_only() {
        let flags = BootFlags {
            valid: true,
            persistent: false,
            efi: true,
            device: BootDeviceSelector::CdDvd,
        };
        assert_eq!(flags.encode(), [0xa0, 0x14, 0, 0, 0]);
        assert_eq!(BootFlags::decode(&flags.encode()), Ok(flags));
    }

    #[test]
    fn get_boot_flags_asks_for_parameter_5() {
        assert_eq!(request(GetBootFlags), (0x00, 0x09, vec![0x05, 0x00, 0x00]));
    }

    #[test]
    fn get_boot_flags_decodes_the_answer_of_ipmi_sim() {
        // ipmi_sim answers version 1, parameter 5, then flags with only the
        // device set (it keeps no valid/persistent bits).
        let flags = GetBootFlags::parse_success_response(&[0x01, 0x05, 0x00, 0x04, 0, 0, 0]);
        assert_eq!(
            flags,
            Ok(BootFlags {
                valid: false,
                persistent: false,
                efi: false,
                device: BootDeviceSelector::Pxe,
            })
        );
        let disk = GetBootFlags::parse_success_response(&[0x01, 0x05, 0xc0, 0x08, 0, 0, 0]);
        assert_eq!(disk, Ok(BootFlags::force(BootDeviceSelector::Disk)));
    }

    #[test]
    fn get_boot_flags_ignores_the_locked_bit_but_checks_the_parameter() {
        let locked = GetBootFlags::parse_success_response(&[0x01, 0x85, 0x80, 0x04, 0, 0, 0]);
        assert_eq!(locked.map(|f| f.device), Ok(BootDeviceSelector::Pxe));
        assert_eq!(
            GetBootFlags::parse_success_response(&[0x01, 0x04, 0x00, 0x00]),
            Err(DecodeError::WrongParameter {
                expected: 5,
                got: 4
            })
        );
        assert_eq!(
            GetBootFlags::parse_success_response(&[0x01, 0x05, 0x80]),
            Err(DecodeError::TooShort { need: 2, got: 1 })
        );
    }

    #[test]
    fn boot_device_selector_round_trips_every_4_bit_value() {
        for bits in 0..=0x0f {
            assert_eq!(BootDeviceSelector::from_bits(bits).bits(), bits);
        }
        assert_eq!(
            BootDeviceSelector::from_bits(0x0a),
            BootDeviceSelector::Reserved(0x0a)
        );
    }
}
