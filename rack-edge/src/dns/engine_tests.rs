//! The engine's policy, with a fake clock and no sockets: zone answers,
//! the ACL, the cache, EDNS and truncation, malformed input.

use std::net::SocketAddr;
use std::time::Instant;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{RData, Record, RecordType};
use rand::{Rng, SeedableRng};

use super::action::{Action, Client};
use super::counters::Outcome;
use super::engine::{recursion_allowed, Tuning};
use super::test_support::*;
use super::wire::Transport;

fn addresses(message: &Message) -> Vec<String> {
    message
        .answers()
        .iter()
        .filter(|r| r.record_type() == RecordType::A)
        .map(|r| r.data().to_string())
        .collect()
}

#[test]
fn zone_names_get_authoritative_answers() {
    let mut resolver = resolver();
    let reply = reply(&ask(
        &mut resolver,
        Instant::now(),
        OUTSIDE,
        &query("host1.site.internal.", RecordType::A, None),
    ));
    assert!(reply.authoritative());
    assert_eq!(reply.response_code(), ResponseCode::NoError);
    assert_eq!(reply.id(), 0x4242);
    assert!(reply.recursion_desired());
    assert!(
        !reply.recursion_available(),
        "no recursion for an outside client"
    );
    assert_eq!(addresses(&reply), ["10.20.0.11"]);
    assert_eq!(reply.answers()[0].ttl(), 300);
    assert_eq!(resolver.counters().queries(Outcome::Authoritative), 1);
}

#[test]
fn the_question_is_echoed_with_the_clients_case() {
    let mut resolver = resolver();
    let reply = reply(&ask(
        &mut resolver,
        Instant::now(),
        INSIDE,
        &query("HoSt1.Site.Internal.", RecordType::A, None),
    ));
    assert_eq!(reply.queries()[0].name().to_ascii(), "HoSt1.Site.Internal.");
    assert_eq!(addresses(&reply), ["10.20.0.11"]);
}

#[test]
fn missing_names_are_nxdomain_with_the_zone_soa() {
    let mut resolver = resolver();
    let reply = reply(&ask(
        &mut resolver,
        Instant::now(),
        INSIDE,
        &query("nope.site.internal.", RecordType::A, None),
    ));
    assert_eq!(reply.response_code(), ResponseCode::NXDomain);
    assert!(reply.authoritative() && reply.answers().is_empty());
    let soa = &reply.name_servers()[0];
    let RData::SOA(data) = soa.data() else {
        panic!("not a SOA: {soa}")
    };
    assert_eq!(soa.name(), &name("site.internal."));
    assert_eq!((data.serial(), data.minimum(), soa.ttl()), (42, 30, 30));
    assert_eq!(data.mname(), &name("ns.site.internal."));
}

#[test]
fn names_without_the_type_asked_are_nodata_with_the_soa() {
    let mut resolver = resolver();
    let reply = reply(&ask(
        &mut resolver,
        Instant::now(),
        INSIDE,
        &query("host1.site.internal.", RecordType::AAAA, None),
    ));
    assert_eq!(reply.response_code(), ResponseCode::NoError);
    assert!(reply.authoritative() && reply.answers().is_empty());
    assert_eq!(reply.name_servers()[0].record_type(), RecordType::SOA);
}

#[test]
fn the_apex_has_the_synthesised_soa_and_ns() {
    let mut resolver = resolver();
    let now = Instant::now();
    let ns = reply(&ask(
        &mut resolver,
        now,
        INSIDE,
        &query("site.internal.", RecordType::NS, None),
    ));
    assert_eq!(ns.answers()[0].data().to_string(), "ns.site.internal.");
    let soa = reply(&ask(
        &mut resolver,
        now,
        INSIDE,
        &query("site.internal.", RecordType::SOA, None),
    ));
    assert_eq!(soa.answers()[0].record_type(), RecordType::SOA);
}

#[test]
fn several_addresses_come_in_a_different_order_each_query() {
    let mut resolver = resolver();
    let now = Instant::now();
    let orders: Vec<Vec<String>> = (0..3)
        .map(|_| {
            addresses(&reply(&ask(
                &mut resolver,
                now,
                INSIDE,
                &query("pool.site.internal.", RecordType::A, None),
            )))
        })
        .collect();
    assert_ne!(orders[0], orders[1]);
    assert_ne!(orders[1], orders[2]);
    for order in &orders {
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, ["10.20.0.21", "10.20.0.22", "10.20.0.23"]);
    }
}

#[test]
fn cnames_are_chased_inside_the_zone() {
    let mut resolver = resolver();
    let reply = reply(&ask(
        &mut resolver,
        Instant::now(),
        INSIDE,
        &query("www.site.internal.", RecordType::A, None),
    ));
    let types: Vec<RecordType> = reply.answers().iter().map(|r| r.record_type()).collect();
    assert_eq!(types, [RecordType::CNAME, RecordType::A]);
    assert_eq!(addresses(&reply), ["10.20.0.11"]);
    assert!(reply.authoritative());
}

#[test]
fn reverse_zones_answer_ptr() {
    let mut resolver = resolver();
    let reply = reply(&ask(
        &mut resolver,
        Instant::now(),
        INSIDE,
        &query("11.0.20.10.in-addr.arpa.", RecordType::PTR, None),
    ));
    assert_eq!(
        reply.answers()[0].data().to_string(),
        "host1.site.internal."
    );
    assert!(reply.authoritative());
}

#[test]
fn outside_clients_get_refused_for_names_outside_the_zones() {
    let mut resolver = resolver();
    let now = Instant::now();
    let actions = ask(
        &mut resolver,
        now,
        OUTSIDE,
        &query("www.example.com.", RecordType::A, None),
    );
    let reply = reply(&actions);
    assert_eq!(reply.response_code(), ResponseCode::Refused);
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Query { .. })),
        "nothing forwarded"
    );
    assert_eq!(resolver.counters().queries(Outcome::Refused), 1);
    // Inside and loopback clients are forwarded.
    for client in [INSIDE, "127.0.0.1:5353", "[::1]:5353"] {
        let actions = ask(
            &mut resolver,
            now,
            client,
            &query("www.example.com.", RecordType::A, None),
        );
        assert!(
            actions.iter().all(|a| matches!(a, Action::Query { .. })),
            "{client}: {actions:?}"
        );
    }
}

#[test]
fn the_acl_takes_loopback_allowed_networks_and_mapped_addresses() {
    let allowed = [
        "10.20.0.0/16".parse().unwrap(),
        "127.0.0.0/8".parse().unwrap(),
    ];
    assert!(recursion_allowed(&allowed, ip("127.0.0.53")));
    assert!(recursion_allowed(&allowed, ip("::1")));
    // Loopback follows the list: an operator who takes it out refuses it.
    let without_loopback = ["10.20.0.0/16".parse().unwrap()];
    assert!(!recursion_allowed(&without_loopback, ip("127.0.0.1")));
    assert!(!recursion_allowed(&without_loopback, ip("::1")));
    assert!(recursion_allowed(&without_loopback, ip("10.20.0.1")));
    assert!(recursion_allowed(&allowed, ip("10.20.255.1")));
    assert!(recursion_allowed(&allowed, ip("::ffff:10.20.0.9")));
    assert!(!recursion_allowed(&allowed, ip("10.21.0.1")));
    assert!(!recursion_allowed(&allowed, ip("fd00::1")));
    assert!(!recursion_allowed(&[], ip("10.20.0.1")));
}

fn a_record(owner: &str, ttl: u32) -> Record {
    Record::from_rdata(name(owner), ttl, RData::A(A::new(198, 51, 100, 7)))
}

#[test]
fn forwarded_answers_are_cached_with_aging_ttls_until_they_expire() {
    let mut resolver = resolver();
    let t0 = Instant::now();
    let q = query("www.example.com.", RecordType::A, None);
    let up = sent(&ask(&mut resolver, t0, INSIDE, &q));
    let bytes = answer(
        &up.message,
        ResponseCode::NoError,
        vec![a_record("www.example.com.", 300)],
        vec![],
    );
    let first = reply(&deliver(&mut resolver, t0, &up, &bytes));
    assert_eq!(
        (first.answers()[0].ttl(), first.authoritative()),
        (300, false)
    );
    assert!(first.recursion_available());
    assert_eq!(resolver.counters().queries(Outcome::Forwarded), 1);

    let actions = ask(&mut resolver, t0 + secs(100), INSIDE, &q);
    let cached = reply(&actions);
    assert_eq!(cached.answers()[0].ttl(), 200);
    assert_eq!(cached.id(), 0x4242);
    assert!(!actions.iter().any(|a| matches!(a, Action::Query { .. })));
    assert_eq!(resolver.counters().queries(Outcome::Cached), 1);

    let expired = ask(&mut resolver, t0 + secs(300), INSIDE, &q);
    sent(&expired);
}

#[test]
fn negative_answers_are_cached_for_the_soa_minimum() {
    let mut resolver = resolver();
    let t0 = Instant::now();
    let q = query("gone.example.com.", RecordType::A, None);
    let up = sent(&ask(&mut resolver, t0, INSIDE, &q));
    let soa = SOA::new(
        name("ns.example.com."),
        name("h.example.com."),
        1,
        1,
        1,
        1,
        60,
    );
    let soa = Record::from_rdata(name("example.com."), 3600, RData::SOA(soa));
    let bytes = answer(&up.message, ResponseCode::NXDomain, vec![], vec![soa]);
    assert_eq!(
        reply(&deliver(&mut resolver, t0, &up, &bytes)).response_code(),
        ResponseCode::NXDomain
    );

    let cached = reply(&ask(&mut resolver, t0 + secs(20), INSIDE, &q));
    assert_eq!(cached.response_code(), ResponseCode::NXDomain);
    assert_eq!(cached.name_servers()[0].ttl(), 40);
    sent(&ask(&mut resolver, t0 + secs(60), INSIDE, &q));
}

#[test]
fn large_answers_are_truncated_over_udp_and_whole_over_tcp() {
    let mut resolver = resolver();
    let now = Instant::now();
    let q = query("big.site.internal.", RecordType::TXT, Some(1232));
    let udp = reply(&ask(&mut resolver, now, INSIDE, &q));
    assert!(udp.truncated() && udp.answers().is_empty());
    assert!(udp.extensions().is_some());
    assert_eq!(resolver.counters().truncated(), 1);
    let tcp_client = Client::tcp(addr(INSIDE), 9);
    let actions = ask_over(&mut resolver, now, tcp_client, &q);
    assert!(
        matches!(&actions[0], Action::Reply { client, .. } if client.transport == Transport::Tcp && client.connection == 9)
    );
    let tcp = reply(&actions);
    assert!(!tcp.truncated());
    assert_eq!(tcp.answers().len(), 1);
}

#[test]
fn the_clients_payload_size_is_honoured() {
    let mut resolver = resolver();
    let now = Instant::now();
    // ~1.6 kB of TXT: too big for 1232, fits a client that takes 4096
    // only if the rack's own limit allows it.
    let roomy = resolver_with(
        Tuning {
            max_udp_payload: 4096,
            ..Tuning::default()
        },
        &config(),
    );
    let mut roomy = roomy;
    let q = query("big.site.internal.", RecordType::TXT, Some(4096));
    assert!(!reply(&ask(&mut roomy, now, INSIDE, &q)).truncated());
    assert!(reply(&ask(&mut resolver, now, INSIDE, &q)).truncated());
    let classic = query("pool.site.internal.", RecordType::A, None);
    let reply = reply(&ask(&mut resolver, now, INSIDE, &classic));
    assert!(
        reply.extensions().is_none(),
        "no OPT for a client without EDNS"
    );
}

#[test]
fn edns_queries_get_an_opt_record_with_our_payload_size() {
    let mut resolver = resolver();
    let reply = reply(&ask(
        &mut resolver,
        Instant::now(),
        INSIDE,
        &query("host1.site.internal.", RecordType::A, Some(4096)),
    ));
    assert_eq!(
        reply.extensions().as_ref().map(|e| e.max_payload()),
        Some(1232)
    );
}

#[test]
fn no_upstream_means_servfail() {
    let mut config = config();
    config.forwarders.clear();
    let mut resolver = resolver_with(Tuning::default(), &config);
    let reply = reply(&ask(
        &mut resolver,
        Instant::now(),
        INSIDE,
        &query("www.example.com.", RecordType::A, None),
    ));
    assert_eq!(reply.response_code(), ResponseCode::ServFail);
    assert_eq!(resolver.counters().queries(Outcome::ServFail), 1);
}

#[test]
fn malformed_queries_are_dropped_or_answered_formerr_and_counted() {
    let mut resolver = resolver();
    let now = Instant::now();
    assert!(ask(&mut resolver, now, INSIDE, &[1, 2, 3]).is_empty());
    let mut response = query("a.example.", RecordType::A, None);
    response[2] |= 0x80;
    assert!(ask(&mut resolver, now, INSIDE, &response).is_empty());
    assert_eq!(resolver.counters().queries(Outcome::Malformed), 2);

    let mut cut = query("a.example.", RecordType::A, None);
    cut.truncate(cut.len() - 3);
    assert_eq!(
        reply(&ask(&mut resolver, now, INSIDE, &cut)).response_code(),
        ResponseCode::FormErr
    );
    let mut two_questions = Message::from_vec(&query("a.example.", RecordType::A, None)).unwrap();
    two_questions.add_query(hickory_proto::op::Query::query(
        name("b.example."),
        RecordType::A,
    ));
    let actions = ask(&mut resolver, now, INSIDE, &two_questions.to_vec().unwrap());
    assert_eq!(reply(&actions).response_code(), ResponseCode::FormErr);
    assert_eq!(resolver.counters().queries(Outcome::FormErr), 2);

    let mut notify = query("site.internal.", RecordType::SOA, None);
    notify[2] = (notify[2] & 0x87) | (4 << 3);
    assert_eq!(
        reply(&ask(&mut resolver, now, INSIDE, &notify)).response_code(),
        ResponseCode::NotImp
    );
    let axfr = query("site.internal.", RecordType::AXFR, None);
    assert_eq!(
        reply(&ask(&mut resolver, now, INSIDE, &axfr)).response_code(),
        ResponseCode::Refused
    );
}

#[test]
fn random_bytes_never_panic_the_engine() {
    let mut resolver = resolver();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let now = Instant::now();
    let valid = query("pool.site.internal.", RecordType::A, Some(1232));
    for round in 0..20_000 {
        let mut bytes = if round % 2 == 0 {
            valid.clone()
        } else {
            (0..rng.gen_range(0..80)).map(|_| rng.gen()).collect()
        };
        for _ in 0..rng.gen_range(0..4) {
            if !bytes.is_empty() {
                let at = rng.gen_range(0..bytes.len());
                bytes[at] = rng.gen();
            }
        }
        for action in ask(&mut resolver, now, INSIDE, &bytes) {
            if let Action::Reply { bytes, .. } = action {
                assert!(bytes.len() <= 1232, "a UDP reply over the limit");
                Message::from_vec(&bytes).expect("every reply parses");
            }
        }
    }
}

#[test]
fn a_new_snapshot_replaces_zones_upstreams_and_networks() {
    let mut resolver = resolver();
    let now = Instant::now();
    let mut config = config();
    config.zones.remove(0);
    config.forwarders = vec![SocketAddr::new(ip("192.0.2.9"), 53)];
    config.allowed_networks = vec!["203.0.113.0/24".parse().unwrap()];
    assert!(resolver.reconfigure(&config).is_empty());
    // The zone is gone: its names are forwarded now, to the new upstream,
    // for the newly allowed network.
    let q = query("host1.site.internal.", RecordType::A, None);
    assert_eq!(
        sent(&ask(&mut resolver, now, OUTSIDE, &q)).server,
        addr("192.0.2.9:53")
    );
    let refused = reply(&ask(&mut resolver, now, INSIDE, &q));
    assert_eq!(refused.response_code(), ResponseCode::Refused);
    // The reverse zone stays.
    let ptr = query("11.0.20.10.in-addr.arpa.", RecordType::PTR, None);
    assert!(reply(&ask(&mut resolver, now, INSIDE, &ptr)).authoritative());
}

#[test]
fn zone_data_wins_over_a_cached_answer_for_the_same_name() {
    let mut config = config();
    let site = config.zones.remove(0);
    let mut resolver = resolver_with(Tuning::default(), &config);
    let t0 = Instant::now();
    let q = query("host1.site.internal.", RecordType::A, None);
    let up = sent(&ask(&mut resolver, t0, INSIDE, &q));
    let bytes = answer(
        &up.message,
        ResponseCode::NoError,
        vec![a_record("host1.site.internal.", 600)],
        vec![],
    );
    deliver(&mut resolver, t0, &up, &bytes);
    config.zones.push(site);
    resolver.reconfigure(&config);
    let reply = reply(&ask(&mut resolver, t0 + secs(1), INSIDE, &q));
    assert!(reply.authoritative());
    assert_eq!(addresses(&reply), ["10.20.0.11"]);
}
