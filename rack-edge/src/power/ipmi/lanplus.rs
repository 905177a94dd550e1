//! The IPMI 2.0 over LAN ("lanplus") power driver.

use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use edgemetal_protocol::{PowerAction, PowerObservation, PowerParameters, PowerState};
use tracing::{debug, warn};

use super::chassis::{BootFlags, ChassisControl, GetBootFlags, GetChassisStatus, SetBootFlags};
use super::session::{Credentials, Session};
use crate::power::{BmcEndpoint, PowerDriver, PowerError};

/// Timeouts and retries of the IPMI LAN driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpmiLanOptions {
    /// How long to wait for each answer from the BMC. BMCs sit on the site's
    /// LAN and answer in milliseconds; a second or two leaves room for a
    /// busy BMC.
    pub response_timeout: Duration,
    /// How many times to try when an answer does not come (UDP loses
    /// packets). At least one try is always made.
    pub attempts: u32,
}

impl Default for IpmiLanOptions {
    fn default() -> Self {
        Self {
            response_timeout: Duration::from_secs(2),
            attempts: 3,
        }
    }
}

/// A [`PowerDriver`] for one BMC over IPMI 2.0 LAN (RMCP+, cipher suite 3:
/// RAKP-HMAC-SHA1 authentication, HMAC-SHA1-96 integrity, AES-CBC-128
/// confidentiality).
///
/// Every call opens a session, runs its commands and closes the session; no
/// session outlives a call, so a BMC reboot or a changed password between
/// calls costs nothing.
///
/// Retries: when an answer does not come in time, the driver opens a new
/// session and carries on where it stopped: an action whose answer was
/// received is not repeated, and a power cycle whose answer was lost is not
/// repeated either (a second cycle would cut the power of a machine that may
/// already be booting again); that case ends in [`PowerError::Timeout`].
pub struct IpmiLanDriver {
    bmc: BmcEndpoint,
    credentials: Credentials,
    options: IpmiLanOptions,
}

impl std::fmt::Debug for IpmiLanDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpmiLanDriver")
            .field("bmc", &self.bmc)
            .field("credentials", &self.credentials)
            .field("options", &self.options)
            .finish()
    }
}

/// A failed try, and whether trying again may repeat an effect on the
/// machine that already happened.
struct Failure {
    error: PowerError,
    may_retry: bool,
}

impl From<PowerError> for Failure {
    fn from(error: PowerError) -> Self {
        Self {
            error,
            may_retry: true,
        }
    }
}

impl IpmiLanDriver {
    /// A driver for the BMC described by `parameters` (the driver kind in
    /// them is not checked; the executor chooses drivers by kind).
    pub fn new(parameters: &PowerParameters, options: IpmiLanOptions) -> Self {
        Self {
            bmc: BmcEndpoint::of(parameters),
            credentials: Credentials {
                username: parameters.username.clone(),
                password: parameters.password.clone(),
            },
            options,
        }
    }

    /// The BMC this driver talks to.
    pub fn bmc(&self) -> &BmcEndpoint {
        &self.bmc
    }

    /// Reads the boot flags (next boot device, persistence) back from the
    /// BMC, for diagnosis and tests.
    pub fn boot_flags(&self) -> Result<BootFlags, PowerError> {
        self.with_session("read boot flags", |session| {
            Ok(session.command("Get System Boot Options", GetBootFlags)?)
        })
    }

    /// Runs `step` in a fresh session, again in a new session while it fails
    /// with a timeout that may be retried, up to the configured attempts.
    fn with_session<T>(
        &self,
        what: &str,
        mut step: impl FnMut(&mut Session) -> Result<T, Failure>,
    ) -> Result<T, PowerError> {
        let attempts = self.options.attempts.max(1);
        let mut attempt = 1;
        loop {
            debug!(bmc = %self.bmc, attempt, what, "IPMI attempt");
            let failure = match self.attempt(&mut step) {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            let timed_out = matches!(failure.error, PowerError::Timeout { .. });
            if !(timed_out && failure.may_retry && attempt < attempts) {
                return Err(note_attempts(failure.error, attempt));
            }
            warn!(bmc = %self.bmc, attempt, what, error = %failure.error, "IPMI attempt timed out; trying again");
            attempt += 1;
        }
    }

    /// One try: a session, `step` in it, the session closed (on drop).
    fn attempt<T>(
        &self,
        step: &mut impl FnMut(&mut Session) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        // ipmi-rs 0.6 unwraps some socket and parsing results; a panic there
        // must become an error of this one request, not of the rack.
        let run = AssertUnwindSafe(|| {
            let mut session =
                Session::open(&self.bmc, &self.credentials, self.options.response_timeout)?;
            step(&mut session)
        });
        match panic::catch_unwind(run) {
            Ok(result) => result,
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown cause".to_owned());
                Err(Failure {
                    error: PowerError::Other {
                        bmc: self.bmc.clone(),
                        detail: format!("the IPMI library failed: {message}"),
                    },
                    may_retry: false,
                })
            }
        }
    }
}

impl PowerDriver for IpmiLanDriver {
    fn execute(&self, action: PowerAction) -> Result<PowerObservation, PowerError> {
        // Set once the BMC has acknowledged the action, so that a retry
        // after a lost status answer does not act twice.
        let mut acknowledged = action == PowerAction::Query;
        let state = self.with_session(&format!("{action:?}"), |session| {
            if !acknowledged {
                perform(session, action)?;
                acknowledged = true;
            }
            Ok(query(session)?)
        })?;
        debug!(bmc = %self.bmc, ?action, ?state, "IPMI power action done");
        Ok(PowerObservation { state })
    }
}

/// Sends the command(s) of `action` (everything but the read-back).
fn perform(session: &mut Session, action: PowerAction) -> Result<(), Failure> {
    let control = |session: &mut Session, control| session.command("Chassis Control", control);
    match action {
        PowerAction::Query => Ok(()),
        PowerAction::On => Ok(control(session, ChassisControl::PowerUp)?),
        PowerAction::Off => Ok(control(session, ChassisControl::PowerDown)?),
        PowerAction::SoftOff => Ok(control(session, ChassisControl::SoftShutdown)?),
        // The specification lets a BMC refuse a power cycle of a machine
        // that is off (completion code 0xD5), and many do; "off, then on"
        // of a machine already off is a power on.
        PowerAction::Cycle if query(session)? == PowerState::Off => {
            Ok(control(session, ChassisControl::PowerUp)?)
        }
        PowerAction::Cycle => {
            control(session, ChassisControl::PowerCycle).map_err(|error| match error {
                PowerError::Timeout { bmc, detail } => Failure {
                    error: PowerError::Timeout {
                        bmc,
                        detail: format!(
                            "{detail}; the power cycle may have started, so it is not repeated"
                        ),
                    },
                    may_retry: false,
                },
                error => error.into(),
            })
        }
        PowerAction::SetBootDevice(device) => Ok(session.command(
            "Set System Boot Options",
            SetBootFlags(BootFlags::force(device.into())),
        )?),
    }
}

fn query(session: &mut Session) -> Result<PowerState, PowerError> {
    Ok(session
        .command("Get Chassis Status", GetChassisStatus)?
        .power_state())
}

/// Says in a timeout's detail how many tries it took.
fn note_attempts(error: PowerError, attempts: u32) -> PowerError {
    match error {
        PowerError::Timeout { bmc, detail } if attempts > 1 => PowerError::Timeout {
            bmc,
            detail: format!("{detail} ({attempts} attempts)"),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgemetal_protocol::PowerDriverKind;

    #[test]
    fn driver_debug_leaves_the_password_out() {
        let driver = IpmiLanDriver::new(
            &PowerParameters {
                driver: PowerDriverKind::IpmiLan,
                address: "10.0.0.5".into(),
                port: 623,
                username: "admin".into(),
                password: "hunter2-secret".into(),
            },
            IpmiLanOptions::default(),
        );
        let text = format!("{driver:?}");
        assert!(
            text.contains("10.0.0.5") && text.contains("admin"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn only_retried_timeouts_mention_the_attempts() {
        let bmc = BmcEndpoint::new("bmc", 623);
        let timeout = PowerError::Timeout {
            bmc: bmc.clone(),
            detail: "no answer".into(),
        };
        assert_eq!(
            note_attempts(timeout.clone(), 3).to_string(),
            "BMC bmc:623 did not answer: no answer (3 attempts)"
        );
        assert_eq!(note_attempts(timeout.clone(), 1), timeout);
    }
}
