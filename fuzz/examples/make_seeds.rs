//! Writes the seed corpora under `fuzz/seeds/<target>/`: valid encoded
//! envelopes, and the same envelopes sealed under the fuzz secret.
//!
//!   cargo run --manifest-path fuzz/Cargo.toml --example make_seeds

use std::fs;
use std::path::{Path, PathBuf};

use edgemetal_fuzz::{down_messages, header, up_messages, FUZZ_SECRET};
use edgemetal_protocol::seal;
use edgemetal_protocol::Direction;

fn dir(root: &Path, target: &str) -> PathBuf {
    let dir = root.join(target);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let up = dir(&root, "envelope_up");
    let down = dir(&root, "envelope_down");
    let sealed = dir(&root, "sealed_open");
    let roundtrip = dir(&root, "sealed_roundtrip");
    let mut count = 0;
    let mut sequence = 0;
    let mut write = |dir: &Path, name: &str, bytes: &[u8]| {
        fs::write(dir.join(name), bytes).unwrap();
        count += 1;
    };

    let ups = up_messages()
        .into_iter()
        .map(|(n, e)| (n, Direction::Up, e.encode().unwrap()));
    let downs = down_messages()
        .into_iter()
        .map(|(n, e)| (n, Direction::Down, e.encode().unwrap()));
    for (name, direction, plain) in ups.chain(downs) {
        sequence += 1;
        let target = if direction == Direction::Up {
            &up
        } else {
            &down
        };
        write(target, name, &plain);
        let frame = seal::seal(
            &FUZZ_SECRET,
            header(direction, sequence),
            [sequence as u8; 16],
            &plain,
        )
        .unwrap();
        write(&sealed, name, &frame);
        // sealed_roundtrip reads secret, header fields, nonce prefix and flip
        // bit from the front and takes the rest as plaintext: any prefix of
        // 128 bytes followed by a real envelope makes a plausible input.
        let mut input: Vec<u8> = (0..128u8)
            .map(|b| b.wrapping_mul(37).wrapping_add(sequence as u8))
            .collect();
        input.extend_from_slice(&plain);
        write(&roundtrip, name, &input);
    }
    println!("wrote {count} seeds under {}", root.display());
}
