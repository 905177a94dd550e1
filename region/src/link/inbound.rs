//! Checks what arrives from the broker: topic, seal, version, channel. Pure
//! apart from the keyring lookup; the replay check (which needs the store)
//! is the caller's, with the sequence returned here.

use edgemetal_protocol::frame::{self, FrameError};
use edgemetal_protocol::{Envelope, RackId, UpMessage};

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

/// Checks, opens and decodes one publish received on the region's
/// subscription, with the frame codec both ends share.
pub fn decode(
    keyring: &Keyring,
    topic: &str,
    payload: &[u8],
    retained: bool,
) -> Result<Inbound, Rejection> {
    // Region-only refusals (unknown, revoked) are noted here, as the codec
    // only knows whether a key opened the frame.
    let mut refused = None;
    let mut rack_keys = None;
    let opened = frame::open::<UpMessage>(topic, payload, |rack_id, epoch| {
        let Some(keys) = keyring.get(rack_id) else {
            refused = Some(Rejection::UnknownRack(rack_id.clone()));
            return Err(FrameError::Forged(rack_id.clone()));
        };
        if keys.revoked {
            refused = Some(Rejection::Revoked(rack_id.clone()));
            return Err(FrameError::Forged(rack_id.clone()));
        }
        rack_keys
            .insert(keys)
            .secret_for(epoch)
            .ok_or_else(|| FrameError::Forged(rack_id.clone()))
    });
    let opened = opened.map_err(|error| refused.take().unwrap_or_else(|| error.into()))?;
    let keys = rack_keys.expect("the codec asked for the key before opening");
    let header = &opened.header;
    // The previous key opens only a last will sealed before a rotation; for
    // anything else it is as good as no key.
    let stale_epoch = header.key_epoch.wrapping_add(1) == keys.key_epoch;
    let is_will = matches!(
        opened.envelope.body,
        UpMessage::Status(edgemetal_protocol::RackStatus::Offline)
    );
    if stale_epoch && !is_will {
        return Err(Rejection::Forged(header.rack_id.clone()));
    }
    if let UpMessage::Hello(hello) = &opened.envelope.body {
        if hello.rack_id != opened.rack_id {
            return Err(Rejection::RackMismatch {
                topic: opened.rack_id,
                claimed: hello.rack_id.clone(),
            });
        }
    }
    Ok(Inbound {
        sequence: header.sequence,
        key_epoch: header.key_epoch,
        rack_id: opened.rack_id,
        envelope: opened.envelope,
        retained,
    })
}

impl From<FrameError> for Rejection {
    fn from(error: FrameError) -> Self {
        match error {
            FrameError::Topic(detail) => Rejection::Topic(detail),
            FrameError::UnsupportedVersion(detail) => Rejection::UnsupportedVersion(detail),
            FrameError::RackMismatch { topic, claimed } => {
                Rejection::RackMismatch { topic, claimed }
            }
            FrameError::Forged(rack) => Rejection::Forged(rack),
            FrameError::ChannelMismatch { topic_channel, got } => {
                Rejection::ChannelMismatch { topic_channel, got }
            }
            FrameError::Malformed(_) | FrameError::WrongEpoch(_) | FrameError::Seal(_) => {
                Rejection::Malformed(error.to_string())
            }
        }
    }
}
