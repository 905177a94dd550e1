//! Strict query parsing and reply encoding, EDNS0 and truncation included.
//! hickory-proto does the bytes; this module decides what a well-formed
//! query is for the rack, and fits replies to what the client can take.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Record, RecordType};

/// Size of the fixed DNS header.
pub const HEADER_LEN: usize = 12;
/// Largest reply to a client without EDNS over UDP (RFC 1035).
pub const CLASSIC_UDP_LIMIT: u16 = 512;
/// Largest DNS message over TCP (its 2-byte length prefix).
pub const TCP_LIMIT: usize = u16::MAX as usize;

/// The transport a message came over or goes out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// A datagram: replies must fit the client's payload size.
    Udp,
    /// A stream with 2-byte length prefixes: replies are never truncated.
    Tcp,
}

/// The client's EDNS0 settings (RFC 6891).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientEdns {
    /// The largest UDP payload the client accepts (never below 512).
    pub payload: u16,
}

/// A query the rack will answer: exactly one question, opcode QUERY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The client's message id, echoed in the reply.
    pub id: u16,
    /// The question, exactly as asked (case preserved for the echo).
    pub query: Query,
    /// Recursion desired, echoed.
    pub recursion_desired: bool,
    /// Checking disabled, echoed.
    pub checking_disabled: bool,
    /// Present if the client sent an OPT record: the reply carries one too.
    pub edns: Option<ClientEdns>,
}

impl Request {
    /// The largest reply the client accepts on `transport`.
    pub fn reply_limit(&self, transport: Transport, max_udp_payload: u16) -> usize {
        match transport {
            Transport::Tcp => TCP_LIMIT,
            Transport::Udp => match self.edns {
                Some(edns) => edns
                    .payload
                    .min(max_udp_payload)
                    .max(CLASSIC_UDP_LIMIT)
                    .into(),
                None => CLASSIC_UDP_LIMIT.into(),
            },
        }
    }
}

/// Why a datagram is not a query the rack answers normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// No answer at all: too short for a header, or a response (answering
    /// responses would let two servers bounce packets forever).
    Drop,
    /// Answer with this error code only (FORMERR, NOTIMP, REFUSED, BADVERS).
    Error {
        /// The error reply, ready to send.
        reply: Vec<u8>,
        /// The code it carries.
        rcode: ResponseCode,
    },
}

/// Parses a client's datagram or TCP message.
pub fn parse_request(bytes: &[u8]) -> Result<Request, Rejection> {
    if bytes.len() < HEADER_LEN || bytes[2] & 0x80 != 0 {
        return Err(Rejection::Drop);
    }
    let message = match Message::from_vec(bytes) {
        Ok(message) => message,
        // The header alone is readable (checked above): FORMERR echoes its
        // id and opcode, with no question (RFC 1035 4.1.1).
        Err(_) => {
            let id = u16::from_be_bytes([bytes[0], bytes[1]]);
            let opcode = OpCode::from_u8((bytes[2] >> 3) & 0x0f);
            return Err(error_reply(id, opcode, None, None, ResponseCode::FormErr));
        }
    };
    let id = message.id();
    let edns = message.extensions().as_ref().map(|edns| ClientEdns {
        payload: edns.max_payload().max(CLASSIC_UDP_LIMIT),
    });
    let question = match message.queries() {
        [query] => Some(query.clone()),
        _ => None,
    };
    let reject = |rcode| {
        Err(error_reply(
            id,
            message.op_code(),
            question.clone(),
            edns,
            rcode,
        ))
    };
    if message.op_code() != OpCode::Query {
        return reject(ResponseCode::NotImp);
    }
    let Some(query) = question.clone() else {
        return reject(ResponseCode::FormErr);
    };
    if message
        .extensions()
        .as_ref()
        .is_some_and(|e| e.version() > 0)
    {
        return reject(ResponseCode::BADVERS);
    }
    match query.query_type() {
        RecordType::OPT => return reject(ResponseCode::FormErr),
        // Zone transfers: nothing is transferred from the rack.
        RecordType::AXFR | RecordType::IXFR => return reject(ResponseCode::Refused),
        _ => {}
    }
    if query.query_class() != DNSClass::IN {
        return reject(ResponseCode::Refused);
    }
    Ok(Request {
        id,
        query,
        recursion_desired: message.recursion_desired(),
        checking_disabled: message.checking_disabled(),
        edns,
    })
}

fn error_reply(
    id: u16,
    opcode: OpCode,
    query: Option<Query>,
    edns: Option<ClientEdns>,
    rcode: ResponseCode,
) -> Rejection {
    let mut message = Message::error_msg(id, opcode, rcode);
    if let Some(query) = query {
        message.add_query(query);
    }
    // BADVERS lives in the OPT record: it needs one even if the client's
    // was unreadable as version 0.
    if edns.is_some() || rcode == ResponseCode::BADVERS {
        message.set_edns(our_edns(CLASSIC_UDP_LIMIT));
    }
    match message.to_vec() {
        Ok(reply) => Rejection::Error { reply, rcode },
        Err(_) => Rejection::Drop,
    }
}

fn our_edns(payload: u16) -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(payload).set_version(0);
    edns
}

/// What goes into a reply besides the request's own fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The response code.
    pub rcode: ResponseCode,
    /// Authoritative answer (our zones).
    pub authoritative: bool,
    /// Recursion available (the client may use us as a resolver).
    pub recursion_available: bool,
    /// The answer section.
    pub answers: Vec<Record>,
    /// The authority section.
    pub authority: Vec<Record>,
}

impl Reply {
    /// A reply with no records.
    pub fn empty(rcode: ResponseCode, recursion_available: bool) -> Reply {
        Reply {
            rcode,
            authoritative: false,
            recursion_available,
            answers: Vec::new(),
            authority: Vec::new(),
        }
    }
}

/// An encoded reply and whether it had to be truncated to fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The bytes to send.
    pub bytes: Vec<u8>,
    /// The records did not fit: TC is set and the sections are empty, so
    /// the client retries over TCP.
    pub truncated: bool,
}

/// Encodes `reply` to `request`, no larger than `limit` bytes. Too large,
/// it goes out with the header, question and OPT only and TC=1 (partial
/// RRsets would be cached by some clients as if complete).
/// `our_payload` is the UDP payload size the rack advertises back.
pub fn encode_reply(
    request: &Request,
    reply: Reply,
    limit: usize,
    our_payload: u16,
) -> Option<Encoded> {
    let mut message = Message::new();
    message
        .set_id(request.id)
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_authoritative(reply.authoritative)
        .set_recursion_desired(request.recursion_desired)
        .set_recursion_available(reply.recursion_available)
        .set_checking_disabled(request.checking_disabled)
        .set_response_code(reply.rcode)
        .add_query(request.query.clone());
    if request.edns.is_some() {
        message.set_edns(our_edns(our_payload));
    }
    message.insert_answers(reply.answers);
    message.insert_name_servers(reply.authority);
    let bytes = message.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(Encoded {
            bytes,
            truncated: false,
        });
    }
    let bytes = message.truncate().to_vec().ok()?;
    // A question alone can exceed nothing a client may ask with, but a
    // reply must never exceed its limit whatever happens.
    (bytes.len() <= limit).then_some(Encoded {
        bytes,
        truncated: true,
    })
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::rdata::TXT;
    use hickory_proto::rr::{Name, RData};

    use super::*;

    fn query_bytes(name: &str, edns: Option<u16>) -> Vec<u8> {
        let mut message = Message::new();
        message
            .set_id(0x1234)
            .set_recursion_desired(true)
            .add_query(Query::query(
                Name::from_ascii(name).unwrap(),
                RecordType::TXT,
            ));
        if let Some(payload) = edns {
            message.set_edns(our_edns(payload));
        }
        message.to_vec().unwrap()
    }

    fn big_txt(name: &str) -> Vec<Record> {
        let strings = (0..8).map(|_| "y".repeat(200)).collect();
        vec![Record::from_rdata(
            Name::from_ascii(name).unwrap(),
            60,
            RData::TXT(TXT::new(strings)),
        )]
    }

    #[test]
    fn short_datagrams_and_responses_are_dropped() {
        assert_eq!(parse_request(&[0; 11]), Err(Rejection::Drop));
        let mut response = query_bytes("a.example.", None);
        response[2] |= 0x80;
        assert_eq!(parse_request(&response), Err(Rejection::Drop));
    }

    #[test]
    fn an_unreadable_question_gets_formerr_with_the_id() {
        let mut bytes = query_bytes("a.example.", None);
        bytes.truncate(bytes.len() - 2);
        let Err(Rejection::Error { reply, rcode }) = parse_request(&bytes) else {
            panic!("not rejected")
        };
        assert_eq!(rcode, ResponseCode::FormErr);
        let reply = Message::from_vec(&reply).unwrap();
        assert_eq!(
            (reply.id(), reply.response_code()),
            (0x1234, ResponseCode::FormErr)
        );
    }

    #[test]
    fn edns_version_1_gets_badvers() {
        let mut message = Message::from_vec(&query_bytes("a.example.", Some(1232))).unwrap();
        message.extensions_mut().as_mut().unwrap().set_version(1);
        let Err(Rejection::Error { rcode, reply }) = parse_request(&message.to_vec().unwrap())
        else {
            panic!("not rejected")
        };
        assert_eq!(rcode, ResponseCode::BADVERS);
        // 16 on the wire; hickory reads it back under its other name, BADSIG.
        let code = Message::from_vec(&reply).unwrap().response_code();
        assert_eq!(u16::from(code), 16);
    }

    #[test]
    fn replies_fit_the_client_payload_or_are_truncated() {
        let request = parse_request(&query_bytes("t.example.", Some(1232))).unwrap();
        let limit = request.reply_limit(Transport::Udp, 1232);
        let reply = Reply {
            answers: big_txt("t.example."),
            ..Reply::empty(ResponseCode::NoError, true)
        };
        let udp = encode_reply(&request, reply.clone(), limit, 1232).unwrap();
        assert!(udp.truncated && udp.bytes.len() <= 1232);
        let message = Message::from_vec(&udp.bytes).unwrap();
        assert!(message.truncated() && message.answers().is_empty());
        assert!(message.extensions().is_some(), "the OPT record stays");
        let tcp = request.reply_limit(Transport::Tcp, 1232);
        let full = encode_reply(&request, reply, tcp, 1232).unwrap();
        assert!(!full.truncated && full.bytes.len() > 1232);
    }

    #[test]
    fn without_edns_the_limit_is_512_and_with_it_the_smaller_of_both_sizes() {
        let classic = parse_request(&query_bytes("t.example.", None)).unwrap();
        assert_eq!(classic.reply_limit(Transport::Udp, 1232), 512);
        let big = parse_request(&query_bytes("t.example.", Some(4096))).unwrap();
        assert_eq!(big.reply_limit(Transport::Udp, 1232), 1232);
        let small = parse_request(&query_bytes("t.example.", Some(800))).unwrap();
        assert_eq!(small.reply_limit(Transport::Udp, 1232), 800);
    }
}
