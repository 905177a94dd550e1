//! Raw bytes from the broker -> `seal::parse` -> `seal::open` under a fixed
//! secret -> decode the plaintext as either envelope direction.
//!
//! Mutated frames essentially never authenticate, so the envelope decoders
//! are reached only by the (valid, sealed) seeds themselves; this target
//! exercises the frame parser and the open path on hostile input. The
//! decoders proper are covered by `envelope_up` / `envelope_down`.
#![no_main]

use edgemetal_fuzz::FUZZ_SECRET;
use edgemetal_protocol::seal::{self, OpenError};
use edgemetal_protocol::{DownMessage, Envelope, UpMessage, SUPPORTED_VERSIONS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = seal::parse(data) else { return };
    assert!(SUPPORTED_VERSIONS.contains(&frame.header.version));
    match seal::open(&FUZZ_SECRET, &frame) {
        Ok(plaintext) => {
            assert_eq!(plaintext.len() + 16, frame.ciphertext.len());
            let _ = Envelope::<UpMessage>::decode(&plaintext);
            let _ = Envelope::<DownMessage>::decode(&plaintext);
        }
        Err(OpenError::Forged) => {}
        Err(other) => panic!("open of a parsed frame failed with {other:?}, not Forged"),
    }
});
