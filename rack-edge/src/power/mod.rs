//! Power control of the site's machines through their BMCs.
//!
//! The region asks a rack that can reach a machine's BMC to act on its power
//! ([`edgemetal_protocol::PowerRequest`]); the rack answers with the state it
//! read back from the BMC ([`edgemetal_protocol::PowerOutcome`]).
//!
//! Three layers, each replaceable on its own:
//!
//! - [`PowerDriver`]: one BMC, one blocking call per action. A driver opens
//!   whatever session its protocol needs, performs the action, reads the power
//!   state back and closes the session. Drivers block on network I/O on
//!   purpose: the BMC libraries of the field (ipmi-rs here, a Redfish HTTP
//!   client later) are blocking, and a power action is rare and short.
//! - [`ipmi`]: the IPMI 2.0 over LAN ("lanplus", RMCP+ with cipher suite 3)
//!   driver, on top of the ipmi-rs crate, with the chassis commands ipmi-rs
//!   lacks.
//! - [`executor`]: the async front the link calls. It builds the driver for a
//!   request, runs it on tokio's blocking pool, serialises commands to one
//!   BMC (BMCs handle concurrent sessions poorly), runs different BMCs in
//!   parallel, and bounds every request with a timeout.
//!
//! BMC passwords never reach a log line or an error message: errors are
//! built only from the BMC's address, the user name and what went wrong, and
//! every type that holds a password leaves it out of its `Debug` output.

pub mod executor;
pub mod ipmi;

use std::fmt;

use edgemetal_protocol::{
    PowerAction, PowerFailure, PowerFailureKind, PowerObservation, PowerParameters,
};

pub use executor::{PowerExecutor, PowerExecutorOptions};
pub use ipmi::{IpmiLanDriver, IpmiLanOptions};

/// Drives one machine's power through its BMC.
///
/// Implementations block the calling thread on network I/O, so async code
/// must call them from a blocking thread (see [`PowerExecutor`]). They must
/// bound every wait on the BMC, so that a dead BMC yields
/// [`PowerError::Timeout`] rather than a hung thread.
pub trait PowerDriver: Send + Sync {
    /// Carries out `action`, then reads the machine's power state back from
    /// the BMC. For [`PowerAction::Query`] only the read happens.
    ///
    /// The observation is what the BMC reports after the action, which for
    /// slow transitions (a power cycle, a soft off that the operating system
    /// has yet to honour) may still be the state before it.
    fn execute(&self, action: PowerAction) -> Result<PowerObservation, PowerError>;
}

/// The network address of one BMC: host name or IP address, and UDP/TCP port.
///
/// Commands to the same endpoint are serialised by the [`PowerExecutor`]. The
/// host is compared case-insensitively and without surrounding spaces; two
/// different spellings of one BMC (a name and its address) are not detected.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BmcEndpoint {
    host: String,
    port: u16,
}

impl BmcEndpoint {
    /// The endpoint for `host` (name, IPv4 or bare IPv6 address) and `port`.
    pub fn new(host: &str, port: u16) -> Self {
        Self {
            host: host.trim().to_ascii_lowercase(),
            port,
        }
    }

    /// The endpoint of the BMC described by `parameters`.
    pub fn of(parameters: &PowerParameters) -> Self {
        Self::new(&parameters.address, parameters.port)
    }

    /// The host name or address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for BmcEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Why a power action failed.
///
/// The variants follow [`PowerFailureKind`], so that the region can tell an
/// operator whether to fix credentials, the network, or the BMC. No variant
/// ever holds the BMC password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PowerError {
    /// The BMC rejected the user name or password, or the user may not log
    /// in with the privilege the driver needs.
    #[error("BMC {bmc} rejected the login of user {username:?}: {detail}")]
    Authentication {
        /// The BMC.
        bmc: BmcEndpoint,
        /// The user name that was tried (not secret).
        username: String,
        /// What the BMC or the driver said.
        detail: String,
    },
    /// The BMC did not answer within the bound.
    #[error("BMC {bmc} did not answer: {detail}")]
    Timeout {
        /// The BMC.
        bmc: BmcEndpoint,
        /// What the driver was waiting for, and how long.
        detail: String,
    },
    /// The BMC cannot be reached at all: the name does not resolve, there is
    /// no route, or nothing listens on the port.
    #[error("BMC {bmc} is unreachable: {detail}")]
    Unreachable {
        /// The BMC.
        bmc: BmcEndpoint,
        /// What failed.
        detail: String,
    },
    /// The BMC does not offer the session security the driver requires
    /// (for IPMI: RMCP+ with cipher suite 3).
    #[error("BMC {bmc} does not support the required cipher suite: {detail}")]
    UnsupportedCipher {
        /// The BMC.
        bmc: BmcEndpoint,
        /// What the BMC offered or answered.
        detail: String,
    },
    /// The BMC answered a command with an error completion code.
    #[error("BMC {bmc} refused {command}: {reason}")]
    Refused {
        /// The BMC.
        bmc: BmcEndpoint,
        /// The command the BMC refused, by its name in the protocol's
        /// specification (for IPMI: "Chassis Control", ...).
        command: &'static str,
        /// The BMC's answer, e.g. an IPMI completion code and its meaning.
        reason: String,
    },
    /// Anything else: a malformed answer, a local socket failure, a fault in
    /// the driver.
    #[error("BMC {bmc}: {detail}")]
    Other {
        /// The BMC.
        bmc: BmcEndpoint,
        /// What happened.
        detail: String,
    },
}

impl PowerError {
    /// The class of failure, as the region sees it.
    pub fn kind(&self) -> PowerFailureKind {
        match self {
            Self::Authentication { .. } => PowerFailureKind::Authentication,
            Self::Timeout { .. } => PowerFailureKind::Timeout,
            Self::Unreachable { .. } => PowerFailureKind::Unreachable,
            Self::UnsupportedCipher { .. } => PowerFailureKind::UnsupportedCipher,
            Self::Refused { .. } => PowerFailureKind::Refused,
            Self::Other { .. } => PowerFailureKind::Other,
        }
    }

    /// The BMC the failure concerns.
    pub fn bmc(&self) -> &BmcEndpoint {
        match self {
            Self::Authentication { bmc, .. }
            | Self::Timeout { bmc, .. }
            | Self::Unreachable { bmc, .. }
            | Self::UnsupportedCipher { bmc, .. }
            | Self::Refused { bmc, .. }
            | Self::Other { bmc, .. } => bmc,
        }
    }
}

impl From<PowerError> for PowerFailure {
    fn from(error: PowerError) -> Self {
        PowerFailure {
            kind: error.kind(),
            detail: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_errors(bmc: &BmcEndpoint) -> Vec<PowerError> {
        vec![
            PowerError::Authentication {
                bmc: bmc.clone(),
                username: "admin".into(),
                detail: "wrong password".into(),
            },
            PowerError::Timeout {
                bmc: bmc.clone(),
                detail: "no answer".into(),
            },
            PowerError::Unreachable {
                bmc: bmc.clone(),
                detail: "no route".into(),
            },
            PowerError::UnsupportedCipher {
                bmc: bmc.clone(),
                detail: "no cipher suite 3".into(),
            },
            PowerError::Refused {
                bmc: bmc.clone(),
                command: "Chassis Control",
                reason: "completion code 0xcc".into(),
            },
            PowerError::Other {
                bmc: bmc.clone(),
                detail: "odd".into(),
            },
        ]
    }

    #[test]
    fn each_error_converts_to_its_protocol_kind_with_the_message_as_detail() {
        let bmc = BmcEndpoint::new("10.0.0.5", 623);
        let kinds: Vec<_> = all_errors(&bmc)
            .into_iter()
            .map(|e| {
                let message = e.to_string();
                let failure = PowerFailure::from(e);
                assert_eq!(failure.detail, message);
                assert!(
                    failure.detail.contains("10.0.0.5:623"),
                    "{}",
                    failure.detail
                );
                failure.kind
            })
            .collect();
        assert_eq!(
            kinds,
            [
                PowerFailureKind::Authentication,
                PowerFailureKind::Timeout,
                PowerFailureKind::Unreachable,
                PowerFailureKind::UnsupportedCipher,
                PowerFailureKind::Refused,
                PowerFailureKind::Other,
            ]
        );
    }

    #[test]
    fn endpoint_is_normalised_and_brackets_ipv6() {
        assert_eq!(
            BmcEndpoint::new(" BMC1.Example ", 623),
            BmcEndpoint::new("bmc1.example", 623)
        );
        assert_eq!(
            BmcEndpoint::new("fd00::5", 623).to_string(),
            "[fd00::5]:623"
        );
        assert_eq!(
            BmcEndpoint::new("10.0.0.5", 6230).to_string(),
            "10.0.0.5:6230"
        );
    }
}
