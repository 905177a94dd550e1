//! The rack's start-up settings (command line or `EDGEMETAL_RACK_*` environment).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the rack needs to start.
#[derive(Debug, Clone, clap::Args)]
pub struct RackConfig {
    /// Where the rack keeps its identity, counters and applied snapshot.
    #[arg(long, env = "EDGEMETAL_RACK_STATE_DIR", default_value = "data/rack")]
    pub state_dir: PathBuf,
    /// Override the broker URL from enrolment (`mqtts://HOST:PORT`).
    #[arg(long, env = "EDGEMETAL_RACK_BROKER_URL")]
    pub broker_url: Option<String>,
    /// First start only: enrol with this single-use token at `--region-url`.
    #[arg(long, env = "EDGEMETAL_RACK_ENROLMENT_TOKEN", hide_env_values = true)]
    pub enrolment_token: Option<String>,
    /// First start only: the region's API, e.g. `https://region.example:5240`.
    #[arg(long, env = "EDGEMETAL_RACK_REGION_URL")]
    pub region_url: Option<String>,
    /// CA (PEM) the region's HTTPS certificate chains to, for enrolment.
    #[arg(long, env = "EDGEMETAL_RACK_REGION_CA_FILE")]
    pub region_ca_file: Option<PathBuf>,
    /// Allow a plaintext `mqtt://` broker. Logged as a warning at every start.
    #[arg(long, env = "EDGEMETAL_RACK_INSECURE_PLAINTEXT")]
    pub insecure_plaintext: bool,
    /// The link protocol version to speak: 2 (this build), or 1 to behave as
    /// a v1 rack (boot queries asked of the region, no pushed intents), for
    /// sites whose region is not upgraded yet and for version-skew tests.
    #[arg(
        long,
        env = "EDGEMETAL_RACK_PROTOCOL_VERSION",
        default_value_t = edgemetal_protocol::PROTOCOL_VERSION,
        value_parser = clap::value_parser!(u16).range(1..=edgemetal_protocol::PROTOCOL_VERSION as i64)
    )]
    pub protocol_version: u16,
    /// Local status endpoint (health, status, metrics).
    #[arg(
        long,
        env = "EDGEMETAL_RACK_STATUS_LISTEN",
        default_value = "127.0.0.1:5250"
    )]
    pub status_listen: SocketAddr,
    /// Interfaces to serve DHCP on (repeat, or comma-separate); each serves
    /// the snapshot's subnet that contains the interface's address.
    #[arg(
        long = "dhcp-interface",
        env = "EDGEMETAL_RACK_DHCP_INTERFACES",
        value_delimiter = ','
    )]
    pub dhcp_interfaces: Vec<String>,
    /// Routed networks through which this rack reaches BMCs (repeat, or
    /// comma-separate), besides its own interfaces' networks. The region
    /// sends power commands for a BMC to a rack that reaches it.
    #[arg(
        long = "bmc-network",
        env = "EDGEMETAL_RACK_BMC_NETWORKS",
        value_delimiter = ','
    )]
    pub bmc_networks: Vec<edgemetal_protocol::Ipv4Cidr>,
    /// Port of the rack's HTTP boot server, for the iPXE script URLs it hands out.
    #[arg(long, env = "EDGEMETAL_RACK_HTTP_BOOT_PORT", default_value_t = 5248)]
    pub http_boot_port: u16,
    /// Where the HTTP boot server listens; default: all addresses on
    /// `--http-boot-port` when DHCP is served, otherwise off.
    #[arg(long, env = "EDGEMETAL_RACK_HTTP_BOOT_LISTEN")]
    pub http_boot_listen: Option<SocketAddr>,
    /// Where the TFTP server listens; default: all addresses on port 69
    /// when DHCP is served, otherwise off.
    #[arg(long, env = "EDGEMETAL_RACK_TFTP_LISTEN")]
    pub tftp_listen: Option<SocketAddr>,
    /// Where the DNS server listens (UDP and TCP); default: all addresses on
    /// port 53 when DHCP is served, otherwise off.
    #[arg(long, env = "EDGEMETAL_RACK_DNS_LISTEN")]
    pub dns_listen: Option<SocketAddr>,
    /// Where the syslog relay listens (UDP and TCP); default: port 514 when
    /// DHCP is served, otherwise off.
    #[arg(long, env = "EDGEMETAL_RACK_SYSLOG_LISTEN")]
    pub syslog_listen: Option<SocketAddr>,
    /// Where the APT/HTTP caching proxy listens; default: port 8000 when DHCP
    /// is served, otherwise off.
    #[arg(long, env = "EDGEMETAL_RACK_PROXY_LISTEN")]
    pub proxy_listen: Option<SocketAddr>,
    /// Where the NTP server listens; default: port 123 when DHCP is served,
    /// otherwise off.
    #[arg(long, env = "EDGEMETAL_RACK_NTP_LISTEN")]
    pub ntp_listen: Option<SocketAddr>,
    /// The iPXE binaries the rack serves (Debian's `ipxe` package).
    #[arg(long, env = "EDGEMETAL_RACK_IPXE_DIR", default_value = "/usr/lib/ipxe")]
    pub ipxe_dir: PathBuf,
    /// Seconds between heartbeats.
    #[arg(long, env = "EDGEMETAL_RACK_HEARTBEAT_SECS", default_value_t = 5)]
    pub heartbeat_secs: u64,
    /// Most bytes per second the rack fetches boot resources at (e.g.
    /// `20M`; suffixes K, M, G are powers of 1000), so a sync does not
    /// starve a thin WAN; default unlimited.
    #[arg(long, env = "EDGEMETAL_RACK_BLOB_RATE_LIMIT", value_parser = parse_rate)]
    pub blob_rate_limit: Option<u64>,
}

/// A rate in bytes per second: digits with an optional K, M or G suffix.
fn parse_rate(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last() {
        Some((at, suffix)) if suffix.is_ascii_alphabetic() => (&text[..at], suffix),
        _ => (text, 'B'),
    };
    let scale: u64 = match unit.to_ascii_uppercase() {
        'B' => 1,
        'K' => 1_000,
        'M' => 1_000_000,
        'G' => 1_000_000_000,
        _ => return Err(format!("unknown unit in {text:?}: use K, M or G")),
    };
    let value: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a rate in bytes per second"))?;
    value
        .checked_mul(scale)
        .filter(|rate| *rate > 0)
        .ok_or_else(|| format!("{text:?} is out of range"))
}

impl RackConfig {
    /// Where the HTTP boot server listens, if it runs.
    pub fn http_boot_address(&self) -> Option<SocketAddr> {
        self.http_boot_listen.or_else(|| {
            (!self.dhcp_interfaces.is_empty())
                .then(|| SocketAddr::from(([0, 0, 0, 0], self.http_boot_port)))
        })
    }

    /// Where the DNS server listens, if it runs.
    pub fn dns_address(&self) -> Option<SocketAddr> {
        self.dns_listen.or_else(|| {
            (!self.dhcp_interfaces.is_empty()).then(|| SocketAddr::from(([0, 0, 0, 0], 53)))
        })
    }

    /// Where the syslog relay listens, if it runs.
    pub fn syslog_address(&self) -> Option<SocketAddr> {
        self.service_address(self.syslog_listen, 514)
    }

    /// Where the caching proxy listens, if it runs.
    pub fn proxy_address(&self) -> Option<SocketAddr> {
        self.service_address(self.proxy_listen, 8000)
    }

    /// Where the NTP server listens, if it runs.
    pub fn ntp_address(&self) -> Option<SocketAddr> {
        self.service_address(self.ntp_listen, 123)
    }

    /// `listen` if given, else all addresses on `port` when DHCP is served.
    fn service_address(&self, listen: Option<SocketAddr>, port: u16) -> Option<SocketAddr> {
        listen.or_else(|| {
            (!self.dhcp_interfaces.is_empty()).then(|| SocketAddr::from(([0, 0, 0, 0], port)))
        })
    }

    /// Where the TFTP server listens, if it runs.
    pub fn tftp_address(&self) -> Option<SocketAddr> {
        self.tftp_listen.or_else(|| {
            (!self.dhcp_interfaces.is_empty()).then(|| SocketAddr::from(([0, 0, 0, 0], 69)))
        })
    }

    /// The heartbeat period.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn rates_take_decimal_suffixes_and_refuse_nonsense() {
        assert_eq!(parse_rate("1500"), Ok(1500));
        assert_eq!(parse_rate("20M"), Ok(20_000_000));
        assert_eq!(parse_rate("64k"), Ok(64_000));
        assert_eq!(parse_rate(" 1G "), Ok(1_000_000_000));
        for bad in ["", "0", "0M", "fast", "10X", "-5M", "99999999999G"] {
            assert!(parse_rate(bad).is_err(), "{bad:?}");
        }
    }
}
