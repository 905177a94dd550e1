//! The rack's Prometheus metrics, served on the status endpoint's `/metrics`.
//!
//! One pattern: each service (and the link) owns its counters type, created
//! and registered here once at start with its `register(&mut Registry)`;
//! every scrape reads them live. How a type stores its values
//! (prometheus-client metrics, or atomics behind a collector) is its own
//! business.

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

/// Every metric the rack exports.
pub struct Metrics {
    registry: Registry,
    /// The region link's metrics.
    pub link: crate::link::LinkMetrics,
    /// The DHCP server's lease events and drops.
    pub dhcp: crate::dhcp::server::DhcpMetrics,
    /// The DNS server's counters (registered at start, live on every scrape).
    pub dns: std::sync::Arc<crate::dns::counters::Counters>,
    /// The caching proxy's counters.
    pub proxy: crate::proxy::Counters,
    /// The NTP server's counters and sync state.
    pub ntp: crate::ntp::NtpMetrics,
    /// The TFTP server's counters.
    pub tftp: std::sync::Arc<crate::tftp::Counters>,
    /// The syslog relay's counters.
    pub syslog: std::sync::Arc<crate::syslog::Counters>,
    /// Where boot-path answers came from (intents, enlistment, the region).
    pub boot: crate::boot::BootPathCounters,
    /// The Router Solicitation responder's counters.
    pub ndp: std::sync::Arc<crate::ndp::Counters>,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("edgemetal_rack");
        let dhcp = crate::dhcp::server::DhcpMetrics::default();
        dhcp.register(&mut registry);
        let link = crate::link::LinkMetrics::default();
        link.register(&mut registry);
        let dns = std::sync::Arc::new(crate::dns::counters::Counters::default());
        dns.register(&mut registry);
        let ntp = crate::ntp::NtpMetrics::register(&mut registry);
        let proxy = crate::proxy::Counters::default();
        proxy.register(&mut registry);
        let syslog = std::sync::Arc::new(crate::syslog::Counters::default());
        syslog.register(&mut registry);
        let boot = crate::boot::BootPathCounters::default();
        boot.register(&mut registry);
        let tftp = std::sync::Arc::new(crate::tftp::Counters::default());
        tftp.register(&mut registry);
        let ndp = std::sync::Arc::new(crate::ndp::Counters::default());
        ndp.register(&mut registry);
        Metrics {
            registry,
            link,
            dhcp,
            dns,
            proxy,
            ntp,
            tftp,
            syslog,
            boot,
            ndp,
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
