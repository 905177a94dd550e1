//! DHCPv4 on the wire: a strict parser for requests and an encoder for replies.
//!
//! Requests are parsed here rather than by `dhcproto`'s decoder because that
//! decoder stops silently at the first bad option, does not join split
//! options (RFC 3396) and re-encodes option 82 from its parsed form, while a
//! server must tell malformed input apart (to count it), and must echo the
//! relay's option 82 byte for byte. Replies are built with `dhcproto`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use dhcproto::v4::{self, DhcpOption, Flags, HType, Opcode};
use dhcproto::Encodable;
use edgemetal_protocol::MacAddress;

use super::boot::BootRequest;
use super::counters::DropReason;
use super::leases::ClientId;

const HEADER_LEN: usize = 236;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Old BOOTP relays and clients drop replies shorter than a BOOTP packet.
const MIN_REPLY_LEN: usize = 300;

/// The DHCP message types a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMessage {
    /// Looking for servers.
    Discover,
    /// Asking for (or to keep) an address.
    Request,
    /// The offered address is in use.
    Decline,
    /// Giving an address back.
    Release,
    /// Has an address, wants the other parameters.
    Inform,
}

/// A request that passed every structural check.
#[derive(Debug, Clone)]
pub struct Request {
    /// The message type (option 53).
    pub message: ClientMessage,
    /// Transaction id, echoed in the reply.
    pub xid: u32,
    /// The flags field, echoed in the reply.
    pub flags: u16,
    /// Client address, set when the client has one.
    pub ciaddr: Ipv4Addr,
    /// Relay address, set when a relay forwarded the packet.
    pub giaddr: Ipv4Addr,
    /// Client hardware address.
    pub mac: MacAddress,
    /// Options by code, split options joined (RFC 3396).
    options: BTreeMap<u8, Vec<u8>>,
}

impl Request {
    /// The raw value of option `code`.
    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options.get(&code).map(Vec::as_slice)
    }

    /// Whether the client asked for a broadcast reply.
    pub fn broadcast_flag(&self) -> bool {
        self.flags & 0x8000 != 0
    }

    /// Option 50.
    pub fn requested_ip(&self) -> Option<Ipv4Addr> {
        self.option(50).and_then(ipv4)
    }

    /// Option 54.
    pub fn server_id(&self) -> Option<Ipv4Addr> {
        self.option(54).and_then(ipv4)
    }

    /// Option 61, else the id derived from the hardware address.
    pub fn client_id(&self) -> ClientId {
        match self.option(61) {
            Some(id) => ClientId::new(id),
            None => ClientId::from_mac(self.mac),
        }
    }

    /// Option 82, verbatim.
    pub fn relay_agent_info(&self) -> Option<&[u8]> {
        self.option(82)
    }

    /// The network-boot inputs: options 93, 60, 77 and 175.
    pub fn boot(&self) -> BootRequest<'_> {
        let user_class = self.option(77).unwrap_or_default();
        // iPXE sends "iPXE" bare; RFC 3004 clients length-prefix each class.
        let ipxe = user_class == b"iPXE"
            || user_class_entries(user_class).any(|class| class == b"iPXE")
            || self.option(175).is_some();
        BootRequest {
            arch: self
                .option(93)
                .and_then(|v| v.get(..2))
                .map(|v| u16::from_be_bytes([v[0], v[1]])),
            vendor_class: self.option(60),
            ipxe,
        }
    }
}

fn ipv4(bytes: &[u8]) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(bytes).ok().map(Ipv4Addr::from)
}

fn user_class_entries(mut bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (&len, rest) = bytes.split_first()?;
        let entry = rest.get(..usize::from(len))?;
        bytes = &rest[entry.len()..];
        Some(entry)
    })
}

/// Parses and checks a request; the error says why it must be dropped.
pub fn parse(packet: &[u8]) -> Result<Request, DropReason> {
    let header = packet.get(..HEADER_LEN).ok_or(DropReason::Truncated)?;
    if header[0] != 1 {
        return Err(DropReason::NotBootRequest);
    }
    // Ethernet only: replies go to a MAC, and reservations are by MAC.
    if header[1] != 1 || header[2] != 6 {
        return Err(DropReason::UnsupportedHardware);
    }
    let cookie = packet
        .get(HEADER_LEN..HEADER_LEN + 4)
        .ok_or(DropReason::Truncated)?;
    if cookie != MAGIC_COOKIE {
        return Err(DropReason::BadMagicCookie);
    }
    let options = parse_options(&packet[HEADER_LEN + 4..])?;
    if options.contains_key(&52) {
        // Options hidden in `sname`/`file`: rare in requests, and a classic
        // way to make parsers disagree about what a packet says.
        return Err(DropReason::OptionOverload);
    }
    let message = match options.get(&53).map(Vec::as_slice) {
        None => return Err(DropReason::MissingMessageType),
        Some([1]) => ClientMessage::Discover,
        Some([3]) => ClientMessage::Request,
        Some([4]) => ClientMessage::Decline,
        Some([7]) => ClientMessage::Release,
        Some([8]) => ClientMessage::Inform,
        Some(_) => return Err(DropReason::UnexpectedMessageType),
    };
    let well_formed = [50, 54]
        .iter()
        .all(|code| options.get(code).is_none_or(|v| v.len() == 4))
        && options.get(&61).is_none_or(|v| v.len() >= 2)
        && options
            .get(&93)
            .is_none_or(|v| v.len() >= 2 && v.len() % 2 == 0);
    if !well_formed {
        return Err(DropReason::BadOptionValue);
    }
    let word = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&header[28..34]);
    Ok(Request {
        message,
        xid: word(4),
        flags: u16::from_be_bytes([header[10], header[11]]),
        ciaddr: Ipv4Addr::from(word(12)),
        giaddr: Ipv4Addr::from(word(24)),
        mac: MacAddress(mac),
        options,
    })
}

fn parse_options(mut bytes: &[u8]) -> Result<BTreeMap<u8, Vec<u8>>, DropReason> {
    let mut options: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
    while let Some((&code, rest)) = bytes.split_first() {
        match code {
            0 => bytes = rest,
            255 => return Ok(options),
            _ => {
                let (&len, rest) = rest.split_first().ok_or(DropReason::BadOptionLength)?;
                let value = rest
                    .get(..usize::from(len))
                    .ok_or(DropReason::BadOptionLength)?;
                options.entry(code).or_default().extend_from_slice(value);
                bytes = &rest[value.len()..];
            }
        }
    }
    // No END option: tolerated, as long as every length fitted.
    Ok(options)
}

/// The DHCP message types the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerMessage {
    /// Answer to DISCOVER.
    Offer,
    /// Answer to REQUEST or INFORM.
    Ack,
    /// Refusal of a REQUEST.
    Nak,
}

/// A reply before encoding.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Its type.
    pub message: ServerMessage,
    /// The client's address, echoed for INFORM and renewals.
    pub ciaddr: Ipv4Addr,
    /// The address given.
    pub yiaddr: Ipv4Addr,
    /// Next server (TFTP).
    pub siaddr: Ipv4Addr,
    /// Whether to set the broadcast flag (NAKs through a relay).
    pub force_broadcast: bool,
    /// The `file` header field.
    pub file: Option<String>,
    /// Options besides the message type; option 82 is added from the request.
    pub options: Vec<DhcpOption>,
}

impl Reply {
    /// An empty reply of type `message`.
    pub fn new(message: ServerMessage) -> Self {
        Reply {
            message,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            force_broadcast: false,
            file: None,
            options: Vec::new(),
        }
    }
}

/// Options a reply keeps however small the client's buffer: without them
/// the answer is useless (type, server, lease times, mask, router, boot file).
const ESSENTIAL: [u8; 9] = [1, 3, 51, 53, 54, 58, 59, 60, 67];
/// The smallest message every client must accept (RFC 2131 §2), minus the
/// IP and UDP headers: the DHCP payload limit when option 57 is absent.
const DEFAULT_MAX_PAYLOAD: usize = 576 - 28;

/// Encodes `reply` to `request`; `None` only if `dhcproto` refuses a value.
///
/// Options the client did not ask for (option 55) are dropped when the reply
/// would exceed its maximum message size (option 57, at least 576), then
/// requested ones from the end of its list, never the essential ones.
pub fn encode(request: &Request, mut reply: Reply) -> Option<Vec<u8>> {
    let limit = request
        .option(57)
        .filter(|value| value.len() == 2)
        .map(|value| usize::from(u16::from_be_bytes([value[0], value[1]])).max(576) - 28)
        .unwrap_or(DEFAULT_MAX_PAYLOAD);
    let requested = request.option(55).unwrap_or(&[]).to_vec();
    loop {
        let bytes = encode_all(request, reply.clone())?;
        if bytes.len() <= limit {
            return Some(bytes);
        }
        // The least wanted droppable option: unrequested first, then the
        // requested ones from the end of the client's list.
        let rank = |option: &DhcpOption| {
            let code = u8::from(v4::OptionCode::from(option));
            if ESSENTIAL.contains(&code) {
                None
            } else {
                Some(
                    requested
                        .iter()
                        .position(|c| *c == code)
                        .map_or(usize::MAX, |p| p),
                )
            }
        };
        let Some((_, victim)) = reply
            .options
            .iter()
            .enumerate()
            .filter_map(|(index, option)| rank(option).map(|r| (r, index)))
            .max()
        else {
            return Some(bytes);
        };
        reply.options.remove(victim);
    }
}

fn encode_all(request: &Request, reply: Reply) -> Option<Vec<u8>> {
    let mut message = v4::Message::new_with_id(
        request.xid,
        reply.ciaddr,
        reply.yiaddr,
        reply.siaddr,
        request.giaddr,
        &request.mac.0,
    );
    message.set_opcode(Opcode::BootReply).set_htype(HType::Eth);
    let flags = Flags::new(request.flags);
    message.set_flags(if reply.force_broadcast {
        flags.set_broadcast()
    } else {
        flags
    });
    if let Some(file) = reply.file.filter(|file| file.len() < 128) {
        message.set_fname(file.as_bytes());
    }
    let options = message.opts_mut();
    options.insert(DhcpOption::MessageType(match reply.message {
        ServerMessage::Offer => v4::MessageType::Offer,
        ServerMessage::Ack => v4::MessageType::Ack,
        ServerMessage::Nak => v4::MessageType::Nak,
    }));
    for option in reply.options {
        options.insert(option);
    }
    let mut bytes = message.to_vec().ok()?;
    if let Some(info) = request.relay_agent_info() {
        // RFC 3046: echoed unchanged, as the last option. Appended by hand:
        // `dhcproto` would re-encode a parsed option 82, and emits an
        // unparsed one twice.
        if bytes.last() == Some(&255) {
            bytes.pop();
        }
        if info.is_empty() {
            bytes.extend_from_slice(&[82, 0]);
        }
        for chunk in info.chunks(255) {
            bytes.extend_from_slice(&[82, chunk.len() as u8]);
            bytes.extend_from_slice(chunk);
        }
        bytes.push(255);
    }
    if bytes.len() < MIN_REPLY_LEN {
        bytes.resize(MIN_REPLY_LEN, 0);
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(options: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; HEADER_LEN];
        bytes[0] = 1;
        bytes[1] = 1;
        bytes[2] = 6;
        bytes[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        bytes.extend_from_slice(&MAGIC_COOKIE);
        bytes.extend_from_slice(options);
        bytes
    }

    #[test]
    fn each_structural_fault_has_its_reason() {
        let discover = [53, 1, 1, 255];
        assert!(parse(&packet(&discover)).is_ok());
        assert_eq!(
            parse(&packet(&discover)[..100]).unwrap_err(),
            DropReason::Truncated
        );
        assert_eq!(
            parse(&packet(&discover)[..238]).unwrap_err(),
            DropReason::Truncated
        );
        let mut reply = packet(&discover);
        reply[0] = 2;
        assert_eq!(parse(&reply).unwrap_err(), DropReason::NotBootRequest);
        let mut bad_cookie = packet(&discover);
        bad_cookie[HEADER_LEN] = 0;
        assert_eq!(parse(&bad_cookie).unwrap_err(), DropReason::BadMagicCookie);
        let cases: [(&[u8], DropReason); 6] = [
            (&[53, 1, 1, 12, 200, b'x'], DropReason::BadOptionLength),
            (&[53, 1, 1, 12], DropReason::BadOptionLength),
            (&[53, 1, 1, 52, 1, 3, 255], DropReason::OptionOverload),
            (&[12, 1, b'x', 255], DropReason::MissingMessageType),
            (&[53, 1, 2, 255], DropReason::UnexpectedMessageType),
            (
                &[53, 1, 3, 50, 3, 10, 0, 0, 255],
                DropReason::BadOptionValue,
            ),
        ];
        for (options, reason) in cases {
            assert_eq!(parse(&packet(options)).unwrap_err(), reason, "{options:?}");
        }
    }

    #[test]
    fn split_options_are_joined_and_end_is_optional() {
        let request = parse(&packet(&[
            53, 1, 1, 60, 3, b'P', b'X', b'E', 60, 2, b'C', b'l',
        ]))
        .unwrap();
        assert_eq!(request.option(60), Some(b"PXECl".as_slice()));
    }

    #[test]
    fn ipxe_is_recognised_bare_prefixed_or_by_option_175() {
        let bare = parse(&packet(&[53, 1, 1, 77, 4, b'i', b'P', b'X', b'E'])).unwrap();
        let prefixed = parse(&packet(&[53, 1, 1, 77, 5, 4, b'i', b'P', b'X', b'E'])).unwrap();
        let encapsulated = parse(&packet(&[53, 1, 1, 175, 3, 1, 1, 1])).unwrap();
        let plain = parse(&packet(&[53, 1, 1, 77, 3, 2, b'h', b'i'])).unwrap();
        assert!(bare.boot().ipxe && prefixed.boot().ipxe && encapsulated.boot().ipxe);
        assert!(!plain.boot().ipxe);
    }

    #[test]
    fn replies_are_padded_and_echo_option_82_verbatim() {
        let request = parse(&packet(&[53, 1, 1, 82, 4, 1, 2, 0xaa, 0xbb, 255])).unwrap();
        let bytes = encode(&request, Reply::new(ServerMessage::Offer)).unwrap();
        assert!(bytes.len() >= MIN_REPLY_LEN);
        assert_eq!(bytes[0], 2);
        let options = parse_options(&bytes[HEADER_LEN + 4..]).unwrap();
        assert_eq!(options.get(&82).unwrap(), &vec![1, 2, 0xaa, 0xbb]);
        assert_eq!(options.get(&53).unwrap(), &vec![2]);
    }

    fn big_reply() -> Reply {
        let mut reply = Reply::new(ServerMessage::Ack);
        reply.options = vec![
            DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 0, 2)),
            DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)),
            DhcpOption::AddressLeaseTime(600),
            DhcpOption::Hostname("h".repeat(200)),
            DhcpOption::DomainName("d".repeat(200)),
            DhcpOption::RootPath("r".repeat(200)),
        ];
        reply
    }

    fn codes(bytes: &[u8]) -> Vec<u8> {
        use dhcproto::Decodable;
        let message = v4::Message::decode(&mut dhcproto::Decoder::new(bytes)).unwrap();
        message
            .opts()
            .iter()
            .map(|(code, _)| u8::from(*code))
            .collect()
    }

    #[test]
    fn a_reply_over_the_clients_size_limit_sheds_unrequested_options_first() {
        // Requests hostname (12) then domain (15); root path (17) unrequested; no option 57.
        let request = parse(&packet(&[53, 1, 3, 55, 2, 12, 15, 255])).unwrap();
        let bytes = encode(&request, big_reply()).unwrap();
        assert!(bytes.len() <= 548, "{}", bytes.len());
        let kept = codes(&bytes);
        assert!(kept.contains(&12) && !kept.contains(&17), "{kept:?}");
        // Of the requested two, the one listed last goes; essentials stay.
        assert!(!kept.contains(&15), "{kept:?}");
        for essential in [1, 51, 53, 54] {
            assert!(kept.contains(&essential), "{kept:?}");
        }
        // A client that accepts 1500 bytes gets everything.
        let roomy = parse(&packet(&[53, 1, 3, 57, 2, 0x05, 0xdc, 255])).unwrap();
        let kept = codes(&encode(&roomy, big_reply()).unwrap());
        assert!([12, 15, 17].iter().all(|c| kept.contains(c)), "{kept:?}");
    }
}
