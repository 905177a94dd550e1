//! Boot intents: what each machine boots, decided by the region and pushed
//! to the racks ahead of any boot, so that no step of a boot waits on the
//! region (edge principle 1). Pure apart from the store reads.

use std::collections::{HashMap, HashSet};

use edgemetal_protocol::{BootIntent, IntentBatch, MacAddress, RackId};

use crate::boot::decision;
use crate::secrets::MasterKeys;
use crate::store::{now_ms, BootResourceRecord, Machine, Store, StoreError};

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

/// The intent of the machine `machine_id`, or `None` when it is gone.
pub async fn one(
    store: &Store,
    master: &MasterKeys,
    machine_id: &str,
) -> Result<Option<BootIntent>, StoreError> {
    let generation = now_ms() as u64;
    let machine = match store.get_machine(machine_id).await {
        Ok(machine) => machine,
        Err(StoreError::NotFound { .. }) => return Ok(None),
        Err(error) => return Err(error),
    };
    let resources = store.list_boot_resources().await?;
    intent_of(store, master, &machine, &resources, generation)
        .await
        .map(Some)
}

/// Every machine's intent, as the full batch a rack resyncs from.
pub async fn full(store: &Store, master: &MasterKeys) -> Result<IntentBatch, StoreError> {
    let generation = now_ms() as u64;
    let machines = store.list_machines().await?;
    let resources = store.list_boot_resources().await?;
    let mut intents = Vec::with_capacity(machines.len());
    for machine in &machines {
        intents.push(intent_of(store, master, machine, &resources, generation).await?);
    }
    Ok(IntentBatch {
        full: true,
        intents,
        forget: Vec::new(),
    })
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

    /// The part of `batch` that concerns `rack`.
    pub fn for_rack(&self, batch: &IntentBatch, rack: &RackId) -> IntentBatch {
        IntentBatch {
            full: batch.full,
            intents: batch
                .intents
                .iter()
                .filter(|intent| self.concerns(&intent.mac, rack))
                .cloned()
                .collect(),
            forget: batch.forget.clone(),
        }
    }
}
