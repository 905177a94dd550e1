use edgemetal_protocol::seal::{self, FrameHeader, LinkSecret, OpenError};
use edgemetal_protocol::{Direction, RackId, PROTOCOL_VERSION};
use proptest::prelude::*;

fn header(rack: &str, direction: Direction, sequence: u64) -> FrameHeader {
    FrameHeader {
        version: PROTOCOL_VERSION,
        rack_id: RackId::new(rack).unwrap(),
        direction,
        key_epoch: 1,
        sequence,
    }
}

const SECRET: LinkSecret = LinkSecret([7; 32]);

#[test]
fn sealed_frames_open_only_with_the_right_key_and_header() {
    let bytes = seal::seal(&SECRET, header("a", Direction::Up, 5), [1; 16], b"hello").unwrap();
    let frame = seal::parse(&bytes).unwrap();
    assert_eq!(seal::open(&SECRET, &frame).unwrap(), b"hello");
    assert!(
        !bytes.windows(5).any(|w| w == b"hello"),
        "plaintext must not appear on the wire"
    );

    assert_eq!(
        seal::open(&LinkSecret([8; 32]), &frame),
        Err(OpenError::Forged),
        "another rack's secret"
    );
    for tamper in [
        |f: &mut seal::SealedFrame| f.header.sequence += 1,
        |f: &mut seal::SealedFrame| f.header.rack_id = RackId::new("b").unwrap(),
        |f: &mut seal::SealedFrame| f.header.direction = Direction::Down,
        |f: &mut seal::SealedFrame| f.header.key_epoch = 2,
        |f: &mut seal::SealedFrame| f.nonce_prefix[0] ^= 1,
    ] {
        let mut forged = frame.clone();
        tamper(&mut forged);
        assert_eq!(seal::open(&SECRET, &forged), Err(OpenError::Forged));
    }
}

#[test]
fn unknown_versions_and_garbage_are_typed_errors() {
    let mut h = header("a", Direction::Up, 1);
    h.version = PROTOCOL_VERSION + 1;
    let bytes = seal::seal(&SECRET, h, [0; 16], b"x").unwrap();
    assert_eq!(
        seal::parse(&bytes),
        Err(OpenError::UnsupportedVersion(PROTOCOL_VERSION + 1))
    );
    assert!(matches!(seal::parse(b""), Err(OpenError::Malformed(_))));
    assert!(matches!(
        seal::parse(b"\x01\x01a"),
        Err(OpenError::Malformed(_))
    ));
}

proptest! {
    #[test]
    fn any_flipped_bit_is_detected(bit in 0usize..(8 * 60), seq in any::<u64>()) {
        let bytes = seal::seal(&SECRET, header("rack-1", Direction::Down, seq), [3; 16], b"snapshot body").unwrap();
        let mut flipped = bytes.clone();
        let bit = bit % (8 * flipped.len());
        flipped[bit / 8] ^= 1 << (bit % 8);
        if let Ok(frame) = seal::parse(&flipped) {
            prop_assert!(seal::open(&SECRET, &frame).is_err());
        }
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(frame) = seal::parse(&bytes) {
            let _ = seal::open(&SECRET, &frame);
        }
    }
}

#[test]
fn an_over_long_varint_rewrite_is_refused() {
    let bytes = seal::seal(&SECRET, header("a", Direction::Up, 5), [1; 16], b"hello").unwrap();
    // The sequence 5 is one varint byte; the same value as 0x85 0x80 0x00 decodes too.
    let at = bytes.iter().position(|&b| b == 5).unwrap();
    let mut rewritten = bytes[..at].to_vec();
    rewritten.extend_from_slice(&[0x85, 0x80, 0x00]);
    rewritten.extend_from_slice(&bytes[at + 1..]);
    assert_eq!(seal::parse(&rewritten), Err(OpenError::NonCanonical));
}
