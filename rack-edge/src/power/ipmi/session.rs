//! One IPMI 2.0 (RMCP+) session with a BMC: open it with ipmi-rs, raise its
//! privilege, carry commands, close it.
//!
//! The session is closed with the IPMI Close Session command when the
//! [`Session`] is dropped, so that every path, the error paths included,
//! gives the BMC its session slot back (BMCs have few: 4 to 16 is common, and
//! an abandoned session holds its slot until the BMC times it out).

use std::fmt;
use std::time::Duration;

use ipmi_rs::connection::{IpmiCommand, Message, NetFn};
use ipmi_rs::rmcp::Rmcp;
use ipmi_rs::Ipmi;
use tracing::debug;

use super::errors::Context;
use crate::power::{BmcEndpoint, PowerError};

/// Set Session Privilege Level (NetFn App, command 0x3B).
pub const CMD_SET_SESSION_PRIVILEGE_LEVEL: u8 = 0x3b;
/// Close Session (NetFn App, command 0x3C).
pub const CMD_CLOSE_SESSION: u8 = 0x3c;
/// The Operator privilege level: enough for chassis control and boot
/// options, and the least that is.
pub const PRIVILEGE_OPERATOR: u8 = 0x03;

/// The longest user name IPMI carries (RAKP message 1 has 16 bytes for it).
pub const MAX_USERNAME_LEN: usize = 16;
/// The longest IPMI 2.0 password.
pub const MAX_PASSWORD_LEN: usize = 20;

/// Set Session Privilege Level: RMCP+ sessions start at User privilege,
/// which may not control the chassis, whatever the RAKP exchange requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetSessionPrivilegeLevel(pub u8);

impl From<SetSessionPrivilegeLevel> for Message {
    fn from(SetSessionPrivilegeLevel(level): SetSessionPrivilegeLevel) -> Self {
        Message::new_request(NetFn::App, CMD_SET_SESSION_PRIVILEGE_LEVEL, vec![level])
    }
}

impl IpmiCommand for SetSessionPrivilegeLevel {
    /// The privilege level now in force.
    type Output = u8;
    type Error = super::chassis::DecodeError;

    fn parse_success_response(data: &[u8]) -> Result<Self::Output, Self::Error> {
        data.first()
            .map(|level| level & 0x0f)
            .ok_or(super::chassis::DecodeError::TooShort { need: 1, got: 0 })
    }
}

/// Close Session, for the session with the BMC-assigned (managed system)
/// session ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseSession {
    /// The managed system session ID, as the BMC assigned it.
    pub session_id: u32,
}

impl From<CloseSession> for Message {
    fn from(close: CloseSession) -> Self {
        Message::new_request(
            NetFn::App,
            CMD_CLOSE_SESSION,
            close.session_id.to_le_bytes().to_vec(),
        )
    }
}

impl IpmiCommand for CloseSession {
    type Output = ();
    type Error = super::chassis::DecodeError;

    fn parse_success_response(_data: &[u8]) -> Result<Self::Output, Self::Error> {
        Ok(())
    }
}

/// A user name and password for a BMC. `Debug` leaves the password out.
#[derive(Clone)]
pub(super) struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Which session ipmi-rs established, read from its `Debug` output.
///
/// ipmi-rs 0.6 keeps the session state private: it exposes neither the IPMI
/// version it fell back to nor the session ID that Close Session needs. Its
/// `Debug` output shows both (and redacts the password and keys), so that is
/// where they are read. If a new ipmi-rs version changes the layout, the
/// session is treated as RMCP+ of unknown ID: it still works, but is left to
/// the BMC's session timeout instead of being closed.
///
/// That is why `ipmi-rs` is pinned exactly (`=0.6.0` in rack-edge's
/// Cargo.toml): the pin stays until upstream offers an accessor for the
/// session ID (and the negotiated IPMI version); then this parsing goes and
/// the pin can loosen. A test below pins the shapes this parsing expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SessionKind {
    /// IPMI 2.0 RMCP+, with the managed system session ID when it was found.
    RmcpPlus(Option<u32>),
    /// IPMI 1.5, which ipmi-rs falls back to when the BMC offers no 2.0.
    Ipmi15(Option<u32>),
}

impl SessionKind {
    pub fn of(rmcp: &Rmcp) -> Self {
        Self::parse_debug(&format!("{rmcp:?}"))
    }

    fn parse_debug(text: &str) -> Self {
        let session_id = text.find("session_id: ").and_then(|at| {
            let rest = &text[at + "session_id: ".len()..];
            let rest = rest.strip_prefix("Some(").unwrap_or(rest);
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().ok()
        });
        if text.contains("V1_5(") {
            Self::Ipmi15(session_id)
        } else {
            Self::RmcpPlus(session_id)
        }
    }
}

/// An open session. Dropping it closes it on the BMC (best effort).
pub(super) struct Session {
    ipmi: Ipmi<Rmcp>,
    bmc: BmcEndpoint,
    username: String,
    response_timeout: Duration,
    session_id: Option<u32>,
    /// Whether the last exchange ended with an answer from the BMC. After a
    /// timeout or a socket error, Close Session would only wait in vain.
    answering: bool,
}

impl Session {
    /// Opens an RMCP+ session (cipher suite 3) at administrator privilege,
    /// then lowers the session to Operator privilege, which chassis control
    /// needs. Each receive waits at most `response_timeout`.
    pub fn open(
        bmc: &BmcEndpoint,
        credentials: &Credentials,
        response_timeout: Duration,
    ) -> Result<Self, PowerError> {
        let context = Context {
            bmc,
            username: &credentials.username,
            response_timeout,
        };
        check_credentials(&context, credentials)?;

        // Name resolution happens here (blocking, like the rest).
        let mut rmcp = Rmcp::new((bmc.host(), bmc.port()), response_timeout).map_err(|e| {
            PowerError::Unreachable {
                bmc: bmc.clone(),
                detail: format!("cannot resolve the BMC's address: {e}"),
            }
        })?;
        rmcp.activate(
            true,
            Some(&credentials.username),
            Some(credentials.password.as_bytes()),
        )
        .map_err(|e| context.activation(e))?;

        let kind = SessionKind::of(&rmcp);
        let (session_id, refuse) = match kind {
            SessionKind::RmcpPlus(id) => (id, false),
            SessionKind::Ipmi15(id) => (id, true),
        };
        let mut session = Session {
            ipmi: Ipmi::new(rmcp),
            bmc: bmc.clone(),
            username: credentials.username.clone(),
            response_timeout,
            session_id,
            answering: true,
        };
        debug!(bmc = %bmc, session = ?kind, "IPMI session open");
        if refuse {
            // Dropping `session` closes it.
            return Err(PowerError::UnsupportedCipher {
                bmc: bmc.clone(),
                detail: "the BMC offers only IPMI 1.5 sessions; IPMI 2.0 (RMCP+) with \
                         cipher suite 3 is required"
                    .into(),
            });
        }
        session.command(
            "Set Session Privilege Level",
            SetSessionPrivilegeLevel(PRIVILEGE_OPERATOR),
        )?;
        Ok(session)
    }

    /// Sends `command` (named as in the IPMI specification, for errors) and
    /// decodes its answer.
    pub fn command<C>(&mut self, name: &'static str, command: C) -> Result<C::Output, PowerError>
    where
        C: IpmiCommand,
        C::Error: fmt::Debug,
    {
        let result = self.ipmi.send_recv(command).map_err(|e| {
            Context {
                bmc: &self.bmc,
                username: &self.username,
                response_timeout: self.response_timeout,
            }
            .command(name, e)
        });
        // A refusal is an answer; anything else may mean the BMC is gone.
        self.answering = matches!(result, Ok(_) | Err(PowerError::Refused { .. }));
        result
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // ipmi-rs can panic on socket errors; a second panic while unwinding
        // from one would abort the process.
        if std::thread::panicking() || !self.answering {
            return;
        }
        let Some(session_id) = self.session_id else {
            debug!(bmc = %self.bmc, "IPMI session ID unknown; left to the BMC's session timeout");
            return;
        };
        match self.ipmi.send_recv(CloseSession { session_id }) {
            Ok(()) => debug!(bmc = %self.bmc, session_id, "IPMI session closed"),
            Err(e) => debug!(bmc = %self.bmc, session_id, error = ?e, "IPMI Close Session failed"),
        }
    }
}

/// ipmi-rs silently logs in as the anonymous user when the user name is not
/// ASCII, and truncates longer names; refuse such names rather than try
/// another user than the one configured.
fn check_credentials(context: &Context<'_>, credentials: &Credentials) -> Result<(), PowerError> {
    let name = &credentials.username;
    let problem = if name.len() > MAX_USERNAME_LEN {
        Some(format!(
            "IPMI user names are at most {MAX_USERNAME_LEN} bytes"
        ))
    } else if !name.chars().all(|c| c.is_ascii() && c != '\0') {
        Some("IPMI user names are ASCII without NUL".to_owned())
    } else if credentials.password.len() > MAX_PASSWORD_LEN {
        Some(format!(
            "IPMI 2.0 passwords are at most {MAX_PASSWORD_LEN} bytes"
        ))
    } else {
        None
    };
    match problem {
        Some(detail) => Err(PowerError::Authentication {
            bmc: context.bmc.clone(),
            username: name.clone(),
            detail,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgemetal_protocol::PowerFailureKind;

    #[test]
    fn session_commands_encode_as_specified() {
        let privilege: Message = SetSessionPrivilegeLevel(PRIVILEGE_OPERATOR).into();
        assert_eq!(
            (privilege.netfn_raw(), privilege.cmd(), privilege.data()),
            (0x06, 0x3b, &[0x03][..])
        );
        let close: Message = CloseSession {
            session_id: 0x1234_5678,
        }
        .into();
        assert_eq!(
            (close.netfn_raw(), close.cmd(), close.data()),
            (0x06, 0x3c, &[0x78, 0x56, 0x34, 0x12][..])
        );
        assert_eq!(
            SetSessionPrivilegeLevel::parse_success_response(&[0x03]),
            Ok(3)
        );
    }

    #[test]
    fn session_kind_is_read_from_the_ipmi_rs_debug_layout() {
        // Shapes of ipmi-rs 0.6's `Debug` output for an active connection.
        let v2 = "Rmcp { unbound_state: RmcpWithState(Unbound { address: 127.0.0.1:9001, \
                  timeout: 1s }), active_state: Some(RmcpWithState(V2_0(State { socket: \
                  RmcpIpmiSocket { socket: UdpSocket { fd: 3 }, buffer: [6, 0, 255] }, \
                  session_id: 7700, session_sequence_number: 1, state: CryptoState { \
                  password: \"<redacted>\" } }))) }";
        assert_eq!(
            SessionKind::parse_debug(v2),
            SessionKind::RmcpPlus(Some(7700))
        );
        let v15 = "Rmcp { active_state: Some(RmcpWithState(V1_5(State { socket: \
                   RmcpIpmiSocket { buffer: [] }, session_id: Some(42), auth_type: MD5 })))}";
        assert_eq!(SessionKind::parse_debug(v15), SessionKind::Ipmi15(Some(42)));
        assert_eq!(
            SessionKind::parse_debug("Rmcp { something: else }"),
            SessionKind::RmcpPlus(None)
        );
    }

    #[test]
    fn names_ipmi_rs_would_replace_are_refused() {
        let bmc = BmcEndpoint::new("10.0.0.5", 623);
        for username in ["a-name-longer-than-16", "émile"] {
            let credentials = Credentials {
                username: username.into(),
                password: "pw".into(),
            };
            let context = Context {
                bmc: &bmc,
                username,
                response_timeout: Duration::from_secs(1),
            };
            let e = check_credentials(&context, &credentials).unwrap_err();
            assert_eq!(e.kind(), PowerFailureKind::Authentication);
        }
    }

    #[test]
    fn credentials_debug_leaves_the_password_out() {
        let credentials = Credentials {
            username: "admin".into(),
            password: "hunter2-secret".into(),
        };
        let text = format!("{credentials:?}");
        assert!(text.contains("admin"));
        assert!(!text.contains("hunter2"));
    }
}
