//! `site.conf`: the site settings the rack image reads at every boot
//! (`images/rack/rack-init.sh`), as `key=value` lines.
//!
//! The init script parses the file without a shell `eval`, splitting lists
//! on blanks, so every value is checked here: no blanks, no control
//! characters, no quotes, nothing the script could misread.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};

use super::ImageError;

/// The name of the file on the config partition.
pub const FILE_NAME: &str = "site.conf";

/// The name the region's CA certificate gets on the config partition.
pub const REGION_CA_FILE_NAME: &str = "region-ca.pem";

/// How the WAN interface (towards the region) gets its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WanAddress {
    /// A DHCP lease from the site's own network.
    Dhcp,
    /// A fixed address and prefix length.
    Static(Ipv4Addr, u8),
}

/// A fixed address on an interface that serves the site (`IF=ADDR/PREFIX`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteAddress {
    /// The interface: a kernel name (`eth1`) or a MAC address.
    pub interface: String,
    /// The rack's address on that network.
    pub address: Ipv4Addr,
    /// The network's prefix length.
    pub prefix_len: u8,
}

/// Everything `site.conf` holds. Its `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct SiteConfig {
    /// The region's API, where the rack enrols (`https://…`).
    pub region_url: String,
    /// The single-use enrolment token (secret).
    pub enrolment_token: String,
    /// Overrides the broker URL of the enrolment answer.
    pub broker_url: Option<String>,
    /// Allows a plaintext region URL and broker.
    pub insecure_plaintext: bool,
    /// Whether the region's CA certificate is on the config partition.
    pub region_ca: bool,
    /// The interface towards the region.
    pub wan_interface: String,
    /// How the WAN interface gets its address.
    pub wan_address: WanAddress,
    /// The default gateway, with a static WAN address.
    pub wan_gateway: Option<Ipv4Addr>,
    /// DNS servers for the rack itself (besides a DHCP lease's).
    pub dns_servers: Vec<Ipv4Addr>,
    /// Interfaces the rack serves DHCP (and boot, DNS) on.
    pub dhcp_interfaces: Vec<String>,
    /// Fixed addresses of the site interfaces.
    pub site_addresses: Vec<SiteAddress>,
    /// The rack's host name.
    pub hostname: Option<String>,
    /// NTP servers to set the clock from.
    pub ntp_servers: Vec<String>,
    /// Where the local status endpoint listens.
    pub status_listen: Option<SocketAddr>,
}

impl fmt::Debug for SiteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SiteConfig")
            .field("region_url", &self.region_url)
            .field("enrolment_token", &"<redacted>")
            .field("broker_url", &self.broker_url)
            .field("insecure_plaintext", &self.insecure_plaintext)
            .field("region_ca", &self.region_ca)
            .field("wan_interface", &self.wan_interface)
            .field("wan_address", &self.wan_address)
            .field("wan_gateway", &self.wan_gateway)
            .field("dns_servers", &self.dns_servers)
            .field("dhcp_interfaces", &self.dhcp_interfaces)
            .field("site_addresses", &self.site_addresses)
            .field("hostname", &self.hostname)
            .field("ntp_servers", &self.ntp_servers)
            .field("status_listen", &self.status_listen)
            .finish()
    }
}

fn invalid(message: impl Into<String>) -> ImageError {
    ImageError::InvalidSetting(message.into())
}

/// A value the init script reads back unchanged: printable ASCII without
/// blanks, quotes, `=` or shell specials.
fn check_plain(what: &str, value: &str) -> Result<(), ImageError> {
    if value.is_empty() {
        return Err(invalid(format!("{what} is empty")));
    }
    let bad = value
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, '\'' | '"' | '`' | '\\' | '$' | ';' | '='));
    match bad {
        // Never echo the value: it may be the token.
        Some(c) => Err(invalid(format!(
            "{what} holds the character {c:?}, which site.conf cannot carry"
        ))),
        None => Ok(()),
    }
}

/// Checks an interface given as a kernel name or a MAC address.
pub fn check_interface(value: &str) -> Result<(), ImageError> {
    let is_mac = value.len() == 17
        && value
            .split(':')
            .all(|part| part.len() == 2 && part.chars().all(|c| c.is_ascii_hexdigit()));
    let is_name = !value.is_empty()
        && value.len() <= 15
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if is_mac || is_name {
        Ok(())
    } else {
        Err(invalid(format!(
            "{value:?} is neither an interface name (eth1, up to 15 characters) nor a MAC address"
        )))
    }
}

/// Parses `ADDRESS/PREFIX` (a host address on its network, e.g. `10.20.0.1/24`).
pub fn parse_address(value: &str) -> Result<(Ipv4Addr, u8), ImageError> {
    let (address, prefix) = value
        .split_once('/')
        .ok_or_else(|| invalid(format!("{value:?} is not ADDRESS/PREFIX")))?;
    let address: Ipv4Addr = address
        .parse()
        .map_err(|_| invalid(format!("{address:?} is not an IPv4 address")))?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| (1..=32).contains(p))
        .ok_or_else(|| invalid(format!("{prefix:?} is not a prefix length (1-32)")))?;
    Ok((address, prefix))
}

impl std::str::FromStr for SiteAddress {
    type Err = ImageError;

    /// Parses `INTERFACE=ADDRESS/PREFIX`.
    fn from_str(value: &str) -> Result<Self, ImageError> {
        let (interface, cidr) = value
            .rsplit_once('=')
            .ok_or_else(|| invalid(format!("{value:?} is not INTERFACE=ADDRESS/PREFIX")))?;
        check_interface(interface)?;
        let (address, prefix_len) = parse_address(cidr)?;
        Ok(SiteAddress {
            interface: interface.to_string(),
            address,
            prefix_len,
        })
    }
}

impl std::str::FromStr for WanAddress {
    type Err = ImageError;

    /// Parses `dhcp` or `ADDRESS/PREFIX`.
    fn from_str(value: &str) -> Result<Self, ImageError> {
        if value.eq_ignore_ascii_case("dhcp") {
            return Ok(WanAddress::Dhcp);
        }
        let (address, prefix) = parse_address(value)?;
        Ok(WanAddress::Static(address, prefix))
    }
}

fn same_interface(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

impl SiteConfig {
    /// Checks the settings together, as the rack will use them.
    pub fn validate(&self) -> Result<(), ImageError> {
        check_plain("the region URL", &self.region_url)?;
        let plaintext_region = if self.region_url.starts_with("http://") {
            true
        } else if self.region_url.starts_with("https://") {
            false
        } else {
            return Err(invalid(format!(
                "the region URL {:?} must start with https:// (or http://)",
                self.region_url
            )));
        };
        if self.enrolment_token.trim().is_empty() {
            return Err(ImageError::MissingToken);
        }
        check_plain("the enrolment token", &self.enrolment_token)?;
        if plaintext_region && !self.insecure_plaintext {
            return Err(invalid(
                "an http:// region URL sends the enrolment token in clear: use https://, \
                 or pass --insecure-plaintext",
            ));
        }
        if let Some(broker) = &self.broker_url {
            check_plain("the broker URL", broker)?;
            let parsed: edgemetal_protocol::BrokerUrl =
                broker.parse().map_err(|e| invalid(format!("{e}")))?;
            if !parsed.tls && !self.insecure_plaintext {
                return Err(invalid(format!(
                    "the rack refuses the plaintext broker {broker}: use mqtts://, \
                     or pass --insecure-plaintext"
                )));
            }
        }
        check_interface(&self.wan_interface)?;
        if self.wan_gateway.is_some() && self.wan_address == WanAddress::Dhcp {
            return Err(invalid(
                "a WAN gateway goes with a static WAN address (--wan-address ADDRESS/PREFIX)",
            ));
        }
        for interface in &self.dhcp_interfaces {
            check_interface(interface)?;
            // A DHCP server answers from its own fixed address on the network.
            let addressed = self
                .site_addresses
                .iter()
                .any(|s| same_interface(&s.interface, interface))
                || (same_interface(interface, &self.wan_interface)
                    && matches!(self.wan_address, WanAddress::Static(..)));
            if !addressed {
                return Err(invalid(format!(
                    "--dhcp-interface {interface} needs a fixed address: \
                     --site-address {interface}=ADDRESS/PREFIX"
                )));
            }
        }
        for site in &self.site_addresses {
            check_interface(&site.interface)?;
            if same_interface(&site.interface, &self.wan_interface) {
                return Err(invalid(format!(
                    "{} is the WAN interface; set its address with --wan-address",
                    site.interface
                )));
            }
        }
        if let Some(hostname) = &self.hostname {
            let valid = !hostname.is_empty()
                && hostname.len() <= 63
                && hostname
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !hostname.starts_with('-');
            if !valid {
                return Err(invalid(format!("{hostname:?} is not a host name")));
            }
        }
        for server in &self.ntp_servers {
            check_plain("an NTP server", server)?;
        }
        Ok(())
    }

    /// The file's text (validate first).
    pub fn render(&self) -> String {
        let mut lines = vec![
            "# edgemetal rack site configuration, written by `edgemetal-rack image configure`."
                .to_string(),
            "# Read by the rack at every boot (see README.txt). Holds a secret: the".to_string(),
            "# enrolment token, used once at the first boot.".to_string(),
            "version=1".to_string(),
            format!("region_url={}", self.region_url),
            format!("enrolment_token={}", self.enrolment_token),
        ];
        if let Some(broker) = &self.broker_url {
            lines.push(format!("broker_url={broker}"));
        }
        if self.insecure_plaintext {
            lines.push("insecure_plaintext=true".into());
        }
        if self.region_ca {
            lines.push(format!("region_ca_file={REGION_CA_FILE_NAME}"));
        }
        lines.push(format!("wan_interface={}", self.wan_interface));
        lines.push(match self.wan_address {
            WanAddress::Dhcp => "wan_address=dhcp".to_string(),
            WanAddress::Static(address, prefix) => format!("wan_address={address}/{prefix}"),
        });
        if let Some(gateway) = self.wan_gateway {
            lines.push(format!("wan_gateway={gateway}"));
        }
        for server in &self.dns_servers {
            lines.push(format!("dns_server={server}"));
        }
        for interface in &self.dhcp_interfaces {
            lines.push(format!("dhcp_interface={interface}"));
        }
        for site in &self.site_addresses {
            lines.push(format!(
                "site_address={}={}/{}",
                site.interface, site.address, site.prefix_len
            ));
        }
        if let Some(hostname) = &self.hostname {
            lines.push(format!("hostname={hostname}"));
        }
        for server in &self.ntp_servers {
            lines.push(format!("ntp_server={server}"));
        }
        if let Some(listen) = self.status_listen {
            lines.push(format!("status_listen={listen}"));
        }
        let mut text = lines.join("\n");
        text.push('\n');
        text
    }
}

/// `site.conf` text with the token's value replaced, for showing.
pub fn redacted(text: &str) -> String {
    text.lines()
        .map(|line| match line.split_once('=') {
            Some(("enrolment_token", value)) if !value.is_empty() => {
                "enrolment_token=<set, not shown>".to_string()
            }
            _ => line.to_string(),
        })
        .map(|line| line + "\n")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SiteConfig {
        SiteConfig {
            region_url: "https://region.example:5240".into(),
            enrolment_token: "emt_secret123".into(),
            broker_url: None,
            insecure_plaintext: false,
            region_ca: false,
            wan_interface: "eth0".into(),
            wan_address: WanAddress::Dhcp,
            wan_gateway: None,
            dns_servers: vec![],
            dhcp_interfaces: vec!["eth1".into()],
            site_addresses: vec!["eth1=10.20.0.1/24".parse().unwrap()],
            hostname: Some("rack-1".into()),
            ntp_servers: vec![],
            status_listen: None,
        }
    }

    #[test]
    fn renders_every_setting_as_a_line() {
        let mut c = config();
        c.broker_url = Some("mqtts://broker.example:8883".into());
        c.region_ca = true;
        c.dns_servers = vec![Ipv4Addr::new(10, 0, 0, 53)];
        c.ntp_servers = vec!["ntp.example".into()];
        c.validate().unwrap();
        let text = c.render();
        for line in [
            "version=1",
            "region_url=https://region.example:5240",
            "enrolment_token=emt_secret123",
            "broker_url=mqtts://broker.example:8883",
            "region_ca_file=region-ca.pem",
            "wan_interface=eth0",
            "wan_address=dhcp",
            "dns_server=10.0.0.53",
            "dhcp_interface=eth1",
            "site_address=eth1=10.20.0.1/24",
            "hostname=rack-1",
            "ntp_server=ntp.example",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in {text}");
        }
        assert!(!text.contains("insecure"));
    }

    #[test]
    fn the_token_never_shows() {
        let c = config();
        assert!(!format!("{c:?}").contains("secret123"));
        let shown = redacted(&c.render());
        assert!(!shown.contains("secret123"), "{shown}");
        assert!(shown.contains("enrolment_token=<set, not shown>"));
        // A bad character is named, the value is not.
        let mut bad = config();
        bad.enrolment_token = "emt_secret 123".into();
        let error = bad.validate().unwrap_err().to_string();
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn refuses_what_the_rack_could_not_use() {
        type Change = fn(&mut SiteConfig);
        let cases: Vec<(Change, &str)> = vec![
            (|c| c.enrolment_token = " ".into(), "token"),
            (|c| c.region_url = "region.example".into(), "https://"),
            (
                |c| c.region_url = "http://region:5240".into(),
                "--insecure-plaintext",
            ),
            (
                |c| c.broker_url = Some("mqtt://b:1883".into()),
                "--insecure-plaintext",
            ),
            (|c| c.broker_url = Some("tcp://b".into()), "broker URL"),
            (|c| c.site_addresses.clear(), "needs a fixed address"),
            (
                |c| c.dhcp_interfaces = vec!["eth 1".into()],
                "interface name",
            ),
            (|c| c.wan_gateway = Some(Ipv4Addr::LOCALHOST), "static WAN"),
            (|c| c.hostname = Some("a.b".into()), "host name"),
            (
                |c| {
                    c.dhcp_interfaces.clear();
                    c.site_addresses = vec!["eth0=10.0.0.1/24".parse().unwrap()];
                },
                "WAN interface",
            ),
        ];
        for (change, expected) in cases {
            let mut c = config();
            change(&mut c);
            let error = c.validate().unwrap_err().to_string();
            assert!(error.contains(expected), "{error} (expected {expected})");
        }
    }

    #[test]
    fn plaintext_and_a_static_wan_are_allowed_when_asked_for() {
        let mut c = config();
        c.region_url = "http://10.0.0.1:5240".into();
        c.broker_url = Some("mqtt://10.0.0.1:1883".into());
        c.insecure_plaintext = true;
        c.wan_address = "10.0.0.2/24".parse().unwrap();
        c.wan_gateway = Some(Ipv4Addr::new(10, 0, 0, 1));
        // DHCP on the WAN interface itself, from its static address.
        c.dhcp_interfaces = vec!["52:54:00:AB:cd:01".into(), "eth0".into()];
        c.site_addresses = vec!["52:54:00:ab:CD:01=10.20.0.1/24".parse().unwrap()];
        c.validate().unwrap();
        let text = c.render();
        assert!(text.contains("insecure_plaintext=true\n"));
        assert!(text.contains("wan_address=10.0.0.2/24\nwan_gateway=10.0.0.1\n"));
    }

    #[test]
    fn parses_addresses() {
        assert!("eth1=10.0.0.1".parse::<SiteAddress>().is_err());
        assert!("eth1=10.0.0.1/33".parse::<SiteAddress>().is_err());
        assert!("10.0.0.1/24".parse::<SiteAddress>().is_err());
        assert_eq!(
            "DHCP".parse::<WanAddress>().unwrap(),
            WanAddress::Dhcp,
            "any case"
        );
    }
}
