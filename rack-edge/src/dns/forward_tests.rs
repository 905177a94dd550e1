//! Forwarding with a fake clock: answer checks against spoofing, failover,
//! SERVFAIL, TCP retry, shared questions, overload.

use std::time::Instant;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};

use super::action::Action;
use super::counters::{Outcome, UpstreamEvent};
use super::engine::{Resolver, Tuning};
use super::forward::Verdict;
use super::test_support::*;
use super::wire::Transport;

const NAME: &str = "www.example.com.";

fn a_record(ttl: u32) -> Record {
    Record::from_rdata(name(NAME), ttl, RData::A(A::new(198, 51, 100, 7)))
}

fn good_answer(to: &Message) -> Vec<u8> {
    answer(to, ResponseCode::NoError, vec![a_record(60)], vec![])
}

fn forward(resolver: &mut Resolver, now: Instant) -> Sent {
    sent(&ask(
        resolver,
        now,
        INSIDE,
        &query(NAME, RecordType::A, None),
    ))
}

fn hand(
    resolver: &mut Resolver,
    now: Instant,
    up: &Sent,
    from: &str,
    bytes: &[u8],
) -> (Verdict, Vec<Action>) {
    let mut out = Vec::new();
    let verdict = resolver.handle_answer(now, up.exchange, addr(from), bytes, &mut out);
    (verdict, out)
}

#[test]
fn upstream_queries_ask_the_question_with_a_random_id_and_edns() {
    let mut resolver = resolver();
    let now = Instant::now();
    let first = forward(&mut resolver, now);
    assert_eq!(first.server, addr(UPSTREAM_1));
    assert_eq!(first.transport, Transport::Udp);
    assert_eq!(first.message.queries()[0].name(), &name(NAME));
    assert!(first.message.recursion_desired());
    assert_eq!(
        first.message.extensions().as_ref().map(|e| e.max_payload()),
        Some(1232)
    );
    let ids: Vec<u16> = (0..8)
        .map(|n| {
            let q = query(&format!("n{n}.example.com."), RecordType::A, None);
            sent(&ask(&mut resolver, now, INSIDE, &q)).message.id()
        })
        .collect();
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() >= 7, "ids look random: {ids:?}");
    assert!(ids.iter().any(|id| *id != 0x4242));
}

#[test]
fn answers_that_do_not_match_are_dropped_and_counted() {
    let mut resolver = resolver();
    let now = Instant::now();
    let up = forward(&mut resolver, now);
    let good = good_answer(&up.message);

    let mut wrong_id = Message::from_vec(&good).unwrap();
    wrong_id.set_id(up.message.id().wrapping_add(1));
    let mut wrong_question = up.message.clone();
    wrong_question.queries_mut()[0].set_name(name("evil.example.com."));
    let wrong_question = answer(
        &wrong_question,
        ResponseCode::NoError,
        vec![a_record(60)],
        vec![],
    );
    let mut not_a_response = Message::from_vec(&good).unwrap();
    not_a_response.set_message_type(hickory_proto::op::MessageType::Query);

    let forged: [(&str, Vec<u8>); 4] = [
        (UPSTREAM_1, wrong_id.to_vec().unwrap()),
        (UPSTREAM_1, wrong_question),
        (UPSTREAM_1, not_a_response.to_vec().unwrap()),
        ("192.0.2.99:53", good.clone()),
    ];
    for (from, bytes) in &forged {
        let (verdict, out) = hand(&mut resolver, now, &up, from, bytes);
        assert_eq!(verdict, Verdict::Rejected);
        assert!(out.is_empty(), "nothing is answered from a forged reply");
    }
    let (verdict, _) = hand(&mut resolver, now, &up, UPSTREAM_1, b"\x00garbage");
    assert_eq!(verdict, Verdict::Rejected);
    let counters = resolver.counters();
    assert_eq!(counters.upstream(UpstreamEvent::SpoofedDropped), 4);
    assert_eq!(counters.upstream(UpstreamEvent::MalformedDropped), 1);

    // The real answer still gets through afterwards, once.
    let (verdict, out) = hand(&mut resolver, now, &up, UPSTREAM_1, &good);
    assert_eq!(verdict, Verdict::Accepted);
    assert_eq!(reply(&out).answers().len(), 1);
    let (again, _) = hand(&mut resolver, now, &up, UPSTREAM_1, &good);
    assert_eq!(again, Verdict::Unknown);
}

#[test]
fn a_silent_upstream_is_failed_over_after_the_timeout_and_stays_skipped() {
    let mut resolver = resolver();
    let t0 = Instant::now();
    let first = forward(&mut resolver, t0);
    assert_eq!(resolver.poll_timeout(), Some(t0 + TIMEOUT));
    assert!(timeout(&mut resolver, t0 + TIMEOUT / 2).is_empty());
    let second = sent(&timeout(&mut resolver, t0 + TIMEOUT));
    assert_eq!(second.server, addr(UPSTREAM_2));
    assert_ne!(second.exchange, first.exchange);
    assert_eq!(resolver.counters().upstream(UpstreamEvent::Timeout), 1);

    // The first upstream's late answer is not taken for the second's.
    let late = good_answer(&first.message);
    assert_eq!(
        hand(&mut resolver, t0 + TIMEOUT, &first, UPSTREAM_1, &late).0,
        Verdict::Unknown
    );
    let out = deliver(
        &mut resolver,
        t0 + TIMEOUT,
        &second,
        &good_answer(&second.message),
    );
    assert_eq!(reply(&out).response_code(), ResponseCode::NoError);

    // The next question goes straight to the upstream that answered...
    let other = query("other.example.com.", RecordType::A, None);
    let t1 = t0 + secs(5);
    assert_eq!(
        sent(&ask(&mut resolver, t1, INSIDE, &other)).server,
        addr(UPSTREAM_2)
    );
    // ...until the primary is due another try.
    let third = query("third.example.com.", RecordType::A, None);
    let t2 = t0 + TIMEOUT + Tuning::default().primary_retry;
    assert_eq!(
        sent(&ask(&mut resolver, t2, INSIDE, &third)).server,
        addr(UPSTREAM_1)
    );
}

#[test]
fn servfail_when_no_upstream_answers() {
    let mut resolver = resolver();
    let t0 = Instant::now();
    forward(&mut resolver, t0);
    sent(&timeout(&mut resolver, t0 + TIMEOUT));
    let out = timeout(&mut resolver, t0 + TIMEOUT * 2);
    let reply = reply(&out);
    assert_eq!(reply.response_code(), ResponseCode::ServFail);
    assert_eq!(reply.id(), 0x4242);
    assert_eq!(resolver.counters().queries(Outcome::ServFail), 1);
    assert_eq!(resolver.counters().upstream(UpstreamEvent::Timeout), 2);
    assert_eq!(
        resolver.poll_timeout().map(|t| t > t0 + TIMEOUT * 2),
        Some(true)
    );
}

#[test]
fn an_upstream_error_or_a_refused_connection_fails_over_at_once() {
    let mut resolver = resolver();
    let now = Instant::now();
    let up = forward(&mut resolver, now);
    let servfail = answer(&up.message, ResponseCode::ServFail, vec![], vec![]);
    let next = sent(&deliver(&mut resolver, now, &up, &servfail));
    assert_eq!(next.server, addr(UPSTREAM_2));
    let mut out = Vec::new();
    resolver.handle_failure(now, next.exchange, &mut out);
    assert_eq!(reply(&out).response_code(), ResponseCode::ServFail);
    assert_eq!(resolver.counters().upstream(UpstreamEvent::Failed), 2);
}

#[test]
fn a_truncated_upstream_answer_is_asked_again_over_tcp() {
    let mut resolver = resolver();
    let now = Instant::now();
    let up = forward(&mut resolver, now);
    let mut truncated =
        Message::from_vec(&answer(&up.message, ResponseCode::NoError, vec![], vec![])).unwrap();
    truncated.set_truncated(true);
    let out = deliver(&mut resolver, now, &up, &truncated.to_vec().unwrap());
    let tcp = sent(&out);
    assert_eq!((tcp.server, tcp.transport), (up.server, Transport::Tcp));
    assert!(!out.iter().any(|a| matches!(a, Action::Reply { .. })));
    assert_eq!(resolver.counters().upstream(UpstreamEvent::TcpRetry), 1);
    let answered = deliver(&mut resolver, now, &tcp, &good_answer(&tcp.message));
    assert_eq!(reply(&answered).answers().len(), 1);
}

#[test]
fn clients_asking_the_same_question_share_one_upstream_query() {
    let mut resolver = resolver();
    let now = Instant::now();
    let up = forward(&mut resolver, now);
    let q = query(NAME, RecordType::A, None);
    assert!(ask(&mut resolver, now, "10.20.9.9:1000", &q).is_empty());
    assert!(ask(&mut resolver, now, "127.0.0.1:2000", &q).is_empty());
    let out = deliver(&mut resolver, now, &up, &good_answer(&up.message));
    let clients: Vec<String> = out
        .iter()
        .filter_map(|a| match a {
            Action::Reply { client, .. } => Some(client.addr.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(clients, [INSIDE, "10.20.9.9:1000", "127.0.0.1:2000"]);
    assert_eq!(resolver.counters().queries(Outcome::Forwarded), 3);
}

#[test]
fn too_many_questions_in_flight_are_dropped() {
    let tuning = Tuning {
        max_pending: 2,
        ..Tuning::default()
    };
    let mut resolver = resolver_with(tuning, &config());
    let now = Instant::now();
    for n in 0..2 {
        let q = query(&format!("n{n}.example.com."), RecordType::A, None);
        sent(&ask(&mut resolver, now, INSIDE, &q));
    }
    let q = query("n2.example.com.", RecordType::A, None);
    assert!(ask(&mut resolver, now, INSIDE, &q).is_empty());
    assert_eq!(resolver.counters().queries(Outcome::Overload), 1);
    assert_eq!(resolver.counters().pending(), 2);
}
