//! The rack's id: given once, or generated on first start, then kept.

use std::path::Path;

use anyhow::Context;
use edgemetal_protocol::RackId;
use rand::RngCore;

use super::atomic_file;

const FILE_NAME: &str = "rack-id";

/// Returns the persisted rack id, creating it from `requested` or at random.
///
/// A `requested` id that differs from the persisted one is an error: silently
/// becoming another rack would orphan this one's state in the region.
pub fn load_or_create_rack_id(state_dir: &Path, requested: Option<&str>) -> anyhow::Result<RackId> {
    let path = state_dir.join(FILE_NAME);
    let requested = requested.map(RackId::new).transpose()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let stored = RackId::new(text.trim())
                .with_context(|| format!("{} holds an invalid rack id", path.display()))?;
            if let Some(requested) = requested {
                anyhow::ensure!(
                    requested == stored,
                    "this state dir belongs to rack {stored}, not {requested}; use another --state-dir"
                );
            }
            Ok(stored)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let id = match requested {
                Some(id) => id,
                None => {
                    let mut bytes = [0u8; 4];
                    rand::thread_rng().fill_bytes(&mut bytes);
                    RackId::new(&format!("rack-{}", hex::encode(bytes)))?
                }
            };
            atomic_file::write(&path, id.as_str().as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(id)
        }
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_id_is_kept_and_a_different_request_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_rack_id(dir.path(), None).unwrap();
        assert_eq!(load_or_create_rack_id(dir.path(), None).unwrap(), first);
        assert_eq!(
            load_or_create_rack_id(dir.path(), Some(first.as_str())).unwrap(),
            first
        );
        assert!(load_or_create_rack_id(dir.path(), Some("other")).is_err());
    }
}
