//! The link session as a pure state machine: time and payloads in, payloads
//! to publish and snapshots to apply out. No sockets, no clock, no disk, so
//! every path (including hostile payloads) is testable in microseconds.
//!
//! Every payload is sealed end to end (see `edgemetal_protocol::seal`).
//! Sequence numbers make replays detectable in both directions; their
//! high-water marks must survive restarts, so the session hands the adapter
//! [`LinkCounters`] to persist *before* the adapter acts on its output.

use edgemetal_protocol::frame::{self, FrameError, ReplayWindow};
use edgemetal_protocol::seal::LinkSecret;
use edgemetal_protocol::{
    ApplyOutcome, ConfigSnapshot, DownMessage, Generation, Heartbeat, Hello, InterfaceInfo,
    MessageId, RackId, RackStatus, ServiceHealth, ServiceKind, SnapshotAck, Topic, UpMessage,
    PROTOCOL_VERSION,
};
use serde::{Deserialize, Serialize};

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

/// Sequence state that must survive restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LinkCounters {
    /// Upward sequences below this may have been used; a restart continues from here.
    pub up_reserved: u64,
    /// Highest downward sequence accepted.
    pub down_high_water: u64,
}

/// How many upward sequence numbers one persisted reservation covers.
const RESERVATION_BLOCK: u64 = 1024;

/// The rack's key material for the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkKeys {
    /// The secret from enrolment.
    pub secret: LinkSecret,
    /// Its epoch.
    pub key_epoch: u32,
}

/// What the adapter must do with a received payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A newer, valid snapshot: persist it, then call [`Session::applied`].
    Apply(ConfigSnapshot),
    /// Nothing to apply; publish this answer (re-ack or refusal).
    Answer(Outgoing),
    /// A new link key: persist it, then call [`Session::rekeyed`].
    Rekey(LinkKeys),
    /// The region stored every queued event up to this id.
    EventsAcked(u64),
    /// The region stored every queued log line up to this id.
    LogsAcked(u64),
    /// Carry out this power command, then publish [`Session::power_result`].
    Power(edgemetal_protocol::PowerCommand),
    /// Part of a boot resource being cached.
    BlobChunk(edgemetal_protocol::BlobChunk),
    /// The region's boot decision for a machine (v1).
    BootAnswer(edgemetal_protocol::BootAnswer),
    /// Machines' boot intents, pushed ahead of their boots (v2), with
    /// their deploy and release plans (v3).
    Intents(edgemetal_protocol::PlannedIntents),
    /// The payload was dropped; the reason is a metric label.
    Dropped(&'static str, String),
}

/// The rack's side of the link protocol.
pub struct Session {
    rack_id: RackId,
    software_version: String,
    hostname: String,
    services: Vec<ServiceKind>,
    bmc_networks: Vec<edgemetal_protocol::Ipv4Cidr>,
    applied: Option<ConfigSnapshot>,
    keys: LinkKeys,
    previous_keys: Option<LinkKeys>,
    boot_nonce: [u8; 16],
    next_up: u64,
    counters: LinkCounters,
    counters_dirty: bool,
    /// The region publishes from several tasks, so frames may arrive
    /// slightly out of order: a window accepts those and refuses duplicates.
    down_window: ReplayWindow,
    /// The protocol version spoken (the region answers in it).
    version: u16,
    /// The sequence reserved for the `Online` status of the connection whose
    /// last will was just sealed: the region accepts a will only as the one
    /// just before the `Online` it last saw (protocol v2).
    online_sequence: Option<u64>,
}

impl Session {
    /// A session for `rack_id`, starting from the persisted snapshot and counters.
    ///
    /// `boot_nonce` must be random per process start: it prefixes message ids
    /// and seal nonces, so no RNG or clock is needed inside the core.
    pub fn new(
        rack_id: RackId,
        software_version: String,
        hostname: String,
        applied: Option<ConfigSnapshot>,
        keys: LinkKeys,
        counters: LinkCounters,
        boot_nonce: [u8; 16],
    ) -> Self {
        Session {
            rack_id,
            software_version,
            hostname,
            services: vec![ServiceKind::Link],
            bmc_networks: Vec::new(),
            applied,
            keys,
            previous_keys: None,
            boot_nonce,
            // Anything below the reservation may have been sent before a crash.
            next_up: counters.up_reserved.max(1),
            counters,
            counters_dirty: false,
            down_window: ReplayWindow::starting_at(counters.down_high_water),
            version: PROTOCOL_VERSION,
            online_sequence: None,
        }
    }

    /// Records the downward frame `sequence` as seen; the mark must be
    /// persisted before the frame is acted on when it is `durable`.
    ///
    /// Only frames whose replay is harmless skip persisting: blob chunks
    /// (content-addressed, written only where the cache lacks them, and
    /// verified as a whole before use). The mark still moves, so the next
    /// durable frame persists a mark that covers them too; a restart merely
    /// forgets that some chunks were seen, and a replayed one is ignored or
    /// rewrites the same bytes. Persisting per chunk would cost two fsyncs
    /// per 512 KiB on the sync's hot path.
    fn mark_down(&mut self, sequence: u64, durable: bool) {
        self.down_window.accept(sequence);
        self.counters.down_high_water = self.down_window.high_water();
        self.counters_dirty |= durable;
    }

    /// Also accept frames sealed under `previous` (the key before the last
    /// rotation), e.g. a retained snapshot sealed just before the switch.
    pub fn with_previous_keys(mut self, previous: Option<LinkKeys>) -> Self {
        self.previous_keys = previous;
        self
    }

    /// Speak protocol `version` (1 to behave as a v1 rack) instead of this build's.
    pub fn with_protocol_version(mut self, version: u16) -> Self {
        self.version = version.clamp(1, PROTOCOL_VERSION);
        self
    }

    /// The protocol version spoken.
    pub fn protocol_version(&self) -> u16 {
        self.version
    }

    /// The services the rack runs besides the link, announced in its hello.
    pub fn with_services(mut self, services: impl IntoIterator<Item = ServiceKind>) -> Self {
        self.services.extend(services);
        self
    }

    /// The current link keys.
    pub fn keys(&self) -> &LinkKeys {
        &self.keys
    }

    /// Switches to `keys` (already persisted) and answers the region under them,
    /// which proves the switch.
    pub fn rekeyed(&mut self, now_ms: u64, keys: LinkKeys) -> Outgoing {
        let epoch = keys.key_epoch;
        self.previous_keys = Some(std::mem::replace(&mut self.keys, keys));
        self.outgoing(
            now_ms,
            UpMessage::RekeyAck(edgemetal_protocol::RekeyAck { key_epoch: epoch }),
            false,
        )
    }

    /// Counters to persist before publishing or applying what the session
    /// just returned; `None` when nothing changed.
    pub fn take_counters(&mut self) -> Option<LinkCounters> {
        std::mem::take(&mut self.counters_dirty).then_some(self.counters)
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

    /// The MQTT last will for the next connection: "offline", retained,
    /// published by the broker if we vanish. Call before every connect: the
    /// sequence after the will's is kept for that connection's `Online`
    /// status, which is how the region tells this will from older ones.
    pub fn last_will(&mut self, now_ms: u64) -> Outgoing {
        let will = self.outgoing(now_ms, UpMessage::Status(RackStatus::Offline), true);
        self.online_sequence = Some(self.next_up);
        self.next_up += 1;
        will
    }

    /// What to publish right after a (re)connect: hello, then presence. Both
    /// are retained, so a region that subscribes later still learns of us.
    pub fn on_connected(&mut self, now_ms: u64, interfaces: Vec<InterfaceInfo>) -> Vec<Outgoing> {
        let hello = Hello {
            rack_id: self.rack_id.clone(),
            software_version: self.software_version.clone(),
            protocol_version: self.version,
            hostname: self.hostname.clone(),
            interfaces,
            services: self.services.clone(),
            applied_generation: self.applied_generation(),
            bmc_networks: self.bmc_networks.clone(),
        };
        let online = match self.online_sequence.take() {
            Some(sequence) => self.sealed(
                now_ms,
                sequence,
                UpMessage::Status(RackStatus::Online),
                true,
            ),
            None => self.outgoing(now_ms, UpMessage::Status(RackStatus::Online), true),
        };
        // Hello first: on a first connect it creates the region's record of
        // the rack, which the presence (taken out of order) then updates.
        let hello = self.outgoing(now_ms, UpMessage::Hello(hello), true);
        vec![hello, online]
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

    /// How far the cache holds each boot resource (v3; `None` for older).
    pub fn resources(
        &mut self,
        now_ms: u64,
        held: Vec<edgemetal_protocol::ResourceHeld>,
    ) -> Option<Outgoing> {
        (self.version >= 3).then(|| self.outgoing(now_ms, UpMessage::Resources(held), false))
    }

    /// The outcome of a power command.
    pub fn power_result(
        &mut self,
        now_ms: u64,
        request_id: u64,
        outcome: edgemetal_protocol::PowerOutcome,
    ) -> Outgoing {
        let result = edgemetal_protocol::PowerResult {
            request_id,
            outcome,
        };
        self.outgoing(now_ms, UpMessage::PowerResult(result), false)
    }

    /// Asks the region for part of a boot resource.
    pub fn blob_request(
        &mut self,
        now_ms: u64,
        request: edgemetal_protocol::BlobRequest,
    ) -> Outgoing {
        self.outgoing(now_ms, UpMessage::BlobRequest(request), false)
    }

    /// Asks the region what a machine boots.
    pub fn boot_query(&mut self, now_ms: u64, query: edgemetal_protocol::BootQuery) -> Outgoing {
        self.outgoing(now_ms, UpMessage::BootQuery(query), false)
    }

    /// Reports BMC networks beyond the rack's own interfaces in its hello.
    pub fn with_bmc_networks(mut self, networks: Vec<edgemetal_protocol::Ipv4Cidr>) -> Self {
        self.bmc_networks = networks;
        self
    }

    /// Queued events to deliver, oldest first.
    pub fn events(&mut self, now_ms: u64, events: Vec<edgemetal_protocol::RackEvent>) -> Outgoing {
        self.outgoing(now_ms, UpMessage::Events(events), false)
    }

    /// Queued syslog lines to deliver, oldest first.
    pub fn logs(&mut self, now_ms: u64, lines: Vec<edgemetal_protocol::LogLine>) -> Outgoing {
        self.outgoing(
            now_ms,
            UpMessage::Logs(edgemetal_protocol::LogBatch { lines }),
            false,
        )
    }

    /// Handles a payload received on `topic`; `retained` when the broker
    /// delivered it from its retained store rather than live.
    pub fn on_publish(
        &mut self,
        now_ms: u64,
        topic: &str,
        payload: &[u8],
        retained: bool,
    ) -> Inbound {
        if !Topic::parse(topic).is_ok_and(|parsed| parsed.rack_id == self.rack_id) {
            return Inbound::Dropped("bad_topic", format!("unexpected topic {topic}"));
        }
        let (keys, previous) = (&self.keys, &self.previous_keys);
        let opened = frame::open::<DownMessage>(topic, payload, |_, epoch| {
            if epoch == keys.key_epoch {
                Ok(&keys.secret)
            } else {
                match previous {
                    Some(previous) if previous.key_epoch == epoch => Ok(&previous.secret),
                    _ => Err(FrameError::WrongEpoch(epoch)),
                }
            }
        });
        let opened = match opened {
            Ok(opened) => opened,
            // The rack's labels: a frame claiming another rack on our topic is a forgery.
            Err(FrameError::RackMismatch { claimed, .. }) => {
                return Inbound::Dropped("forged", format!("frame for rack {claimed} on our topic"))
            }
            Err(error) => return Inbound::Dropped(error.label(), error.to_string()),
        };
        let sequence = opened.header.sequence;
        let replayed = self.down_window.seen(sequence);
        let body = opened.envelope.body;
        let body = match body {
            DownMessage::Snapshot(snapshot) => DownMessage::SnapshotV5(snapshot.into()),
            DownMessage::ConfigDelta(delta) => DownMessage::ConfigDeltaV5(delta.into()),
            body => body,
        };
        if let DownMessage::SnapshotV5(snapshot) = body {
            return self.on_snapshot(now_ms, snapshot, sequence, replayed, retained);
        }
        if replayed {
            return Inbound::Dropped("replay", format!("sequence {sequence} already seen"));
        }
        self.mark_down(sequence, !matches!(body, DownMessage::BlobChunk(_)));
        match body {
            DownMessage::Snapshot(_) | DownMessage::SnapshotV5(_) | DownMessage::ConfigDelta(_) => {
                unreachable!("handled above")
            }
            DownMessage::EventsAck(up_to) => Inbound::EventsAcked(up_to),
            DownMessage::LogsAck(up_to) => Inbound::LogsAcked(up_to),
            DownMessage::BlobChunk(chunk) => Inbound::BlobChunk(chunk),
            DownMessage::BootAnswer(answer) => Inbound::BootAnswer(answer),
            DownMessage::Intents(batch) => Inbound::Intents(edgemetal_protocol::PlannedIntents {
                batch,
                plans: Vec::new(),
            }),
            DownMessage::IntentsV3(planned) => Inbound::Intents(planned),
            DownMessage::ConfigDeltaV5(delta) => self.on_delta(now_ms, delta),
            DownMessage::Rekey(rekey) => self.on_rekey(now_ms, rekey),
            DownMessage::Power(command) if now_ms > command.deadline_ms => {
                // The region stopped waiting: acting now would surprise
                // whoever sees the failure it already reported.
                let failure = edgemetal_protocol::PowerFailure {
                    kind: edgemetal_protocol::PowerFailureKind::Other,
                    detail: format!(
                        "command arrived {} ms after its deadline (late delivery or clock skew)",
                        now_ms - command.deadline_ms
                    ),
                };
                Inbound::Answer(self.power_result(now_ms, command.request_id, Err(failure)))
            }
            DownMessage::Power(command) => Inbound::Power(command),
        }
    }

    fn on_snapshot(
        &mut self,
        now_ms: u64,
        snapshot: ConfigSnapshot,
        sequence: u64,
        replayed: bool,
        retained: bool,
    ) -> Inbound {
        let generation = snapshot.generation;
        if replayed {
            // The retained snapshot comes back after every reconnect: harmless,
            // and the region may want our ack again. A live replay is an attack.
            if retained && Some(generation) == self.applied_generation() {
                return Inbound::Answer(self.ack(now_ms, generation, ApplyOutcome::Applied));
            }
            return Inbound::Dropped("replay", format!("sequence {sequence} already seen"));
        }
        self.mark_down(sequence, true);
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

    /// A delta against the snapshot we hold becomes the new snapshot to
    /// apply; one that does not fit asks the region for the full snapshot.
    fn on_delta(&mut self, now_ms: u64, delta: edgemetal_protocol::ConfigDelta) -> Inbound {
        let generation = delta.generation;
        match self.applied_generation() {
            // A redelivery of what we serve: confirm again.
            Some(applied) if applied == generation => {
                return Inbound::Answer(self.ack(now_ms, generation, ApplyOutcome::Applied))
            }
            Some(applied) if applied > generation => {
                return Inbound::Dropped(
                    "stale",
                    format!("delta to {generation}, older than the applied generation {applied}"),
                )
            }
            _ => {}
        }
        let applied = match &self.applied {
            Some(held) => edgemetal_protocol::delta::apply(held, &delta).map_err(|e| e.to_string()),
            None => Err("no snapshot held to apply a delta to".to_string()),
        };
        let resync = |reason| ApplyOutcome::Resync { reason };
        match applied {
            Ok(snapshot) => match validate::snapshot(&snapshot) {
                Ok(()) => Inbound::Apply(snapshot),
                Err(reason) => {
                    Inbound::Answer(self.ack(now_ms, generation, ApplyOutcome::Failed { reason }))
                }
            },
            Err(reason) => Inbound::Answer(self.ack(now_ms, generation, resync(reason))),
        }
    }

    fn on_rekey(&mut self, now_ms: u64, rekey: edgemetal_protocol::Rekey) -> Inbound {
        let keys = LinkKeys {
            secret: LinkSecret(rekey.link_secret),
            key_epoch: rekey.key_epoch,
        };
        if rekey.key_epoch == self.keys.key_epoch.wrapping_add(1) {
            Inbound::Rekey(keys)
        } else if rekey.key_epoch == self.keys.key_epoch && keys.secret == self.keys.secret {
            // Sent again (our ack was lost): answer again under the key we hold.
            Inbound::Answer(self.outgoing(
                now_ms,
                UpMessage::RekeyAck(edgemetal_protocol::RekeyAck {
                    key_epoch: rekey.key_epoch,
                }),
                false,
            ))
        } else {
            Inbound::Dropped("wrong_epoch", format!("rekey to epoch {}", rekey.key_epoch))
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
        let sequence = self.next_up;
        self.next_up += 1;
        self.sealed(now_ms, sequence, body, retain)
    }

    fn sealed(&mut self, now_ms: u64, sequence: u64, body: UpMessage, retain: bool) -> Outgoing {
        if sequence >= self.counters.up_reserved {
            self.counters.up_reserved = sequence + RESERVATION_BLOCK;
            self.counters_dirty = true;
        }
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.boot_nonce[..8]);
        id[8..].copy_from_slice(&sequence.to_be_bytes());
        let sealer = frame::Sealer {
            rack_id: &self.rack_id,
            secret: &self.keys.secret,
            key_epoch: self.keys.key_epoch,
            version: self.version,
            nonce_prefix: self.boot_nonce,
        };
        // Encoding and sealing into a Vec only fail for types postcard cannot
        // represent or absurd sizes; link messages are neither.
        let sealed = frame::seal(&sealer, sequence, MessageId(id), now_ms, body)
            .expect("link messages always seal");
        Outgoing {
            topic: sealed.topic,
            payload: sealed.payload,
            retain,
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
