//! Parsing of `mqtts://host:port` (TLS) and `mqtt://host:port` (plaintext)
//! broker addresses, shared by region and racks.

use alloc::string::{String, ToString};
use core::fmt;
use core::str::FromStr;

/// Where an MQTT broker listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Whether the connection uses TLS (`mqtts://`).
    pub tls: bool,
}

/// Why a broker URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid broker URL {0:?}: expected mqtts://HOST:PORT (or mqtt:// for plaintext)")]
pub struct InvalidBrokerUrl(pub String);

impl FromStr for BrokerUrl {
    type Err = InvalidBrokerUrl;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidBrokerUrl(s.to_string());
        let (tls, rest) = match s.strip_prefix("mqtts://") {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix("mqtt://").ok_or_else(invalid)?),
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest.rsplit_once(':').ok_or_else(invalid)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(invalid());
        }
        Ok(BrokerUrl {
            host: host.to_string(),
            port: port.parse().map_err(|_| invalid())?,
            tls,
        })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}
