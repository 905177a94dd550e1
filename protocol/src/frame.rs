//! The one frame codec both ends of the link call: a message in, a sealed
//! payload for its topic out; a payload from a topic in, a checked message
//! out. Sealing ([`crate::seal`]), the envelope ([`crate::envelope`]) and the
//! topic ↔ message-type rule live together here so that the region and the
//! racks cannot check frames differently.
//!
//! What [`open`] guarantees about a message it returns:
//! - the topic is an edgemetal topic of the expected direction;
//! - the frame was sealed under the topic's rack's key for that direction
//!   and the epoch it names (the caller picks the secret by epoch);
//! - the envelope's version is one this build speaks, and equals the frame's;
//! - the message belongs on the topic's channel.
//!
//! The replay check needs state the caller keeps; [`ReplayWindow`] is the
//! sliding window both ends use for it.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde::{de::DeserializeOwned, Serialize};

use crate::envelope::{DecodeError, Envelope};
use crate::message::{DownMessage, UpMessage};
use crate::seal::{self, FrameHeader, LinkSecret, OpenError};
use crate::topic::{Channel, Direction, Topic};
use crate::types::{MessageId, RackId};

/// A message type of the link: it knows its direction and channel.
pub trait LinkMessage: Serialize + DeserializeOwned {
    /// Which way messages of this type travel.
    const DIRECTION: Direction;
    /// The channel (topic) this message is published on.
    fn channel(&self) -> Channel;
}

impl LinkMessage for UpMessage {
    const DIRECTION: Direction = Direction::Up;
    fn channel(&self) -> Channel {
        UpMessage::channel(self)
    }
}

impl LinkMessage for DownMessage {
    const DIRECTION: Direction = Direction::Down;
    fn channel(&self) -> Channel {
        DownMessage::channel(self)
    }
}

/// Who seals a frame, and how.
#[derive(Debug, Clone)]
pub struct Sealer<'a> {
    /// The rack whose link it is.
    pub rack_id: &'a RackId,
    /// The secret of `key_epoch`.
    pub secret: &'a LinkSecret,
    /// The epoch of `secret`.
    pub key_epoch: u32,
    /// The protocol version the receiver speaks.
    pub version: u16,
    /// Random per process: with the sequence it makes every nonce unique.
    pub nonce_prefix: [u8; 16],
}

/// A sealed message ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedMessage {
    /// The topic it goes to.
    pub topic: String,
    /// The payload.
    pub payload: Vec<u8>,
}

/// Why a payload was refused; each has a stable metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The topic is not in the scheme, or goes the other way.
    #[error("unexpected topic: {0}")]
    Topic(String),
    /// The frame or envelope names a version this build does not speak.
    #[error("unsupported protocol version: {0}")]
    UnsupportedVersion(String),
    /// The bytes do not decode.
    #[error("undecodable payload: {0}")]
    Malformed(String),
    /// The frame claims another rack or direction than its topic.
    #[error("frame sealed for rack {claimed} arrived on rack {topic}'s topic")]
    RackMismatch {
        /// Rack in the topic.
        topic: RackId,
        /// Rack the frame claims.
        claimed: RackId,
    },
    /// No key of this rack opens frames of this epoch.
    #[error("no key of epoch {0}")]
    WrongEpoch(u32),
    /// The seal did not verify: forged, tampered, or another rack's key.
    #[error("forged or tampered frame claiming rack {0}")]
    Forged(RackId),
    /// The message does not belong on the channel it arrived on.
    #[error("a {got:?} message on the {topic_channel:?} channel")]
    ChannelMismatch {
        /// Channel named by the topic.
        topic_channel: Channel,
        /// Channel the message belongs on.
        got: Channel,
    },
    /// A message that cannot be encoded or sealed (never for link types).
    #[error("cannot seal: {0}")]
    Seal(String),
}

impl FrameError {
    /// A short, stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            FrameError::Topic(_) => "bad_topic",
            FrameError::UnsupportedVersion(_) => "unsupported_version",
            FrameError::Malformed(_) => "malformed",
            FrameError::RackMismatch { .. } => "rack_mismatch",
            FrameError::WrongEpoch(_) => "wrong_epoch",
            FrameError::Forged(_) => "forged",
            FrameError::ChannelMismatch { .. } => "channel_mismatch",
            FrameError::Seal(_) => "seal",
        }
    }
}

/// Seals `body` as message `message_id` with sequence `sequence`, for its channel's topic.
pub fn seal<M: LinkMessage>(
    sealer: &Sealer<'_>,
    sequence: u64,
    message_id: MessageId,
    sent_at_ms: u64,
    body: M,
) -> Result<SealedMessage, FrameError> {
    let topic = Topic::new(sealer.rack_id.clone(), body.channel()).to_string();
    let mut envelope = Envelope::new(message_id, sent_at_ms, body);
    envelope.version = sealer.version;
    let plaintext = envelope
        .encode()
        .map_err(|e| FrameError::Seal(e.to_string()))?;
    let header = FrameHeader {
        version: sealer.version,
        rack_id: sealer.rack_id.clone(),
        direction: M::DIRECTION,
        key_epoch: sealer.key_epoch,
        sequence,
    };
    let payload = seal::seal(sealer.secret, header, sealer.nonce_prefix, &plaintext)
        .map_err(|e| FrameError::Seal(e.to_string()))?;
    Ok(SealedMessage { topic, payload })
}

/// A message that passed every check but the replay check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened<M> {
    /// The rack of the topic (and of the key that opened it).
    pub rack_id: RackId,
    /// The frame's clear header: sequence and epoch for the caller's checks.
    pub header: FrameHeader,
    /// The decoded envelope.
    pub envelope: Envelope<M>,
}

/// Opens a payload received on `topic`. `secret_for(rack, epoch)` returns
/// the rack's secret of that epoch (or why there is none).
pub fn open<'k, M: LinkMessage>(
    topic: &str,
    payload: &[u8],
    secret_for: impl FnOnce(&RackId, u32) -> Result<&'k LinkSecret, FrameError>,
) -> Result<Opened<M>, FrameError> {
    let parsed = Topic::parse(topic).map_err(|e| FrameError::Topic(e.to_string()))?;
    if parsed.direction() != M::DIRECTION {
        return Err(FrameError::Topic(format!(
            "{topic} goes {:?}, expected {:?}",
            parsed.direction(),
            M::DIRECTION
        )));
    }
    let frame = seal::parse(payload).map_err(|e| match e {
        OpenError::UnsupportedVersion(v) => FrameError::UnsupportedVersion(v.to_string()),
        other => FrameError::Malformed(other.to_string()),
    })?;
    let header = frame.header.clone();
    if header.rack_id != parsed.rack_id || header.direction != M::DIRECTION {
        return Err(FrameError::RackMismatch {
            topic: parsed.rack_id,
            claimed: header.rack_id,
        });
    }
    let secret = secret_for(&header.rack_id, header.key_epoch)?;
    let plaintext =
        seal::open(secret, &frame).map_err(|_| FrameError::Forged(header.rack_id.clone()))?;
    let envelope = Envelope::<M>::decode(&plaintext).map_err(|e| match e {
        DecodeError::UnsupportedVersion { .. } => FrameError::UnsupportedVersion(e.to_string()),
        other => FrameError::Malformed(other.to_string()),
    })?;
    if envelope.version != header.version {
        return Err(FrameError::UnsupportedVersion(format!(
            "envelope version {} inside a version {} frame",
            envelope.version, header.version
        )));
    }
    let got = envelope.body.channel();
    if got != parsed.channel {
        return Err(FrameError::ChannelMismatch {
            topic_channel: parsed.channel,
            got,
        });
    }
    Ok(Opened {
        rack_id: parsed.rack_id,
        header,
        envelope,
    })
}

/// Which recent sequences were seen: a high-water mark and a 64-frame
/// window below it (as in IPsec and DTLS), so frames that arrive slightly
/// out of order are accepted and every duplicate is refused. Only the mark
/// needs persisting: after a restart everything at or below it counts as
/// seen, which errs on the safe side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplayWindow {
    high: u64,
    window: u64,
}

impl ReplayWindow {
    /// A window whose mark is `high` (persisted): everything at or below it counts as seen.
    pub fn starting_at(high: u64) -> Self {
        ReplayWindow {
            high,
            window: if high == 0 { 0 } else { u64::MAX },
        }
    }

    /// The highest sequence seen.
    pub fn high_water(&self) -> u64 {
        self.high
    }

    /// Whether `sequence` was seen already (or is too old to tell).
    pub fn seen(&self, sequence: u64) -> bool {
        match self.high.checked_sub(sequence) {
            None => false,
            Some(0) => true,
            Some(age) if age > 64 => true,
            Some(age) => self.window & (1 << (age - 1)) != 0,
        }
    }

    /// Records `sequence` as seen; false (and no change) when it already was.
    pub fn accept(&mut self, sequence: u64) -> bool {
        if self.seen(sequence) {
            return false;
        }
        let high = self.high;
        if sequence > high {
            let shift = sequence - high;
            self.window = if shift > 64 {
                0
            } else {
                // The old mark becomes a seen sequence `shift` below the new one.
                let moved = self.window.checked_shl(shift as u32).unwrap_or(0);
                if high == 0 {
                    moved
                } else {
                    moved | (1 << (shift - 1))
                }
            };
            self.high = sequence;
        } else {
            self.window |= 1 << (high - sequence - 1);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::RackStatus;

    fn rack() -> RackId {
        RackId::new("rack-a").unwrap()
    }

    const SECRET: LinkSecret = LinkSecret([7; 32]);

    fn sealed(body: UpMessage) -> SealedMessage {
        let rack = rack();
        let sealer = Sealer {
            rack_id: &rack,
            secret: &SECRET,
            key_epoch: 0,
            version: crate::PROTOCOL_VERSION,
            nonce_prefix: [1; 16],
        };
        seal(&sealer, 5, MessageId([2; 16]), 0, body).unwrap()
    }

    #[test]
    fn a_sealed_message_opens_on_its_own_topic() {
        let frame = sealed(UpMessage::Status(RackStatus::Online));
        let opened: Opened<UpMessage> =
            open(&frame.topic, &frame.payload, |_, _| Ok(&SECRET)).unwrap();
        assert_eq!(opened.header.sequence, 5);
        assert_eq!(opened.envelope.body, UpMessage::Status(RackStatus::Online));
    }

    #[test]
    fn a_message_on_another_channel_or_direction_or_key_is_refused() {
        let frame = sealed(UpMessage::Status(RackStatus::Offline));
        let hello_topic = frame.topic.replace("/status", "/hello");
        let moved = open::<UpMessage>(&hello_topic, &frame.payload, |_, _| Ok(&SECRET));
        assert_eq!(moved.unwrap_err().label(), "channel_mismatch");
        let down_topic = frame.topic.replace("/up/status", "/down/snapshot");
        let reflected = open::<DownMessage>(&down_topic, &frame.payload, |_, _| Ok(&SECRET));
        assert_eq!(reflected.unwrap_err().label(), "rack_mismatch");
        let other = LinkSecret([8; 32]);
        let forged = open::<UpMessage>(&frame.topic, &frame.payload, |_, _| Ok(&other));
        assert_eq!(forged.unwrap_err().label(), "forged");
        let wrong_direction = open::<UpMessage>(&down_topic, &frame.payload, |_, _| Ok(&SECRET));
        assert_eq!(wrong_direction.unwrap_err().label(), "bad_topic");
    }

    #[test]
    fn the_window_accepts_reordered_frames_once_and_refuses_old_ones() {
        let mut window = ReplayWindow::default();
        assert!(window.accept(10));
        assert!(window.accept(8), "slightly out of order");
        assert!(!window.accept(8), "duplicate");
        assert!(!window.accept(10), "duplicate of the mark");
        assert!(window.accept(100));
        assert!(!window.accept(30), "older than the window");
        assert!(window.accept(99));
        assert_eq!(window.high_water(), 100);
        let restarted = ReplayWindow::starting_at(100);
        assert!(
            restarted.seen(99),
            "below the persisted mark counts as seen"
        );
    }
}
