//! Power control of machines through their BMCs, requested by the region and
//! carried out by a rack that can reach the BMC.

use alloc::string::String;

use serde::{Deserialize, Serialize};

/// Which protocol a BMC speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PowerDriverKind {
    /// IPMI 2.0 over LAN (RMCP+, "lanplus").
    IpmiLan,
}

/// How to reach and log in to one machine's BMC.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerParameters {
    /// The BMC's protocol.
    pub driver: PowerDriverKind,
    /// Host name or IP address of the BMC.
    pub address: String,
    /// UDP port of the BMC (623 for IPMI).
    pub port: u16,
    /// BMC user name.
    pub username: String,
    /// BMC password. Never logged: `Debug` leaves it out.
    pub password: String,
}

impl core::fmt::Debug for PowerParameters {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PowerParameters")
            .field("driver", &self.driver)
            .field("address", &self.address)
            .field("port", &self.port)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The device a machine boots from next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BootDevice {
    /// Network boot (PXE / HTTP boot).
    Pxe,
    /// The local disk.
    Disk,
}

/// What to do to a machine's power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PowerAction {
    /// Power on (no-op when already on).
    On,
    /// Hard power off.
    Off,
    /// Power off, then on.
    Cycle,
    /// Ask the operating system to shut down (ACPI soft off).
    SoftOff,
    /// Only read the current state.
    Query,
    /// Set the device for the next boot, persistently until changed.
    SetBootDevice(BootDevice),
}

/// A machine's power as observed at its BMC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PowerState {
    /// Running.
    On,
    /// Off.
    Off,
}

/// Why a power action did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PowerFailureKind {
    /// The BMC rejected the user name or password.
    Authentication,
    /// The BMC did not answer within the bound.
    Timeout,
    /// The BMC could not be reached at all (no route, bad address).
    Unreachable,
    /// The BMC does not support the cipher suite the driver requires.
    UnsupportedCipher,
    /// The BMC answered the command with an error completion code.
    Refused,
    /// The rack has no driver for this BMC.
    UnsupportedDriver,
    /// Anything else; see the detail.
    Other,
}

/// A failed power action with a message meant for an operator. It never
/// contains the BMC password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerFailure {
    /// The class of failure.
    pub kind: PowerFailureKind,
    /// What happened, in words.
    pub detail: String,
}

/// A region's request that a rack act on one BMC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerRequest {
    /// The BMC to talk to.
    pub parameters: PowerParameters,
    /// What to do.
    pub action: PowerAction,
}

/// The state a BMC reported after the action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerObservation {
    /// Power state read back from the BMC after the action.
    pub state: PowerState,
}

/// The rack's answer to a [`PowerRequest`].
pub type PowerOutcome = Result<PowerObservation, PowerFailure>;
