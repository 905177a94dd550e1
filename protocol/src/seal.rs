//! End-to-end sealing of link payloads between the region and one rack.
//!
//! The broker is not trusted: every payload is an [`Envelope`](crate::Envelope)
//! sealed with XChaCha20-Poly1305 under a key only that rack and the region
//! hold. Keys are derived with HKDF-SHA256 from the rack's link secret (handed
//! over once, at enrolment), separately per direction and per key epoch, so a
//! message can never be reflected back or read under another rack's key.
//!
//! The frame header travels in clear (the receiver needs the rack id and the
//! epoch to pick a key) and is authenticated as associated data. The sequence
//! number in it is the receiver's replay check: it must grow strictly per
//! direction; the high-water mark is the receiver's to keep across restarts.
//!
//! Nonces are 24 bytes: a random per-process prefix (16 bytes) and the
//! sequence (8 bytes). XChaCha's wide nonce keeps this unique even with
//! several region replicas sharing one direction key.

use alloc::vec::Vec;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::topic::Direction;
use crate::types::RackId;
use crate::SUPPORTED_VERSIONS;

/// Length of a rack's link secret.
pub const LINK_SECRET_LEN: usize = 32;

/// The secret a rack shares with the region, from which link keys derive.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkSecret(pub [u8; LINK_SECRET_LEN]);

impl core::fmt::Debug for LinkSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Secrets never reach logs, not even through Debug.
        f.write_str("LinkSecret(..)")
    }
}

/// The clear part of a sealed frame; authenticated, not encrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameHeader {
    /// Protocol version of the frame and of the envelope inside it.
    pub version: u16,
    /// The rack whose key seals the frame.
    pub rack_id: RackId,
    /// Which way the frame travels; each direction has its own key.
    pub direction: Direction,
    /// Which generation of the rack's link secret sealed it.
    pub key_epoch: u32,
    /// Strictly increasing per direction; the replay check.
    pub sequence: u64,
}

/// A sealed payload as it travels on the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedFrame {
    /// The authenticated clear header.
    pub header: FrameHeader,
    /// Random per-process prefix; the sequence completes the nonce.
    pub nonce_prefix: [u8; 16],
    /// The encrypted envelope and its tag.
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
}

/// Why a frame could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The bytes are not a frame.
    #[error("not a sealed frame: {0}")]
    Malformed(postcard::Error),
    /// The bytes decode, but not from the one canonical encoding (e.g. an
    /// over-long varint): someone rewrote the frame on the way.
    #[error("non-canonical frame encoding")]
    NonCanonical,
    /// The frame names a protocol version this build does not speak.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u16),
    /// Authentication failed: wrong key, tampered header or ciphertext.
    #[error("authentication failed (forged, tampered, or sealed under another key)")]
    Forged,
}

/// Why a frame could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Encoding failed.
    #[error("cannot encode frame: {0}")]
    Encode(postcard::Error),
    /// The cipher refused (plaintext too large).
    #[error("cannot encrypt payload")]
    Encrypt,
}

/// The key for one direction and epoch of one rack's link.
pub fn derive_key(
    secret: &LinkSecret,
    rack_id: &RackId,
    direction: Direction,
    key_epoch: u32,
) -> [u8; 32] {
    let hkdf = Hkdf::<Sha256>::new(Some(rack_id.as_str().as_bytes()), &secret.0);
    let label: &[u8] = match direction {
        Direction::Up => b"edgemetal link v1 up",
        Direction::Down => b"edgemetal link v1 down",
    };
    let mut info = Vec::with_capacity(label.len() + 4);
    info.extend_from_slice(label);
    info.extend_from_slice(&key_epoch.to_be_bytes());
    let mut key = [0u8; 32];
    hkdf.expand(&info, &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    key
}

fn nonce(prefix: &[u8; 16], sequence: u64) -> XNonce {
    let mut bytes = [0u8; 24];
    bytes[..16].copy_from_slice(prefix);
    bytes[16..].copy_from_slice(&sequence.to_be_bytes());
    XNonce::from(bytes)
}

/// Seals `plaintext` (an encoded envelope) under the header's rack, direction and epoch.
pub fn seal(
    secret: &LinkSecret,
    header: FrameHeader,
    nonce_prefix: [u8; 16],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let key = derive_key(secret, &header.rack_id, header.direction, header.key_epoch);
    let aad = postcard::to_allocvec(&header).map_err(SealError::Encode)?;
    let cipher = XChaCha20Poly1305::new(Key::from_slice(&key));
    let ciphertext = cipher
        .encrypt(
            &nonce(&nonce_prefix, header.sequence),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| SealError::Encrypt)?;
    postcard::to_allocvec(&SealedFrame {
        header,
        nonce_prefix,
        ciphertext,
    })
    .map_err(SealError::Encode)
}

/// Parses a frame without opening it, to learn which rack and epoch sealed it.
pub fn parse(bytes: &[u8]) -> Result<SealedFrame, OpenError> {
    let (frame, rest) =
        postcard::take_from_bytes::<SealedFrame>(bytes).map_err(OpenError::Malformed)?;
    if !rest.is_empty() {
        return Err(OpenError::Malformed(
            postcard::Error::DeserializeBadEncoding,
        ));
    }
    if !SUPPORTED_VERSIONS.contains(&frame.header.version) {
        return Err(OpenError::UnsupportedVersion(frame.header.version));
    }
    // The seal authenticates the *decoded* header; postcard also accepts
    // over-long varints, so without this check a broker could rewrite the
    // bytes of a frame (not its meaning) and it would still open.
    let canonical = postcard::to_allocvec(&frame).map_err(OpenError::Malformed)?;
    if canonical != bytes {
        return Err(OpenError::NonCanonical);
    }
    Ok(frame)
}

/// Opens a parsed frame with the rack's secret; returns the envelope bytes.
pub fn open(secret: &LinkSecret, frame: &SealedFrame) -> Result<Vec<u8>, OpenError> {
    let header = &frame.header;
    let key = derive_key(secret, &header.rack_id, header.direction, header.key_epoch);
    let aad = postcard::to_allocvec(header).map_err(OpenError::Malformed)?;
    XChaCha20Poly1305::new(Key::from_slice(&key))
        .decrypt(
            &nonce(&frame.nonce_prefix, header.sequence),
            Payload {
                msg: &frame.ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| OpenError::Forged)
}
