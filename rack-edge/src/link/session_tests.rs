//! Tests of the sans-IO link session: sealed payloads in, decisions out.
use super::*;
use edgemetal_protocol::seal::{self, FrameHeader};
use edgemetal_protocol::{Direction, Envelope, Ipv4Cidr};

const SECRET: LinkSecret = LinkSecret([4; 32]);

fn keys() -> LinkKeys {
    LinkKeys {
        secret: SECRET,
        key_epoch: 1,
    }
}

fn session(applied: Option<u64>) -> Session {
    Session::new(
        RackId::new("r1").unwrap(),
        "0.1.0".into(),
        "host".into(),
        applied.map(|g| ConfigSnapshot {
            boot_resources: Vec::new(),
            dns: Default::default(),
            generation: Generation(g),
            subnets: vec![],
            gateway: Default::default(),
            machine_boot: Default::default(),
        }),
        keys(),
        LinkCounters::default(),
        [9; 16],
    )
}

/// A snapshot sealed the way the region seals it.
fn sealed(
    rack: &str,
    secret: &LinkSecret,
    sequence: u64,
    generation: u64,
    subnets: Vec<edgemetal_protocol::SubnetConfig>,
) -> Vec<u8> {
    let plain = Envelope::new(
        MessageId([1; 16]),
        0,
        DownMessage::SnapshotV5(ConfigSnapshot {
            boot_resources: Vec::new(),
            dns: Default::default(),
            generation: Generation(generation),
            subnets,
            gateway: Default::default(),
            machine_boot: Default::default(),
        }),
    )
    .encode()
    .unwrap();
    let header = FrameHeader {
        version: PROTOCOL_VERSION,
        rack_id: RackId::new(rack).unwrap(),
        direction: Direction::Down,
        key_epoch: 1,
        sequence,
    };
    seal::seal(secret, header, [2; 16], &plain).unwrap()
}

fn snapshot_payload(sequence: u64, generation: u64) -> Vec<u8> {
    sealed("r1", &SECRET, sequence, generation, vec![])
}

fn decode_up(outgoing: &Outgoing) -> (u64, UpMessage) {
    let frame = seal::parse(&outgoing.payload).unwrap();
    let plain = seal::open(&SECRET, &frame).unwrap();
    (
        frame.header.sequence,
        Envelope::<UpMessage>::decode(&plain).unwrap().body,
    )
}

fn decode_ack(outgoing: &Outgoing) -> SnapshotAck {
    match decode_up(outgoing).1 {
        UpMessage::SnapshotAck(ack) => ack,
        other => panic!("expected an ack, got {other:?}"),
    }
}

const TOPIC: &str = "edgemetal/v1/rack/r1/down/snapshot";

#[test]
fn newer_snapshot_is_applied_then_acked() {
    let mut s = session(Some(1));
    let Inbound::Apply(snapshot) = s.on_publish(0, TOPIC, &snapshot_payload(1, 2), false) else {
        panic!("expected apply");
    };
    assert_eq!(
        s.take_counters().unwrap().down_high_water,
        1,
        "the high-water mark must be persisted"
    );
    let ack = decode_ack(&s.applied(0, snapshot, Ok(())));
    assert_eq!(ack.generation, Generation(2));
    assert_eq!(ack.outcome, ApplyOutcome::Applied);
    assert_eq!(s.applied_generation(), Some(Generation(2)));
}

#[test]
fn redelivery_is_reacked_and_older_is_refused() {
    let mut s = session(Some(5));
    let Inbound::Answer(same) = s.on_publish(0, TOPIC, &snapshot_payload(1, 5), false) else {
        panic!()
    };
    assert_eq!(decode_ack(&same).outcome, ApplyOutcome::Applied);
    let Inbound::Answer(older) = s.on_publish(0, TOPIC, &snapshot_payload(2, 4), false) else {
        panic!()
    };
    assert!(matches!(
        decode_ack(&older).outcome,
        ApplyOutcome::Failed { .. }
    ));
    assert_eq!(s.applied_generation(), Some(Generation(5)));
}

#[test]
fn a_live_replay_is_dropped_but_the_retained_copy_is_reacked() {
    let mut s = session(None);
    let payload = snapshot_payload(7, 3);
    let Inbound::Apply(snapshot) = s.on_publish(0, TOPIC, &payload, false) else {
        panic!()
    };
    s.applied(0, snapshot, Ok(()));
    assert!(matches!(
        s.on_publish(0, TOPIC, &payload, false),
        Inbound::Dropped("replay", _)
    ));
    let Inbound::Answer(ack) = s.on_publish(0, TOPIC, &payload, true) else {
        panic!()
    };
    assert_eq!(decode_ack(&ack).outcome, ApplyOutcome::Applied);
    assert!(matches!(
        s.on_publish(0, TOPIC, &snapshot_payload(100, 4), false),
        Inbound::Apply(_)
    ));
    // Far below the mark: too old to tell apart from a replay.
    assert!(matches!(
        s.on_publish(0, TOPIC, &snapshot_payload(30, 9), false),
        Inbound::Dropped("replay", _)
    ));
}

#[test]
fn frames_slightly_out_of_order_are_accepted_once() {
    let mut s = session(None);
    // The region publishes from several tasks: 5 may overtake 4.
    for (sequence, generation) in [(3, 1), (5, 2), (4, 3)] {
        assert!(
            matches!(
                s.on_publish(0, TOPIC, &snapshot_payload(sequence, generation), false),
                Inbound::Apply(_)
            ),
            "sequence {sequence}"
        );
    }
    for sequence in [3, 4, 5] {
        assert!(matches!(
            s.on_publish(0, TOPIC, &snapshot_payload(sequence, 7), false),
            Inbound::Dropped("replay", _)
        ));
    }
}

#[test]
fn another_racks_key_or_frame_and_flipped_bits_are_forgeries() {
    let mut s = session(None);
    let other_key = sealed("r1", &LinkSecret([5; 32]), 1, 1, vec![]);
    assert!(matches!(
        s.on_publish(0, TOPIC, &other_key, false),
        Inbound::Dropped("forged", _)
    ));
    let other_rack = sealed("r2", &SECRET, 1, 1, vec![]);
    assert!(matches!(
        s.on_publish(0, TOPIC, &other_rack, false),
        Inbound::Dropped("forged", _)
    ));
    let mut flipped = snapshot_payload(1, 1);
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    assert!(matches!(
        s.on_publish(0, TOPIC, &flipped, false),
        Inbound::Dropped("forged", _)
    ));
    assert_eq!(s.applied_generation(), None);
}

#[test]
fn failed_persist_keeps_the_previous_snapshot() {
    let mut s = session(Some(1));
    let Inbound::Apply(snapshot) = s.on_publish(0, TOPIC, &snapshot_payload(1, 2), false) else {
        panic!()
    };
    let ack = decode_ack(&s.applied(0, snapshot, Err("disk full".into())));
    assert!(matches!(ack.outcome, ApplyOutcome::Failed { .. }));
    assert_eq!(s.applied_generation(), Some(Generation(1)));
}

#[test]
fn invalid_snapshot_is_refused_with_a_reason() {
    let mut s = session(None);
    let bad = edgemetal_protocol::SubnetConfig {
        id: "s".into(),
        name: "s".into(),
        cidr: "10.0.0.0/24".parse::<Ipv4Cidr>().unwrap(),
        gateway: None,
        dns_servers: vec![],
        domain: None,
        lease_time_secs: 600,
        ranges: vec![edgemetal_protocol::IpRange {
            start: "10.0.1.1".parse().unwrap(),
            end: "10.0.1.9".parse().unwrap(),
            purpose: edgemetal_protocol::RangePurpose::Dynamic,
        }],
        reservations: vec![],
        dhcp_racks: vec![],
        held_elsewhere: vec![],
        services: Default::default(),
        boot: Default::default(),
        router_advertisements: Default::default(),
    };
    let payload = sealed("r1", &SECRET, 1, 3, vec![bad]);
    let Inbound::Answer(answer) = s.on_publish(0, TOPIC, &payload, false) else {
        panic!()
    };
    assert!(matches!(
        decode_ack(&answer).outcome,
        ApplyOutcome::Failed { .. }
    ));
    assert_eq!(s.applied_generation(), None);
}

#[test]
fn hostile_payloads_and_foreign_topics_are_dropped() {
    let mut s = session(None);
    assert!(matches!(
        s.on_publish(0, TOPIC, b"", false),
        Inbound::Dropped("malformed", _)
    ));
    let other = "edgemetal/v1/rack/r2/down/snapshot";
    assert!(matches!(
        s.on_publish(0, other, &snapshot_payload(1, 1), false),
        Inbound::Dropped("bad_topic", _)
    ));
}

#[test]
fn upward_sequences_grow_and_survive_a_restart_without_reuse() {
    let mut s = session(None);
    let (a, _) = decode_up(&s.heartbeat(0, 1, vec![], vec![]));
    let (b, _) = decode_up(&s.heartbeat(0, 1, vec![], vec![]));
    assert!(b > a);
    let persisted = s.take_counters().expect("first use reserves a block");
    assert!(persisted.up_reserved > b);
    // Crash and restart from the persisted counters: never below what may have been sent.
    let mut restarted = Session::new(
        RackId::new("r1").unwrap(),
        "0.1.0".into(),
        "h".into(),
        None,
        keys(),
        persisted,
        [8; 16],
    );
    let (c, _) = decode_up(&restarted.heartbeat(0, 1, vec![], vec![]));
    assert!(c >= persisted.up_reserved);
    assert!(restarted.take_counters().unwrap().up_reserved > c);
}

#[test]
fn each_connection_seals_its_will_just_before_its_online_status() {
    let mut session = session(None);
    for _ in 0..2 {
        let will = session.last_will(0);
        // Frames sealed while connecting take sequences after the reserved one.
        let queued = session.heartbeat(0, 1, Vec::new(), Vec::new());
        let connected = session.on_connected(0, Vec::new());
        let (will_sequence, body) = decode_up(&will);
        assert_eq!(body, UpMessage::Status(RackStatus::Offline));
        let (online_sequence, body) = decode_up(&connected[1]);
        assert_eq!(body, UpMessage::Status(RackStatus::Online));
        assert_eq!(online_sequence, will_sequence + 1);
        assert!(decode_up(&queued).0 > online_sequence);
        assert!(decode_up(&connected[0]).0 > online_sequence);
    }
}

#[test]
fn a_v1_session_says_so_in_its_frames_and_hello() {
    let mut session = session(None).with_protocol_version(1);
    let hello = session.on_connected(0, Vec::new()).remove(0);
    let frame = seal::parse(&hello.payload).unwrap();
    assert_eq!(frame.header.version, 1);
    match decode_up(&hello).1 {
        UpMessage::Hello(hello) => assert_eq!(hello.protocol_version, 1),
        other => panic!("expected a hello, got {other:?}"),
    }
}

#[test]
fn a_delta_on_the_held_generation_becomes_the_new_snapshot() {
    let mut s = session(Some(4));
    let held = s.applied_snapshot().unwrap().clone();
    let mut next = held.clone();
    next.generation = Generation(5);
    next.dns.forwarders = vec!["192.0.2.1:53".parse().unwrap()];
    let delta = edgemetal_protocol::delta::diff(&held, &next);
    let (delta_topic, payload) = sealed_message(1, DownMessage::ConfigDeltaV5(delta.clone()));
    let Inbound::Apply(snapshot) = s.on_publish(0, &delta_topic, &payload, false) else {
        panic!("expected apply");
    };
    assert_eq!(snapshot, next);
    let ack = decode_ack(&s.applied(0, snapshot, Ok(())));
    assert_eq!(
        (ack.generation, ack.outcome),
        (Generation(5), ApplyOutcome::Applied)
    );
    // Delivered again: confirmed, not applied twice; a replay of the frame is dropped.
    let (_, again) = sealed_message(2, DownMessage::ConfigDeltaV5(delta));
    let Inbound::Answer(reack) = s.on_publish(0, &delta_topic, &again, false) else {
        panic!("expected a re-ack");
    };
    assert_eq!(decode_ack(&reack).outcome, ApplyOutcome::Applied);
    assert!(matches!(
        s.on_publish(0, &delta_topic, &payload, false),
        Inbound::Dropped("replay", _)
    ));
}

#[test]
fn a_delta_on_another_generation_asks_for_the_snapshot() {
    for held in [None, Some(3)] {
        let mut s = session(held);
        let delta = edgemetal_protocol::ConfigDelta {
            base: Generation(4),
            generation: Generation(5),
            ..Default::default()
        };
        let (delta_topic, payload) = sealed_message(1, DownMessage::ConfigDeltaV5(delta));
        let Inbound::Answer(answer) = s.on_publish(0, &delta_topic, &payload, false) else {
            panic!("expected an answer");
        };
        let ack = decode_ack(&answer);
        assert_eq!(ack.generation, Generation(5));
        assert!(
            matches!(ack.outcome, ApplyOutcome::Resync { .. }),
            "{ack:?}"
        );
        assert_eq!(s.applied_generation(), held.map(Generation));
    }
}

#[test]
fn a_delta_on_the_snapshot_topic_is_refused() {
    let mut s = session(Some(4));
    let delta = edgemetal_protocol::ConfigDelta {
        base: Generation(4),
        generation: Generation(5),
        ..Default::default()
    };
    let (_, payload) = sealed_message(1, DownMessage::ConfigDeltaV5(delta));
    assert!(matches!(
        s.on_publish(0, TOPIC, &payload, false),
        Inbound::Dropped(..)
    ));
    assert_eq!(s.applied_generation(), Some(Generation(4)));
}

/// A down message sealed the way the region seals it: its topic and payload.
fn sealed_message(sequence: u64, body: DownMessage) -> (String, Vec<u8>) {
    let rack_id = RackId::new("r1").unwrap();
    let sealer = frame::Sealer {
        rack_id: &rack_id,
        secret: &SECRET,
        key_epoch: 1,
        version: PROTOCOL_VERSION,
        nonce_prefix: [2; 16],
    };
    let sealed = frame::seal(&sealer, sequence, MessageId([1; 16]), 0, body).unwrap();
    (sealed.topic, sealed.payload)
}

#[test]
fn blob_chunks_skip_persisting_their_mark_but_the_next_frame_covers_them() {
    let mut s = session(None);
    for sequence in 1..=3 {
        let chunk = DownMessage::BlobChunk(edgemetal_protocol::BlobChunk {
            sha256: [7; 32],
            offset: 0,
            data: vec![1; 4],
            total: 4,
        });
        let (topic, payload) = sealed_message(sequence, chunk);
        let inbound = s.on_publish(0, &topic, &payload, false);
        assert!(matches!(inbound, Inbound::BlobChunk(_)));
        assert_eq!(s.take_counters(), None, "chunk {sequence}");
    }
    let (topic, payload) = sealed_message(4, DownMessage::LogsAck(9));
    let ack = s.on_publish(0, &topic, &payload, false);
    assert_eq!(ack, Inbound::LogsAcked(9));
    assert_eq!(s.take_counters().unwrap().down_high_water, 4);
    // Seen chunks are still refused while the process lives.
    let again = DownMessage::BlobChunk(edgemetal_protocol::BlobChunk {
        sha256: [7; 32],
        offset: 0,
        data: vec![1; 4],
        total: 4,
    });
    let (topic, payload) = sealed_message(2, again);
    assert!(matches!(
        s.on_publish(0, &topic, &payload, false),
        Inbound::Dropped("replay", _)
    ));
}

#[test]
fn a_v4_regions_snapshot_and_delta_are_read_in_their_layout() {
    let mut s = session(Some(1));
    let v5 = ConfigSnapshot {
        boot_resources: Vec::new(),
        dns: edgemetal_protocol::DnsConfig {
            forwarders: vec!["192.0.2.1:53".parse().unwrap()],
            ..Default::default()
        },
        generation: Generation(2),
        subnets: Vec::new(),
        gateway: Default::default(),
        machine_boot: Default::default(),
    };
    let old = DownMessage::Snapshot(edgemetal_protocol::v4::ConfigSnapshot::from(&v5));
    let (topic, payload) = sealed_message(1, old);
    let Inbound::Apply(applied) = s.on_publish(0, &topic, &payload, false) else {
        panic!("expected apply");
    };
    assert_eq!(applied, v5);
    s.applied(0, applied.clone(), Ok(()));
    let mut next = applied.clone();
    next.generation = Generation(3);
    next.dns.forwarders.push("192.0.2.2:53".parse().unwrap());
    let delta = edgemetal_protocol::delta::diff(&applied, &next);
    let old = DownMessage::ConfigDelta((&delta).into());
    let (topic, payload) = sealed_message(2, old);
    let Inbound::Apply(applied) = s.on_publish(0, &topic, &payload, false) else {
        panic!("expected apply");
    };
    assert_eq!(applied, next);
}
