//! Boot intents: what each machine boots, decided by the region and pushed
//! to the racks ahead of any boot, so that no step of a boot waits on the
//! region (edge principle 1). Pure apart from the store reads.

use edgemetal_protocol::{BootIntent, IntentBatch};

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
