//! Everything the region sends a rack: each message sealed for that rack
//! alone with the shared frame codec, in the protocol version the rack
//! speaks. Snapshots are retained, so a rack that connects later finds its
//! latest one waiting.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use edgemetal_protocol::frame::{self, Sealer};
use edgemetal_protocol::{
    ConfigSnapshot, DownMessage, Generation, MessageId, PlannedIntents, RackId, Rekey,
};
use rand::RngCore;
use rumqttc::{AsyncClient, QoS};

use super::intents::Placement;
use super::keyring::Keyring;
use crate::metrics::Metrics;
use crate::store::{now_ms, Store};

/// A resend to a lagging rack waits at least this long after the previous one.
const RESEND_INTERVAL: Duration = Duration::from_secs(5);

/// The oldest protocol version a rack may speak; racks not yet heard from
/// are spoken to in it (every newer rack decodes it too).
const OLDEST_VERSION: u16 = *edgemetal_protocol::SUPPORTED_VERSIONS.start();

/// Seals and publishes messages to racks.
pub struct Publisher {
    client: AsyncClient,
    store: Store,
    keyring: Keyring,
    metrics: std::sync::Arc<Metrics>,
    /// Random per process: with the sequence it makes every nonce unique,
    /// even across region replicas.
    nonce_prefix: [u8; 16],
    /// The protocol version each rack said it speaks in its hello.
    versions: Mutex<HashMap<RackId, u16>>,
    /// When each rack was last sent its snapshot (resends are rate-limited).
    last_snapshot: Mutex<HashMap<RackId, Instant>>,
    /// The configuration each rack was last sent (or is known to hold):
    /// the base of its next delta. Lost on restart, which costs one full
    /// snapshot per rack.
    sent: Mutex<HashMap<RackId, ConfigSnapshot>>,
}

/// How a configuration travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    /// As a delta against what the rack holds.
    Delta,
    /// In full, retained.
    Snapshot,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Publisher {
    /// A publisher on `client`; rack versions start from what the store knows.
    pub fn new(
        client: AsyncClient,
        store: Store,
        keyring: Keyring,
        metrics: std::sync::Arc<Metrics>,
    ) -> Self {
        let mut nonce_prefix = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut nonce_prefix);
        Publisher {
            client,
            store,
            keyring,
            metrics,
            nonce_prefix,
            versions: Mutex::new(HashMap::new()),
            last_snapshot: Mutex::new(HashMap::new()),
            sent: Mutex::new(HashMap::new()),
        }
    }

    /// Loads the versions racks announced before this process started.
    pub async fn load_versions(&self) {
        match self.store.list_racks().await {
            Ok(racks) => {
                let mut versions = lock(&self.versions);
                for rack in racks {
                    if let Ok(id) = RackId::new(&rack.id) {
                        versions.entry(id).or_insert(rack.protocol_version);
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot read the racks' protocol versions"),
        }
    }

    /// Records the version a rack announced; the region answers in it
    /// (or in its own, if the rack is newer).
    pub fn set_version(&self, rack_id: &RackId, announced: u16) {
        let spoken = announced.clamp(OLDEST_VERSION, edgemetal_protocol::PROTOCOL_VERSION);
        lock(&self.versions).insert(rack_id.clone(), spoken);
    }

    /// The version the region speaks to `rack_id`.
    pub fn version_of(&self, rack_id: &RackId) -> u16 {
        lock(&self.versions)
            .get(rack_id)
            .copied()
            .unwrap_or(OLDEST_VERSION)
    }

    /// Whether the snapshot resend to `rack_id` is due (or `force`d); records it as sent.
    pub fn snapshot_due(&self, rack_id: &RackId, force: bool) -> bool {
        let mut last = lock(&self.last_snapshot);
        if !force
            && last
                .get(rack_id)
                .is_some_and(|at| at.elapsed() < RESEND_INTERVAL)
        {
            return false;
        }
        last.insert(rack_id.clone(), Instant::now());
        true
    }

    /// What `rack_id` was last sent, if it is at `generation` (or any, when `None`).
    pub fn last_sent(
        &self,
        rack_id: &RackId,
        generation: Option<Generation>,
    ) -> Option<ConfigSnapshot> {
        lock(&self.sent)
            .get(rack_id)
            .filter(|sent| generation.is_none_or(|g| sent.generation == g))
            .cloned()
    }

    /// Records that `rack_id` holds `snapshot` (it said so).
    pub fn holds(&self, rack_id: &RackId, snapshot: ConfigSnapshot) {
        lock(&self.sent).insert(rack_id.clone(), snapshot);
    }

    /// Sends `snapshot` to `rack_id`: as a delta against `base` when the
    /// rack speaks v2 and the delta is the smaller, otherwise in full,
    /// retained (so a rack that connects later finds it). `None` if nothing
    /// went out.
    pub async fn send_config(
        &self,
        rack_id: &RackId,
        snapshot: ConfigSnapshot,
        base: Option<ConfigSnapshot>,
    ) -> Option<Carried> {
        let delta = base
            .filter(|_| self.version_of(rack_id) >= 2)
            .map(|base| edgemetal_protocol::delta::diff(&base, &snapshot))
            .filter(|delta| encoded_len(delta) < encoded_len(&snapshot));
        let (message, carried) = match delta {
            Some(delta) => (
                DownMessage::delta_for(self.version_of(rack_id), delta),
                Carried::Delta,
            ),
            None => (
                DownMessage::snapshot_for(self.version_of(rack_id), &snapshot),
                Carried::Snapshot,
            ),
        };
        if !self
            .send(rack_id, message, carried == Carried::Snapshot)
            .await
        {
            return None;
        }
        self.holds(rack_id, snapshot);
        Some(carried)
    }

    /// Seals one message for `rack_id` under its current key and publishes it.
    pub async fn send(&self, rack_id: &RackId, message: DownMessage, retain: bool) -> bool {
        let Some(keys) = self.keyring.get(rack_id).filter(|keys| !keys.revoked) else {
            tracing::debug!(rack = %rack_id, "no active identity; nothing sent");
            return false;
        };
        let version = self.version_of(rack_id);
        if matches!(
            message,
            DownMessage::Intents(_) | DownMessage::ConfigDelta(_)
        ) && version < 2
        {
            // A v1 rack decodes neither: it asks per boot, and gets snapshots.
            return false;
        }
        if matches!(message, DownMessage::IntentsV3(_)) && version < 3 {
            return false;
        }
        if matches!(
            message,
            DownMessage::SnapshotV5(_) | DownMessage::ConfigDeltaV5(_)
        ) && version < 5
        {
            return false;
        }
        let is_snapshot = matches!(
            message,
            DownMessage::Snapshot(_) | DownMessage::SnapshotV5(_)
        );
        let sequence = match self.store.next_down_sequence(rack_id.as_str()).await {
            Ok(sequence) => sequence,
            Err(error) => {
                tracing::error!(rack = %rack_id, %error, "cannot allocate a sequence number");
                return false;
            }
        };
        let sealer = Sealer {
            rack_id,
            secret: &keys.secret,
            key_epoch: keys.key_epoch,
            version,
            nonce_prefix: self.nonce_prefix,
        };
        let sealed = match frame::seal(
            &sealer,
            sequence,
            new_message_id(),
            now_ms() as u64,
            message,
        ) {
            Ok(sealed) => sealed,
            Err(error) => {
                tracing::error!(%error, "cannot seal a message");
                return false;
            }
        };
        self.metrics
            .link_bytes_sent
            .inc_by(sealed.payload.len() as u64);
        if is_snapshot {
            self.metrics
                .snapshot_bytes_sent
                .inc_by(sealed.payload.len() as u64);
        }
        match self
            .client
            .publish(sealed.topic, QoS::AtLeastOnce, retain, sealed.payload)
            .await
        {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(rack = %rack_id, %error, "cannot publish");
                false
            }
        }
    }

    /// Publishes to every active rack that speaks v2 the part of `planned`
    /// that concerns it (a partial batch that concerns it not is skipped).
    pub async fn intents_to_all(&self, planned: &PlannedIntents, placement: &Placement) {
        for (rack_id, _) in self.keyring.active_racks() {
            let part = placement.for_rack(planned, &rack_id);
            let batch = &part.batch;
            if batch.full || !batch.intents.is_empty() || !batch.forget.is_empty() {
                self.send_intents(&rack_id, part).await;
            }
        }
    }

    /// Sends intents in the rack's version: with their plans to a v4 rack,
    /// with deploy and release plans only to a v3 rack, without plans to a
    /// v2 rack (which cannot deploy), not at all to a v1 rack.
    pub async fn send_intents(&self, rack_id: &RackId, planned: PlannedIntents) -> bool {
        let version = self.version_of(rack_id);
        if version < 2 {
            return false;
        }
        self.metrics
            .intents_pushed
            .inc_by(planned.batch.intents.len() as u64);
        let message = if version >= 3 {
            let mut planned = planned;
            if version < 4 {
                // A v3 rack cannot decode a commissioning plan: its machines
                // commission with the inventory only.
                planned
                    .plans
                    .retain(|p| !matches!(p.plan, edgemetal_protocol::Plan::Commission(_)));
            }
            DownMessage::IntentsV3(planned)
        } else {
            DownMessage::Intents(planned.batch)
        };
        self.send(rack_id, message, false).await
    }

    /// Sends a rack its pending key, sealed under the current one.
    pub async fn rekey(&self, rack_id: &RackId) {
        let Some(next) = self.keyring.get(rack_id).and_then(|keys| {
            keys.pending.clone().map(|secret| Rekey {
                key_epoch: keys.key_epoch.wrapping_add(1),
                link_secret: secret.0,
            })
        }) else {
            tracing::warn!(rack = %rack_id, "no key rotation pending");
            return;
        };
        let epoch = next.key_epoch;
        if self.send(rack_id, DownMessage::Rekey(next), false).await {
            tracing::info!(rack = %rack_id, epoch, "sent the rack its next link key");
        }
    }
}

/// The size of `value` on the wire (before sealing).
fn encoded_len<T: serde::Serialize>(value: &T) -> usize {
    postcard::to_allocvec(value).map_or(usize::MAX, |bytes| bytes.len())
}

/// A fresh random message id.
pub fn new_message_id() -> MessageId {
    let mut id = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut id);
    MessageId(id)
}
