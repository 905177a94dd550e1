//! Option negotiation: blksize (RFC 2348), timeout and tsize (RFC 2349),
//! windowsize (RFC 7440), under the rules of RFC 2347: names are
//! case-insensitive, unknown options and unusable values are ignored (left
//! out of the OACK), and a server may lower a blksize or windowsize.

use std::time::Duration;

use super::config::TftpConfig;
use super::packet::RawOption;

/// RFC 1350's block size, used when none is negotiated.
pub const DEFAULT_BLKSIZE: u16 = 512;
/// Smallest blksize RFC 2348 allows.
pub const MIN_BLKSIZE: u16 = 8;
/// Largest blksize RFC 2348 allows (fits a 65535-byte IP datagram).
pub const MAX_BLKSIZE: u16 = 65464;
/// Largest windowsize the server grants: half the block-number space, so an
/// ACK's 16-bit number always maps to one block of the current window.
pub const MAX_WINDOWSIZE: u16 = 32768;

/// A recognised option, for keeping the client's order in the OACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Name {
    Blksize,
    Timeout,
    Tsize,
    Windowsize,
}

/// The options a read request carried that the server understands, with
/// usable values. Anything else in the request was ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requested {
    /// Requested block size, already capped at [`MAX_BLKSIZE`].
    pub blksize: Option<u16>,
    /// Requested retransmission timeout, 1 to 255 seconds.
    pub timeout_secs: Option<u8>,
    /// Whether the client asked for the transfer size.
    pub tsize: bool,
    /// Requested window size, already capped at [`MAX_WINDOWSIZE`].
    pub windowsize: Option<u16>,
    order: Vec<Name>,
}

impl Requested {
    /// Interprets raw `(name, value)` pairs. The first occurrence of a name
    /// counts; a value out of its RFC's range drops the option.
    pub fn parse(raw: &[RawOption<'_>]) -> Self {
        let mut requested = Requested::default();
        for (name, value) in raw {
            let Some(name) = recognise(name) else {
                continue;
            };
            if requested.order.contains(&name) {
                continue;
            }
            // In a read request tsize's value means nothing (RFC 2349 says
            // 0; atftp sends "enable"): the server answers the size anyway.
            if name == Name::Tsize {
                requested.tsize = true;
                requested.order.push(name);
                continue;
            }
            let Some(number) = decimal(value) else {
                continue;
            };
            let accepted = match name {
                Name::Blksize if number >= u64::from(MIN_BLKSIZE) => {
                    requested.blksize = Some(cap(number, MAX_BLKSIZE));
                    true
                }
                Name::Timeout if (1..=255).contains(&number) => {
                    requested.timeout_secs = u8::try_from(number).ok();
                    true
                }
                Name::Windowsize if number >= 1 => {
                    requested.windowsize = Some(cap(number, MAX_WINDOWSIZE));
                    true
                }
                _ => false,
            };
            if accepted {
                requested.order.push(name);
            }
        }
        requested
    }

    /// Whether any option will be acknowledged (so an OACK is due).
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

fn recognise(name: &[u8]) -> Option<Name> {
    [
        (&b"blksize"[..], Name::Blksize),
        (b"timeout", Name::Timeout),
        (b"tsize", Name::Tsize),
        (b"windowsize", Name::Windowsize),
    ]
    .into_iter()
    .find(|(known, _)| name.eq_ignore_ascii_case(known))
    .map(|(_, name)| name)
}

/// Plain ASCII digits only: no sign, no spaces, no overflow.
fn decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

fn cap(number: u64, max: u16) -> u16 {
    u16::try_from(number).unwrap_or(max).min(max)
}

/// The parameters a transfer runs with, and the OACK that announces them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Bytes per DATA block.
    pub blksize: u16,
    /// DATA blocks sent before waiting for an ACK.
    pub windowsize: u16,
    /// Retransmission timeout.
    pub timeout: Duration,
    /// `(name, value)` pairs to send in an OACK, in the client's order;
    /// empty when no OACK is due (plain RFC 1350).
    pub oack: Vec<(&'static str, String)>,
}

/// Settles the options of a request for a file of `file_len` bytes: the
/// client's value where the server accepts it, the server's cap where the
/// client asked for more.
pub fn negotiate(requested: &Requested, config: &TftpConfig, file_len: u64) -> Negotiated {
    let mut negotiated = Negotiated {
        blksize: DEFAULT_BLKSIZE,
        windowsize: 1,
        timeout: config.timeout,
        oack: Vec::new(),
    };
    for name in &requested.order {
        match name {
            Name::Blksize => {
                let blksize = requested
                    .blksize
                    .unwrap_or(DEFAULT_BLKSIZE)
                    .min(config.max_blksize.clamp(MIN_BLKSIZE, MAX_BLKSIZE));
                negotiated.blksize = blksize;
                negotiated.oack.push(("blksize", blksize.to_string()));
            }
            Name::Timeout => {
                let secs = requested.timeout_secs.unwrap_or(1);
                negotiated.timeout = Duration::from_secs(u64::from(secs));
                negotiated.oack.push(("timeout", secs.to_string()));
            }
            // curl (7.88) fails a download whose OACK says tsize 0, so an
            // empty file's size is not announced: RFC 2347 lets a server
            // leave any option out, and the client then sees the empty
            // DATA block 1 (directly, if nothing else was acknowledged).
            Name::Tsize if file_len == 0 => {}
            Name::Tsize => negotiated.oack.push(("tsize", file_len.to_string())),
            Name::Windowsize => {
                let windowsize = requested
                    .windowsize
                    .unwrap_or(1)
                    .min(config.max_windowsize.clamp(1, MAX_WINDOWSIZE));
                negotiated.windowsize = windowsize;
                negotiated.oack.push(("windowsize", windowsize.to_string()));
            }
        }
    }
    negotiated
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requested(pairs: &[(&str, &str)]) -> Requested {
        let raw: Vec<RawOption<'_>> = pairs
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        Requested::parse(&raw)
    }

    #[test]
    fn names_are_case_insensitive_and_unknown_ones_ignored() {
        let r = requested(&[("BlkSize", "1468"), ("multicast", ""), ("rollover", "0")]);
        assert_eq!(r.blksize, Some(1468));
        let n = negotiate(&r, &TftpConfig::default(), 10);
        assert_eq!(n.oack, vec![("blksize", "1468".to_string())]);
    }

    #[test]
    fn out_of_range_values_drop_the_option_or_are_capped() {
        let r = requested(&[("blksize", "7"), ("timeout", "0"), ("windowsize", "0")]);
        assert!(r.is_empty());
        // atftp's "tsize enable": the value of a read request's tsize is moot.
        assert!(requested(&[("tsize", "enable")]).tsize);
        let r = requested(&[("blksize", "99999999"), ("windowsize", "70000")]);
        assert_eq!(r.blksize, Some(MAX_BLKSIZE));
        assert_eq!(r.windowsize, Some(MAX_WINDOWSIZE));
        assert!(requested(&[("timeout", "256")]).is_empty());
        assert!(requested(&[("blksize", "+512")]).is_empty());
        assert!(requested(&[("blksize", "99999999999999999999999")]).is_empty());
    }

    #[test]
    fn the_first_occurrence_of_a_name_wins() {
        let r = requested(&[("blksize", "1024"), ("BLKSIZE", "2048")]);
        assert_eq!(r.blksize, Some(1024));
    }

    #[test]
    fn the_server_caps_and_answers_in_the_clients_order() {
        let config = TftpConfig {
            max_blksize: 1400,
            max_windowsize: 8,
            ..TftpConfig::default()
        };
        let r = requested(&[
            ("tsize", "0"),
            ("windowsize", "64"),
            ("timeout", "3"),
            ("blksize", "1468"),
        ]);
        let n = negotiate(&r, &config, 123_456);
        assert_eq!((n.blksize, n.windowsize), (1400, 8));
        assert_eq!(n.timeout, Duration::from_secs(3));
        assert_eq!(
            n.oack,
            vec![
                ("tsize", "123456".to_string()),
                ("windowsize", "8".to_string()),
                ("timeout", "3".to_string()),
                ("blksize", "1400".to_string()),
            ]
        );
    }

    #[test]
    fn an_empty_files_size_is_not_announced() {
        let r = requested(&[("tsize", "0"), ("blksize", "1024")]);
        let n = negotiate(&r, &TftpConfig::default(), 0);
        assert_eq!(n.oack, vec![("blksize", "1024".to_string())]);
        let n = negotiate(&requested(&[("tsize", "0")]), &TftpConfig::default(), 0);
        assert!(n.oack.is_empty());
    }

    #[test]
    fn no_options_means_rfc_1350_defaults_and_no_oack() {
        let n = negotiate(&Requested::default(), &TftpConfig::default(), 0);
        assert_eq!((n.blksize, n.windowsize), (512, 1));
        assert!(n.oack.is_empty());
    }
}
