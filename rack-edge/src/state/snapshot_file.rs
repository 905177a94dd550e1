//! The last applied configuration snapshot, persisted so that a restart while
//! the region is unreachable serves exactly what was served before.
//!
//! The file holds the snapshot in its link envelope, so it carries the
//! protocol version it was encoded in.

use std::path::{Path, PathBuf};

use edgemetal_protocol::{ConfigSnapshot, DownMessage, Envelope, MessageId};

use super::atomic_file;

/// Why the persisted snapshot could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    /// Reading or writing failed.
    #[error("snapshot file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file does not decode (corrupt, or written by an unknown version).
    #[error("snapshot file {path} does not decode: {source}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The error.
        source: edgemetal_protocol::DecodeError,
    },
    /// The snapshot could not be encoded.
    #[error("cannot encode snapshot: {0}")]
    Encode(#[from] edgemetal_protocol::envelope::EncodeError),
}

/// The on-disk home of the applied snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    path: PathBuf,
}

impl SnapshotFile {
    /// The snapshot file in `state_dir`.
    pub fn in_dir(state_dir: &Path) -> Self {
        SnapshotFile {
            path: state_dir.join("snapshot.bin"),
        }
    }

    /// The last persisted snapshot, or `None` on first start.
    pub fn load(&self) -> Result<Option<ConfigSnapshot>, SnapshotFileError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(SnapshotFileError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let envelope = Envelope::<DownMessage>::decode(&bytes).map_err(|source| {
            SnapshotFileError::Decode {
                path: self.path.clone(),
                source,
            }
        })?;
        match envelope.body {
            DownMessage::SnapshotV5(snapshot) => Ok(Some(snapshot)),
            // Written before the rack spoke v5.
            DownMessage::Snapshot(snapshot) => Ok(Some(snapshot.into())),
            // Only snapshots are ever written here; anything else is not ours.
            _ => Ok(None),
        }
    }

    /// Persists `snapshot` atomically and durably.
    pub fn store(&self, snapshot: &ConfigSnapshot) -> Result<(), SnapshotFileError> {
        let bytes = Envelope::new(
            MessageId([0; 16]),
            0,
            DownMessage::SnapshotV5(snapshot.clone()),
        )
        .encode()?;
        atomic_file::write(&self.path, &bytes).map_err(|source| SnapshotFileError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgemetal_protocol::Generation;

    #[test]
    fn round_trips_and_reports_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::in_dir(dir.path());
        assert!(file.load().unwrap().is_none());
        let snapshot = ConfigSnapshot {
            boot_resources: Vec::new(),
            dns: Default::default(),
            generation: Generation(7),
            subnets: vec![],
            gateway: Default::default(),
            machine_boot: Default::default(),
        };
        file.store(&snapshot).unwrap();
        assert_eq!(file.load().unwrap(), Some(snapshot));
        std::fs::write(dir.path().join("snapshot.bin"), b"\x01garbage").unwrap();
        assert!(matches!(file.load(), Err(SnapshotFileError::Decode { .. })));
    }
}
