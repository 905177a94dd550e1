//! Reports the steps of a machine's network boot to the region (through the
//! durable event queue), so its event log shows the boot as it happened.

use std::time::{SystemTime, UNIX_EPOCH};

use edgemetal_protocol::{BootProgress, BootStage, MacAddress, RackEventKind};

use crate::state::SharedQueue;

/// Queues a boot step of `mac`; a queue that cannot be written is logged,
/// never in the way of the boot itself.
pub fn report(events: &SharedQueue, mac: MacAddress, stage: BootStage) {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let event = RackEventKind::BootProgress(BootProgress { mac, stage });
    if let Err(error) = events.push(now_ms, vec![event]) {
        tracing::warn!(%mac, ?stage, %error, "cannot queue a boot progress event");
    }
}
