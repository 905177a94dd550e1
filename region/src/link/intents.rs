//! Boot intents: what each machine boots, decided by the region and pushed
//! to the racks ahead of any boot, so that no step of a boot waits on the
//! region (edge principle 1). Pure apart from the store reads.

use std::collections::{HashMap, HashSet};

use edgemetal_protocol::{
    BootIntent, DeployPlan, EraseMode, IntentBatch, MacAddress, MachinePlan, Plan, PlannedIntents,
    RackId, ReleasePlan, SecureFallback, StorageLayout,
};

use crate::boot::decision;
use crate::model::lifecycle::MachineStatus;
use crate::secrets::MasterKeys;
use crate::store::{now_ms, BootResourceRecord, Machine, RunRecord, Store, StoreError};

/// The intent of one machine, as the region decides it now. `generation` is
/// the region's clock read *before* the machine was: a decision made from
/// older state always carries a smaller generation than one made after it.
pub async fn intent_of(
    store: &Store,
    master: &MasterKeys,
    machine: &Machine,
    resources: &[BootResourceRecord],
    generation: u64,
) -> Result<BootIntent, StoreError> {
    let (decision, metadata) =
        decision::decide_with(store, master, Some(machine), None, resources).await?;
    Ok(BootIntent {
        mac: machine.mac,
        generation,
        // A commissioning run that timed out must not boot again with its
        // token; the watchdog pushes the machine's next intent anyway.
        expires_at_ms: machine.status_deadline_ms.map(|at| at.max(0) as u64),
        decision,
        metadata,
    })
}

/// The intent of the machine `machine_id` with its plan (none when it is gone).
pub async fn one(
    store: &Store,
    master: &MasterKeys,
    machine_id: &str,
) -> Result<PlannedIntents, StoreError> {
    let generation = now_ms() as u64;
    let mut planned = PlannedIntents {
        batch: IntentBatch {
            full: false,
            intents: Vec::new(),
            forget: Vec::new(),
        },
        plans: Vec::new(),
    };
    let machine = match store.get_machine(machine_id).await {
        Ok(machine) => machine,
        Err(StoreError::NotFound { .. }) => return Ok(planned),
        Err(error) => return Err(error),
    };
    let resources = store.list_boot_resources().await?;
    let intent = intent_of(store, master, &machine, &resources, generation).await?;
    planned.batch.intents.push(intent);
    if machine.status == MachineStatus::Commissioning {
        if let Some(plan) = store.commission_plan(machine_id).await? {
            planned.plans.push(MachinePlan {
                mac: machine.mac,
                plan: Plan::Commission(plan),
            });
        }
    } else if has_plan(machine.status) {
        if let Some((run, sealed)) = store.current_run(machine_id).await? {
            planned
                .plans
                .extend(plan_of(store, master, &machine, &run, &sealed, &resources).await?);
        }
    }
    Ok(planned)
}

/// Every machine's intent and plan, as the full batch a rack resyncs from.
pub async fn full(store: &Store, master: &MasterKeys) -> Result<PlannedIntents, StoreError> {
    let generation = now_ms() as u64;
    let machines = store.list_machines().await?;
    let resources = store.list_boot_resources().await?;
    let mut intents = Vec::with_capacity(machines.len());
    for machine in &machines {
        intents.push(intent_of(store, master, machine, &resources, generation).await?);
    }
    let mut plans = Vec::new();
    let runs: HashMap<String, (RunRecord, String)> = store
        .running_runs()
        .await?
        .into_iter()
        .map(|(run, sealed)| (run.machine_id.clone(), (run, sealed)))
        .collect();
    let mut commission_plans = store.commission_plans().await?;
    for machine in &machines {
        if machine.status != MachineStatus::Commissioning {
            continue;
        }
        if let Some(plan) = commission_plans.remove(&machine.id) {
            plans.push(MachinePlan {
                mac: machine.mac,
                plan: Plan::Commission(plan),
            });
        }
    }
    for machine in machines.iter().filter(|m| has_plan(m.status)) {
        if let Some((run, sealed)) = runs.get(&machine.id) {
            plans.extend(plan_of(store, master, machine, run, sealed, &resources).await?);
        }
    }
    Ok(PlannedIntents {
        batch: IntentBatch {
            full: true,
            intents,
            forget: Vec::new(),
        },
        plans,
    })
}

fn has_plan(status: MachineStatus) -> bool {
    matches!(status, MachineStatus::Deploying | MachineStatus::Releasing)
}

/// What the rack needs to answer `machine`'s installer or eraser for `run`.
async fn plan_of(
    store: &Store,
    master: &MasterKeys,
    machine: &Machine,
    run: &RunRecord,
    user_data_sealed: &str,
    resources: &[BootResourceRecord],
) -> Result<Option<MachinePlan>, StoreError> {
    let plan = match run.purpose.as_str() {
        "release" => {
            let (mode, fallback) = run.erase.split_once('/').unwrap_or((&run.erase, "full"));
            Plan::Release(ReleasePlan {
                erase: EraseMode::parse(mode).unwrap_or(EraseMode::Quick),
                secure_fallback: if fallback == "fail" {
                    SecureFallback::Fail
                } else {
                    SecureFallback::Full
                },
            })
        }
        _ => {
            let mut image = [0u8; 32];
            let size = resources.iter().find(|r| r.sha256 == run.image_sha256);
            let facts = store.os_image(&run.image_sha256).await?;
            let (Some(size), Some(facts), Ok(())) = (
                size,
                facts,
                hex::decode_to_slice(&run.image_sha256, &mut image),
            ) else {
                tracing::warn!(machine = %machine.id, image = %run.image_name, "the deployment's image is gone; no plan");
                return Ok(None);
            };
            let user_data = if user_data_sealed.is_empty() {
                String::new()
            } else {
                match master.open(user_data_sealed) {
                    Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                    Err(_) => {
                        tracing::error!(machine = %machine.id, "user data does not unseal with the master key");
                        return Ok(None);
                    }
                }
            };
            Plan::Deploy(DeployPlan {
                deployment_id: run.id.clone(),
                image,
                image_bytes: size.size,
                uncompressed_bytes: facts.uncompressed_bytes,
                format: facts.format,
                layout: StorageLayout::parse(&run.layout).unwrap_or(StorageLayout::Flat),
                disk_serial: run.disk_serial.clone(),
                hostname: run.hostname.clone(),
                address: run.address.as_deref().and_then(|a| a.parse().ok()),
                user_data,
                ssh_keys: run.ssh_keys.clone(),
            })
        }
    };
    Ok(Some(MachinePlan {
        mac: machine.mac,
        plan,
    }))
}

/// Which racks a machine boots from: those serving a subnet where it has a
/// reservation or a lease. A machine with neither (just enlisted, or never
/// seen on a managed subnet) may boot anywhere: every rack holds its intent.
#[derive(Debug, Default)]
pub struct Placement {
    /// `None`: a subnet every rack serves (no DHCP racks named).
    racks: HashMap<MacAddress, Option<HashSet<RackId>>>,
}

impl Placement {
    /// Reads subnets, reservations and leases.
    pub async fn load(store: &Store) -> Result<Placement, StoreError> {
        let serving: HashMap<String, Option<HashSet<RackId>>> = store
            .list_subnets()
            .await?
            .into_iter()
            .map(|subnet| {
                let racks = &subnet.spec.dhcp_racks;
                let named = (!racks.is_empty()).then(|| racks.iter().cloned().collect());
                (subnet.id, named)
            })
            .collect();
        let mut placement = Placement::default();
        let reservations = store.list_reservations(None).await?;
        let leases = store.list_leases(None, None).await?;
        let located = reservations
            .iter()
            .map(|r| (r.spec.mac, r.subnet_id.as_str()))
            .chain(
                leases
                    .iter()
                    .filter_map(|l| Some((l.mac.parse().ok()?, l.subnet_id.as_str()))),
            );
        for (mac, subnet_id) in located {
            let Some(racks) = serving.get(subnet_id) else {
                continue;
            };
            let entry = placement
                .racks
                .entry(mac)
                .or_insert_with(|| Some(HashSet::new()));
            match (entry.as_mut(), racks) {
                (Some(known), Some(racks)) => known.extend(racks.iter().cloned()),
                (_, None) => *entry = None,
                (None, Some(_)) => {}
            }
        }
        Ok(placement)
    }

    /// Whether `rack` should hold the intent of the machine booting from `mac`.
    pub fn concerns(&self, mac: &MacAddress, rack: &RackId) -> bool {
        match self.racks.get(mac) {
            None | Some(None) => true,
            Some(Some(racks)) => racks.contains(rack),
        }
    }

    /// The part of `planned` that concerns `rack`.
    pub fn for_rack(&self, planned: &PlannedIntents, rack: &RackId) -> PlannedIntents {
        let batch = &planned.batch;
        PlannedIntents {
            batch: IntentBatch {
                full: batch.full,
                intents: batch
                    .intents
                    .iter()
                    .filter(|intent| self.concerns(&intent.mac, rack))
                    .cloned()
                    .collect(),
                forget: batch.forget.clone(),
            },
            plans: planned
                .plans
                .iter()
                .filter(|plan| self.concerns(&plan.mac, rack))
                .cloned()
                .collect(),
        }
    }
}
