//! What the Router Solicitation responder has done, counted for metrics.
//! Shared by the per-interface tasks, hence atomics; the labels are stable
//! snake_case strings for Prometheus, as in `tftp::counters`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a received message got no Router Advertisement; the label is a
/// metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// Shorter than the 8-byte Router Solicitation header.
    Truncated,
    /// Longer than the receive buffer: cut by the kernel, so its options
    /// cannot be checked.
    Oversized,
    /// An ICMPv6 type other than Router Solicitation (the socket filter
    /// should keep these out; counted in case it could not be installed).
    NotRouterSolicitation,
    /// ICMP code not 0 (RFC 4861 §6.1.1).
    BadCode,
    /// IPv6 hop limit not 255: the message may come from off-link
    /// (RFC 4861 §6.1.1).
    BadHopLimit,
    /// The kernel gave no hop limit with the message, so it cannot be
    /// validated.
    MissingHopLimit,
    /// An option of length 0 or running past the end of the message.
    BadOption,
    /// A source link-layer address option from the unspecified address
    /// (RFC 4861 §6.1.1).
    LinkLayerFromUnspecified,
    /// A multicast source address: no host sends from one.
    MulticastSource,
    /// An answer to the all-nodes group within 3 s of the previous one on
    /// the same interface (MIN_DELAY_BETWEEN_RAS, RFC 4861 §6.2.6).
    RateLimited,
    /// The ICMPv6 checksum is wrong (checked here: a packet socket gets the
    /// frame as it came off the wire).
    BadChecksum,
    /// The link's subnet has Router Advertisements turned off.
    TurnedOff,
}

impl DropReason {
    /// Every reason, for exporting zero-valued series.
    pub const ALL: [DropReason; 12] = [
        DropReason::Truncated,
        DropReason::Oversized,
        DropReason::NotRouterSolicitation,
        DropReason::BadCode,
        DropReason::BadHopLimit,
        DropReason::MissingHopLimit,
        DropReason::BadOption,
        DropReason::LinkLayerFromUnspecified,
        DropReason::MulticastSource,
        DropReason::RateLimited,
        DropReason::BadChecksum,
        DropReason::TurnedOff,
    ];

    /// A stable snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::Oversized => "oversized",
            DropReason::NotRouterSolicitation => "not_router_solicitation",
            DropReason::BadCode => "bad_code",
            DropReason::BadHopLimit => "bad_hop_limit",
            DropReason::MissingHopLimit => "missing_hop_limit",
            DropReason::BadOption => "bad_option",
            DropReason::LinkLayerFromUnspecified => "link_layer_from_unspecified",
            DropReason::MulticastSource => "multicast_source",
            DropReason::RateLimited => "rate_limited",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::TurnedOff => "turned_off",
        }
    }

    fn index(self) -> usize {
        // ALL lists every variant once, so this always finds it.
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Messages seen, advertisements sent and drops by reason, for every
/// interface together.
#[derive(Debug, Default)]
pub struct Counters {
    received: AtomicU64,
    answered: AtomicU64,
    sent: AtomicU64,
    send_failed: AtomicU64,
    dropped: [AtomicU64; DropReason::ALL.len()],
}

impl Counters {
    pub(super) fn count_received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_answered(&self) {
        self.answered.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_drop(&self, reason: DropReason) {
        self.dropped[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_send_failed(&self) {
        self.send_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Messages handed to the responder.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Valid Router Solicitations the responder decided to answer.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Router Advertisements the kernel accepted for sending.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Router Advertisements the kernel refused to send (the interface
    /// down, its queue full).
    pub fn send_failed(&self) -> u64 {
        self.send_failed.load(Ordering::Relaxed)
    }

    /// Messages dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()].load(Ordering::Relaxed)
    }
}

impl Counters {
    /// Registers the counters under the rack's registry, as
    /// `ndp_solicitations_received_total`, `ndp_solicitations_answered_total`,
    /// `ndp_advertisements_sent_total`, `ndp_advertisements_send_failed_total`
    /// and `ndp_dropped_total{reason}` (every reason, zeros included).
    pub fn register(
        self: &std::sync::Arc<Self>,
        registry: &mut prometheus_client::registry::Registry,
    ) {
        registry.register_collector(Box::new(CountersCollector(self.clone())));
    }
}

/// Encodes [`Counters`] on each scrape.
#[derive(Debug)]
struct CountersCollector(std::sync::Arc<Counters>);

impl prometheus_client::collector::Collector for CountersCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::MetricType;
        let counters = &self.0;
        let single = [
            (
                "ndp_solicitations_received",
                "ICMPv6 messages handed to the Router Solicitation responder.",
                counters.received(),
            ),
            (
                "ndp_solicitations_answered",
                "Router Solicitations the responder answered.",
                counters.answered(),
            ),
            (
                "ndp_advertisements_sent",
                "Router Advertisements sent.",
                counters.sent(),
            ),
            (
                "ndp_advertisements_send_failed",
                "Router Advertisements the kernel refused to send.",
                counters.send_failed(),
            ),
        ];
        for (name, help, value) in single {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value).encode(metric)?;
        }
        let mut family = encoder.encode_descriptor(
            "ndp_dropped",
            "Messages the responder did not answer, by reason.",
            None,
            MetricType::Counter,
        )?;
        for reason in DropReason::ALL {
            ConstCounter::new(counters.dropped(reason))
                .encode(family.encode_family(&[("reason", reason.as_str())])?)?;
        }
        Ok(())
    }
}
