//! Why datagrams got no answer, counted by reason for metrics.

use std::collections::BTreeMap;

/// Why a datagram got no answer; the label is a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// Shorter than the fixed header and magic cookie.
    Truncated,
    /// `op` is not BOOTREQUEST.
    NotBootRequest,
    /// Not Ethernet with a 6-byte address.
    UnsupportedHardware,
    /// Not a DHCP packet (no magic cookie).
    BadMagicCookie,
    /// An option's length runs past the end of the packet.
    BadOptionLength,
    /// Option 52: options in `sname`/`file` are not accepted.
    OptionOverload,
    /// No option 53.
    MissingMessageType,
    /// An option the engine relies on has an impossible length.
    BadOptionValue,
    /// A message type a client does not send.
    UnexpectedMessageType,
    /// A REQUEST or DECLINE without the address it is about.
    NoRequestedAddress,
    /// No served subnet matches the relay, client address or interface.
    NoSubnet,
    /// Addressed to another server (the client chose its offer).
    ForeignServer,
    /// The pool has no address for the client: no OFFER.
    PoolExhausted,
    /// A RELEASE or DECLINE for a lease the client does not hold.
    UnknownLease,
    /// The reply could not be encoded.
    EncodeFailed,
    /// Another rack serving the subnet answers this client or address.
    PeerServes,
}

impl DropReason {
    /// A stable snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::NotBootRequest => "not_bootrequest",
            DropReason::UnsupportedHardware => "unsupported_hardware",
            DropReason::BadMagicCookie => "bad_magic_cookie",
            DropReason::BadOptionLength => "bad_option_length",
            DropReason::OptionOverload => "option_overload",
            DropReason::MissingMessageType => "missing_message_type",
            DropReason::BadOptionValue => "bad_option_value",
            DropReason::UnexpectedMessageType => "unexpected_message_type",
            DropReason::NoRequestedAddress => "no_requested_address",
            DropReason::NoSubnet => "no_subnet",
            DropReason::ForeignServer => "foreign_server",
            DropReason::PoolExhausted => "pool_exhausted",
            DropReason::UnknownLease => "unknown_lease",
            DropReason::PeerServes => "peer_serves",
            DropReason::EncodeFailed => "encode_failed",
        }
    }
}

/// What the engine has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams handed to [`Engine::handle`].
    pub received: u64,
    /// Replies sent.
    pub sent: u64,
    dropped: BTreeMap<DropReason, u64>,
}

impl Counters {
    pub(super) fn count_drop(&mut self, reason: DropReason) {
        *self.dropped.entry(reason).or_default() += 1;
    }

    /// Datagrams dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped.get(&reason).copied().unwrap_or(0)
    }

    /// Every reason seen so far, with its count.
    pub fn dropped_by_reason(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        self.dropped.iter().map(|(reason, count)| (*reason, *count))
    }
}
