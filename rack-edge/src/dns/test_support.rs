//! Helpers shared by the engine's tests: a site config, queries, and
//! picking apart the actions the engine returns.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgemetal_protocol::{DnsConfig, DnsRecord, RecordData, Zone};
use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::action::{Action, Client, ExchangeId};
use super::counters::Counters;
use super::engine::{Resolver, Tuning};
use super::wire::Transport;

pub const UPSTREAM_1: &str = "192.0.2.1:53";
pub const UPSTREAM_2: &str = "192.0.2.2:53";
/// A client in the allowed network.
pub const INSIDE: &str = "10.20.1.5:40000";
/// A client outside it.
pub const OUTSIDE: &str = "203.0.113.5:40000";
pub const TIMEOUT: Duration = Duration::from_millis(1500);

fn record(name: &str, ttl: u32, data: RecordData) -> DnsRecord {
    DnsRecord {
        name: name.into(),
        ttl,
        data,
    }
}

/// A site zone, a reverse zone, two upstreams, one allowed network.
pub fn config() -> DnsConfig {
    let a = |name: &str, last: u8| record(name, 300, RecordData::A([10, 20, 0, last].into()));
    let site = Zone {
        name: "site.internal".into(),
        serial: 42,
        negative_ttl: 30,
        records: vec![
            a("host1.site.internal", 11),
            a("pool.site.internal", 21),
            a("pool.site.internal", 22),
            a("pool.site.internal", 23),
            record(
                "www.site.internal",
                300,
                RecordData::Cname("host1.site.internal".into()),
            ),
            record(
                "big.site.internal",
                300,
                RecordData::Txt((0..8).map(|n| format!("{n}{}", "t".repeat(200))).collect()),
            ),
        ],
    };
    let reverse = Zone {
        name: "0.20.10.in-addr.arpa".into(),
        serial: 42,
        negative_ttl: 30,
        records: vec![record(
            "11.0.20.10.in-addr.arpa",
            300,
            RecordData::Ptr("host1.site.internal".into()),
        )],
    };
    DnsConfig {
        zones: vec![site, reverse],
        forwarders: vec![addr(UPSTREAM_1), addr(UPSTREAM_2)],
        allowed_networks: vec![
            "10.20.0.0/16".parse().unwrap(),
            "127.0.0.0/8".parse().unwrap(),
        ],
    }
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn resolver_with(tuning: Tuning, config: &DnsConfig) -> Resolver {
    let mut resolver = Resolver::new(
        tuning,
        StdRng::seed_from_u64(7),
        Arc::new(Counters::default()),
    );
    let problems = resolver.reconfigure(config);
    assert!(problems.is_empty(), "{problems:?}");
    resolver
}

pub fn resolver() -> Resolver {
    let tuning = Tuning {
        upstream_timeout: TIMEOUT,
        ..Tuning::default()
    };
    resolver_with(tuning, &config())
}

pub fn name(s: &str) -> Name {
    let mut name = Name::from_ascii(s).unwrap();
    name.set_fqdn(true);
    name
}

/// A query as a stub resolver sends it, with EDNS if `payload` is set.
pub fn query(qname: &str, qtype: RecordType, payload: Option<u16>) -> Vec<u8> {
    let mut message = Message::new();
    message
        .set_id(0x4242)
        .set_recursion_desired(true)
        .add_query(Query::query(name(qname), qtype));
    if let Some(payload) = payload {
        let mut edns = Edns::new();
        edns.set_max_payload(payload);
        message.set_edns(edns);
    }
    message.to_vec().unwrap()
}

/// Runs one query through the engine.
pub fn ask(resolver: &mut Resolver, now: Instant, client: &str, bytes: &[u8]) -> Vec<Action> {
    ask_over(resolver, now, Client::udp(addr(client)), bytes)
}

pub fn ask_over(
    resolver: &mut Resolver,
    now: Instant,
    client: Client,
    bytes: &[u8],
) -> Vec<Action> {
    let mut out = Vec::new();
    resolver.handle_query(now, client, bytes, &mut out);
    out
}

/// The one reply among `actions`, parsed.
pub fn reply(actions: &[Action]) -> Message {
    let replies: Vec<&Vec<u8>> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Reply { bytes, .. } => Some(bytes),
            _ => None,
        })
        .collect();
    assert_eq!(replies.len(), 1, "expected one reply in {actions:?}");
    Message::from_vec(replies[0]).unwrap()
}

/// An upstream query among `actions`.
pub struct Sent {
    pub exchange: ExchangeId,
    pub server: SocketAddr,
    pub transport: Transport,
    pub message: Message,
}

/// The one upstream query among `actions`.
pub fn sent(actions: &[Action]) -> Sent {
    let queries: Vec<Sent> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Query {
                exchange,
                server,
                transport,
                bytes,
            } => Some(Sent {
                exchange: *exchange,
                server: *server,
                transport: *transport,
                message: Message::from_vec(bytes).unwrap(),
            }),
            _ => None,
        })
        .collect();
    assert_eq!(
        queries.len(),
        1,
        "expected one upstream query in {actions:?}"
    );
    queries.into_iter().next().unwrap()
}

/// An upstream's answer to `to`.
pub fn answer(
    to: &Message,
    rcode: ResponseCode,
    answers: Vec<Record>,
    authority: Vec<Record>,
) -> Vec<u8> {
    let mut message = Message::new();
    message
        .set_id(to.id())
        .set_message_type(MessageType::Response)
        .set_recursion_desired(true)
        .set_recursion_available(true)
        .set_response_code(rcode)
        .add_queries(to.queries().to_vec());
    message.insert_answers(answers);
    message.insert_name_servers(authority);
    message.to_vec().unwrap()
}

/// Hands `bytes` to the engine as `sent`'s answer from its server.
pub fn deliver(resolver: &mut Resolver, now: Instant, sent: &Sent, bytes: &[u8]) -> Vec<Action> {
    let mut out = Vec::new();
    resolver.handle_answer(now, sent.exchange, sent.server, bytes, &mut out);
    out
}

pub fn timeout(resolver: &mut Resolver, now: Instant) -> Vec<Action> {
    let mut out = Vec::new();
    resolver.handle_timeout(now, &mut out);
    out
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
