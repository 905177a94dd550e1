//! The region's Prometheus metrics, served as text on `/metrics`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Every metric the region exports.
pub struct Metrics {
    registry: Registry,
    /// Link messages accepted, by channel.
    pub link_messages: Family<Labels, Counter>,
    /// Link payloads dropped, by reason (bad topic, undecodable, unsupported version…).
    pub link_rejected: Family<Labels, Counter>,
    /// Full snapshots published to racks.
    pub snapshots_published: Counter,
    /// Configuration deltas published to racks (v2), instead of snapshots.
    pub config_deltas_published: Counter,
    /// Sealed bytes of full snapshots published to racks.
    pub snapshot_bytes_sent: Counter,
    /// HTTP API requests, by status code.
    pub http_requests: Family<Labels, Counter>,
    /// Racks currently online.
    pub racks_online: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Current configuration generation.
    pub config_generation: Gauge<u64, AtomicU64>,
    /// Bytes of boot resources sent to racks.
    pub blob_bytes_sent: Counter,
    /// Sealed payload bytes published to racks, every channel.
    pub link_bytes_sent: Counter,
    /// Boot intents pushed to racks (one per machine per rack).
    pub intents_pushed: Counter,
    /// Rack events (leases, discoveries, boot steps, results) applied, each once.
    pub rack_events_applied: Counter,
    /// Region-wide changes that left a rack's own configuration as it was (nothing sent).
    pub snapshots_unchanged: Counter,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("edgemetal_region");
        let metrics = Metrics {
            link_messages: Family::default(),
            link_rejected: Family::default(),
            snapshots_published: Counter::default(),
            config_deltas_published: Counter::default(),
            snapshot_bytes_sent: Counter::default(),
            http_requests: Family::default(),
            racks_online: Gauge::default(),
            config_generation: Gauge::default(),
            blob_bytes_sent: Counter::default(),
            link_bytes_sent: Counter::default(),
            intents_pushed: Counter::default(),
            rack_events_applied: Counter::default(),
            snapshots_unchanged: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "link_messages",
            "Messages accepted from racks, by channel",
            metrics.link_messages.clone(),
        );
        registry.register(
            "link_rejected",
            "Payloads from the broker that were dropped, by reason",
            metrics.link_rejected.clone(),
        );
        registry.register(
            "snapshots_published",
            "Configuration snapshots published to racks",
            metrics.snapshots_published.clone(),
        );
        registry.register(
            "config_deltas_published",
            "Configuration deltas published to racks instead of full snapshots",
            metrics.config_deltas_published.clone(),
        );
        registry.register(
            "snapshot_bytes_sent",
            "Sealed bytes of full configuration snapshots published to racks",
            metrics.snapshot_bytes_sent.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP API requests by status code",
            metrics.http_requests.clone(),
        );
        registry.register(
            "racks_online",
            "Racks currently online",
            metrics.racks_online.clone(),
        );
        registry.register(
            "config_generation",
            "Current configuration generation",
            metrics.config_generation.clone(),
        );
        registry.register(
            "blob_bytes_sent",
            "Bytes of boot resources sent to racks",
            metrics.blob_bytes_sent.clone(),
        );
        registry.register(
            "link_bytes_sent",
            "Sealed payload bytes published to racks",
            metrics.link_bytes_sent.clone(),
        );
        registry.register(
            "intents_pushed",
            "Boot intents pushed to racks, one per machine per rack",
            metrics.intents_pushed.clone(),
        );
        registry.register(
            "rack_events_applied",
            "Rack events applied, each exactly once",
            metrics.rack_events_applied.clone(),
        );
        registry.register(
            "snapshots_unchanged",
            "Region-wide changes that left a rack's configuration unchanged (nothing sent)",
            metrics.snapshots_unchanged.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Counts a dropped link payload.
    pub fn reject(&self, reason: &'static str) {
        self.link_rejected
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc();
    }

    /// The metrics in Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
