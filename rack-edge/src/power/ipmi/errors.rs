//! How ipmi-rs's errors map to [`PowerError`].
//!
//! ipmi-rs reports failures as nested enums of its session layers. This
//! module is the one place that knows them. What it can and cannot tell
//! apart:
//!
//! - **Wrong password**: the BMC's RAKP message 2 carries an HMAC keyed with
//!   the password; ipmi-rs checks it and fails with `ServerAuthenticationFailed`.
//!   ipmi_sim (and many BMCs) answer an unknown user name the same way, so a
//!   wrong name and a wrong password are both [`PowerError::Authentication`]
//!   with the same detail. BMCs that do say "unauthorized name" in RAKP 2
//!   get a detail naming the user.
//! - **Timeout**: every receive in ipmi-rs has the socket read timeout; its
//!   expiry (`WouldBlock`/`TimedOut`) is a timeout, whichever step it hit.
//! - **Unreachable**: the name does not resolve, the kernel has no route, or
//!   an ICMP "port unreachable" came back (Linux reports it on the connected
//!   UDP socket as `ECONNREFUSED`): nothing listens on the BMC's port.
//! - **Unsupported cipher**: the RMCP+ Open Session answer rejects the
//!   algorithms of cipher suite 3 (the only one ipmi-rs offers), or the BMC
//!   offers no IPMI 2.0 sessions at all. ipmi-rs does not export the status
//!   code type of that answer, so the status is recognised by its `Debug`
//!   name (see [`open_session_rejection`]).
//! - **Refused**: an error completion code in a command's answer.
//! - Everything else (malformed answers, local socket failures) is
//!   [`PowerError::Other`], with ipmi-rs's own description, which never
//!   contains the password (ipmi-rs redacts it in every `Debug` output).

use std::fmt;
use std::io;
use std::time::Duration;

use ipmi_rs::connection::CompletionErrorCode;
use ipmi_rs::rmcp::{
    ActivationError, ParseSessionResponseError, RakpMessage2ErrorStatusCode,
    RakpMessage2ParseError, RakpMessage4ErrorStatusCode, RakpMessage4ParseError, RmcpIpmiError,
    RmcpIpmiReceiveError, RmcpIpmiSendError, V1_5WriteError, V2_0ActivationError, V2_0WriteError,
};
use ipmi_rs::IpmiError;

use crate::power::{BmcEndpoint, PowerError};

/// The context an error is classified in: which BMC, which user, how long
/// each receive waits.
pub(super) struct Context<'a> {
    pub bmc: &'a BmcEndpoint,
    pub username: &'a str,
    pub response_timeout: Duration,
}

impl Context<'_> {
    fn other(&self, detail: impl Into<String>) -> PowerError {
        PowerError::Other {
            bmc: self.bmc.clone(),
            detail: detail.into(),
        }
    }

    fn authentication(&self, detail: impl Into<String>) -> PowerError {
        PowerError::Authentication {
            bmc: self.bmc.clone(),
            username: self.username.to_owned(),
            detail: detail.into(),
        }
    }

    fn unsupported_cipher(&self, detail: impl Into<String>) -> PowerError {
        PowerError::UnsupportedCipher {
            bmc: self.bmc.clone(),
            detail: detail.into(),
        }
    }

    /// A socket error while `doing` something.
    pub fn io(&self, doing: &str, error: &io::Error) -> PowerError {
        match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => PowerError::Timeout {
                bmc: self.bmc.clone(),
                detail: format!("no answer within {:?} while {doing}", self.response_timeout),
            },
            io::ErrorKind::ConnectionRefused => PowerError::Unreachable {
                bmc: self.bmc.clone(),
                detail: format!(
                    "nothing listens on UDP port {} (ICMP port unreachable) while {doing}",
                    self.bmc.port()
                ),
            },
            io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
                PowerError::Unreachable {
                    bmc: self.bmc.clone(),
                    detail: format!("{error} while {doing}"),
                }
            }
            _ => self.other(format!("socket error while {doing}: {error}")),
        }
    }

    /// The failure of ipmi-rs's session activation (RMCP ping, channel
    /// capabilities, RMCP+ Open Session and the RAKP exchange).
    pub fn activation(&self, error: ActivationError) -> PowerError {
        match error {
            ActivationError::BindSocket(e) => {
                self.other(format!("cannot open a local UDP socket: {e}"))
            }
            ActivationError::PingSend(e) => self.io("sending the RMCP ping", &e),
            ActivationError::PongReceive(e) => self.io("waiting for the RMCP pong", &e),
            ActivationError::PongRead | ActivationError::RmcpError(_) => {
                self.other("the answer to the RMCP ping is not an RMCP pong; is this a BMC?")
            }
            ActivationError::IpmiNotSupported => {
                self.other("the host answers RMCP pings but does not support IPMI")
            }
            ActivationError::NoSupportedIpmiLANVersions => {
                self.unsupported_cipher("the BMC offers neither IPMI 2.0 nor IPMI 1.5 sessions")
            }
            ActivationError::GetChannelAuthenticationCapabilities(e) => {
                self.command("Get Channel Authentication Capabilities", e)
            }
            // ipmi-rs falls back to IPMI 1.5 only when the BMC does not
            // offer IPMI 2.0; whatever went wrong then, 2.0 is missing.
            ActivationError::V1_5(e) => self.unsupported_cipher(format!(
                "the BMC offers no IPMI 2.0 (RMCP+) sessions, and IPMI 1.5 is not used \
                 (its login failed too: {e:?})"
            )),
            ActivationError::V2_0(e) => self.rmcp_plus(e),
        }
    }

    fn rmcp_plus(&self, error: V2_0ActivationError) -> PowerError {
        use V2_0ActivationError as E;
        match error {
            E::Io(e) => self.io("opening the RMCP+ session", &e),
            E::OpenSessionRequestSend(e) => self.write("sending the RMCP+ Open Session request", e),
            E::OpenSessionResponseReceive(e) => {
                self.receive("waiting for the RMCP+ Open Session response", e)
            }
            E::OpenSessionResponseParse(ParseSessionResponseError::HaveErrorCode(status)) => {
                let status = format!("{status:?}");
                match open_session_rejection(&status) {
                    OpenSessionRejection::Cipher => self.unsupported_cipher(format!(
                        "the RMCP+ Open Session request for cipher suite 3 \
                         (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128) was rejected: {status}"
                    )),
                    OpenSessionRejection::Role => self.authentication(format!(
                        "the BMC does not allow a session at administrator privilege: {status}"
                    )),
                    OpenSessionRejection::NoResources => {
                        self.other(format!("the BMC has no free session slot: {status}"))
                    }
                    OpenSessionRejection::Other => self.other(format!(
                        "the RMCP+ Open Session request was rejected: {status}"
                    )),
                }
            }
            E::SendRakpMessage1(e) => self.write("sending RAKP message 1", e),
            E::RakpMessage2Receive(e) => self.receive("waiting for RAKP message 2", e),
            E::RakpMessage2Parse(RakpMessage2ParseError::ErrorStatusCode(status)) => {
                use RakpMessage2ErrorStatusCode as S;
                match status {
                    S::UnauthorizedName | S::InvalidNameLength => {
                        self.authentication("the BMC does not know this user name")
                    }
                    S::InvalidRole | S::UnauthorizedRoleOrPrivilegeLevelRequested => self
                        .authentication(
                            "the user may not log in at administrator privilege, \
                             which the IPMI driver requests",
                        ),
                    S::InsufficientResourcesToCreateSessionAtRequestedRole => {
                        self.other("the BMC has no free session slot")
                    }
                    other => self.other(format!("RAKP message 2 reports an error: {other:?}")),
                }
            }
            // ipmi-rs has verified the BMC's HMAC over the exchange with our
            // password and found it wrong: the BMC used another password
            // (or, on BMCs that hide unknown names, another user).
            E::ServerAuthenticationFailed => {
                self.authentication("wrong password (or unknown user name)")
            }
            E::RakpMessage3Send(e) => self.write("sending RAKP message 3", e),
            E::RakpMessage4Receive(e) => self.receive("waiting for RAKP message 4", e),
            E::RakpMessage4Parse(RakpMessage4ParseError::ErrorStatusCode(
                RakpMessage4ErrorStatusCode::InvalidIntegrityCheckValue,
            )) => self.authentication("the BMC rejected our proof of the password (RAKP 3)"),
            // The keys derived on both sides differ although the password
            // matched: the BMC uses a BMC key (K_g), which ipmi-rs cannot.
            E::RakpMessage4InvalidIntegrityCheckValue => self.authentication(
                "RAKP message 4 does not verify; the BMC probably requires a BMC key (K_g), \
                 which is not supported",
            ),
            other => self.other(format!("RMCP+ session setup failed: {other:?}")),
        }
    }

    fn write(&self, doing: &str, error: V2_0WriteError) -> PowerError {
        match error {
            V2_0WriteError::Io(e) => self.io(doing, &e),
            other => self.other(format!("{doing}: {other:?}")),
        }
    }

    fn receive(&self, doing: &str, error: RmcpIpmiReceiveError) -> PowerError {
        match error {
            RmcpIpmiReceiveError::Io(e) => self.io(doing, &e),
            other => self.other(format!("malformed packet while {doing}: {other:?}")),
        }
    }

    /// The failure of a command sent over an established session (or of the
    /// session-less capabilities query of the activation).
    pub fn command<E: fmt::Debug>(
        &self,
        command: &'static str,
        error: IpmiError<RmcpIpmiError, E>,
    ) -> PowerError {
        let doing = format!("waiting for the answer to {command}");
        match error {
            IpmiError::Failed {
                completion_code, ..
            }
            | IpmiError::Command {
                completion_code: Some(completion_code),
                ..
            } => {
                let code = completion_code_byte(completion_code);
                PowerError::Refused {
                    bmc: self.bmc.clone(),
                    command,
                    reason: format!(
                        "completion code {code:#04x} ({})",
                        completion_code_meaning(code)
                    ),
                }
            }
            IpmiError::Command {
                error,
                completion_code: None,
                data,
                ..
            } => self.other(format!(
                "malformed answer to {command}: {error:?} (data {})",
                hex::encode(data)
            )),
            IpmiError::Connection(RmcpIpmiError::Receive(e)) => self.receive(&doing, e),
            IpmiError::Connection(RmcpIpmiError::Send(RmcpIpmiSendError::V2_0(
                V2_0WriteError::Io(e),
            )))
            | IpmiError::Connection(RmcpIpmiError::Send(RmcpIpmiSendError::V1_5(
                V1_5WriteError::Io(e),
            ))) => self.io(&format!("sending {command}"), &e),
            other => self.other(format!("{command} failed: {other:?}")),
        }
    }
}

/// What an RMCP+ Open Session rejection means for the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OpenSessionRejection {
    /// The BMC does not accept the algorithms of cipher suite 3.
    Cipher,
    /// The BMC does not accept the requested privilege (role).
    Role,
    /// The BMC has no free session slot.
    NoResources,
    /// Something else.
    Other,
}

/// Classifies the status of a rejected RMCP+ Open Session request from the
/// `Debug` text of ipmi-rs's `Result<OpenSessionResponseErrorStatusCode, u8>`:
/// ipmi-rs 0.6 does not export that enum, so its variants cannot be named.
/// Unknown codes arrive as `Err(n)` and are classified by the status byte
/// values of the IPMI 2.0 specification (table 13-15).
pub(super) fn open_session_rejection(status: &str) -> OpenSessionRejection {
    const CIPHER_NAMES: [&str; 6] = [
        "NoMatchingCipherSuite",
        "InvalidAuthenticationAlgorithm",
        "InvalidIntegrityAlgorithm",
        "InvalidConfidentialityAlgorithm",
        "NoMatchingAuthenticationPayload",
        "NoMatchingIntegrityPayload",
    ];
    if CIPHER_NAMES.iter().any(|name| status.contains(name)) {
        return OpenSessionRejection::Cipher;
    }
    if status.contains("InvalidRole") {
        return OpenSessionRejection::Role;
    }
    if status.contains("InsufficientResources") {
        return OpenSessionRejection::NoResources;
    }
    let raw = status
        .strip_prefix("Err(")
        .and_then(|rest| rest.strip_suffix(')'))
        .and_then(|n| n.parse::<u8>().ok());
    match raw {
        Some(0x04..=0x07 | 0x10 | 0x11) => OpenSessionRejection::Cipher,
        Some(0x09) => OpenSessionRejection::Role,
        Some(0x01) => OpenSessionRejection::NoResources,
        _ => OpenSessionRejection::Other,
    }
}

/// The completion code byte of an ipmi-rs completion code.
pub(super) fn completion_code_byte(code: CompletionErrorCode) -> u8 {
    use ipmi_rs::connection::CompletionErrorCode as C;
    match code {
        C::NodeBusy => 0xc0,
        C::InvalidCommand => 0xc1,
        C::InvalidCommandForLun => 0xc2,
        C::ProcessingTimeout => 0xc3,
        C::OutOfSpace => 0xc4,
        C::ReservationCancelledOrInvalidId => 0xc5,
        C::RequestDataTruncated => 0xc6,
        C::RequestDataLenInvalid => 0xc7,
        C::RequestDataLengthLimitExceeded => 0xc8,
        C::ParameterOutOfRange => 0xc9,
        C::CannotReturnNumOfRequestedBytes => 0xca,
        C::RequestedDatapointNotPresent => 0xcb,
        C::InvalidDataFieldInRequest => 0xcc,
        C::CommandIllegalForSensorOrRecord => 0xcd,
        // ipmi-rs does not export the reason's type, so it is matched by
        // its `Debug` name.
        C::ResponseUnavailable { reason } => match format!("{reason:?}").as_str() {
            "SDRInUpdate" => 0xd0,
            "DeviceInFwUpdate" => 0xd1,
            "BMCInitializing" => 0xd2,
            _ => 0xce,
        },
        C::CannotExecuteDuplicateRequest => 0xcf,
        C::DestinationUnavailable => 0xd3,
        C::InsufficientPrivilege => 0xd4,
        C::CannotExecuteCommandInCurrentState => 0xd5,
        C::SubFunctionDisabled => 0xd6,
        C::Unspecified => 0xff,
        C::Oem(v) | C::CommandSpecific(v) | C::Reserved(v) => v,
    }
}

/// The meaning of an IPMI completion code (IPMI 2.0 table 5-2), for error
/// messages.
pub fn completion_code_meaning(code: u8) -> &'static str {
    match code {
        0x00 => "success",
        0xc0 => "node busy",
        0xc1 => "invalid or unsupported command",
        0xc2 => "command invalid for the given LUN",
        0xc3 => "timeout while processing the command",
        0xc4 => "out of space",
        0xc5 => "reservation cancelled or invalid",
        0xc6 => "request data truncated",
        0xc7 => "request data length invalid",
        0xc8 => "request data field length limit exceeded",
        0xc9 => "parameter out of range",
        0xca => "cannot return the number of requested data bytes",
        0xcb => "requested sensor, data or record not present",
        0xcc => "invalid data field in request",
        0xcd => "command illegal for the specified sensor or record type",
        0xce => "command response could not be provided",
        0xcf => "cannot execute a duplicated request",
        0xd0 => "SDR repository in update mode",
        0xd1 => "device in firmware update mode",
        0xd2 => "BMC initialisation in progress",
        0xd3 => "destination unavailable",
        0xd4 => "insufficient privilege level",
        0xd5 => "command not supported in the present state",
        0xd6 => "command sub-function disabled or unavailable",
        0xff => "unspecified error",
        0x01..=0x7e => "OEM-specific error",
        0x80..=0xbe => "command-specific error",
        _ => "reserved completion code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgemetal_protocol::PowerFailureKind;

    fn context(bmc: &BmcEndpoint) -> Context<'_> {
        Context {
            bmc,
            username: "admin",
            response_timeout: Duration::from_millis(250),
        }
    }

    #[test]
    fn receive_timeouts_are_timeouts() {
        let bmc = BmcEndpoint::new("10.0.0.5", 623);
        for kind in [io::ErrorKind::WouldBlock, io::ErrorKind::TimedOut] {
            let e = context(&bmc).activation(ActivationError::PongReceive(kind.into()));
            assert_eq!(e.kind(), PowerFailureKind::Timeout, "{e}");
            assert!(e.to_string().contains("250ms"), "{e}");
        }
    }

    #[test]
    fn port_unreachable_and_no_route_are_unreachable() {
        let bmc = BmcEndpoint::new("10.0.0.5", 623);
        for kind in [
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::HostUnreachable,
            io::ErrorKind::NetworkUnreachable,
        ] {
            let e = context(&bmc).activation(ActivationError::PingSend(kind.into()));
            assert_eq!(e.kind(), PowerFailureKind::Unreachable, "{e}");
        }
    }

    #[test]
    fn a_failed_rakp_2_check_is_an_authentication_failure() {
        let bmc = BmcEndpoint::new("10.0.0.5", 623);
        let e = context(&bmc).activation(ActivationError::V2_0(
            V2_0ActivationError::ServerAuthenticationFailed,
        ));
        assert_eq!(e.kind(), PowerFailureKind::Authentication);
        assert!(e.to_string().contains("\"admin\""), "{e}");
    }

    #[test]
    fn an_unknown_name_in_rakp_2_is_an_authentication_failure() {
        let bmc = BmcEndpoint::new("10.0.0.5", 623);
        let e = context(&bmc).activation(ActivationError::V2_0(
            V2_0ActivationError::RakpMessage2Parse(RakpMessage2ParseError::ErrorStatusCode(
                RakpMessage2ErrorStatusCode::UnauthorizedName,
            )),
        ));
        assert_eq!(e.kind(), PowerFailureKind::Authentication);
    }

    #[test]
    fn open_session_rejections_are_classified_by_name_or_status_byte() {
        use OpenSessionRejection as R;
        assert_eq!(
            open_session_rejection("Ok(NoMatchingCipherSuite)"),
            R::Cipher
        );
        assert_eq!(
            open_session_rejection("Ok(InvalidIntegrityAlgorithm)"),
            R::Cipher
        );
        assert_eq!(open_session_rejection("Ok(InvalidRole)"), R::Role);
        assert_eq!(
            open_session_rejection("Ok(CommonRakp(InsufficientResourcesForSessionCreation))"),
            R::NoResources
        );
        assert_eq!(open_session_rejection("Err(17)"), R::Cipher);
        assert_eq!(open_session_rejection("Err(9)"), R::Role);
        assert_eq!(open_session_rejection("Err(200)"), R::Other);
    }

    #[test]
    fn an_error_completion_code_is_a_refusal_naming_the_code() {
        let bmc = BmcEndpoint::new("10.0.0.5", 623);
        let e = context(&bmc).command::<()>(
            "Chassis Control",
            IpmiError::Failed {
                netfn: ipmi_rs::connection::NetFn::Chassis,
                cmd: 0x02,
                completion_code: CompletionErrorCode::InsufficientPrivilege,
                data: vec![],
            },
        );
        assert_eq!(e.kind(), PowerFailureKind::Refused);
        assert_eq!(
            e.to_string(),
            "BMC 10.0.0.5:623 refused Chassis Control: \
             completion code 0xd4 (insufficient privilege level)"
        );
    }

    #[test]
    fn completion_code_bytes_round_trip_through_ipmi_rs() {
        for byte in 1..=0xff_u8 {
            let code = CompletionErrorCode::try_from(byte).expect("non-zero codes are errors");
            assert_eq!(completion_code_byte(code), byte);
        }
    }
}
