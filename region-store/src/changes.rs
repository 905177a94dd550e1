//! What committed writes changed, announced in one place: the store's own
//! write paths emit a [`Change`] after their transaction commits, so no API
//! handler has to remember to tell the link. The link turns them into
//! snapshots and boot intents for the racks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use edgemetal_protocol::MacAddress;
use tokio::sync::broadcast;

/// Room for bursts; a listener that falls further behind resyncs in full.
const BACKLOG: usize = 4096;

/// One committed change that racks may need to hear of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Subnets, reservations, DNS, gateway settings or presence: a new
    /// configuration generation.
    Config,
    /// The boot resources changed: every ephemeral boot may point elsewhere.
    BootResources,
    /// One machine changed (created, new status, token): its boot intent.
    Machine(String),
    /// A machine was deleted: racks forget its boot interface.
    MachineRemoved(MacAddress),
}

/// The feed of committed changes, numbered in commit order.
#[derive(Clone)]
pub struct ChangeFeed {
    sender: broadcast::Sender<(u64, Change)>,
    emitted: Arc<AtomicU64>,
}

impl Default for ChangeFeed {
    fn default() -> Self {
        ChangeFeed {
            sender: broadcast::channel(BACKLOG).0,
            emitted: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl ChangeFeed {
    /// Announces a committed change.
    pub(crate) fn emit(&self, change: Change) {
        let number = self.emitted.fetch_add(1, Ordering::SeqCst) + 1;
        // No listener (tests without a link) is fine: nobody needs telling.
        let _ = self.sender.send((number, change));
    }

    /// Changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<(u64, Change)> {
        self.sender.subscribe()
    }

    /// The number of the latest change emitted.
    pub fn latest(&self) -> u64 {
        self.emitted.load(Ordering::SeqCst)
    }
}
