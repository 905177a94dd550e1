//! DNS the rack serves: zones the region manages (answered authoritatively,
//! also with the WAN down) and the forwarding settings for everything else.

use alloc::string::String;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::types::Ipv4Cidr;

/// The rack's DNS configuration, part of the snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    /// Zones the rack answers authoritatively.
    pub zones: Vec<Zone>,
    /// Upstream resolvers for other names, tried in order (failover); port
    /// 53 unless the operator named another (protocol v5; v4 carried
    /// addresses only).
    pub forwarders: Vec<SocketAddr>,
    /// Client networks that may use the rack for recursion (loopback always
    /// may). Others get answers from the zones only, and REFUSED otherwise.
    pub allowed_networks: Vec<Ipv4Cidr>,
}

/// One authoritative zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zone {
    /// The zone apex, lowercase, without the trailing dot, e.g. `site.internal`
    /// or `0.20.10.in-addr.arpa`.
    pub name: String,
    /// SOA serial; grows with every change of the zone.
    pub serial: u32,
    /// TTL of the SOA record and of negative answers (RFC 2308 minimum).
    pub negative_ttl: u32,
    /// The zone's records (the SOA and NS records are implied).
    pub records: Vec<DnsRecord>,
}

/// One resource record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecord {
    /// Owner name, absolute, lowercase, without the trailing dot.
    pub name: String,
    /// Time to live, seconds.
    pub ttl: u32,
    /// Type and data.
    pub data: RecordData,
}

/// Record types the region manages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordData {
    /// IPv4 address.
    A(Ipv4Addr),
    /// IPv6 address.
    Aaaa(Ipv6Addr),
    /// Alias to another name (absolute, no trailing dot).
    Cname(String),
    /// Text (one character-string of up to 255 bytes per element).
    Txt(Vec<String>),
    /// Service location.
    Srv {
        /// Priority.
        priority: u16,
        /// Weight.
        weight: u16,
        /// Port.
        port: u16,
        /// Target host (absolute, no trailing dot).
        target: String,
    },
    /// Reverse pointer (absolute, no trailing dot).
    Ptr(String),
}
