//! The proxy's settings from the region's snapshot: which clients it
//! serves, which ports CONNECT may reach, the parent proxy and the cache
//! size.

use std::net::IpAddr;

use edgemetal_protocol::{ConfigSnapshot, Ipv4Cidr, ProxyConfig};

/// What one snapshot says about the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Client networks besides loopback: the subnets with the proxy on and
    /// the extra allowed networks.
    pub clients: Vec<Ipv4Cidr>,
    /// Ports CONNECT may reach.
    pub connect_ports: Vec<u16>,
    /// Parent proxy URL, if any.
    pub parent: Option<String>,
    /// Cache size cap in bytes.
    pub cache_bytes: u64,
}

impl Settings {
    /// The settings of `snapshot`; without one (a rack that never heard
    /// from the region), loopback only and the defaults.
    pub fn from_snapshot(snapshot: Option<&ConfigSnapshot>) -> Settings {
        let Some(snapshot) = snapshot else {
            return Settings::from_config(&ProxyConfig::default(), Vec::new());
        };
        let subnets = snapshot
            .subnets
            .iter()
            .filter(|subnet| subnet.services.proxy)
            .map(|subnet| subnet.cidr)
            .collect();
        Settings::from_config(&snapshot.gateway.proxy, subnets)
    }

    fn from_config(config: &ProxyConfig, mut clients: Vec<Ipv4Cidr>) -> Settings {
        clients.extend(config.allowed_networks.iter().copied());
        Settings {
            clients,
            connect_ports: config.connect_ports.clone(),
            parent: config.parent.clone().filter(|p| !p.trim().is_empty()),
            cache_bytes: config.cache_bytes,
        }
    }

    /// Whether `client` may use the proxy.
    pub fn allows(&self, client: IpAddr) -> bool {
        let client = match client {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            },
            v4 => v4,
        };
        if client.is_loopback() {
            return true;
        }
        match client {
            IpAddr::V4(v4) => self.clients.iter().any(|net| net.contains(v4)),
            IpAddr::V6(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_listed_networks_are_allowed_others_not() {
        let config = ProxyConfig {
            allowed_networks: vec!["192.168.7.0/24".parse().unwrap()],
            ..ProxyConfig::default()
        };
        let settings = Settings::from_config(&config, vec!["10.1.0.0/16".parse().unwrap()]);
        for allowed in [
            "127.0.0.1",
            "::1",
            "10.1.200.3",
            "192.168.7.9",
            "::ffff:10.1.0.1",
        ] {
            assert!(settings.allows(allowed.parse().unwrap()), "{allowed}");
        }
        for refused in ["10.2.0.1", "192.168.8.1", "2001:db8::1", "8.8.8.8"] {
            assert!(!settings.allows(refused.parse().unwrap()), "{refused}");
        }
        let nothing = Settings::from_snapshot(None);
        assert!(nothing.allows("127.0.0.1".parse().unwrap()));
        assert!(!nothing.allows("10.1.0.1".parse().unwrap()));
        assert_eq!(nothing.connect_ports, vec![443]);
    }
}
