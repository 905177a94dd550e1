//! What the TFTP server has done, counted for metrics. Shared by every
//! transfer (each runs in its own task), hence atomics; the labels are
//! stable snake_case strings for Prometheus, as in `dhcp::counters`.
//!
//! Exported like every rack service's counters: register them once with
//! [`Counters::register`] and every scrape reads the live values (through
//! a prometheus-client [`Collector`], as `dns::counters` does).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// A TFTP error the server sent, by cause; the label is a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// A write request: the server is read-only (access violation).
    WriteRefused,
    /// A mode other than octet (illegal operation).
    BadMode,
    /// An empty, non-UTF-8, over-long or control-character name.
    BadPath,
    /// A NUL byte in the name (access violation).
    NulInPath,
    /// A `..` climbing above the root (access violation).
    PathEscape,
    /// A symlink resolving outside the root (access violation).
    SymlinkEscape,
    /// No such file.
    NotFound,
    /// A directory or special file.
    NotAFile,
    /// The OS refused to open the file.
    PermissionDenied,
    /// Opening or reading failed otherwise.
    Io,
    /// The concurrent-transfer limit was reached.
    Busy,
    /// A datagram on a transfer's port from someone other than its client.
    UnknownTid,
    /// A file on disk shrank during its transfer.
    FileChanged,
    /// A request whose option has a name but no value (RFC 2347: option
    /// negotiation failed).
    BadOptions,
}

impl ErrorKind {
    /// Every kind, for exporting zero-valued series.
    pub const ALL: [ErrorKind; 14] = [
        ErrorKind::WriteRefused,
        ErrorKind::BadMode,
        ErrorKind::BadPath,
        ErrorKind::NulInPath,
        ErrorKind::PathEscape,
        ErrorKind::SymlinkEscape,
        ErrorKind::NotFound,
        ErrorKind::NotAFile,
        ErrorKind::PermissionDenied,
        ErrorKind::Io,
        ErrorKind::Busy,
        ErrorKind::UnknownTid,
        ErrorKind::FileChanged,
        ErrorKind::BadOptions,
    ];

    /// A stable snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::WriteRefused => "write_refused",
            ErrorKind::BadMode => "bad_mode",
            ErrorKind::BadPath => "bad_path",
            ErrorKind::NulInPath => "nul_in_path",
            ErrorKind::PathEscape => "path_escape",
            ErrorKind::SymlinkEscape => "symlink_escape",
            ErrorKind::NotFound => "not_found",
            ErrorKind::NotAFile => "not_a_file",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Io => "io",
            ErrorKind::Busy => "busy",
            ErrorKind::UnknownTid => "unknown_tid",
            ErrorKind::FileChanged => "file_changed",
            ErrorKind::BadOptions => "bad_options",
        }
    }
}

/// Why a datagram was dropped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// Shorter than its fixed fields.
    Truncated,
    /// Opcode not 1 to 6.
    UnknownOpcode,
    /// A string without its NUL terminator.
    Unterminated,
    /// An option name without a value.
    BadOptions,
    /// A well-formed packet the receiver does not expect there (DATA to
    /// port 69, an ACK for a block never sent, an RRQ on a transfer port…).
    Unexpected,
}

impl DropReason {
    /// Every reason, for exporting zero-valued series.
    pub const ALL: [DropReason; 5] = [
        DropReason::Truncated,
        DropReason::UnknownOpcode,
        DropReason::Unterminated,
        DropReason::BadOptions,
        DropReason::Unexpected,
    ];

    /// A stable snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::UnknownOpcode => "unknown_opcode",
            DropReason::Unterminated => "unterminated",
            DropReason::BadOptions => "bad_options",
            DropReason::Unexpected => "unexpected",
        }
    }
}

/// Why a started transfer did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// Retries exhausted: the client went silent.
    Timeout,
    /// The client sent an ERROR during the data transfer.
    ClientError,
    /// The client sent an ERROR in answer to the OACK. PXE ROMs do this on
    /// purpose: they ask for tsize alone, abort, then ask for the file.
    EndedAtOack,
    /// The file could not be read to its end.
    ReadError,
    /// The server stopped while the transfer was in progress.
    Aborted,
}

impl Failure {
    /// Every failure, for exporting zero-valued series.
    pub const ALL: [Failure; 5] = [
        Failure::Timeout,
        Failure::ClientError,
        Failure::EndedAtOack,
        Failure::ReadError,
        Failure::Aborted,
    ];

    /// A stable snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::ClientError => "client_error",
            Failure::EndedAtOack => "ended_at_oack",
            Failure::ReadError => "read_error",
            Failure::Aborted => "aborted",
        }
    }
}

/// Counts shared by the listener and every transfer. Read them with the
/// accessors; [`Counters::register`] exports them as Prometheus counters by
/// label.
#[derive(Debug, Default)]
pub struct Counters {
    requests: AtomicU64,
    started: AtomicU64,
    served: AtomicU64,
    active: AtomicU64,
    bytes_sent: AtomicU64,
    retransmits: AtomicU64,
    duplicate_acks: AtomicU64,
    errors: [AtomicU64; ErrorKind::ALL.len()],
    dropped: [AtomicU64; DropReason::ALL.len()],
    failed: [AtomicU64; Failure::ALL.len()],
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

fn index<T: PartialEq>(all: &[T], item: &T) -> usize {
    all.iter().position(|x| x == item).unwrap_or_default()
}

impl Counters {
    pub(super) fn count_request(&self) {
        bump(&self.requests, 1);
    }
    pub(super) fn count_started(&self) {
        bump(&self.started, 1);
        bump(&self.active, 1);
    }
    pub(super) fn count_finished(&self, outcome: Result<(), Failure>) {
        self.active.fetch_sub(1, Ordering::Relaxed);
        match outcome {
            Ok(()) => bump(&self.served, 1),
            Err(failure) => bump(&self.failed[index(&Failure::ALL, &failure)], 1),
        }
    }
    pub(super) fn count_bytes(&self, bytes: u64) {
        bump(&self.bytes_sent, bytes);
    }
    pub(super) fn count_retransmits(&self, datagrams: u64) {
        bump(&self.retransmits, datagrams);
    }
    pub(super) fn count_duplicate_ack(&self) {
        bump(&self.duplicate_acks, 1);
    }
    pub(super) fn count_error(&self, kind: ErrorKind) {
        bump(&self.errors[index(&ErrorKind::ALL, &kind)], 1);
    }
    pub(super) fn count_drop(&self, reason: DropReason) {
        bump(&self.dropped[index(&DropReason::ALL, &reason)], 1);
    }

    /// Requests (RRQ and WRQ) received on the listening port.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
    /// Transfers started (a file was opened for a read request).
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }
    /// Files served to the end (last block acknowledged).
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
    /// Transfers in progress now (a gauge).
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }
    /// File bytes sent in DATA packets, retransmissions included.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent.load(Ordering::Relaxed)
    }
    /// Datagrams (DATA or OACK) sent again after a timeout or a client's
    /// report of loss.
    pub fn retransmits(&self) -> u64 {
        self.retransmits.load(Ordering::Relaxed)
    }
    /// ACKs ignored because they repeat one already acted on (the
    /// Sorcerer's Apprentice guard).
    pub fn duplicate_acks(&self) -> u64 {
        self.duplicate_acks.load(Ordering::Relaxed)
    }
    /// TFTP errors sent for `kind`.
    pub fn errors(&self, kind: ErrorKind) -> u64 {
        self.errors[index(&ErrorKind::ALL, &kind)].load(Ordering::Relaxed)
    }
    /// Datagrams dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[index(&DropReason::ALL, &reason)].load(Ordering::Relaxed)
    }
    /// Transfers that ended in `failure`.
    pub fn failed(&self, failure: Failure) -> u64 {
        self.failed[index(&Failure::ALL, &failure)].load(Ordering::Relaxed)
    }
    /// Malformed datagrams dropped (every reason but `Unexpected`).
    pub fn malformed(&self) -> u64 {
        DropReason::ALL
            .iter()
            .filter(|reason| **reason != DropReason::Unexpected)
            .map(|reason| self.dropped(*reason))
            .sum()
    }
    /// Every error kind with its count, zeros included.
    pub fn errors_by_kind(&self) -> impl Iterator<Item = (ErrorKind, u64)> + '_ {
        ErrorKind::ALL
            .iter()
            .map(|kind| (*kind, self.errors(*kind)))
    }
    /// Every drop reason with its count, zeros included.
    pub fn dropped_by_reason(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|reason| (*reason, self.dropped(*reason)))
    }
    /// Every failure with its count, zeros included.
    pub fn failed_by_kind(&self) -> impl Iterator<Item = (Failure, u64)> + '_ {
        Failure::ALL
            .iter()
            .map(|failure| (*failure, self.failed(*failure)))
    }
}

impl Counters {
    /// Registers the counters under the rack's registry, as
    /// `tftp_requests_total`, `tftp_served_total`, `tftp_bytes_sent_total`,
    /// `tftp_retransmits_total`, `tftp_errors_total{kind}`,
    /// `tftp_failed_total{cause}`, `tftp_dropped_total{reason}` (every label
    /// value, zeros included) and the gauge `tftp_active`.
    pub fn register(self: &Arc<Self>, registry: &mut Registry) {
        registry.register_collector(Box::new(CountersCollector(self.clone())));
    }
}

/// A counter family to encode: name, help, label name, (label value, count)s.
type LabelledCounter = (
    &'static str,
    &'static str,
    &'static str,
    Vec<(&'static str, u64)>,
);

/// Encodes [`Counters`] on each scrape.
#[derive(Debug)]
struct CountersCollector(Arc<Counters>);

impl Collector for CountersCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counters = &self.0;
        let single = [
            (
                "tftp_requests",
                "Read and write requests received.",
                counters.requests(),
            ),
            ("tftp_served", "Files served to the end.", counters.served()),
            ("tftp_bytes_sent", "File bytes sent.", counters.bytes_sent()),
            (
                "tftp_retransmits",
                "Blocks sent again after a timeout.",
                counters.retransmits(),
            ),
        ];
        for (name, help, value) in single {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value).encode(metric)?;
        }
        let labelled: [LabelledCounter; 3] = [
            (
                "tftp_errors",
                "Requests refused, by kind.",
                "kind",
                counters
                    .errors_by_kind()
                    .map(|(kind, n)| (kind.as_str(), n))
                    .collect(),
            ),
            (
                "tftp_failed",
                "Transfers that ended early, by cause.",
                "cause",
                counters
                    .failed_by_kind()
                    .map(|(failure, n)| (failure.as_str(), n))
                    .collect(),
            ),
            (
                "tftp_dropped",
                "Datagrams dropped, by reason.",
                "reason",
                counters
                    .dropped_by_reason()
                    .map(|(reason, n)| (reason.as_str(), n))
                    .collect(),
            ),
        ];
        for (name, help, label, samples) in labelled {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (value, n) in samples {
                ConstCounter::new(n).encode(family.encode_family(&[(label, value)])?)?;
            }
        }
        let active = encoder.encode_descriptor(
            "tftp_active",
            "Transfers in progress.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(counters.active() as i64).encode(active)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_collector_renders_every_series_with_the_registry_prefix() {
        let counters = Arc::new(Counters::default());
        counters.count_request();
        counters.count_started();
        counters.count_bytes(512);
        counters.count_error(ErrorKind::NotFound);
        let mut registry = Registry::with_prefix("edgemetal_rack");
        counters.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "# HELP edgemetal_rack_tftp_requests Read and write requests received.",
            "# TYPE edgemetal_rack_tftp_requests counter",
            "edgemetal_rack_tftp_requests_total 1",
            "edgemetal_rack_tftp_served_total 0",
            "edgemetal_rack_tftp_bytes_sent_total 512",
            "edgemetal_rack_tftp_errors_total{kind=\"not_found\"} 1",
            "edgemetal_rack_tftp_errors_total{kind=\"busy\"} 0",
            "edgemetal_rack_tftp_failed_total{cause=\"timeout\"} 0",
            "edgemetal_rack_tftp_dropped_total{reason=\"truncated\"} 0",
            "# TYPE edgemetal_rack_tftp_active gauge",
            "edgemetal_rack_tftp_active 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
    }
}
