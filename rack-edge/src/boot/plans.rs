//! Deploy and release plans (protocol v3): what the installer or eraser of
//! a machine is told, held beside the machine's boot intent and on disk, so
//! the whole run (installer, first boot of the installed system, eraser) is
//! answered by the rack alone.
//!
//! A run the rack saw finish (its results accepted) is marked finished: the
//! machine then boots from its disk even while the region, not yet told,
//! still says "deploy". Without that the installer's own reboot would
//! network-boot into the installer again, forever if the region is down.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use edgemetal_protocol::{MacAddress, Plan};
use serde::{Deserialize, Serialize};

/// One machine's plan and how far the rack saw it get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldPlan {
    /// The plan.
    pub plan: Plan,
    /// The token of the run it belongs to (the intent's metadata token).
    pub token: String,
    /// The run's results were accepted: boot the machine from disk.
    pub finished: bool,
}

/// The plans of the machines the rack serves.
pub struct Plans {
    path: PathBuf,
    held: Mutex<HashMap<MacAddress, HeldPlan>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Plans {
    /// Loads the held plans from `state_dir`.
    pub fn open(state_dir: &Path) -> Self {
        let path = state_dir.join("boot-plans.json");
        let held = std::fs::read(&path)
            .ok()
            .and_then(|bytes| {
                serde_json::from_slice::<Vec<(MacAddress, HeldPlan)>>(&bytes)
                    .map_err(
                        |error| tracing::warn!(%error, "unreadable boot plans; starting without"),
                    )
                    .ok()
            })
            .map(|entries| entries.into_iter().collect())
            .unwrap_or_default();
        Plans {
            path,
            held: Mutex::new(held),
        }
    }

    /// The plan of `mac`, if it has one.
    pub fn get(&self, mac: MacAddress) -> Option<HeldPlan> {
        lock(&self.held).get(&mac).cloned()
    }

    /// Whether the run of `mac` with `token` finished on this rack.
    pub fn finished(&self, mac: MacAddress, token: &str) -> bool {
        lock(&self.held)
            .get(&mac)
            .is_some_and(|held| held.finished && held.token == token)
    }

    /// Takes the plans of newly accepted intents: `accepted` maps each
    /// machine whose intent was taken to its token (if it has metadata);
    /// `plans` are the batch's. A taken intent without a plan drops the one
    /// held; one with the same run's plan keeps its finished mark. With
    /// `keep_only`, plans of machines not named are dropped (a full batch).
    pub fn take(
        &self,
        accepted: &HashMap<MacAddress, Option<String>>,
        plans: Vec<edgemetal_protocol::MachinePlan>,
        keep_only: Option<&HashSet<MacAddress>>,
    ) -> bool {
        let mut incoming: HashMap<MacAddress, Plan> =
            plans.into_iter().map(|p| (p.mac, p.plan)).collect();
        let mut changed = false;
        {
            let mut held = lock(&self.held);
            if let Some(named) = keep_only {
                let before = held.len();
                held.retain(|mac, _| named.contains(mac));
                changed |= held.len() != before;
            }
            for (mac, token) in accepted {
                let next = match (incoming.remove(mac), token) {
                    (Some(plan), Some(token)) => {
                        let finished = held
                            .get(mac)
                            .is_some_and(|old| old.finished && &old.token == token);
                        Some(HeldPlan {
                            plan,
                            token: token.clone(),
                            finished,
                        })
                    }
                    _ => None,
                };
                let before = held.get(mac).cloned();
                match next {
                    Some(plan) => {
                        held.insert(*mac, plan);
                    }
                    None => {
                        held.remove(mac);
                    }
                }
                changed |= held.get(mac) != before.as_ref();
            }
        }
        if changed {
            self.persist();
        }
        changed
    }

    /// Marks the run of `mac` with `token` finished; false if it is not held.
    pub fn finish(&self, mac: MacAddress, token: &str) -> bool {
        let marked = {
            let mut held = lock(&self.held);
            match held.get_mut(&mac) {
                Some(plan) if plan.token == token => {
                    plan.finished = true;
                    true
                }
                _ => false,
            }
        };
        if marked {
            self.persist();
        }
        marked
    }

    fn persist(&self) {
        let mut entries: Vec<(MacAddress, HeldPlan)> = lock(&self.held)
            .iter()
            .map(|(mac, plan)| (*mac, plan.clone()))
            .collect();
        entries.sort_by_key(|(mac, _)| *mac);
        // Plans carry user data and the run's token: owner-only.
        let written = serde_json::to_vec(&entries)
            .map_err(std::io::Error::other)
            .and_then(|bytes| crate::state::atomic_file::write_private(&self.path, &bytes));
        if let Err(error) = written {
            tracing::warn!(%error, "cannot persist boot plans");
        }
    }
}
