//! The link session as a pure state machine: time and payloads in, payloads
//! to publish and snapshots to apply out. No sockets, no clock, no disk, so
//! every path (including hostile payloads) is testable in microseconds.

use edgemetal_protocol::{
    ApplyOutcome, Channel, ConfigSnapshot, DownMessage, Envelope, Generation, Heartbeat, Hello,
    InterfaceInfo, MessageId, RackId, RackStatus, ServiceHealth, ServiceKind, SnapshotAck, Topic,
    UpMessage, PROTOCOL_VERSION,
};

use super::validate;

/// A payload to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Full topic.
    pub topic: String,
    /// Encoded envelope.
    pub payload: Vec<u8>,
    /// Whether the broker should retain it.
    pub retain: bool,
}

/// What the adapter must do with a received payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A newer, valid snapshot: persist it, then call [`Session::applied`].
    Apply(ConfigSnapshot),
    /// Nothing to apply; publish this answer (re-ack or refusal).
    Answer(Outgoing),
    /// The payload was dropped; the reason is a metric label.
    Dropped(&'static str, String),
}

/// The rack's side of the link protocol.
pub struct Session {
    rack_id: RackId,
    software_version: String,
    hostname: String,
    services: Vec<ServiceKind>,
    applied: Option<ConfigSnapshot>,
    boot_nonce: [u8; 8],
    next_sequence: u64,
}

impl Session {
    /// A session for `rack_id`, starting from the persisted snapshot if any.
    ///
    /// `boot_nonce` must be random per process start: with a counter it makes
    /// message ids unique across restarts without a clock or RNG in the core.
    pub fn new(
        rack_id: RackId,
        software_version: String,
        hostname: String,
        applied: Option<ConfigSnapshot>,
        boot_nonce: [u8; 8],
    ) -> Self {
        Session {
            rack_id,
            software_version,
            hostname,
            services: vec![ServiceKind::Link],
            applied,
            boot_nonce,
            next_sequence: 0,
        }
    }

    /// The rack's id.
    pub fn rack_id(&self) -> &RackId {
        &self.rack_id
    }

    /// The snapshot the rack serves from.
    pub fn applied_snapshot(&self) -> Option<&ConfigSnapshot> {
        self.applied.as_ref()
    }

    /// The applied generation, if any.
    pub fn applied_generation(&self) -> Option<Generation> {
        self.applied.as_ref().map(|s| s.generation)
    }

    /// The topic filter to subscribe to after every connect.
    pub fn subscription(&self) -> String {
        Topic::rack_down_filter(&self.rack_id)
    }

    /// The MQTT last will: "offline", retained, published by the broker if we vanish.
    pub fn last_will(&mut self, now_ms: u64) -> Outgoing {
        self.outgoing(now_ms, UpMessage::Status(RackStatus::Offline), true)
    }

    /// What to publish right after a (re)connect: presence, then hello. Both
    /// are retained, so a region that subscribes later still learns of us.
    pub fn on_connected(&mut self, now_ms: u64, interfaces: Vec<InterfaceInfo>) -> Vec<Outgoing> {
        let hello = Hello {
            rack_id: self.rack_id.clone(),
            software_version: self.software_version.clone(),
            protocol_version: PROTOCOL_VERSION,
            hostname: self.hostname.clone(),
            interfaces,
            services: self.services.clone(),
            applied_generation: self.applied_generation(),
        };
        vec![
            self.outgoing(now_ms, UpMessage::Status(RackStatus::Online), true),
            self.outgoing(now_ms, UpMessage::Hello(hello), true),
        ]
    }

    /// A heartbeat with the given health and counters.
    pub fn heartbeat(
        &mut self,
        now_ms: u64,
        uptime_secs: u64,
        services: Vec<ServiceHealth>,
        counters: Vec<edgemetal_protocol::Counter>,
    ) -> Outgoing {
        let heartbeat = Heartbeat {
            uptime_secs,
            applied_generation: self.applied_generation(),
            services,
            counters,
        };
        self.outgoing(now_ms, UpMessage::Heartbeat(heartbeat), false)
    }

    /// Handles a payload received on `topic`.
    pub fn on_publish(&mut self, now_ms: u64, topic: &str, payload: &[u8]) -> Inbound {
        match Topic::parse(topic) {
            Ok(parsed) if parsed.rack_id == self.rack_id && parsed.channel == Channel::Snapshot => {
            }
            _ => return Inbound::Dropped("bad_topic", format!("unexpected topic {topic}")),
        }
        let envelope = match Envelope::<DownMessage>::decode(payload) {
            Ok(envelope) => envelope,
            Err(error @ edgemetal_protocol::DecodeError::UnsupportedVersion { .. }) => {
                return Inbound::Dropped("unsupported_version", error.to_string())
            }
            Err(error) => return Inbound::Dropped("malformed", error.to_string()),
        };
        let DownMessage::Snapshot(snapshot) = envelope.body;
        let generation = snapshot.generation;
        match self.applied_generation() {
            Some(applied) if applied == generation => {
                // A redelivery of what we serve: confirm again, the region may have missed it.
                Inbound::Answer(self.ack(now_ms, generation, ApplyOutcome::Applied))
            }
            Some(applied) if applied > generation => Inbound::Answer(self.ack(
                now_ms,
                generation,
                ApplyOutcome::Failed {
                    reason: format!("older than the applied generation {applied}"),
                },
            )),
            _ => match validate::snapshot(&snapshot) {
                Ok(()) => Inbound::Apply(snapshot),
                Err(reason) => {
                    Inbound::Answer(self.ack(now_ms, generation, ApplyOutcome::Failed { reason }))
                }
            },
        }
    }

    /// Reports the outcome of persisting a snapshot; on success the rack serves it from now on.
    pub fn applied(
        &mut self,
        now_ms: u64,
        snapshot: ConfigSnapshot,
        result: Result<(), String>,
    ) -> Outgoing {
        let generation = snapshot.generation;
        match result {
            Ok(()) => {
                self.applied = Some(snapshot);
                self.ack(now_ms, generation, ApplyOutcome::Applied)
            }
            Err(reason) => self.ack(now_ms, generation, ApplyOutcome::Failed { reason }),
        }
    }

    fn ack(&mut self, now_ms: u64, generation: Generation, outcome: ApplyOutcome) -> Outgoing {
        self.outgoing(
            now_ms,
            UpMessage::SnapshotAck(SnapshotAck {
                generation,
                outcome,
            }),
            false,
        )
    }

    fn outgoing(&mut self, now_ms: u64, body: UpMessage, retain: bool) -> Outgoing {
        let topic = Topic::new(self.rack_id.clone(), body.channel()).to_string();
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.boot_nonce);
        id[8..].copy_from_slice(&self.next_sequence.to_be_bytes());
        self.next_sequence += 1;
        let payload = Envelope::new(MessageId(id), now_ms, body)
            .encode()
            // Encoding into a Vec only fails for types postcard cannot represent; ours are all plain.
            .expect("link messages always encode");
        Outgoing {
            topic,
            payload,
            retain,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgemetal_protocol::Ipv4Cidr;

    fn session(applied: Option<u64>) -> Session {
        Session::new(
            RackId::new("r1").unwrap(),
            "0.1.0".into(),
            "host".into(),
            applied.map(|g| ConfigSnapshot {
                generation: Generation(g),
                subnets: vec![],
            }),
            [9; 8],
        )
    }

    fn snapshot_payload(
        generation: u64,
        subnets: Vec<edgemetal_protocol::SubnetConfig>,
    ) -> Vec<u8> {
        Envelope::new(
            MessageId([1; 16]),
            0,
            DownMessage::Snapshot(ConfigSnapshot {
                generation: Generation(generation),
                subnets,
            }),
        )
        .encode()
        .unwrap()
    }

    fn decode_ack(outgoing: &Outgoing) -> SnapshotAck {
        match Envelope::<UpMessage>::decode(&outgoing.payload)
            .unwrap()
            .body
        {
            UpMessage::SnapshotAck(ack) => ack,
            other => panic!("expected an ack, got {other:?}"),
        }
    }

    const TOPIC: &str = "edgemetal/v1/rack/r1/down/snapshot";

    #[test]
    fn newer_snapshot_is_applied_then_acked() {
        let mut s = session(Some(1));
        let Inbound::Apply(snapshot) = s.on_publish(0, TOPIC, &snapshot_payload(2, vec![])) else {
            panic!("expected apply");
        };
        let ack = decode_ack(&s.applied(0, snapshot, Ok(())));
        assert_eq!(ack.generation, Generation(2));
        assert_eq!(ack.outcome, ApplyOutcome::Applied);
        assert_eq!(s.applied_generation(), Some(Generation(2)));
    }

    #[test]
    fn redelivery_is_reacked_and_older_is_refused() {
        let mut s = session(Some(5));
        let Inbound::Answer(same) = s.on_publish(0, TOPIC, &snapshot_payload(5, vec![])) else {
            panic!()
        };
        assert_eq!(decode_ack(&same).outcome, ApplyOutcome::Applied);
        let Inbound::Answer(older) = s.on_publish(0, TOPIC, &snapshot_payload(4, vec![])) else {
            panic!()
        };
        assert!(matches!(
            decode_ack(&older).outcome,
            ApplyOutcome::Failed { .. }
        ));
        assert_eq!(s.applied_generation(), Some(Generation(5)));
    }

    #[test]
    fn failed_persist_keeps_the_previous_snapshot() {
        let mut s = session(Some(1));
        let Inbound::Apply(snapshot) = s.on_publish(0, TOPIC, &snapshot_payload(2, vec![])) else {
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
        };
        let Inbound::Answer(answer) = s.on_publish(0, TOPIC, &snapshot_payload(3, vec![bad]))
        else {
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
            s.on_publish(0, TOPIC, b""),
            Inbound::Dropped("malformed", _)
        ));
        assert!(matches!(
            s.on_publish(0, TOPIC, &[0x7f, 0xff]),
            Inbound::Dropped("unsupported_version", _)
        ));
        let other = "edgemetal/v1/rack/r2/down/snapshot";
        assert!(matches!(
            s.on_publish(0, other, &snapshot_payload(1, vec![])),
            Inbound::Dropped("bad_topic", _)
        ));
    }

    #[test]
    fn message_ids_are_unique_within_a_session() {
        let mut s = session(None);
        let a = s.heartbeat(0, 1, vec![], vec![]);
        let b = s.heartbeat(0, 1, vec![], vec![]);
        let id = |o: &Outgoing| {
            Envelope::<UpMessage>::decode(&o.payload)
                .unwrap()
                .message_id
        };
        assert_ne!(id(&a), id(&b));
    }
}
