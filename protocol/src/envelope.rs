//! The versioned envelope around every payload on the link.
//!
//! Wire layout (postcard): `version: u16 (varint)`, `message_id: [u8; 16]`,
//! `sent_at_ms: u64 (varint)`, then the body. The version comes first so a
//! receiver can refuse an unknown version before it tries to read the body.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::types::MessageId;
use crate::SUPPORTED_VERSIONS;

/// A message as it travels on the link, with the metadata every message carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<M> {
    /// Protocol version the body is encoded in.
    pub version: u16,
    /// Unique id of this message; receivers use it to make redeliveries harmless.
    pub message_id: MessageId,
    /// Sender's wall clock when the message was created, in milliseconds since the Unix epoch.
    pub sent_at_ms: u64,
    /// The message itself.
    pub body: M,
}

/// Why a payload could not be decoded into an [`Envelope`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The payload was empty.
    #[error("empty payload")]
    Empty,
    /// The envelope names a protocol version this build does not speak.
    #[error("unsupported protocol version {got} (this build speaks {min}..={max})")]
    UnsupportedVersion {
        /// The version found in the payload.
        got: u16,
        /// Oldest version this build decodes.
        min: u16,
        /// Newest version this build decodes.
        max: u16,
    },
    /// The bytes are not a valid encoding of the expected message.
    #[error("malformed payload: {0}")]
    Malformed(postcard::Error),
    /// A valid message was followed by extra bytes.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode message: {0}")]
pub struct EncodeError(pub postcard::Error);

impl<M> Envelope<M> {
    /// Wraps `body` in an envelope of the current protocol version.
    pub fn new(message_id: MessageId, sent_at_ms: u64, body: M) -> Self {
        Envelope {
            version: crate::PROTOCOL_VERSION,
            message_id,
            sent_at_ms,
            body,
        }
    }
}

impl<M: Serialize> Envelope<M> {
    /// Encodes the envelope and its body with postcard.
    pub fn encode(&self) -> Result<alloc::vec::Vec<u8>, EncodeError> {
        postcard::to_allocvec(self).map_err(EncodeError)
    }
}

impl<M: DeserializeOwned> Envelope<M> {
    /// Decodes a payload, refusing unknown versions before reading the body.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let version = peek_version(bytes)?;
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(DecodeError::UnsupportedVersion {
                got: version,
                min: *SUPPORTED_VERSIONS.start(),
                max: *SUPPORTED_VERSIONS.end(),
            });
        }
        let (envelope, rest) =
            postcard::take_from_bytes::<Self>(bytes).map_err(DecodeError::Malformed)?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes(rest.len()));
        }
        Ok(envelope)
    }
}

/// Reads only the protocol version at the start of a payload.
pub fn peek_version(bytes: &[u8]) -> Result<u16, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    postcard::take_from_bytes::<u16>(bytes)
        .map(|(version, _)| version)
        .map_err(DecodeError::Malformed)
}
