//! What the DNS server has done, counted for metrics. Atomics, because the
//! adapter's tasks read them while the engine counts; the labels are
//! stable snake_case strings for Prometheus, as in `dhcp::counters`.
//!
//! Exported through a prometheus-client [`Collector`]: register it once
//! with [`Counters::register`] and every scrape reads the live values.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// How a query was settled; the label is a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// Answered from a zone (including NXDOMAIN and NODATA).
    Authoritative,
    /// Answered from the cache (positive or negative).
    Cached,
    /// Answered with an upstream's answer.
    Forwarded,
    /// REFUSED: recursion for a client outside the allowed networks, a
    /// zone transfer, a class other than IN.
    Refused,
    /// SERVFAIL: no upstream answered, or none is configured.
    ServFail,
    /// FORMERR (or BADVERS): a query the rack could read only in part.
    FormErr,
    /// NOTIMP: an opcode other than QUERY.
    NotImp,
    /// Dropped without an answer: shorter than a header, or a response.
    Malformed,
    /// Dropped without an answer: too many queries waiting for upstreams.
    Overload,
}

impl Outcome {
    /// Every outcome, for exporting zero-valued series.
    pub const ALL: [Outcome; 9] = [
        Outcome::Authoritative,
        Outcome::Cached,
        Outcome::Forwarded,
        Outcome::Refused,
        Outcome::ServFail,
        Outcome::FormErr,
        Outcome::NotImp,
        Outcome::Malformed,
        Outcome::Overload,
    ];

    /// A stable snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Authoritative => "authoritative",
            Outcome::Cached => "cached",
            Outcome::Forwarded => "forwarded",
            Outcome::Refused => "refused",
            Outcome::ServFail => "servfail",
            Outcome::FormErr => "formerr",
            Outcome::NotImp => "notimp",
            Outcome::Malformed => "malformed",
            Outcome::Overload => "overload",
        }
    }
}

/// Something that happened between the rack and an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UpstreamEvent {
    /// A query sent to an upstream (UDP or TCP).
    Sent,
    /// An upstream did not answer in time; the next one is tried.
    Timeout,
    /// An upstream answered SERVFAIL/REFUSED/FORMERR/NOTIMP, or its TCP
    /// connection failed; the next one is tried.
    Failed,
    /// An answer dropped because it did not match what was asked (wrong
    /// source, id, or question): a spoofing attempt or a confused server.
    SpoofedDropped,
    /// An answer that did not parse, dropped.
    MalformedDropped,
    /// A truncated UDP answer, asked again over TCP.
    TcpRetry,
}

impl UpstreamEvent {
    /// Every event, for exporting zero-valued series.
    pub const ALL: [UpstreamEvent; 6] = [
        UpstreamEvent::Sent,
        UpstreamEvent::Timeout,
        UpstreamEvent::Failed,
        UpstreamEvent::SpoofedDropped,
        UpstreamEvent::MalformedDropped,
        UpstreamEvent::TcpRetry,
    ];

    /// A stable snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamEvent::Sent => "sent",
            UpstreamEvent::Timeout => "timeout",
            UpstreamEvent::Failed => "failed",
            UpstreamEvent::SpoofedDropped => "spoofed_dropped",
            UpstreamEvent::MalformedDropped => "malformed_dropped",
            UpstreamEvent::TcpRetry => "tcp_retry",
        }
    }
}

/// The DNS server's counters, shared by the engine and the adapter.
#[derive(Debug, Default)]
pub struct Counters {
    queries: [AtomicU64; Outcome::ALL.len()],
    upstream: [AtomicU64; UpstreamEvent::ALL.len()],
    truncated: AtomicU64,
    cache_entries: AtomicU64,
    pending: AtomicU64,
}

fn index<T: PartialEq>(all: &[T], item: &T) -> usize {
    all.iter().position(|x| x == item).unwrap_or_default()
}

impl Counters {
    pub(super) fn count(&self, outcome: Outcome) {
        self.queries[index(&Outcome::ALL, &outcome)].fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn count_upstream(&self, event: UpstreamEvent) {
        self.upstream[index(&UpstreamEvent::ALL, &event)].fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn count_truncated(&self) {
        self.truncated.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn set_sizes(&self, cache_entries: usize, pending: usize) {
        self.cache_entries
            .store(cache_entries as u64, Ordering::Relaxed);
        self.pending.store(pending as u64, Ordering::Relaxed);
    }

    /// Queries settled with `outcome`.
    pub fn queries(&self, outcome: Outcome) -> u64 {
        self.queries[index(&Outcome::ALL, &outcome)].load(Ordering::Relaxed)
    }
    /// Upstream events of kind `event`.
    pub fn upstream(&self, event: UpstreamEvent) -> u64 {
        self.upstream[index(&UpstreamEvent::ALL, &event)].load(Ordering::Relaxed)
    }
    /// Replies sent with TC=1 because they did not fit the client's size.
    pub fn truncated(&self) -> u64 {
        self.truncated.load(Ordering::Relaxed)
    }
    /// Entries in the cache (a gauge).
    pub fn cache_entries(&self) -> u64 {
        self.cache_entries.load(Ordering::Relaxed)
    }
    /// Upstream exchanges in progress (a gauge).
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Registers these counters with `registry`; each scrape reads them live.
    /// Metric names, under the registry's prefix: `dns_queries_total{result}`,
    /// `dns_upstream_total{event}`, `dns_truncated_replies_total`,
    /// `dns_cache_entries`, `dns_pending_upstream`.
    pub fn register(self: &Arc<Self>, registry: &mut Registry) {
        registry.register_collector(Box::new(CountersCollector(self.clone())));
    }
}

/// Encodes [`Counters`] on each scrape.
#[derive(Debug)]
pub struct CountersCollector(pub Arc<Counters>);

impl Collector for CountersCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counters = &self.0;
        let mut family = encoder.encode_descriptor(
            "dns_queries",
            "DNS queries, by how they were settled",
            None,
            MetricType::Counter,
        )?;
        for outcome in Outcome::ALL {
            let labels = [("result", outcome.as_str())];
            ConstCounter::new(counters.queries(outcome)).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "dns_upstream",
            "DNS exchanges with upstream resolvers, by event",
            None,
            MetricType::Counter,
        )?;
        for event in UpstreamEvent::ALL {
            let labels = [("event", event.as_str())];
            ConstCounter::new(counters.upstream(event)).encode(family.encode_family(&labels)?)?;
        }
        let single: [(&str, &str, MetricType, u64); 3] = [
            (
                "dns_truncated_replies",
                "DNS replies sent truncated (TC=1) to fit the client's UDP size",
                MetricType::Counter,
                counters.truncated(),
            ),
            (
                "dns_cache_entries",
                "Entries in the DNS cache",
                MetricType::Gauge,
                counters.cache_entries(),
            ),
            (
                "dns_pending_upstream",
                "DNS upstream exchanges in progress",
                MetricType::Gauge,
                counters.pending(),
            ),
        ];
        for (name, help, metric_type, value) in single {
            let metric = encoder.encode_descriptor(name, help, None, metric_type)?;
            match metric_type {
                MetricType::Counter => ConstCounter::new(value).encode(metric)?,
                _ => ConstGauge::new(value as i64).encode(metric)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_collector_renders_every_series_with_the_registry_prefix() {
        let counters = Arc::new(Counters::default());
        counters.count(Outcome::Cached);
        counters.count_upstream(UpstreamEvent::SpoofedDropped);
        counters.set_sizes(3, 1);
        let mut registry = Registry::with_prefix("edgemetal_rack");
        counters.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("edgemetal_rack_dns_queries_total{result=\"cached\"} 1"),
            "{text}"
        );
        assert!(text.contains("edgemetal_rack_dns_queries_total{result=\"servfail\"} 0"));
        assert!(text.contains("edgemetal_rack_dns_upstream_total{event=\"spoofed_dropped\"} 1"));
        assert!(text.contains("edgemetal_rack_dns_cache_entries 3"));
        assert!(text.contains("edgemetal_rack_dns_pending_upstream 1"));
        assert!(text.contains("edgemetal_rack_dns_truncated_replies_total 0"));
    }
}
