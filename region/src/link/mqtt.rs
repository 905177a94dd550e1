//! The MQTT adapter: owns the connection, feeds inbound publishes to the
//! handler, seals and publishes snapshots, and sweeps silent racks offline.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgemetal_protocol::seal::{self, FrameHeader};
use edgemetal_protocol::{
    ConfigSnapshot, Direction, DownMessage, Envelope, MessageId, PowerOutcome, PowerRequest,
    RackId, Rekey, Topic, PROTOCOL_VERSION,
};
use rand::RngCore;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tokio::sync::{mpsc, Notify};

use super::handler::{self, FollowUp};
use super::keyring::{Keyring, REGION_BROKER_USER};
use super::requests::{OutgoingCommand, PendingRequests, RequestError};
use super::{inbound, BrokerUrl};
use crate::lifecycle::Notice;
use crate::metrics::Metrics;
use crate::snapshot;
use crate::store::{now_ms, Store};

/// Largest payload the link accepts or sends (snapshots of large sites).
const MAX_PACKET_BYTES: usize = 16 * 1024 * 1024;

/// A resend to a lagging rack waits at least this long after the previous one.
const RESEND_INTERVAL: Duration = Duration::from_secs(5);

/// Settings of the link.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    /// The broker to connect to.
    pub broker: BrokerUrl,
    /// A rack not heard from for this long is marked offline.
    pub heartbeat_timeout: Duration,
    /// CA certificate (PEM) to verify a TLS broker against.
    pub ca_pem: Option<String>,
    /// Where boot resources' content is, for racks that fetch it.
    pub blobs: crate::boot::blobs::BlobStore,
    /// DNS forwarding settings racks get in their snapshot.
    pub dns: crate::zones::DnsSettings,
    /// An external Mosquitto's files, rewritten when the set of active racks
    /// changes behind this process's back (CLI revocation, another replica).
    pub mosquitto: Option<crate::config::MosquittoFiles>,
    /// Where enlistments and commissioning results are passed on.
    pub lifecycle: Option<mpsc::UnboundedSender<Notice>>,
    /// Gateway services' settings racks get in their snapshot.
    pub gateway: edgemetal_protocol::GatewayConfig,
}

/// Handle to the running link; tells it when configuration changed.
#[derive(Clone)]
pub struct LinkHandle {
    config_changed: Arc<Notify>,
    rekey: mpsc::UnboundedSender<RackId>,
    commands: mpsc::UnboundedSender<OutgoingCommand>,
    pending: Arc<PendingRequests>,
}

impl LinkHandle {
    /// Call after any configuration change: every rack gets the new snapshot.
    pub fn config_changed(&self) {
        self.config_changed.notify_one();
    }

    /// Has `rack` carry out a power request; waits up to `timeout` for its answer.
    pub async fn power(
        &self,
        rack: RackId,
        request: PowerRequest,
        timeout: Duration,
    ) -> Result<PowerOutcome, RequestError> {
        self.pending
            .power(&self.commands, rack, request, timeout)
            .await
    }

    /// Sends a rack its pending key (after [`crate::store::Store::start_key_rotation`]).
    pub fn send_rekey(&self, rack_id: RackId) {
        let _ = self.rekey.send(rack_id);
    }
}

struct Link {
    client: AsyncClient,
    store: Store,
    metrics: Arc<Metrics>,
    keyring: Keyring,
    /// Random per process: with the sequence it makes every nonce unique,
    /// even across region replicas.
    nonce_prefix: [u8; 16],
    last_sent: tokio::sync::Mutex<HashMap<RackId, Instant>>,
    /// Boot resources' content.
    blobs: crate::boot::blobs::BlobStore,
    /// DNS forwarding settings.
    dns: crate::zones::DnsSettings,
    /// Power commands waiting for their rack's answer.
    pending: Arc<PendingRequests>,
    /// The online racks at the last sweep; `None` before the first.
    last_online: tokio::sync::Mutex<Option<Vec<String>>>,
    /// Where enlistments and commissioning results are passed on.
    lifecycle: Option<mpsc::UnboundedSender<Notice>>,
    /// Gateway services' settings.
    gateway: edgemetal_protocol::GatewayConfig,
}

/// Connects to the broker and starts the link's tasks.
pub fn spawn(
    settings: LinkSettings,
    store: Store,
    metrics: Arc<Metrics>,
    keyring: Keyring,
) -> LinkHandle {
    let mut id = [0u8; 4];
    rand::thread_rng().fill_bytes(&mut id);
    // Replicas need distinct client ids, or the broker would kick one out for the other.
    let client_id = format!("edgemetal-region-{}", hex::encode(id));
    let mut options = MqttOptions::new(
        client_id,
        settings.broker.host.clone(),
        settings.broker.port,
    );
    options.set_keep_alive(Duration::from_secs(15));
    options.set_clean_session(true);
    options.set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    options.set_credentials(REGION_BROKER_USER, keyring.region_broker_password());
    if settings.broker.tls {
        options.set_transport(Transport::Tls(TlsConfiguration::Simple {
            ca: settings.ca_pem.clone().unwrap_or_default().into_bytes(),
            alpn: None,
            client_auth: None,
        }));
    }
    let (client, mut eventloop) = AsyncClient::new(options, 256);

    let mut nonce_prefix = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut nonce_prefix);
    let link = Arc::new(Link {
        client: client.clone(),
        store,
        metrics,
        keyring,
        nonce_prefix,
        last_sent: tokio::sync::Mutex::new(HashMap::new()),
        last_online: tokio::sync::Mutex::new(None),
        pending: Arc::new(PendingRequests::default()),
        blobs: settings.blobs.clone(),
        dns: settings.dns.clone(),
        lifecycle: settings.lifecycle.clone(),
        gateway: settings.gateway.clone(),
    });
    let config_changed = Arc::new(Notify::new());
    let (inbound_tx, mut inbound_rx) = mpsc::channel::<rumqttc::Publish>(1024);

    // The event loop only moves packets: handling happens elsewhere so that a
    // publish from the handler can never wait on the loop that drains it.
    let broker = settings.broker.clone();
    tokio::spawn(async move {
        let mut connected = false;
        let mut ever_connected = false;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    tracing::info!(%broker, "region connected to broker");
                    connected = true;
                    ever_connected = true;
                    if let Err(error) =
                        client.try_subscribe(Topic::all_racks_up_filter(), QoS::AtLeastOnce)
                    {
                        tracing::error!(%error, "cannot subscribe to rack topics");
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    if inbound_tx.send(publish).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    if connected {
                        tracing::warn!(%broker, %error, "lost the broker; reconnecting");
                    } else if ever_connected {
                        tracing::debug!(%broker, %error, "broker still unreachable");
                    } else {
                        tracing::debug!(%broker, %error, "broker not reachable yet");
                    }
                    // Retry quickly at start-up (the embedded broker may still be
                    // binding), calmly after a loss.
                    let pause = if ever_connected { 1000 } else { 50 };
                    connected = false;
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            }
        }
    });

    let worker = link.clone();
    tokio::spawn(async move {
        while let Some(publish) = inbound_rx.recv().await {
            worker.handle_publish(&publish).await;
        }
    });

    let publisher = link.clone();
    let notified = config_changed.clone();
    tokio::spawn(async move {
        // Racks known at start-up get the current snapshot: changes may have
        // been made while the region was down.
        loop {
            publisher.publish_to_all().await;
            notified.notified().await;
        }
    });

    let (rekey, mut rekey_requests) = mpsc::unbounded_channel::<RackId>();
    let rekeyer = link.clone();
    tokio::spawn(async move {
        while let Some(rack_id) = rekey_requests.recv().await {
            rekeyer.send_rekey(&rack_id).await;
        }
    });

    let (commands, mut outgoing_commands) = mpsc::unbounded_channel::<OutgoingCommand>();
    let commander = link.clone();
    tokio::spawn(async move {
        while let Some(outgoing) = outgoing_commands.recv().await {
            let id = outgoing.command.request_id;
            if !commander
                .publish_down(
                    &outgoing.rack_id,
                    DownMessage::Power(outgoing.command),
                    false,
                )
                .await
            {
                tracing::warn!(rack = %outgoing.rack_id, request = id, "power command not sent");
            }
        }
    });
    let pending = link.pending.clone();

    let sweeper = link;
    let timeout = settings.heartbeat_timeout;
    let mosquitto = settings.mosquitto.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut ticks = 0u64;
        let mut active = sweeper.keyring.active_rack_ids();
        loop {
            tick.tick().await;
            sweeper.sweep(timeout).await;
            ticks += 1;
            // Enrolments and revocations made elsewhere (another replica, the
            // CLI) reach this process within a few seconds.
            if ticks.is_multiple_of(3) {
                if let Err(error) = sweeper.keyring.reload(&sweeper.store).await {
                    tracing::error!(%error, "cannot reload rack identities");
                }
                let now_active = sweeper.keyring.active_rack_ids();
                if now_active != active {
                    active = now_active;
                    if let Some(files) = &mosquitto {
                        if let Err(error) = crate::mosquitto::write_files(files, &sweeper.keyring) {
                            tracing::error!(%error, "cannot update the Mosquitto files");
                        }
                    }
                }
            }
        }
    });

    LinkHandle {
        config_changed,
        rekey,
        commands,
        pending,
    }
}

impl Link {
    async fn handle_publish(&self, publish: &rumqttc::Publish) {
        let decoded = inbound::decode(
            &self.keyring,
            &publish.topic,
            &publish.payload,
            publish.retain,
        );
        let inbound = match decoded {
            Ok(inbound) => inbound,
            Err(rejection) => {
                self.metrics.reject(rejection.label());
                tracing::warn!(
                    topic = %publish.topic,
                    bytes = publish.payload.len(),
                    %rejection,
                    "dropped link payload"
                );
                return;
            }
        };
        let advanced = self
            .store
            .advance_up_sequence(inbound.rack_id.as_str(), inbound.sequence)
            .await;
        match advanced {
            Ok(true) => {}
            Ok(false)
                if matches!(
                    inbound.envelope.body,
                    edgemetal_protocol::UpMessage::Status(edgemetal_protocol::RackStatus::Offline)
                ) =>
            {
                // A last will is sealed when the rack connects and published by
                // the broker later, behind newer frames. Replaying one can only
                // mark a rack offline until its next heartbeat.
            }
            Ok(false) if inbound.retained || publish.dup => {
                // The broker handing back what we already processed (retained
                // presence on resubscribe, QoS 1 redelivery): not an attack.
                tracing::debug!(rack = %inbound.rack_id, sequence = inbound.sequence, "already processed; ignored");
                return;
            }
            Ok(false) => {
                self.metrics.reject("replay");
                tracing::warn!(
                    rack = %inbound.rack_id,
                    sequence = inbound.sequence,
                    topic = %publish.topic,
                    "replayed frame dropped"
                );
                return;
            }
            Err(error) => {
                tracing::error!(rack = %inbound.rack_id, %error, "cannot check the frame sequence");
                return;
            }
        }
        self.metrics
            .link_messages
            .get_or_create(&vec![(
                "channel",
                inbound.envelope.body.channel().as_str().to_string(),
            )])
            .inc();
        match handler::apply(&self.store, &inbound).await {
            Ok(FollowUp::SendSnapshot) => {
                let is_hello = matches!(
                    inbound.envelope.body,
                    edgemetal_protocol::UpMessage::Hello(_)
                );
                self.send_snapshot(&inbound.rack_id, is_hello).await;
                // A rack that was away during a rotation gets its pending key now.
                let pending = self
                    .keyring
                    .get(&inbound.rack_id)
                    .is_some_and(|keys| keys.pending.is_some());
                if is_hello && pending {
                    self.send_rekey(&inbound.rack_id).await;
                }
            }
            Ok(FollowUp::PromoteKey(epoch)) => {
                match self
                    .store
                    .promote_key(inbound.rack_id.as_str(), epoch)
                    .await
                {
                    Ok(true) => {
                        tracing::info!(rack = %inbound.rack_id, epoch, "link key rotated");
                        if let Err(error) = self.keyring.reload(&self.store).await {
                            tracing::error!(%error, "cannot reload rack identities");
                        }
                        // Re-seal the retained snapshot under the new key.
                        self.send_snapshot(&inbound.rack_id, true).await;
                    }
                    Ok(false) => {
                        tracing::debug!(rack = %inbound.rack_id, epoch, "key already promoted")
                    }
                    Err(error) => {
                        tracing::error!(rack = %inbound.rack_id, %error, "cannot promote key")
                    }
                }
            }
            Ok(FollowUp::AckEvents(applied)) => {
                self.publish_down(
                    &inbound.rack_id,
                    DownMessage::EventsAck(applied.applied),
                    false,
                )
                .await;
                if applied.config_changed {
                    self.publish_to_all().await;
                }
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
            Ok(FollowUp::PowerResult(result)) => {
                if !self
                    .pending
                    .complete(&inbound.rack_id, result.request_id, result.outcome)
                {
                    tracing::warn!(rack = %inbound.rack_id, request = result.request_id, "power result nobody waits for");
                }
            }
            Ok(FollowUp::SendChunk(request)) => self.send_chunk(&inbound.rack_id, request).await,
            Ok(FollowUp::AnswerBoot(query)) => {
                let decided = crate::boot::decision::decide(
                    &self.store,
                    self.keyring.master(),
                    query.mac,
                    query.arch,
                )
                .await;
                match decided {
                    Ok((decision, metadata)) => {
                        tracing::info!(rack = %inbound.rack_id, mac = %query.mac, ?decision, "boot decision");
                        let answer = edgemetal_protocol::BootAnswer {
                            request_id: query.request_id,
                            mac: query.mac,
                            decision,
                            metadata,
                        };
                        self.publish_down(&inbound.rack_id, DownMessage::BootAnswer(answer), false)
                            .await;
                    }
                    Err(error) => tracing::error!(%error, "cannot decide a boot"),
                }
            }
            Ok(FollowUp::AckLogs(up_to)) => {
                self.publish_down(&inbound.rack_id, DownMessage::LogsAck(up_to), false)
                    .await;
            }
            Ok(FollowUp::None) => {}
            Err(error) => {
                tracing::error!(rack = %inbound.rack_id, %error, "cannot record rack message")
            }
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
        self.publish_down(rack_id, DownMessage::BlobChunk(chunk), false)
            .await;
    }

    /// Publishes the current snapshot to one rack, at most every
    /// [`RESEND_INTERVAL`] unless `force`d.
    async fn send_snapshot(&self, rack_id: &RackId, force: bool) {
        {
            let mut last_sent = self.last_sent.lock().await;
            if let Some(at) = last_sent.get(rack_id) {
                if !force && at.elapsed() < RESEND_INTERVAL {
                    return;
                }
            }
            last_sent.insert(rack_id.clone(), Instant::now());
        }
        match snapshot::build(&self.store, &self.dns, &self.gateway).await {
            Ok(snapshot) => self.publish_snapshot(rack_id, snapshot).await,
            Err(error) => tracing::error!(%error, "cannot build snapshot"),
        }
    }

    /// Seals `snapshot` for `rack_id` under its own key and publishes it retained.
    async fn publish_snapshot(&self, rack_id: &RackId, snapshot: ConfigSnapshot) {
        let generation = snapshot.generation;
        // Retained: a rack that connects later finds its latest snapshot waiting.
        // Sealed for this rack alone, so the retained copy is unreadable to others.
        if self
            .publish_down(rack_id, DownMessage::Snapshot(snapshot), true)
            .await
        {
            self.metrics.snapshots_published.inc();
            tracing::debug!(rack = %rack_id, generation = generation.0, "snapshot published");
        }
    }

    /// Sends a rack its pending key, sealed under the current one.
    async fn send_rekey(&self, rack_id: &RackId) {
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
        if self
            .publish_down(rack_id, DownMessage::Rekey(next), false)
            .await
        {
            tracing::info!(rack = %rack_id, epoch, "sent the rack its next link key");
        }
    }

    /// Seals one message for `rack_id` under its current key and publishes it.
    async fn publish_down(&self, rack_id: &RackId, message: DownMessage, retain: bool) -> bool {
        let Some(keys) = self.keyring.get(rack_id).filter(|keys| !keys.revoked) else {
            tracing::debug!(rack = %rack_id, "no active identity; nothing sent");
            return false;
        };
        let sequence = match self.store.next_down_sequence(rack_id.as_str()).await {
            Ok(sequence) => sequence,
            Err(error) => {
                tracing::error!(rack = %rack_id, %error, "cannot allocate a sequence number");
                return false;
            }
        };
        let topic = Topic::new(rack_id.clone(), message.channel()).to_string();
        let envelope = Envelope::new(new_message_id(), now_ms() as u64, message);
        let header = FrameHeader {
            version: PROTOCOL_VERSION,
            rack_id: rack_id.clone(),
            direction: Direction::Down,
            key_epoch: keys.key_epoch,
            sequence,
        };
        let sealed = envelope
            .encode()
            .map_err(|e| e.to_string())
            .and_then(|plain| {
                seal::seal(&keys.secret, header, self.nonce_prefix, &plain)
                    .map_err(|e| e.to_string())
            });
        let payload = match sealed {
            Ok(payload) => payload,
            Err(error) => {
                tracing::error!(%error, "cannot seal a message");
                return false;
            }
        };
        match self
            .client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
        {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(rack = %rack_id, %error, "cannot publish");
                false
            }
        }
    }

    async fn publish_to_all(&self) {
        let snapshot = match snapshot::build(&self.store, &self.dns, &self.gateway).await {
            Ok(snapshot) => snapshot,
            Err(error) => {
                tracing::error!(%error, "cannot build snapshots");
                return;
            }
        };
        self.metrics.config_generation.set(snapshot.generation.0);
        for (rack_id, _) in self.keyring.active_racks() {
            self.last_sent
                .lock()
                .await
                .insert(rack_id.clone(), Instant::now());
            self.publish_snapshot(&rack_id, snapshot.clone()).await;
        }
    }

    async fn sweep(&self, timeout: Duration) {
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
            // Racks sharing a subnet take over an offline peer's clients:
            // every rack needs the new presence.
            match self.store.presence_changed().await {
                Ok(()) => self.publish_to_all().await,
                Err(error) => tracing::error!(%error, "cannot record a presence change"),
            }
        }
    }
}

/// A fresh random message id.
pub fn new_message_id() -> MessageId {
    let mut id = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut id);
    MessageId(id)
}
