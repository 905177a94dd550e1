//! The NTP server's Prometheus metrics, registered with the rack's registry.

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// What the NTP server and its clock discipline report.
#[derive(Debug, Clone, Default)]
pub struct NtpMetrics {
    /// Datagrams received on the server socket.
    pub requests: Counter,
    /// Answers sent, by kind (`time`, `deny`, `nts_nak`).
    pub responses: Family<Labels, Counter>,
    /// Datagrams dropped without an answer, by reason.
    pub dropped: Family<Labels, Counter>,
    /// 1 while the rack's clock is synchronised to an upstream.
    pub synchronised: Gauge<i64, AtomicI64>,
    /// The estimated offset of the rack's clock from its upstream, seconds.
    pub offset_seconds: Gauge<f64, AtomicU64>,
    /// What the rack adds to the host's clock to serve its own, seconds.
    pub correction_seconds: Gauge<f64, AtomicU64>,
}

impl NtpMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> NtpMetrics {
        let metrics = NtpMetrics::default();
        registry.register(
            "ntp_requests",
            "NTP datagrams received",
            metrics.requests.clone(),
        );
        registry.register(
            "ntp_responses",
            "NTP answers sent, by kind",
            metrics.responses.clone(),
        );
        registry.register(
            "ntp_dropped",
            "NTP datagrams dropped without an answer, by reason",
            metrics.dropped.clone(),
        );
        registry.register(
            "ntp_synchronised",
            "1 while the rack's clock is synchronised to an upstream",
            metrics.synchronised.clone(),
        );
        registry.register(
            "ntp_offset_seconds",
            "Estimated offset of the rack's clock from its upstream",
            metrics.offset_seconds.clone(),
        );
        registry.register(
            "ntp_correction_seconds",
            "What the rack adds to the host's clock to serve its own",
            metrics.correction_seconds.clone(),
        );
        metrics
    }

    pub(crate) fn respond(&self, kind: &'static str) {
        self.responses
            .get_or_create(&vec![("kind", kind.to_string())])
            .inc();
    }

    pub(crate) fn drop_reason(&self, reason: &'static str) {
        self.dropped
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc();
    }
}
