//! Decoding of what arrives from the broker: topic and payload to a typed
//! rack message, or a reason to drop it. Pure: no I/O, no store.

use edgemetal_protocol::{Envelope, RackId, Topic, UpMessage};

/// A message from a rack that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The rack whose topic it came on.
    pub rack_id: RackId,
    /// The decoded envelope.
    pub envelope: Envelope<UpMessage>,
    /// Delivered from the broker's retained store (on subscribe), not live.
    pub retained: bool,
}

/// Why a payload was dropped; each is a metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The topic is not in the scheme, or is a downward topic.
    #[error("unexpected topic: {0}")]
    Topic(String),
    /// The payload's protocol version is not one the region speaks.
    #[error("{0}")]
    UnsupportedVersion(edgemetal_protocol::DecodeError),
    /// The payload does not decode.
    #[error("undecodable payload: {0}")]
    Malformed(edgemetal_protocol::DecodeError),
    /// The message does not belong on the channel it arrived on.
    #[error("a {got:?} message on the {topic_channel:?} channel")]
    ChannelMismatch {
        /// Channel named by the topic.
        topic_channel: edgemetal_protocol::Channel,
        /// Channel the message belongs on.
        got: edgemetal_protocol::Channel,
    },
    /// A hello naming another rack than its topic.
    #[error("hello from {claimed} on rack {topic}'s topic")]
    RackMismatch {
        /// Rack in the topic.
        topic: RackId,
        /// Rack the hello claims to be.
        claimed: RackId,
    },
}

impl Rejection {
    /// A short, stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::Topic(_) => "bad_topic",
            Rejection::UnsupportedVersion(_) => "unsupported_version",
            Rejection::Malformed(_) => "malformed",
            Rejection::ChannelMismatch { .. } => "channel_mismatch",
            Rejection::RackMismatch { .. } => "rack_mismatch",
        }
    }
}

/// Checks and decodes one publish received on the region's subscription.
pub fn decode(topic: &str, payload: &[u8], retained: bool) -> Result<Inbound, Rejection> {
    let parsed = Topic::parse(topic).map_err(|e| Rejection::Topic(e.to_string()))?;
    if parsed.direction() != edgemetal_protocol::Direction::Up {
        return Err(Rejection::Topic(format!("{topic} is not an upward topic")));
    }
    let envelope = Envelope::<UpMessage>::decode(payload).map_err(|e| match e {
        edgemetal_protocol::DecodeError::UnsupportedVersion { .. } => {
            Rejection::UnsupportedVersion(e)
        }
        other => Rejection::Malformed(other),
    })?;
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgemetal_protocol::{Channel, MessageId, RackStatus};

    fn status_payload() -> Vec<u8> {
        Envelope::new(MessageId([3; 16]), 9, UpMessage::Status(RackStatus::Online))
            .encode()
            .unwrap()
    }

    #[test]
    fn accepts_a_message_on_its_channel() {
        let inbound = decode("edgemetal/v1/rack/r1/up/status", &status_payload(), false).unwrap();
        assert_eq!(inbound.rack_id.as_str(), "r1");
    }

    #[test]
    fn drops_each_kind_of_bad_input_with_its_label() {
        let cases: [(&str, &[u8], &str); 4] = [
            ("other/topic", &status_payload(), "bad_topic"),
            (
                "edgemetal/v1/rack/r1/up/status",
                &[0xff, 0xff, 0xff],
                "malformed",
            ),
            (
                "edgemetal/v1/rack/r1/up/heartbeat",
                &status_payload(),
                "channel_mismatch",
            ),
            (
                "edgemetal/v1/rack/r1/up/status",
                &[0x09, 1, 2],
                "unsupported_version",
            ),
        ];
        for (topic, payload, label) in cases {
            assert_eq!(
                decode(topic, payload, false).unwrap_err().label(),
                label,
                "{topic}"
            );
        }
        let _ = Channel::Status;
    }
}
