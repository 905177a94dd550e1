//! One received syslog message → a [`LogLine`]: truncation to the relay's
//! limit, parsing with `syslog_loose` (RFC 5424 first, then RFC 3164), and
//! the raw text with a `malformed` flag when neither fits. No I/O, no clock:
//! the receive time is a parameter.

use std::net::IpAddr;

use edgemetal_protocol::{LogLine, MacAddress};
use syslog_loose::{IncompleteDate, Variant};

/// A decoded message, before the queue gives it an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The line, with `id` 0.
    pub line: LogLine,
}

/// Decodes `raw` received from `source` at `now_ms`. `cut` says the framing
/// already shortened it; anything past `max_bytes` is cut here.
pub fn decode(
    raw: &[u8],
    cut: bool,
    max_bytes: usize,
    source: IpAddr,
    mac: Option<MacAddress>,
    now_ms: u64,
) -> LogLine {
    let truncated = cut || raw.len() > max_bytes;
    let raw = &raw[..raw.len().min(max_bytes)];
    // Invalid UTF-8 is kept (replacement characters), never refused.
    let text = String::from_utf8_lossy(raw);
    let text = text.trim_end_matches(['\n', '\r', '\0']);
    let (year, month) = year_and_month(now_ms);
    // A year-less RFC 3164 date from December seen in January is last year's.
    let year_of = move |(m, ..): IncompleteDate| {
        if m == 12 && month == 1 {
            year - 1
        } else {
            year
        }
    };
    let parsed = syslog_loose::parse_message_with_year_exact(text, year_of, Variant::Either)
        .ok()
        // Without a PRI the parser guesses fields out of free text: raw it is.
        .filter(|m| m.facility.is_some() && m.severity.is_some());
    match parsed {
        Some(message) => LogLine {
            id: 0,
            received_ms: now_ms,
            timestamp_ms: message.timestamp.map(|t| t.timestamp_millis()),
            source,
            mac,
            facility: message.facility.map(|f| f as u8),
            severity: message.severity.map(|s| s as u8),
            hostname: message.hostname.map(str::to_string),
            app_name: message.appname.map(str::to_string),
            text: message.msg.to_string(),
            malformed: false,
            truncated,
        },
        None => LogLine {
            id: 0,
            received_ms: now_ms,
            timestamp_ms: None,
            source,
            mac,
            facility: None,
            severity: None,
            hostname: None,
            app_name: None,
            text: text.to_string(),
            malformed: true,
            truncated,
        },
    }
}

/// The UTC civil year and month of `now_ms` (by the `time` crate), so
/// decoding needs no clock. Past the last date `time` knows (9999-12-31),
/// that date's.
fn year_and_month(now_ms: u64) -> (i32, u32) {
    let secs = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
    let date = time::OffsetDateTime::from_unix_timestamp(secs)
        .map(|at| at.date())
        .unwrap_or(time::Date::MAX);
    (date.year(), u32::from(u8::from(date.month())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_000_000_000; // 2026-11-17
    fn source() -> IpAddr {
        "10.0.0.5".parse().unwrap()
    }

    #[test]
    fn civil_dates() {
        assert_eq!(year_and_month(0), (1970, 1));
        assert_eq!(year_and_month(NOW), (2026, 11));
        assert_eq!(year_and_month(951_782_400_000), (2000, 2)); // 2000-02-29
        assert_eq!(year_and_month(951_868_799_999), (2000, 2)); // its last ms
        assert_eq!(year_and_month(951_868_800_000), (2000, 3));
        assert_eq!(year_and_month(u64::MAX), (9999, 12));
    }

    #[test]
    fn rfc5424_fields() {
        let raw = b"<28>1 2026-11-28T10:00:00.500Z node1 myapp 42 ID7 - disk almost full";
        let line = decode(raw, false, 8192, source(), None, NOW);
        assert!(!line.malformed);
        assert_eq!(line.facility, Some(3));
        assert_eq!(line.severity, Some(4));
        assert_eq!(line.hostname.as_deref(), Some("node1"));
        assert_eq!(line.app_name.as_deref(), Some("myapp"));
        assert_eq!(line.text, "disk almost full");
        assert_eq!(line.timestamp_ms, Some(1_795_860_000_500));
    }

    #[test]
    fn rfc3164_fields() {
        let raw = b"<13>Nov 28 10:00:00 node1 root: hello from 3164\n";
        let line = decode(raw, false, 8192, source(), None, NOW);
        assert!(!line.malformed);
        assert_eq!((line.facility, line.severity), (Some(1), Some(5)));
        assert_eq!(line.hostname.as_deref(), Some("node1"));
        assert_eq!(line.app_name.as_deref(), Some("root"));
        assert_eq!(line.text, "hello from 3164");
    }

    #[test]
    fn busybox_style_without_hostname() {
        let raw = b"<14>Nov 28 10:00:00 tester: busybox says hi";
        let line = decode(raw, false, 8192, source(), None, NOW);
        assert!(!line.malformed);
        assert_eq!(line.severity, Some(6));
        assert!(line.text.contains("busybox says hi"), "{line:?}");
    }

    #[test]
    fn text_without_pri_is_kept_raw_and_flagged() {
        for raw in [
            &b"this is not syslog at all"[..],
            b"<999>nonsense",
            b"",
            b"\xff\xfe\x00binary",
        ] {
            let line = decode(raw, false, 8192, source(), None, NOW);
            assert!(line.malformed, "{raw:?} → {line:?}");
            assert_eq!(line.severity, None);
        }
        let line = decode(
            b"this is not syslog at all",
            false,
            8192,
            source(),
            None,
            NOW,
        );
        assert_eq!(line.text, "this is not syslog at all");
    }

    #[test]
    fn long_messages_are_cut_at_the_limit_even_inside_a_character() {
        let mut raw = b"<13>Nov 28 10:00:00 node1 app: ".to_vec();
        raw.extend("é".repeat(100).as_bytes());
        let line = decode(&raw, false, 64, source(), None, NOW);
        assert!(line.truncated);
        assert!(!line.malformed);
        assert!(line.text.len() < 64);
        let line = decode(b"<13>short", true, 64, source(), None, NOW);
        assert!(line.truncated, "framing's cut is kept");
    }
}
