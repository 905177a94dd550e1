//! What each machine boots, as the region decides it: asked over the link
//! when a machine fetches its boot configuration, remembered per machine
//! (on disk) so that machines still boot when the region is unreachable.
//! A machine never seen before gets the enlistment image from the snapshot.
//! Each answer may carry the machine's metadata (with its token), which the
//! metadata service serves; it is remembered the same way, in a private file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use edgemetal_protocol::{
    BootAnswer, BootDecision, BootQuery, BootResourceKind, ConfigSnapshot, EphemeralBoot,
    MacAddress, MachineMetadata,
};
use tokio::sync::{mpsc, oneshot, watch};

/// How long a machine's boot waits for the region before using what the rack remembers.
pub const REGION_ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// The image name machines boot to enlist and commission.
const EPHEMERAL_IMAGE: &str = "ephemeral";

/// Per-machine boot decisions.
pub struct Decisions {
    path: PathBuf,
    metadata_path: PathBuf,
    known: Mutex<HashMap<MacAddress, BootDecision>>,
    metadata: Mutex<HashMap<MacAddress, MachineMetadata>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<BootAnswer>>>,
    next_id: AtomicU64,
    queries: mpsc::UnboundedSender<BootQuery>,
    snapshots: watch::Receiver<Option<ConfigSnapshot>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Decisions {
    /// Loads the remembered decisions from `state_dir`; queries for the
    /// region go to `queries` (the link sends them).
    pub fn open(
        state_dir: &Path,
        queries: mpsc::UnboundedSender<BootQuery>,
        snapshots: watch::Receiver<Option<ConfigSnapshot>>,
    ) -> Self {
        let path = state_dir.join("boot-decisions.json");
        let known: HashMap<MacAddress, BootDecision> = std::fs::read(&path)
            .ok()
            .and_then(|bytes| {
                serde_json::from_slice::<Vec<(MacAddress, BootDecision)>>(&bytes).ok()
            })
            .map(|entries| entries.into_iter().collect())
            .unwrap_or_default();
        let metadata_path = state_dir.join("machine-metadata.json");
        let metadata: HashMap<MacAddress, MachineMetadata> = std::fs::read(&metadata_path)
            .ok()
            .and_then(|bytes| {
                serde_json::from_slice::<Vec<(MacAddress, MachineMetadata)>>(&bytes).ok()
            })
            .map(|entries| entries.into_iter().collect())
            .unwrap_or_default();
        Decisions {
            path,
            metadata_path,
            known: Mutex::new(known),
            metadata: Mutex::new(metadata),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            queries,
            snapshots,
        }
    }

    /// Asks the region what `mac` boots; falls back to [`Decisions::remembered`].
    pub async fn decide(&self, mac: MacAddress, arch: Option<u16>) -> BootDecision {
        match self.ask(mac, arch).await {
            Some(answer) => answer.decision,
            None => {
                tracing::info!(%mac, "region did not answer; booting the remembered decision");
                self.remembered(mac)
            }
        }
    }

    /// The metadata of the machine `mac`: what is remembered (refreshed in
    /// the background, so a cut link does not delay a known machine), else
    /// the region's answer.
    pub async fn metadata(&self, mac: MacAddress) -> Option<MachineMetadata> {
        if let Some(known) = lock(&self.metadata).get(&mac).cloned() {
            self.refresh(mac);
            return Some(known);
        }
        self.ask(mac, None).await.and_then(|answer| answer.metadata)
    }

    /// The machine whose current metadata holds `token`, compared in
    /// constant time so a wrong guess learns nothing from timing.
    pub fn by_token(&self, token: &str) -> Option<(MacAddress, MachineMetadata)> {
        lock(&self.metadata)
            .iter()
            .find(|(_, metadata)| constant_time_eq(metadata.token.as_bytes(), token.as_bytes()))
            .map(|(mac, metadata)| (*mac, metadata.clone()))
    }

    /// Asks the region about `mac`; `None` when it does not answer in time.
    async fn ask(&self, mac: MacAddress, arch: Option<u16>) -> Option<BootAnswer> {
        let request_id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (waiter, answer) = oneshot::channel();
        lock(&self.pending).insert(request_id, waiter);
        let asked = self.queries.send(BootQuery {
            request_id,
            mac,
            arch,
        });
        let decision = match asked {
            Ok(()) => tokio::time::timeout(REGION_ANSWER_TIMEOUT, answer)
                .await
                .ok()
                .and_then(Result::ok),
            Err(_) => None,
        };
        lock(&self.pending).remove(&request_id);
        decision
    }

    /// Asks the region about `mac` without waiting; its answer updates what
    /// [`Decisions::remembered`] returns.
    pub fn refresh(&self, mac: MacAddress) {
        let request_id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let _ = self.queries.send(BootQuery {
            request_id,
            mac,
            arch: None,
        });
    }

    /// The last decision for `mac`, or the enlistment image for a machine never seen.
    pub fn remembered(&self, mac: MacAddress) -> BootDecision {
        if let Some(decision) = lock(&self.known).get(&mac) {
            return decision.clone();
        }
        self.enlistment()
    }

    fn enlistment(&self) -> BootDecision {
        let snapshot = self.snapshots.borrow();
        let resources = snapshot
            .as_ref()
            .map(|s| s.boot_resources.as_slice())
            .unwrap_or_default();
        let find = |kind| {
            resources
                .iter()
                .find(|r| r.name == EPHEMERAL_IMAGE && r.architecture == "amd64" && r.kind == kind)
                .map(|r| r.sha256)
        };
        match (
            find(BootResourceKind::Kernel),
            find(BootResourceKind::Initrd),
        ) {
            (Some(kernel), Some(initrd)) => BootDecision::Ephemeral(EphemeralBoot {
                purpose: "enlist".into(),
                kernel,
                initrd,
                squashfs: find(BootResourceKind::Squashfs),
                cmdline: "console=tty0 console=ttyS0,115200 edgemetal.purpose=enlist".into(),
            }),
            _ => BootDecision::LocalDisk,
        }
    }

    /// Takes the region's answer: hands it to the waiting boot and remembers it.
    pub fn answered(&self, answer: BootAnswer) {
        let changed = {
            let mut known = lock(&self.known);
            known.insert(answer.mac, answer.decision.clone()) != Some(answer.decision.clone())
        };
        if changed {
            self.persist();
        }
        let metadata_changed = {
            let mut metadata = lock(&self.metadata);
            match &answer.metadata {
                Some(new) => metadata.insert(answer.mac, new.clone()).as_ref() != Some(new),
                None => metadata.remove(&answer.mac).is_some(),
            }
        };
        if metadata_changed {
            self.persist_metadata();
        }
        if let Some(waiter) = lock(&self.pending).remove(&answer.request_id) {
            let _ = waiter.send(answer);
        }
    }

    fn persist_metadata(&self) {
        let entries: Vec<(MacAddress, MachineMetadata)> = lock(&self.metadata)
            .iter()
            .map(|(mac, metadata)| (*mac, metadata.clone()))
            .collect();
        // Tokens are secrets: owner-only.
        let written = serde_json::to_vec(&entries)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                crate::state::atomic_file::write_private(&self.metadata_path, &bytes)
            });
        if let Err(error) = written {
            tracing::warn!(%error, "cannot persist machine metadata");
        }
    }

    fn persist(&self) {
        let entries: Vec<(MacAddress, BootDecision)> = lock(&self.known)
            .iter()
            .map(|(mac, decision)| (*mac, decision.clone()))
            .collect();
        let written = serde_json::to_vec(&entries)
            .map_err(std::io::Error::other)
            .and_then(|bytes| crate::state::atomic_file::write(&self.path, &bytes));
        if let Err(error) = written {
            tracing::warn!(%error, "cannot persist boot decisions");
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddress = MacAddress([2, 0, 0, 0, 0, 1]);

    #[tokio::test]
    async fn an_answer_is_used_remembered_across_restarts_and_used_when_the_region_is_silent() {
        let dir = tempfile::tempdir().unwrap();
        let (_snapshots_tx, snapshots) = watch::channel(None);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let decisions = std::sync::Arc::new(Decisions::open(dir.path(), tx, snapshots.clone()));
        let region = decisions.clone();
        tokio::spawn(async move {
            let query: BootQuery = rx.recv().await.unwrap();
            region.answered(BootAnswer {
                request_id: query.request_id,
                mac: query.mac,
                decision: BootDecision::LocalDisk,
                metadata: None,
            });
        });
        assert_eq!(decisions.decide(MAC, None).await, BootDecision::LocalDisk);

        // A restart with no region: the remembered answer.
        let (tx, _rx) = mpsc::unbounded_channel();
        let restarted = Decisions::open(dir.path(), tx, snapshots);
        assert_eq!(restarted.remembered(MAC), BootDecision::LocalDisk);
    }
}
