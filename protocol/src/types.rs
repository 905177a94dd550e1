//! Small value types that give the link's fields their meaning.

use alloc::string::{String, ToString};
use core::fmt;
use core::net::Ipv4Addr;
use core::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The identity of one rack-edge appliance.
///
/// Restricted to `[a-z0-9-]`, 1 to 64 characters, so that it is always safe
/// as an MQTT topic level (no `/`, `+` or `#`) and as a file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RackId(String);

/// Why a string is not a valid [`RackId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rack id {0:?}: use 1 to 64 characters of a-z, 0-9 and '-'")]
pub struct InvalidRackId(pub String);

impl RackId {
    /// Validates and wraps a rack id.
    pub fn new(id: &str) -> Result<Self, InvalidRackId> {
        let valid = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if valid {
            Ok(RackId(id.to_string()))
        } else {
            Err(InvalidRackId(id.to_string()))
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for RackId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        RackId::new(&raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for RackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RackId {
    type Err = InvalidRackId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RackId::new(s)
    }
}

/// A 128-bit message id, random per message; receivers deduplicate on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId(pub [u8; 16]);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// The version of a rack's configuration; every region-side change bumps it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Generation(pub u64);

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An Ethernet hardware address.
///
/// Human-readable formats (JSON) carry it as `52:54:00:12:34:56`; binary
/// formats (postcard) as six bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddress(pub [u8; 6]);

impl Serialize for MacAddress {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for MacAddress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 6]>::deserialize(deserializer).map(MacAddress)
        }
    }
}

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex octets like 52:54:00:12:34:56")]
pub struct InvalidMacAddress(pub String);

impl FromStr for MacAddress {
    type Err = InvalidMacAddress;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidMacAddress(s.to_string());
        let mut octets = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for octet in octets.iter_mut() {
            let part = parts.next().ok_or_else(invalid)?;
            if part.len() != 2 {
                return Err(invalid());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| invalid())?;
        }
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(MacAddress(octets))
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// An IPv4 network in CIDR form; the address has no host bits set.
///
/// Human-readable formats carry it as `10.0.0.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix_len: u8,
}

/// Why a value is not an IPv4 network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCidr {
    /// Not of the form `a.b.c.d/len`.
    #[error("invalid CIDR {0:?}: expected a.b.c.d/len")]
    Syntax(String),
    /// The prefix length is over 32.
    #[error("prefix length {0} is over 32")]
    PrefixTooLong(u8),
    /// Bits are set below the prefix.
    #[error("{0} has host bits set; did you mean its network address?")]
    HostBitsSet(String),
}

impl Ipv4Cidr {
    /// Builds a network; refuses host bits below the prefix.
    pub fn new(network: Ipv4Addr, prefix_len: u8) -> Result<Self, InvalidCidr> {
        if prefix_len > 32 {
            return Err(InvalidCidr::PrefixTooLong(prefix_len));
        }
        let cidr = Ipv4Cidr {
            network,
            prefix_len,
        };
        if u32::from(network) & !cidr.mask() != 0 {
            return Err(InvalidCidr::HostBitsSet(cidr.to_string()));
        }
        Ok(cidr)
    }

    /// The network an interface address with this prefix length sits in
    /// (`10.0.0.7`, 24 → `10.0.0.0/24`): host bits are cleared, not refused.
    pub fn containing(address: Ipv4Addr, prefix_len: u8) -> Result<Self, InvalidCidr> {
        if prefix_len > 32 {
            return Err(InvalidCidr::PrefixTooLong(prefix_len));
        }
        let unmasked = Ipv4Cidr {
            network: address,
            prefix_len,
        };
        Ipv4Cidr::new(
            Ipv4Addr::from(u32::from(address) & unmasked.mask()),
            prefix_len,
        )
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The netmask as an integer.
    pub fn mask(&self) -> u32 {
        if self.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix_len))
        }
    }

    /// The broadcast address of the network.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !self.mask())
    }

    /// Whether `address` lies inside the network.
    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & self.mask() == u32::from(self.network)
    }

    /// Whether the two networks share any address.
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }
}

impl Serialize for Ipv4Cidr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            (self.network, self.prefix_len).serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            return text.parse().map_err(serde::de::Error::custom);
        }
        let (network, prefix_len) = <(Ipv4Addr, u8)>::deserialize(deserializer)?;
        Ipv4Cidr::new(network, prefix_len).map_err(serde::de::Error::custom)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = InvalidCidr;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || InvalidCidr::Syntax(s.to_string());
        let (address, prefix) = s.split_once('/').ok_or_else(syntax)?;
        let network: Ipv4Addr = address.parse().map_err(|_| syntax())?;
        let prefix_len: u8 = prefix.parse().map_err(|_| syntax())?;
        Ipv4Cidr::new(network, prefix_len)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}
