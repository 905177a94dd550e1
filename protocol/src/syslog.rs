//! Machine log lines the rack's syslog relay received, on their way to the
//! region.
//!
//! The rack queues lines on disk while the link is down and sends them in
//! batches on [`Channel::Logs`](crate::Channel::Logs); the region stores a
//! batch and answers [`DownMessage::LogsAck`](crate::DownMessage::LogsAck)
//! with the highest id it holds, after which the rack forgets those lines.
//! Ids grow by one per rack, so a batch sent twice is stored once.

use alloc::string::String;
use alloc::vec::Vec;
use core::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::types::MacAddress;

/// One syslog message, parsed as far as it parses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Position in the rack's log queue; grows by one per line, never reused.
    pub id: u64,
    /// When the rack received it, ms since the epoch (rack clock).
    pub received_ms: u64,
    /// The message's own timestamp, ms since the epoch, when it carried one.
    pub timestamp_ms: Option<i64>,
    /// The sender's address.
    pub source: IpAddr,
    /// The machine that holds `source` (lease or reservation), when known.
    pub mac: Option<MacAddress>,
    /// Syslog facility code (0–23), when the message had a PRI.
    pub facility: Option<u8>,
    /// Syslog severity code (0 emergency – 7 debug), when the message had a PRI.
    pub severity: Option<u8>,
    /// The HOSTNAME field.
    pub hostname: Option<String>,
    /// The APP-NAME (RFC 5424) or TAG (RFC 3164) field.
    pub app_name: Option<String>,
    /// The message text; the whole raw message when it did not parse.
    pub text: String,
    /// The message did not parse as RFC 3164 or RFC 5424 and is kept raw.
    pub malformed: bool,
    /// The message was longer than the relay's limit and was cut.
    pub truncated: bool,
}

/// A batch of queued log lines, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogBatch {
    /// The lines, in id order.
    pub lines: Vec<LogLine>,
}
