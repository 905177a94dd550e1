//! Checks what arrives from the broker: topic, seal, version, channel. Pure
//! apart from the keyring lookup; the replay check (which needs the store)
//! is the caller's, with the sequence returned here.

use edgemetal_protocol::seal::{self, OpenError};
use edgemetal_protocol::{Direction, Envelope, RackId, Topic, UpMessage};

use super::keyring::Keyring;

/// A message from a rack that passed every check but the replay check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The rack whose topic and key it came with.
    pub rack_id: RackId,
    /// The decoded envelope.
    pub envelope: Envelope<UpMessage>,
    /// Delivered from the broker's retained store (on subscribe), not live.
    pub retained: bool,
    /// The frame's sequence number, for the replay check.
    pub sequence: u64,
    /// The frame's key epoch (the pending one proves a rotation took).
    pub key_epoch: u32,
}

/// Why a payload was dropped; each is a metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The topic is not in the scheme, or is a downward topic.
    #[error("unexpected topic: {0}")]
    Topic(String),
    /// The payload's protocol version is not one the region speaks.
    #[error("unsupported protocol version: {0}")]
    UnsupportedVersion(String),
    /// The payload does not decode.
    #[error("undecodable payload: {0}")]
    Malformed(String),
    /// The frame claims another rack than the topic, or the wrong direction.
    #[error("frame sealed for rack {claimed} arrived on rack {topic}'s topic")]
    RackMismatch {
        /// Rack in the topic.
        topic: RackId,
        /// Rack the frame claims.
        claimed: RackId,
    },
    /// No enrolled rack has this id.
    #[error("rack {0} is not enrolled")]
    UnknownRack(RackId),
    /// The rack was revoked.
    #[error("rack {0} is revoked")]
    Revoked(RackId),
    /// The seal did not verify: forged, tampered, or another rack's key.
    #[error("forged or tampered frame claiming rack {0}")]
    Forged(RackId),
    /// The message does not belong on the channel it arrived on.
    #[error("a {got:?} message on the {topic_channel:?} channel")]
    ChannelMismatch {
        /// Channel named by the topic.
        topic_channel: edgemetal_protocol::Channel,
        /// Channel the message belongs on.
        got: edgemetal_protocol::Channel,
    },
}

impl Rejection {
    /// A short, stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::Topic(_) => "bad_topic",
            Rejection::UnsupportedVersion(_) => "unsupported_version",
            Rejection::Malformed(_) => "malformed",
            Rejection::RackMismatch { .. } => "rack_mismatch",
            Rejection::UnknownRack(_) => "unknown_rack",
            Rejection::Revoked(_) => "revoked",
            Rejection::Forged(_) => "forged",
            Rejection::ChannelMismatch { .. } => "channel_mismatch",
        }
    }
}

/// Checks, opens and decodes one publish received on the region's subscription.
pub fn decode(
    keyring: &Keyring,
    topic: &str,
    payload: &[u8],
    retained: bool,
) -> Result<Inbound, Rejection> {
    let parsed = Topic::parse(topic).map_err(|e| Rejection::Topic(e.to_string()))?;
    if parsed.direction() != Direction::Up {
        return Err(Rejection::Topic(format!("{topic} is not an upward topic")));
    }
    let frame = seal::parse(payload).map_err(|e| match e {
        OpenError::UnsupportedVersion(v) => Rejection::UnsupportedVersion(v.to_string()),
        other => Rejection::Malformed(other.to_string()),
    })?;
    let header = &frame.header;
    if header.rack_id != parsed.rack_id || header.direction != Direction::Up {
        return Err(Rejection::RackMismatch {
            topic: parsed.rack_id,
            claimed: header.rack_id.clone(),
        });
    }
    let keys = keyring
        .get(&header.rack_id)
        .ok_or_else(|| Rejection::UnknownRack(header.rack_id.clone()))?;
    if keys.revoked {
        return Err(Rejection::Revoked(header.rack_id.clone()));
    }
    let secret = keys
        .secret_for(header.key_epoch)
        .ok_or_else(|| Rejection::Forged(header.rack_id.clone()))?;
    let plaintext =
        seal::open(secret, &frame).map_err(|_| Rejection::Forged(header.rack_id.clone()))?;
    let envelope = Envelope::<UpMessage>::decode(&plaintext).map_err(|e| match e {
        edgemetal_protocol::DecodeError::UnsupportedVersion { .. } => {
            Rejection::UnsupportedVersion(e.to_string())
        }
        other => Rejection::Malformed(other.to_string()),
    })?;
    // The previous key opens only a last will sealed before a rotation; for
    // anything else it is as good as no key.
    let stale_epoch = header.key_epoch.wrapping_add(1) == keys.key_epoch;
    let is_will = matches!(
        envelope.body,
        UpMessage::Status(edgemetal_protocol::RackStatus::Offline)
    );
    if stale_epoch && !is_will {
        return Err(Rejection::Forged(header.rack_id.clone()));
    }
    let got = envelope.body.channel();
    if got != parsed.channel {
        return Err(Rejection::ChannelMismatch {
            topic_channel: parsed.channel,
            got,
        });
    }
    if let UpMessage::Hello(hello) = &envelope.body {
        if hello.rack_id != parsed.rack_id {
            return Err(Rejection::RackMismatch {
                topic: parsed.rack_id,
                claimed: hello.rack_id.clone(),
            });
        }
    }
    Ok(Inbound {
        rack_id: parsed.rack_id,
        envelope,
        retained,
        sequence: frame.header.sequence,
        key_epoch: frame.header.key_epoch,
    })
}
