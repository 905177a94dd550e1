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
    /// The shared frame codec refused it (topic, version, encoding, rack,
    /// seal, channel).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// No enrolled rack has this id.
    #[error("rack {0} is not enrolled")]
    UnknownRack(RackId),
    /// The rack was revoked.
    #[error("rack {0} is revoked")]
    Revoked(RackId),
}

impl Rejection {
    /// A short, stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::Frame(error) => error.label(),
            Rejection::UnknownRack(_) => "unknown_rack",
            Rejection::Revoked(_) => "revoked",
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
        return Err(FrameError::Forged(header.rack_id.clone()).into());
    }
    if let UpMessage::Hello(hello) = &opened.envelope.body {
        if hello.rack_id != opened.rack_id {
            return Err(FrameError::RackMismatch {
                topic: opened.rack_id,
                claimed: hello.rack_id.clone(),
            }
            .into());
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
