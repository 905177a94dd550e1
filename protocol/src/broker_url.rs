//! Parsing of `mqtt://host:port` broker addresses, shared by region and racks.

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
}

/// Why a broker URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid broker URL {0:?}: expected mqtt://HOST:PORT")]
pub struct InvalidBrokerUrl(pub String);

impl FromStr for BrokerUrl {
    type Err = InvalidBrokerUrl;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidBrokerUrl(s.to_string());
        let rest = s.strip_prefix("mqtt://").ok_or_else(invalid)?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest.rsplit_once(':').ok_or_else(invalid)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(invalid());
        }
        Ok(BrokerUrl {
            host: host.to_string(),
            port: port.parse().map_err(|_| invalid())?,
        })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mqtt://{}:{}", self.host, self.port)
    }
}
