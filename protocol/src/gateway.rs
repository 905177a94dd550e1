//! The rack as the machines' way out: its syslog relay, its APT/HTTP caching
//! proxy and its NTP server, as the region configures them in the snapshot.
//! Machines reach syslog and the proxy through their subnet's internal DNS
//! name (every rack on the subnet), NTP at the rack's own address.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::types::Ipv4Cidr;

/// The gateway services' settings, for every subnet the rack serves.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GatewayConfig {
    /// The syslog relay.
    pub syslog: SyslogConfig,
    /// The caching forward proxy.
    pub proxy: ProxyConfig,
    /// The NTP server.
    pub ntp: NtpConfig,
}

/// The syslog relay (UDP and TCP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyslogConfig {
    /// Longer messages are truncated (and counted).
    pub max_message_bytes: u32,
    /// Most bytes of log lines the rack keeps on disk while the link is
    /// down; the oldest are dropped (and counted) beyond it.
    pub queue_bytes: u64,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        SyslogConfig {
            max_message_bytes: 8192,
            queue_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The APT/HTTP caching forward proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProxyConfig {
    /// Clients allowed besides the subnets with the proxy on.
    pub allowed_networks: Vec<Ipv4Cidr>,
    /// A parent proxy, `http://HOST:PORT`, for everything not cached; direct when absent.
    pub parent: Option<String>,
    /// Most bytes the cache holds on disk (least recently used go first).
    pub cache_bytes: u64,
    /// Ports CONNECT may reach (443).
    pub connect_ports: Vec<u16>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            allowed_networks: Vec::new(),
            parent: None,
            cache_bytes: 2 * 1024 * 1024 * 1024,
            connect_ports: alloc::vec![443],
        }
    }
}

/// The NTP server.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NtpConfig {
    /// Upstream servers (`host` or `host:port`) the rack disciplines its
    /// clock from; empty: the rack serves its system clock and says it is
    /// unsynchronised.
    pub upstreams: Vec<String>,
}

/// Which gateway services a subnet's machines get from the rack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayServices {
    /// Syslog relay.
    pub syslog: bool,
    /// Caching proxy.
    pub proxy: bool,
    /// NTP (and DHCP option 42 pointing at the rack).
    pub ntp: bool,
}

impl Default for GatewayServices {
    fn default() -> Self {
        GatewayServices {
            syslog: true,
            proxy: true,
            ntp: true,
        }
    }
}

/// The internal DNS domain racks answer for: `<subnet>.edgemetal-internal`
/// resolves to every rack on that subnet (MAAS's internal domain).
pub const INTERNAL_DOMAIN: &str = "edgemetal-internal";

/// A DNS label from a subnet or rack name: lowercase, other characters
/// become `-`, at most 63 bytes.
pub fn dns_label(name: &str) -> String {
    let label: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    label.trim_matches('-').chars().take(63).collect()
}

/// The name machines on `subnet_name` reach their racks' services by.
pub fn subnet_service_name(subnet_name: &str) -> String {
    alloc::format!("{}.{INTERNAL_DOMAIN}", dns_label(subnet_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        assert_eq!(dns_label("Site_A.lab"), "site-a-lab");
        assert_eq!(
            subnet_service_name("hil-site"),
            "hil-site.edgemetal-internal"
        );
    }
}
