//! The syslog relay: machines log to the rack over UDP and TCP (RFC 3164 and
//! RFC 5424, RFC 6587 framing on TCP); each message is attributed to the
//! machine holding its source address, queued on disk and forwarded to the
//! region over the link in acknowledged batches.
//!
//! [`framing`], [`message`] and [`admission`] are pure (bytes and snapshot
//! in, frames and lines out); [`queue`] owns the disk; [`server`] is the thin
//! tokio adapter that moves datagrams and streams between them.

pub mod admission;
pub mod framing;
pub mod message;
pub mod queue;
pub mod server;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use queue::{LogQueue, SharedLogQueue};
pub use server::{bind, SyslogRelay};

/// The relay's metrics, under the registry's prefix: `syslog_received_total{transport}`,
/// `syslog_truncated_total`, `syslog_malformed_total`, `syslog_refused_total`,
/// `syslog_dropped_full_total`, `syslog_forwarded_total`, `syslog_queued_bytes`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages accepted, by transport (`udp`, `tcp`).
    pub received: Family<Vec<(&'static str, &'static str)>, Counter>,
    /// Messages cut at the size limit.
    pub truncated: Counter,
    /// Messages kept raw because they did not parse.
    pub malformed: Counter,
    /// Messages (or connections) from senders outside the served subnets.
    pub refused: Counter,
    /// Queued lines dropped (oldest first) because the disk queue was full.
    pub dropped_full: Counter,
    /// Lines the region acknowledged.
    pub forwarded: Counter,
    /// Bytes of lines waiting on disk for the region.
    pub queued_bytes: Gauge,
}

impl Counters {
    /// Registers every metric with `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "syslog_received",
            "Syslog messages accepted, by transport",
            self.received.clone(),
        );
        registry.register(
            "syslog_truncated",
            "Syslog messages cut at the size limit",
            self.truncated.clone(),
        );
        registry.register(
            "syslog_malformed",
            "Syslog messages kept as raw text because they did not parse",
            self.malformed.clone(),
        );
        registry.register(
            "syslog_refused",
            "Syslog messages or connections from senders outside the served subnets",
            self.refused.clone(),
        );
        registry.register(
            "syslog_dropped_full",
            "Queued syslog lines dropped, oldest first, because the disk queue was full",
            self.dropped_full.clone(),
        );
        registry.register(
            "syslog_forwarded",
            "Syslog lines the region acknowledged",
            self.forwarded.clone(),
        );
        registry.register(
            "syslog_queued_bytes",
            "Bytes of syslog lines on disk waiting for the region",
            self.queued_bytes.clone(),
        );
    }
}
