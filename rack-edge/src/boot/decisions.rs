//! What each machine boots, answered at once from what the rack holds: the
//! boot intents the region pushes ahead of every boot (protocol v2), kept on
//! disk so machines boot the same when the region is unreachable or the
//! rack restarts. A machine never seen gets the enlistment image for its
//! architecture at once, and the region is told without waiting for it.
//!
//! Nothing here waits on the region, except in the v1 compatibility mode
//! (a rack speaking protocol v1 asks, as v1 racks did): those waits are
//! counted, and the counter must stay 0 on a v2 rack.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edgemetal_protocol::{
    Architecture, BootAnswer, BootDecision, BootIntent, BootQuery, BootResourceKind,
    ConfigSnapshot, EphemeralBoot, IntentBatch, MacAddress, MachineMetadata, PlannedIntents,
};

use super::plans::{HeldPlan, Plans};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot, watch};

/// How long a v1-mode boot waits for the region before using what the rack holds.
pub const REGION_ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// The image name machines boot to enlist and commission.
const EPHEMERAL_IMAGE: &str = "ephemeral";

type Labels = Vec<(&'static str, String)>;

/// Where each boot-path answer came from, on `/metrics`.
#[derive(Clone, Default)]
pub struct BootPathCounters {
    /// Boot-path answers (iPXE script, PXELINUX/GRUB file, metadata), by source:
    /// `intent` (pushed by the region), `expired` (an intent past its expiry:
    /// local disk), `enlistment` (a machine never seen), `region` (v1 mode),
    /// `finished` (a deploy or release the rack saw finish: local disk).
    pub answers: Family<Labels, Counter>,
    /// Boot-path requests that waited on the region (v1 mode only; 0 on v2).
    pub region_waits: Counter,
    /// Machines never seen that the region was told of, without waiting.
    pub unknown_reported: Counter,
}

impl BootPathCounters {
    /// Registers the counters under the rack's registry.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "boot_answers",
            "Boot-path answers, by where they came from",
            self.answers.clone(),
        );
        registry.register(
            "boot_region_waits",
            "Boot-path requests that waited on the region (0 unless in v1 mode)",
            self.region_waits.clone(),
        );
        registry.register(
            "boot_unknown_reported",
            "Machines never seen that the region was told of asynchronously",
            self.unknown_reported.clone(),
        );
    }

    fn answered_from(&self, source: &'static str) {
        self.answers
            .get_or_create(&vec![("source", source.to_string())])
            .inc();
    }

    /// How many answers came from `source`.
    pub fn answers_from(&self, source: &'static str) -> u64 {
        self.answers
            .get_or_create(&vec![("source", source.to_string())])
            .get()
    }
}

/// Per-machine boot intents.
pub struct Decisions {
    path: PathBuf,
    intents: Mutex<HashMap<MacAddress, BootIntent>>,
    plans: Plans,
    queries: mpsc::UnboundedSender<BootQuery>,
    snapshots: watch::Receiver<Option<ConfigSnapshot>>,
    counters: BootPathCounters,
    /// v1 compatibility: ask the region on every script fetch, as v1 racks did.
    ask_first: bool,
    link_up: Arc<AtomicBool>,
    pending: Mutex<HashMap<u64, oneshot::Sender<BootAnswer>>>,
    next_id: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What a v1 rack kept: decisions and metadata in two files. Read once, on
/// the first start after an upgrade, as intents of generation 0.
fn read_v1_files(state_dir: &Path) -> HashMap<MacAddress, BootIntent> {
    let read = |name: &str| std::fs::read(state_dir.join(name)).ok();
    let decisions: Vec<(MacAddress, BootDecision)> = read("boot-decisions.json")
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut metadata: HashMap<MacAddress, MachineMetadata> = read("machine-metadata.json")
        .and_then(|b| serde_json::from_slice::<Vec<(MacAddress, MachineMetadata)>>(&b).ok())
        .map(|entries| entries.into_iter().collect())
        .unwrap_or_default();
    decisions
        .into_iter()
        .map(|(mac, decision)| {
            let intent = BootIntent {
                mac,
                generation: 0,
                expires_at_ms: None,
                decision,
                metadata: metadata.remove(&mac),
            };
            (mac, intent)
        })
        .collect()
}

impl Decisions {
    /// Loads the held intents from `state_dir`; notices for the region go to
    /// `queries` (the link sends them when it can).
    pub fn open(
        state_dir: &Path,
        queries: mpsc::UnboundedSender<BootQuery>,
        snapshots: watch::Receiver<Option<ConfigSnapshot>>,
        counters: BootPathCounters,
    ) -> Self {
        let path = state_dir.join("boot-intents.json");
        let intents = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Vec<BootIntent>>(&bytes)
                .map(|list| list.into_iter().map(|i| (i.mac, i)).collect())
                .unwrap_or_else(|error| {
                    tracing::warn!(%error, "unreadable boot intents; starting without");
                    HashMap::new()
                }),
            Err(_) => read_v1_files(state_dir),
        };
        Decisions {
            path,
            intents: Mutex::new(intents),
            plans: Plans::open(state_dir),
            queries,
            snapshots,
            counters,
            ask_first: false,
            link_up: Arc::new(AtomicBool::new(false)),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        }
    }

    /// v1 compatibility: ask the region on every script fetch (waits are
    /// counted; a down link fails fast), for racks that speak protocol v1.
    pub fn asking_the_region_first(mut self, link_up: Arc<AtomicBool>) -> Self {
        self.ask_first = true;
        self.link_up = link_up;
        self
    }

    /// The boot-path counters.
    pub fn counters(&self) -> &BootPathCounters {
        &self.counters
    }

    /// What `mac` boots, at once: its intent, or the enlistment image for
    /// `arch` (option 93) when the rack has never been told of it.
    pub fn decide_now(&self, mac: MacAddress, arch: Option<u16>) -> BootDecision {
        let now = now_ms();
        let held = lock(&self.intents).get(&mac).cloned();
        match held {
            Some(intent) if intent.expires_at_ms.is_some_and(|at| now > at) => {
                self.counters.answered_from("expired");
                BootDecision::LocalDisk
            }
            Some(intent) if self.run_finished(&intent) => {
                self.counters.answered_from("finished");
                BootDecision::LocalDisk
            }
            Some(intent) => {
                self.counters.answered_from("intent");
                intent.decision
            }
            None => {
                self.counters.answered_from("enlistment");
                self.report_unknown(mac, arch);
                self.enlistment(arch)
            }
        }
    }

    /// What `mac` boots. On a v2 rack this is [`Decisions::decide_now`]; in
    /// v1 mode the region is asked first (counted), unless the link is down.
    pub async fn decide(&self, mac: MacAddress, arch: Option<u16>) -> BootDecision {
        if self.ask_first && self.link_up.load(Ordering::Relaxed) {
            self.counters.region_waits.inc();
            if let Some(answer) = self.ask(mac, arch).await {
                self.counters.answered_from("region");
                return answer.decision;
            }
        }
        self.decide_now(mac, arch)
    }

    /// The metadata of `mac`, if the region issued any and it is current.
    pub fn metadata(&self, mac: MacAddress) -> Option<MachineMetadata> {
        let now = now_ms();
        let held = lock(&self.intents).get(&mac).cloned();
        match held {
            Some(intent) if intent.expires_at_ms.is_some_and(|at| now > at) => {
                self.counters.answered_from("expired");
                None
            }
            Some(intent) => {
                self.counters.answered_from("intent");
                intent.metadata
            }
            None => {
                self.report_unknown(mac, None);
                None
            }
        }
    }

    /// The machine whose current metadata holds `token`, compared in
    /// constant time so a wrong guess learns nothing from timing.
    pub fn by_token(&self, token: &str) -> Option<(MacAddress, MachineMetadata)> {
        use subtle::ConstantTimeEq;
        let now = now_ms();
        lock(&self.intents)
            .values()
            .filter(|intent| intent.expires_at_ms.is_none_or(|at| now <= at))
            .find_map(|intent| {
                let metadata = intent.metadata.as_ref()?;
                bool::from(metadata.token.as_bytes().ct_eq(token.as_bytes()))
                    .then(|| (intent.mac, metadata.clone()))
            })
    }

    /// What `mac` boots without counting an answer (boot progress reports).
    pub fn held(&self, mac: MacAddress) -> Option<BootDecision> {
        lock(&self.intents).get(&mac).map(|i| i.decision.clone())
    }

    /// Tells the region of a machine the rack holds nothing for; never waits.
    fn report_unknown(&self, mac: MacAddress, arch: Option<u16>) {
        self.counters.unknown_reported.inc();
        let request_id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let _ = self.queries.send(BootQuery {
            request_id,
            mac,
            arch,
        });
    }

    /// v1 mode: asks the region about `mac`; `None` when it does not answer in time.
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

    /// The enlistment image for a machine never seen, by its architecture.
    fn enlistment(&self, arch: Option<u16>) -> BootDecision {
        let architecture = Architecture::from_option93(arch).as_str();
        let snapshot = self.snapshots.borrow();
        let resources = snapshot
            .as_ref()
            .map(|s| s.boot_resources.as_slice())
            .unwrap_or_default();
        let find = |kind| {
            resources
                .iter()
                .find(|r| {
                    r.name == EPHEMERAL_IMAGE && r.architecture == architecture && r.kind == kind
                })
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

    /// Whether `intent` is a deploy or release run this rack saw finish.
    fn run_finished(&self, intent: &BootIntent) -> bool {
        intent
            .metadata
            .as_ref()
            .is_some_and(|m| self.plans.finished(intent.mac, &m.token))
    }

    /// The deploy or release plan of `mac`, if it has one.
    pub fn plan(&self, mac: MacAddress) -> Option<HeldPlan> {
        self.plans.get(mac)
    }

    /// Marks the run of `mac` with `token` finished (its results were
    /// queued): from now on it boots from disk until a new run.
    pub fn finish(&self, mac: MacAddress, token: &str) -> bool {
        self.plans.finish(mac, token)
    }

    /// Takes pushed intents without plans (v2).
    pub fn apply(&self, batch: IntentBatch) -> usize {
        self.apply_planned(PlannedIntents {
            batch,
            plans: Vec::new(),
        })
    }

    /// Takes pushed intents: each replaces the held one only if newer, with
    /// its plan; a full batch also forgets machines it does not name.
    /// Persisted before return.
    pub fn apply_planned(&self, planned: PlannedIntents) -> usize {
        let PlannedIntents { batch, plans } = planned;
        let mut changed = 0;
        let mut accepted = HashMap::new();
        let mut named_only = None;
        {
            let mut intents = lock(&self.intents);
            if batch.full {
                let named: std::collections::HashSet<MacAddress> =
                    batch.intents.iter().map(|i| i.mac).collect();
                let before = intents.len();
                intents.retain(|mac, _| named.contains(mac));
                changed += before - intents.len();
                named_only = Some(named);
            }
            for mac in &batch.forget {
                changed += usize::from(intents.remove(mac).is_some());
                accepted.insert(*mac, None);
            }
            for intent in batch.intents {
                let newer = intents
                    .get(&intent.mac)
                    .is_none_or(|held| intent.generation > held.generation);
                if newer {
                    let token = intent.metadata.as_ref().map(|m| m.token.clone());
                    accepted.insert(intent.mac, token);
                    intents.insert(intent.mac, intent);
                    changed += 1;
                }
            }
        }
        if changed > 0 {
            self.persist();
        }
        self.plans.take(&accepted, plans, named_only.as_ref());
        changed
    }

    /// A v1 answer: hands it to the waiting boot and holds it (generation 0:
    /// any pushed intent is newer).
    pub fn answered(&self, answer: BootAnswer) {
        let changed = {
            let mut intents = lock(&self.intents);
            let held = intents.get(&answer.mac);
            let same = held
                .is_some_and(|h| h.decision == answer.decision && h.metadata == answer.metadata);
            let pushed = held.is_some_and(|h| h.generation > 0);
            if !same && !pushed {
                intents.insert(
                    answer.mac,
                    BootIntent {
                        mac: answer.mac,
                        generation: 0,
                        expires_at_ms: None,
                        decision: answer.decision.clone(),
                        metadata: answer.metadata.clone(),
                    },
                );
            }
            !same && !pushed
        };
        if changed {
            self.persist();
        }
        if let Some(waiter) = lock(&self.pending).remove(&answer.request_id) {
            let _ = waiter.send(answer);
        }
    }

    /// How many machines the rack holds intents for.
    pub fn len(&self) -> usize {
        lock(&self.intents).len()
    }

    /// Whether the rack holds no intents.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn persist(&self) {
        let mut entries: Vec<BootIntent> = lock(&self.intents).values().cloned().collect();
        entries.sort_by_key(|i| i.mac);
        // Tokens are secrets: owner-only.
        let written = serde_json::to_vec(&entries)
            .map_err(std::io::Error::other)
            .and_then(|bytes| crate::state::atomic_file::write_private(&self.path, &bytes));
        if let Err(error) = written {
            tracing::warn!(%error, "cannot persist boot intents");
        }
    }
}

#[cfg(test)]
#[path = "decisions_tests.rs"]
mod tests;
