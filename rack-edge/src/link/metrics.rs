//! The link's metrics: what the broker sent that was dropped, snapshots
//! applied or refused, whether the link is up, and the applied generation.
//! Registered once on the rack's registry (like every service's counters).

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Why payloads from the broker are dropped (the `reason` label values).
const REJECT_REASONS: [&str; 6] = [
    "bad_topic",
    "malformed",
    "unsupported_version",
    "forged",
    "replay",
    "wrong_epoch",
];

/// The link's metrics.
#[derive(Debug, Default)]
pub struct LinkMetrics {
    /// Payloads from the broker that were dropped, by reason.
    pub rejected: Family<Labels, Counter>,
    /// Snapshots applied.
    pub snapshots_applied: Counter,
    /// Snapshots refused or that could not be persisted.
    pub snapshots_refused: Counter,
    /// 1 while connected to the broker.
    pub connected: Gauge<i64, AtomicI64>,
    /// Generation of the applied snapshot (0 when none).
    pub applied_generation: Gauge<u64, AtomicU64>,
}

impl LinkMetrics {
    /// Registers the metrics under the rack's registry: `link_rejected`,
    /// `snapshots_applied`, `snapshots_refused`, `link_connected`,
    /// `applied_generation`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "link_rejected",
            "Payloads from the broker that were dropped, by reason",
            self.rejected.clone(),
        );
        registry.register(
            "snapshots_applied",
            "Snapshots applied",
            self.snapshots_applied.clone(),
        );
        registry.register(
            "snapshots_refused",
            "Snapshots refused or not persisted",
            self.snapshots_refused.clone(),
        );
        registry.register(
            "link_connected",
            "1 while connected to the broker",
            self.connected.clone(),
        );
        registry.register(
            "applied_generation",
            "Generation of the applied snapshot",
            self.applied_generation.clone(),
        );
    }

    /// Counts a dropped payload.
    pub fn reject(&self, reason: &'static str) {
        self.rejected
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc();
    }

    /// Total dropped payloads, for the heartbeat.
    pub fn rejected_total(&self) -> u64 {
        REJECT_REASONS
            .iter()
            .map(|reason| {
                self.rejected
                    .get_or_create(&vec![("reason", reason.to_string())])
                    .get()
            })
            .sum()
    }
}
