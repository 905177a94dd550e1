//! An upstream resolver as the operator writes it: an address, with a port
//! in dnsmasq's `addr#port` form or the socket-address form (`addr:port`,
//! `[v6]:port`); port 53 when none is given.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// One DNS forwarder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarder(pub SocketAddr);

/// Why a forwarder does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a forwarder: use an IP address, optionally with a port (192.0.2.1, 192.0.2.1#5353, 192.0.2.1:5353, 2001:db8::1#5353 or [2001:db8::1]:5353)")]
pub struct InvalidForwarder(pub String);

impl FromStr for Forwarder {
    type Err = InvalidForwarder;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidForwarder(text.to_string());
        let port = |port: &str| port.parse::<u16>().ok().filter(|p| *p != 0);
        let address = if let Ok(ip) = text.parse::<IpAddr>() {
            SocketAddr::new(ip, 53)
        } else if let Some((ip, port_text)) = text.rsplit_once('#') {
            SocketAddr::new(
                ip.parse().map_err(|_| invalid())?,
                port(port_text).ok_or_else(invalid)?,
            )
        } else {
            let address: SocketAddr = text.parse().map_err(|_| invalid())?;
            if address.port() == 0 {
                return Err(invalid());
            }
            address
        };
        Ok(Forwarder(address))
    }
}

impl fmt::Display for Forwarder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for Forwarder {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SocketAddr, InvalidForwarder> {
        text.parse::<Forwarder>().map(|f| f.0)
    }

    #[test]
    fn every_written_form_parses_with_port_53_as_the_default() {
        let at = |text: &str| text.parse::<SocketAddr>().unwrap();
        assert_eq!(parse("192.0.2.1").unwrap(), at("192.0.2.1:53"));
        assert_eq!(parse("192.0.2.1#5353").unwrap(), at("192.0.2.1:5353"));
        assert_eq!(parse("192.0.2.1:5353").unwrap(), at("192.0.2.1:5353"));
        assert_eq!(parse("2001:db8::1").unwrap(), at("[2001:db8::1]:53"));
        assert_eq!(parse("2001:db8::1#5353").unwrap(), at("[2001:db8::1]:5353"));
        assert_eq!(
            parse("[2001:db8::1]:5353").unwrap(),
            at("[2001:db8::1]:5353")
        );
    }

    #[test]
    fn names_bad_ports_and_port_zero_are_refused() {
        for text in [
            "dns.example",
            "192.0.2.1#",
            "192.0.2.1#0",
            "192.0.2.1:0",
            "192.0.2.1#70000",
            "192.0.2.1#53#53",
            "",
        ] {
            assert!(parse(text).is_err(), "{text:?}");
        }
    }
}
