//! Structured property target: the input chooses a secret, a frame header, a
//! nonce prefix, a bit to flip and the plaintext; the target seals, parses
//! and opens and checks that
//!   * sealing a well-formed header never fails;
//!   * parse gives back exactly the header, nonce prefix and a ciphertext of
//!     plaintext + 16 bytes, or `UnsupportedVersion` for a foreign version;
//!   * open gives back exactly the plaintext;
//!   * the frame does not open under another secret, nor reflected into the
//!     other direction, nor with any single bit of the wire bytes flipped
//!     (unless the flip leaves the parsed frame unchanged).
#![no_main]

use edgemetal_protocol::seal::{self, FrameHeader, LinkSecret, OpenError};
use edgemetal_protocol::{Direction, RackId, PROTOCOL_VERSION, SUPPORTED_VERSIONS};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

const RACK_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-";

struct Case<'a> {
    secret: LinkSecret,
    header: FrameHeader,
    nonce_prefix: [u8; 16],
    flip_bit: u32,
    plaintext: &'a [u8],
}

fn case(data: &[u8]) -> Result<Case<'_>> {
    let u = &mut Unstructured::new(data);
    let secret = LinkSecret(u.arbitrary()?);
    // Mostly the version this build speaks, so most inputs get past parse.
    let version = if u.ratio(7, 8)? {
        PROTOCOL_VERSION
    } else {
        u.arbitrary()?
    };
    let rack_len = u.int_in_range(1..=64usize)?;
    let mut rack = String::with_capacity(rack_len);
    for _ in 0..rack_len {
        rack.push(*u.choose(RACK_ALPHABET)? as char);
    }
    let header = FrameHeader {
        version,
        rack_id: RackId::new(&rack).expect("built from the rack id alphabet"),
        direction: if u.arbitrary()? {
            Direction::Up
        } else {
            Direction::Down
        },
        key_epoch: u.arbitrary()?,
        sequence: u.arbitrary()?,
    };
    let nonce_prefix = u.arbitrary()?;
    let flip_bit = u.arbitrary()?;
    let plaintext = u.peek_bytes(u.len()).unwrap_or_default();
    Ok(Case {
        secret,
        header,
        nonce_prefix,
        flip_bit,
        plaintext,
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(c) = case(data) else { return };
    let wire = seal::seal(&c.secret, c.header.clone(), c.nonce_prefix, c.plaintext)
        .expect("sealing a valid header never fails");

    let frame = match seal::parse(&wire) {
        Ok(frame) => frame,
        Err(OpenError::UnsupportedVersion(v)) => {
            assert_eq!(v, c.header.version);
            assert!(!SUPPORTED_VERSIONS.contains(&v));
            return;
        }
        Err(e) => panic!("our own frame does not parse: {e:?}"),
    };
    assert!(SUPPORTED_VERSIONS.contains(&c.header.version));
    assert_eq!(frame.header, c.header);
    assert_eq!(frame.nonce_prefix, c.nonce_prefix);
    assert_eq!(frame.ciphertext.len(), c.plaintext.len() + 16);

    assert_eq!(seal::open(&c.secret, &frame).as_deref(), Ok(c.plaintext));

    let mut other = c.secret.clone();
    other.0[0] ^= 1;
    assert_eq!(
        seal::open(&other, &frame),
        Err(OpenError::Forged),
        "opened under another secret"
    );

    let mut reflected = frame.clone();
    reflected.header.direction = match frame.header.direction {
        Direction::Up => Direction::Down,
        Direction::Down => Direction::Up,
    };
    assert_eq!(
        seal::open(&c.secret, &reflected),
        Err(OpenError::Forged),
        "reflected frame opened"
    );

    let mut flipped = wire.clone();
    let bit = c.flip_bit as usize % (8 * flipped.len());
    flipped[bit / 8] ^= 1 << (bit % 8);
    if let Ok(tampered) = seal::parse(&flipped) {
        if tampered != frame {
            assert_eq!(
                seal::open(&c.secret, &tampered),
                Err(OpenError::Forged),
                "frame with bit {bit} flipped still opens"
            );
        }
    }
});
