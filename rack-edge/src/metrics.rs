//! The rack's Prometheus metrics, served on the status endpoint's `/metrics`.

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Every metric the rack exports.
pub struct Metrics {
    registry: Registry,
    /// The DNS server's counters (registered at start, live on every scrape).
    pub dns: std::sync::Arc<crate::dns::counters::Counters>,
    /// The caching proxy's counters.
    pub proxy: crate::proxy::Counters,
    /// The NTP server's counters and sync state.
    pub ntp: crate::ntp::NtpMetrics,
    /// The TFTP server's counters.
    pub tftp: std::sync::Arc<crate::tftp::Counters>,
    /// Payloads from the broker that were dropped, by reason.
    pub link_rejected: Family<Labels, Counter>,
    /// Snapshots applied.
    pub snapshots_applied: Counter,
    /// Snapshots refused or that could not be persisted.
    pub snapshots_refused: Counter,
    /// 1 while connected to the broker.
    pub link_connected: Gauge<i64, AtomicI64>,
    /// Generation of the applied snapshot (0 when none).
    pub applied_generation: Gauge<u64, AtomicU64>,
    /// DHCP lease events, by kind.
    pub dhcp_events: Family<Labels, Counter>,
    /// DHCP datagrams dropped, by reason.
    pub dhcp_dropped: Family<Labels, Counter>,
    /// The syslog relay's counters.
    pub syslog: std::sync::Arc<crate::syslog::Counters>,
    /// Where boot-path answers came from (intents, enlistment, the region).
    pub boot: crate::boot::BootPathCounters,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("edgemetal_rack");
        let link_rejected = Family::<Labels, Counter>::default();
        let snapshots_applied = Counter::default();
        let snapshots_refused = Counter::default();
        let link_connected = Gauge::<i64, AtomicI64>::default();
        let applied_generation = Gauge::<u64, AtomicU64>::default();
        let dhcp_events = Family::<Labels, Counter>::default();
        let dhcp_dropped = Family::<Labels, Counter>::default();
        registry.register(
            "dhcp_events",
            "DHCP lease events, by kind",
            dhcp_events.clone(),
        );
        registry.register(
            "dhcp_dropped",
            "DHCP datagrams dropped, by reason",
            dhcp_dropped.clone(),
        );
        registry.register(
            "link_rejected",
            "Payloads from the broker that were dropped, by reason",
            link_rejected.clone(),
        );
        registry.register(
            "snapshots_applied",
            "Snapshots applied",
            snapshots_applied.clone(),
        );
        registry.register(
            "snapshots_refused",
            "Snapshots refused or not persisted",
            snapshots_refused.clone(),
        );
        registry.register(
            "link_connected",
            "1 while connected to the broker",
            link_connected.clone(),
        );
        registry.register(
            "applied_generation",
            "Generation of the applied snapshot",
            applied_generation.clone(),
        );
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
        Metrics {
            boot,
            syslog,
            registry,
            dns,
            ntp,
            proxy,
            link_rejected,
            snapshots_applied,
            snapshots_refused,
            link_connected,
            applied_generation,
            dhcp_events,
            dhcp_dropped,
            tftp,
        }
    }

    /// Counts a dropped payload.
    pub fn reject(&self, reason: &'static str) {
        self.link_rejected
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc();
    }

    /// Total dropped payloads, for the heartbeat.
    pub fn rejected_total(&self) -> u64 {
        [
            "bad_topic",
            "malformed",
            "unsupported_version",
            "forged",
            "replay",
            "wrong_epoch",
        ]
        .iter()
        .map(|reason| {
            self.link_rejected
                .get_or_create(&vec![("reason", reason.to_string())])
                .get()
        })
        .sum()
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
