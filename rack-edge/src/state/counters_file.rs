//! The link's sequence counters on disk: the replay protection of both
//! directions must survive a restart.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::atomic_file;
use crate::link::session::LinkCounters;

/// Where the counters live.
#[derive(Debug, Clone)]
pub struct CountersFile {
    path: PathBuf,
}

impl CountersFile {
    /// The counters file in `state_dir`.
    pub fn in_dir(state_dir: &Path) -> Self {
        CountersFile {
            path: state_dir.join("link-counters.json"),
        }
    }

    /// The persisted counters; zero on first start.
    pub fn load(&self) -> anyhow::Result<LinkCounters> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is corrupt", self.path.display())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Ok(LinkCounters::default())
            }
            Err(error) => {
                Err(error).with_context(|| format!("cannot read {}", self.path.display()))
            }
        }
    }

    /// Persists the counters durably.
    pub fn store(&self, counters: &LinkCounters) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(counters).map_err(std::io::Error::other)?;
        atomic_file::write(&self.path, &bytes)
    }
}
