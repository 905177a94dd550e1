//! What a rack receives, once, when it enrols with a single-use token.
//!
//! This travels over HTTPS from the region's API (not over MQTT): it is the
//! material the MQTT link is then secured with.

use alloc::string::String;

use serde::{Deserialize, Serialize};

/// A rack's request to enrol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolmentRequest {
    /// The single-use token an operator created (`emt_…`).
    pub token: String,
    /// The rack's host name, for the operator's benefit.
    pub hostname: String,
}

/// The rack's identity and everything it needs to reach the region securely.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolmentBundle {
    /// The rack's id.
    pub rack_id: String,
    /// The link secret (64 hex digits) from which the sealing keys derive.
    pub link_secret_hex: String,
    /// The key epoch the secret belongs to.
    pub key_epoch: u32,
    /// Where the broker is, `mqtts://HOST:PORT`.
    pub broker_url: String,
    /// The rack's own broker user name.
    pub broker_username: String,
    /// The rack's own broker password.
    pub broker_password: String,
    /// The CA certificate (PEM) the broker's certificate must chain to.
    pub ca_pem: String,
    /// After a key rotation: the previous secret (hex) and its epoch, kept so
    /// that frames sealed just before the switch still open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_link_secret: Option<(u32, String)>,
}

impl core::fmt::Debug for EnrolmentBundle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Secrets never reach logs through Debug.
        f.debug_struct("EnrolmentBundle")
            .field("rack_id", &self.rack_id)
            .field("key_epoch", &self.key_epoch)
            .field("broker_url", &self.broker_url)
            .field("broker_username", &self.broker_username)
            .finish_non_exhaustive()
    }
}
