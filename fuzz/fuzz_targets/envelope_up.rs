//! Raw bytes from the broker -> `Envelope::<UpMessage>::decode`.
//!
//! Beyond "never panics": whatever decodes re-encodes to a canonical form
//! that is no longer than the input and decodes back to the same value.
#![no_main]

use edgemetal_protocol::{Envelope, UpMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = Envelope::<UpMessage>::decode(data) {
        let again = envelope.encode().expect("a decoded envelope re-encodes");
        assert!(
            again.len() <= data.len(),
            "canonical encoding longer than the input"
        );
        assert_eq!(
            Envelope::<UpMessage>::decode(&again).as_ref(),
            Ok(&envelope)
        );
    }
});
