//! Raw bytes from the broker -> `Envelope::<DownMessage>::decode`.
//!
//! Beyond "never panics": whatever decodes re-encodes to a canonical form
//! that is no longer than the input and decodes back to the same value.
#![no_main]

use edgemetal_protocol::{DownMessage, Envelope};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = Envelope::<DownMessage>::decode(data) {
        let again = envelope.encode().expect("a decoded envelope re-encodes");
        assert!(
            again.len() <= data.len(),
            "canonical encoding longer than the input"
        );
        assert_eq!(
            Envelope::<DownMessage>::decode(&again).as_ref(),
            Ok(&envelope)
        );
    }
});
