//! The rack's DNS query path: any datagram or TCP message from a client
//! allowed to recurse, from one that is not, and over TCP, into an engine
//! with a zone, a reverse zone and two upstreams; when the input goes
//! upstream, the input itself (with the upstream query's id, so that it
//! gets past the id check) comes back as the upstream's answer, then time
//! runs out for the rest. Nothing may panic; every reply must be a
//! response echoing the client's id, and no UDP reply may exceed 1232 bytes.
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgemetal_protocol::{DnsConfig, DnsRecord, RecordData, Zone};
use edgemetal_rack::dns::{Action, Client, Counters, Resolver, Transport, Tuning};
use libfuzzer_sys::fuzz_target;

fn record(name: &str, data: RecordData) -> DnsRecord {
    DnsRecord {
        name: name.into(),
        ttl: 300,
        data,
    }
}

fn resolver() -> Resolver {
    let a = |name: &str, last: u8| record(name, RecordData::A([10, 0, 0, last].into()));
    let config = DnsConfig {
        zones: vec![
            Zone {
                name: "site.internal".into(),
                serial: 1,
                negative_ttl: 30,
                records: vec![
                    a("a.site.internal", 1),
                    a("pool.site.internal", 2),
                    a("pool.site.internal", 3),
                    record("www.site.internal", RecordData::Cname("a.site.internal".into())),
                    record("t.site.internal", RecordData::Txt(vec!["x".repeat(700)])),
                ],
            },
            Zone {
                name: "0.0.10.in-addr.arpa".into(),
                serial: 1,
                negative_ttl: 30,
                records: vec![record("1.0.0.10.in-addr.arpa", RecordData::Ptr("a.site.internal".into()))],
            },
        ],
        forwarders: vec!["192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap()],
        allowed_networks: vec!["10.0.0.0/8".parse().unwrap()],
    };
    let mut resolver = Resolver::with_seed(Tuning::default(), 1, Arc::new(Counters::default()));
    resolver.reconfigure(&config);
    resolver
}

fn check(actions: &[Action], query: &[u8]) {
    for action in actions {
        if let Action::Reply { client, bytes } = action {
            assert!(bytes.len() >= 12, "a reply shorter than a header");
            assert!(bytes[2] & 0x80 != 0, "a reply that is not a response");
            assert_eq!(bytes[..2], query[..2], "a reply with another id");
            if client.transport == Transport::Udp {
                assert!(bytes.len() <= 1232, "a UDP reply of {} bytes", bytes.len());
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut resolver = resolver();
    let now = Instant::now();
    let clients = [
        Client::udp(SocketAddr::from(([10, 1, 2, 3], 5353))),
        Client::udp(SocketAddr::from(([203, 0, 113, 9], 5353))),
        Client::tcp(SocketAddr::from(([127, 0, 0, 1], 40000)), 1),
    ];
    let mut out = Vec::new();
    for client in clients {
        out.clear();
        resolver.handle_query(now, client, data, &mut out);
        check(&out, data);
        let upstream: Vec<_> = out
            .iter()
            .filter_map(|action| match action {
                Action::Query { exchange, server, bytes, .. } => Some((*exchange, *server, bytes.clone())),
                _ => None,
            })
            .collect();
        for (exchange, server, query) in upstream {
            let mut answer = data.to_vec();
            if answer.len() >= 2 {
                answer[..2].copy_from_slice(&query[..2]);
            }
            let mut replies = Vec::new();
            resolver.handle_answer(now, exchange, server, &answer, &mut replies);
            check(&replies, data);
        }
    }
    for seconds in [2, 4, 8] {
        out.clear();
        resolver.handle_timeout(now + Duration::from_secs(seconds), &mut out);
        check(&out, data);
    }
});
