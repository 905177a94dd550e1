//! The link's core: one inbound frame is decoded, checked against the
//! rack's replay window, applied to the store, and followed up (acks,
//! snapshots, intents, answers). Committed store changes become snapshots
//! and intents for the racks. The MQTT adapter ([`super::mqtt`]) only moves
//! frames in and out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgemetal_protocol::frame::ReplayWindow;
use edgemetal_protocol::{
    ConfigSnapshot, DownMessage, Generation, IntentBatch, PlannedIntents, RackId, RackStatus,
    UpMessage,
};
use tokio::sync::{broadcast, mpsc, watch};

use super::handler::{self, FollowUp};
use super::inbound::{self, Inbound};
use super::intents;
use super::keyring::Keyring;
use super::publish::{Carried, Publisher};
use super::requests::PendingRequests;
use super::Notice;
use crate::metrics::Metrics;
use crate::snapshot::{self, per_rack};
use crate::store::{now_ms, Change, Store};

/// The link's state shared by its tasks.
pub struct Link {
    pub(super) store: Store,
    pub(super) metrics: Arc<Metrics>,
    pub(super) keyring: Keyring,
    pub(super) publisher: Publisher,
    /// Boot resources' content.
    pub(super) blobs: crate::boot::blobs::BlobStore,
    /// DNS forwarding settings.
    pub(super) dns: crate::model::dns::DnsSettings,
    /// Gateway services' settings.
    pub(super) gateway: edgemetal_protocol::GatewayConfig,
    /// Power commands waiting for their rack's answer.
    pub(super) pending: Arc<PendingRequests>,
    /// Where enlistments and commissioning results are passed on.
    pub(super) lifecycle: Option<mpsc::UnboundedSender<Notice>>,
    /// Each rack's recent upward sequences; the mark is also in the store.
    windows: Mutex<HashMap<RackId, ReplayWindow>>,
    /// The online racks at the last sweep; `None` before the first.
    last_online: tokio::sync::Mutex<Option<Vec<String>>>,
    /// The number of the last store change whose intents and snapshots were published.
    pub(super) published_through: watch::Sender<u64>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the replay check says about an inbound frame.
enum Freshness {
    /// Never seen: apply it; the window that accepted it is kept once it
    /// is applied (a frame whose write failed is taken when resent).
    New(ReplayWindow),
    /// A last will: the presence rule decides, not the window.
    Will,
    /// The broker handing back what was processed (retained, redelivered).
    Redelivered,
    /// Seen before and delivered live: an attack.
    Replayed,
}

impl Link {
    /// Assembles the core.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        metrics: Arc<Metrics>,
        keyring: Keyring,
        publisher: Publisher,
        blobs: crate::boot::blobs::BlobStore,
        dns: crate::model::dns::DnsSettings,
        gateway: edgemetal_protocol::GatewayConfig,
        lifecycle: Option<mpsc::UnboundedSender<Notice>>,
    ) -> Self {
        Link {
            store,
            metrics,
            keyring,
            publisher,
            blobs,
            dns,
            gateway,
            pending: Arc::new(PendingRequests::default()),
            lifecycle,
            windows: Mutex::new(HashMap::new()),
            last_online: tokio::sync::Mutex::new(None),
            published_through: watch::channel(0).0,
        }
    }

    /// Handles one publish from the broker, start to end.
    pub async fn handle_publish(&self, topic: &str, payload: &[u8], retained: bool, dup: bool) {
        let inbound = match inbound::decode(&self.keyring, topic, payload, retained) {
            Ok(inbound) => inbound,
            Err(rejection) => {
                self.metrics.reject(rejection.label());
                tracing::warn!(%topic, bytes = payload.len(), %rejection, "dropped link payload");
                return;
            }
        };
        let accepted = match self.freshness(&inbound, retained || dup).await {
            Freshness::New(window) => Some(window),
            Freshness::Will => None,
            Freshness::Redelivered => {
                tracing::debug!(rack = %inbound.rack_id, sequence = inbound.sequence, "already processed; ignored");
                return;
            }
            Freshness::Replayed => {
                self.metrics.reject("replay");
                tracing::warn!(rack = %inbound.rack_id, sequence = inbound.sequence, %topic, "replayed frame dropped");
                return;
            }
        };
        if let UpMessage::Hello(hello) = &inbound.envelope.body {
            self.publisher
                .set_version(&inbound.rack_id, hello.protocol_version);
        }
        self.metrics
            .link_messages
            .get_or_create(&vec![(
                "channel",
                inbound.envelope.body.channel().as_str().to_string(),
            )])
            .inc();
        let version = self.publisher.version_of(&inbound.rack_id);
        match handler::apply(&self.store, &inbound, version).await {
            Ok(follow_up) => {
                if let Some(window) = accepted {
                    lock(&self.windows).insert(inbound.rack_id.clone(), window);
                }
                self.follow_up(&inbound, follow_up).await
            }
            Err(error) => {
                tracing::error!(rack = %inbound.rack_id, %error, "cannot record rack message")
            }
        }
    }

    /// The replay check: a 64-frame window per rack over the persisted mark,
    /// so frames reordered on the way are still taken once each.
    async fn freshness(&self, inbound: &Inbound, redelivery: bool) -> Freshness {
        if matches!(
            inbound.envelope.body,
            UpMessage::Status(RackStatus::Offline)
        ) {
            // A will is sealed at connect and published by the broker later,
            // behind newer frames: the presence rule judges it.
            return Freshness::Will;
        }
        let rack = &inbound.rack_id;
        let known = lock(&self.windows).get(rack).copied();
        let mut window = match known {
            Some(window) => window,
            None => match self.store.up_sequence(rack.as_str()).await {
                Ok(mark) => ReplayWindow::starting_at(mark),
                Err(error) => {
                    tracing::error!(%rack, %error, "cannot read the frame sequence");
                    return Freshness::Replayed;
                }
            },
        };
        if !window.accept(inbound.sequence) {
            return if redelivery {
                Freshness::Redelivered
            } else {
                Freshness::Replayed
            };
        }
        // The mark is raised by the transaction that applies the frame
        // (see `handler::apply`), not here.
        Freshness::New(window)
    }

    async fn follow_up(&self, inbound: &Inbound, follow_up: FollowUp) {
        let rack_id = &inbound.rack_id;
        match follow_up {
            FollowUp::SendSnapshot { held } => {
                let is_hello = matches!(inbound.envelope.body, UpMessage::Hello(_));
                self.send_snapshot(rack_id, is_hello, held).await;
                if is_hello && !inbound.retained {
                    // A (re)connected rack resyncs every intent: it may have
                    // missed pushes while away.
                    self.send_full_intents(rack_id).await;
                }
                // A rack that was away during a rotation gets its pending key now.
                let pending = self
                    .keyring
                    .get(rack_id)
                    .is_some_and(|keys| keys.pending.is_some());
                if is_hello && pending {
                    self.publisher.rekey(rack_id).await;
                }
            }
            FollowUp::PromoteKey(epoch) => {
                match self.store.promote_key(rack_id.as_str(), epoch).await {
                    Ok(true) => {
                        tracing::info!(rack = %rack_id, epoch, "link key rotated");
                        if let Err(error) = self.keyring.reload(&self.store).await {
                            tracing::error!(%error, "cannot reload rack identities");
                        }
                        // Re-seal the retained snapshot under the new key.
                        self.send_snapshot(rack_id, true, None).await;
                    }
                    Ok(false) => tracing::debug!(rack = %rack_id, epoch, "key already promoted"),
                    Err(error) => tracing::error!(rack = %rack_id, %error, "cannot promote key"),
                }
            }
            FollowUp::AckEvents(applied) => {
                self.metrics
                    .rack_events_applied
                    .inc_by(applied.newly_applied);
                self.publisher
                    .send(rack_id, DownMessage::EventsAck(applied.applied), false)
                    .await;
                // Configuration and machine changes reach racks through the
                // store's change feed; the lifecycle acts on enlistments and results.
                if let Some(lifecycle) = &self.lifecycle {
                    let notices = applied
                        .enlisted
                        .into_iter()
                        .map(Notice::Enlisted)
                        .chain(applied.results.into_iter().map(Notice::Results));
                    for notice in notices {
                        let _ = lifecycle.send(notice);
                    }
                }
            }
            FollowUp::PowerResult(result) => {
                if !self
                    .pending
                    .complete(rack_id, result.request_id, result.outcome)
                {
                    tracing::warn!(rack = %rack_id, request = result.request_id, "power result nobody waits for");
                }
            }
            FollowUp::SendChunk(request) => self.send_chunk(rack_id, request).await,
            FollowUp::AnswerBoot(query) => self.answer_boot(rack_id, query).await,
            FollowUp::AckLogs(up_to) => {
                self.publisher
                    .send(rack_id, DownMessage::LogsAck(up_to), false)
                    .await;
            }
            FollowUp::StaleWill => {
                self.metrics.reject("stale_will");
                tracing::warn!(rack = %rack_id, sequence = inbound.sequence, "offline status that is not the current connection's will dropped");
            }
            FollowUp::Resync => self.send_snapshot(rack_id, true, None).await,
            FollowUp::None => {}
        }
    }

    /// A v1 rack asks what a machine boots and waits; a v2 rack only tells
    /// of a machine it holds nothing for, and gets its intent if it is known.
    async fn answer_boot(&self, rack_id: &RackId, query: edgemetal_protocol::BootQuery) {
        if self.publisher.version_of(rack_id) >= 2 {
            let machine = match self.store.find_machine_by_mac(query.mac).await {
                Ok(Some(machine)) => machine,
                // Unknown here too: it enlists through its DHCP discovery.
                Ok(None) => return,
                Err(error) => return tracing::error!(%error, "cannot look a machine up"),
            };
            match intents::one(&self.store, self.keyring.master(), &machine.id).await {
                Ok(planned) if !planned.batch.intents.is_empty() => {
                    self.publisher.send_intents(rack_id, planned).await;
                }
                Ok(_) => {}
                Err(error) => tracing::error!(%error, "cannot decide a boot"),
            }
            return;
        }
        let decided = crate::boot::decision::decide(
            &self.store,
            self.keyring.master(),
            query.mac,
            query.arch,
        )
        .await;
        match decided {
            Ok((decision, metadata)) => {
                tracing::info!(rack = %rack_id, mac = %query.mac, ?decision, "boot decision");
                let answer = edgemetal_protocol::BootAnswer {
                    request_id: query.request_id,
                    mac: query.mac,
                    decision,
                    metadata,
                };
                self.publisher
                    .send(rack_id, DownMessage::BootAnswer(answer), false)
                    .await;
            }
            Err(error) => tracing::error!(%error, "cannot decide a boot"),
        }
    }

    /// Sends a rack the piece of a blob it asked for (an empty piece with
    /// total 0 when the region does not have it).
    async fn send_chunk(&self, rack_id: &RackId, request: edgemetal_protocol::BlobRequest) {
        let len = request.len.min(crate::boot::CHUNK_BYTES) as usize;
        let (data, total) = match self.blobs.read(&request.sha256, request.offset, len).await {
            Ok(Some(found)) => found,
            Ok(None) => (Vec::new(), 0),
            Err(error) => {
                tracing::error!(%error, "cannot read a blob");
                return;
            }
        };
        self.metrics.blob_bytes_sent.inc_by(data.len() as u64);
        let chunk = edgemetal_protocol::BlobChunk {
            sha256: request.sha256,
            offset: request.offset,
            data,
            total,
        };
        self.publisher
            .send(rack_id, DownMessage::BlobChunk(chunk), false)
            .await;
    }

    /// Brings a rack that holds `held` up to its current configuration,
    /// rate-limited unless `force`d: nothing if it holds it already, a delta
    /// if the region knows what it holds, else the full snapshot.
    async fn send_snapshot(&self, rack_id: &RackId, force: bool, held: Option<Generation>) {
        if !self.publisher.snapshot_due(rack_id, force) {
            return;
        }
        let built = match snapshot::build(&self.store, &self.dns, &self.gateway).await {
            Ok(site) => self.rack_snapshot(&site, rack_id).await,
            Err(error) => Err(error),
        };
        let snapshot = match built {
            Ok((snapshot, _)) => snapshot,
            Err(error) => return tracing::error!(%error, "cannot build snapshot"),
        };
        if held == Some(snapshot.generation) {
            // Generations are unique per content and rack: it holds this one.
            self.publisher.holds(rack_id, snapshot);
            return;
        }
        let base = held.and_then(|held| self.publisher.last_sent(rack_id, Some(held)));
        self.publish_config(rack_id, snapshot, base).await;
    }

    /// The rack's own cut of `site`, numbered anew only when its content
    /// changed since the last one it was sent; says whether it changed.
    ///
    /// A new content always gets a number the rack has not seen: the
    /// region's generation, or one past the rack's last when the region's
    /// has not moved since (presence, say, changes a rack's cut before the
    /// sweep bumps the region's). Racks apply only newer generations.
    async fn rack_snapshot(
        &self,
        site: &ConfigSnapshot,
        rack_id: &RackId,
    ) -> Result<(ConfigSnapshot, bool), crate::store::StoreError> {
        let mut cut = per_rack::for_rack(site, rack_id);
        let version = self.publisher.version_of(rack_id);
        if version < 5 {
            // What a v4 rack holds once it decoded the v4 layout: no boot
            // table, no boot files, forwarders on port 53 only.
            cut = edgemetal_protocol::v4::ConfigSnapshot::from(&cut).into();
        }
        if version < 3 {
            // A v2 rack cannot decode the kind, and cannot deploy anyway.
            cut.boot_resources
                .retain(|r| r.kind != edgemetal_protocol::BootResourceKind::Rootfs);
        }
        let digest = per_rack::content_digest(&cut);
        let target = self.store.rack_target(rack_id).await?;
        match target {
            Some((generation, known)) if known == digest => {
                Ok((per_rack::numbered(cut, generation), false))
            }
            _ => {
                let previous = target.map_or(0, |(generation, _)| generation);
                let generation = site.generation.0.max(previous + 1);
                // A rack never heard from gets its first snapshot when it
                // says hello: nothing numbered is sent before (its number
                // could not be kept, and could be reused for other content).
                let known = self
                    .store
                    .set_rack_target(rack_id, generation, &digest)
                    .await?;
                Ok((per_rack::numbered(cut, generation), known))
            }
        }
    }

    /// Sends `snapshot` to the rack, as a delta against `base` where one serves.
    async fn publish_config(
        &self,
        rack_id: &RackId,
        snapshot: ConfigSnapshot,
        base: Option<ConfigSnapshot>,
    ) {
        let generation = snapshot.generation;
        match self.publisher.send_config(rack_id, snapshot, base).await {
            Some(Carried::Delta) => {
                self.metrics.config_deltas_published.inc();
                tracing::debug!(rack = %rack_id, generation = generation.0, "configuration delta published");
            }
            Some(Carried::Snapshot) => {
                self.metrics.snapshots_published.inc();
                tracing::debug!(rack = %rack_id, generation = generation.0, "snapshot published");
            }
            None => {}
        }
    }

    /// Publishes to every active rack whose own configuration changed.
    pub(super) async fn publish_to_all(&self) {
        let site = match snapshot::build(&self.store, &self.dns, &self.gateway).await {
            Ok(site) => site,
            Err(error) => {
                tracing::error!(%error, "cannot build snapshots");
                return;
            }
        };
        self.metrics.config_generation.set(site.generation.0);
        for (rack_id, _) in self.keyring.active_racks() {
            match self.rack_snapshot(&site, &rack_id).await {
                Ok((snapshot, true)) => {
                    self.publisher.snapshot_due(&rack_id, true);
                    // The rack should hold what it was sent last; if not, it asks to resync.
                    let base = self.publisher.last_sent(&rack_id, None);
                    self.publish_config(&rack_id, snapshot, base).await;
                }
                Ok((_, false)) => {
                    self.metrics.snapshots_unchanged.inc();
                }
                Err(error) => tracing::error!(rack = %rack_id, %error, "cannot build its snapshot"),
            }
        }
    }

    async fn send_full_intents(&self, rack_id: &RackId) {
        if self.publisher.version_of(rack_id) < 2 {
            return;
        }
        let built = match intents::full(&self.store, self.keyring.master()).await {
            Ok(batch) => intents::Placement::load(&self.store)
                .await
                .map(|placement| placement.for_rack(&batch, rack_id)),
            Err(error) => Err(error),
        };
        match built {
            Ok(planned) => {
                self.publisher.send_intents(rack_id, planned).await;
            }
            Err(error) => tracing::error!(%error, "cannot build the boot intents"),
        }
    }

    async fn full_intents_to_all(&self) {
        self.intents_to_all(intents::full(&self.store, self.keyring.master()).await)
            .await;
    }

    /// Publishes `batch` to the racks it concerns.
    async fn intents_to_all(&self, batch: Result<PlannedIntents, crate::store::StoreError>) {
        let placed = match batch {
            Ok(batch) => intents::Placement::load(&self.store)
                .await
                .map(|placement| (batch, placement)),
            Err(error) => Err(error),
        };
        match placed {
            Ok((batch, placement)) => self.publisher.intents_to_all(&batch, &placement).await,
            Err(error) => tracing::error!(%error, "cannot build the boot intents"),
        }
    }

    /// Passes committed store changes on to the racks, in commit order:
    /// snapshots for configuration, intents for machines. Runs forever.
    pub(super) async fn follow_changes(&self, mut changes: broadcast::Receiver<(u64, Change)>) {
        // Racks known at start-up get the current state: changes may have
        // been made while the region was down.
        self.publish_to_all().await;
        self.full_intents_to_all().await;
        loop {
            let (number, change) = match changes.recv().await {
                Ok(next) => next,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "fell behind the store's changes; resyncing every rack"
                    );
                    self.publish_to_all().await;
                    self.full_intents_to_all().await;
                    self.published_through
                        .send_replace(self.store.changes().latest());
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            match change {
                Change::Config => self.publish_to_all().await,
                Change::BootResources => {
                    self.publish_to_all().await;
                    self.full_intents_to_all().await;
                }
                Change::Machine(machine_id) => {
                    let planned =
                        intents::one(&self.store, self.keyring.master(), &machine_id).await;
                    self.intents_to_all(planned).await;
                }
                Change::MachineRemoved(mac) => {
                    let planned = PlannedIntents {
                        batch: IntentBatch {
                            full: false,
                            intents: Vec::new(),
                            forget: vec![mac],
                        },
                        plans: Vec::new(),
                    };
                    self.intents_to_all(Ok(planned)).await;
                }
            }
            self.published_through.send_replace(number);
        }
    }

    /// Marks silent racks offline and, when presence changed, bumps the
    /// configuration (DHCP takeover depends on it).
    pub(super) async fn sweep(&self, timeout: Duration) {
        let cutoff = now_ms() - timeout.as_millis() as i64;
        match self.store.mark_silent_racks_offline(cutoff).await {
            Ok(silent) => {
                for rack in silent {
                    tracing::warn!(%rack, "rack missed its heartbeats; marked offline");
                }
            }
            Err(error) => tracing::error!(%error, "cannot sweep silent racks"),
        }
        let online = match self.store.online_rack_ids().await {
            Ok(online) => online,
            Err(error) => {
                tracing::error!(%error, "cannot read rack presence");
                return;
            }
        };
        self.metrics.racks_online.set(online.len() as i64);
        let changed = {
            let mut last = self.last_online.lock().await;
            let changed = last.as_ref().is_some_and(|previous| *previous != online);
            *last = Some(online);
            changed
        };
        if changed {
            // The change feed publishes the new presence to every rack.
            if let Err(error) = self.store.presence_changed().await {
                tracing::error!(%error, "cannot record a presence change");
            }
        }
    }
}
