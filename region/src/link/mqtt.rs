//! The MQTT adapter: owns the connection and moves frames between the
//! broker and the link core ([`super::core`]); runs the core's periodic
//! work (presence sweep, identity reload).

use std::sync::Arc;
use std::time::Duration;

use edgemetal_protocol::{DownMessage, PowerOutcome, PowerRequest, RackId, Topic};
use rand::RngCore;
use rumqttc::{
    AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, watch};

use super::core::Link;
use super::keyring::{Keyring, REGION_BROKER_USER};
use super::publish::Publisher;
use super::requests::{OutgoingCommand, PendingRequests, RequestError};
use super::BrokerUrl;
use super::Notice;
use crate::metrics::Metrics;
use crate::store::Store;

/// Largest payload the link accepts or sends (snapshots of large sites).
const MAX_PACKET_BYTES: usize = 16 * 1024 * 1024;

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
    pub dns: crate::model::dns::DnsSettings,
    /// An external Mosquitto's files, rewritten when the set of active racks
    /// changes behind this process's back (CLI revocation, another replica).
    pub mosquitto: Option<crate::config::MosquittoFiles>,
    /// Where enlistments and commissioning results are passed on.
    pub lifecycle: Option<mpsc::UnboundedSender<Notice>>,
    /// Gateway services' settings racks get in their snapshot.
    pub gateway: edgemetal_protocol::GatewayConfig,
}

/// Handle to the running link. Configuration and machine changes need no
/// call: the link follows the store's change feed.
#[derive(Clone)]
pub struct LinkHandle {
    rekey: mpsc::UnboundedSender<RackId>,
    commands: mpsc::UnboundedSender<OutgoingCommand>,
    pending: Arc<PendingRequests>,
    published_through: watch::Receiver<u64>,
    store: Store,
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    /// The broker session: told to disconnect at a clean stop.
    client: AsyncClient,
    connection: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl LinkHandle {
    /// Waits (at most `timeout`) until every store change committed so far
    /// has reached the racks as snapshots and intents: power-on calls this,
    /// so a machine never boots before its rack holds its intent.
    pub async fn changes_published(&self, timeout: Duration) -> bool {
        let target = self.store.changes().latest();
        let mut published = self.published_through.clone();
        tokio::time::timeout(timeout, published.wait_for(|done| *done >= target))
            .await
            .is_ok_and(|waited| waited.is_ok())
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

    /// Stops the link's tasks (at shutdown, before the store closes, so
    /// that nothing arriving meanwhile meets a closed pool), then leaves the
    /// broker with an MQTT DISCONNECT: a dropped connection is logged by the
    /// broker as an error.
    pub async fn stop(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
        let connection = self
            .connection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut connection) = connection {
            if self.client.try_disconnect().is_ok() {
                // The event loop ends once the broker has closed the session.
                let _ = tokio::time::timeout(Duration::from_secs(2), &mut connection).await;
            }
            connection.abort();
        }
    }

    /// Sends a rack its pending key (after [`crate::store::Store::start_key_rotation`]).
    pub fn send_rekey(&self, rack_id: RackId) {
        let _ = self.rekey.send(rack_id);
    }
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
    let mut tasks = Vec::new();

    let publisher = Publisher::new(
        client.clone(),
        store.clone(),
        keyring.clone(),
        metrics.clone(),
    );
    let link = Arc::new(Link::new(
        store.clone(),
        metrics,
        keyring,
        publisher,
        settings.blobs.clone(),
        settings.dns.clone(),
        settings.gateway.clone(),
        settings.lifecycle.clone(),
    ));
    let published_through = link.published_through.subscribe();
    let (inbound_tx, mut inbound_rx) = mpsc::channel::<rumqttc::Publish>(1024);

    // The event loop only moves packets: handling happens elsewhere so that a
    // publish from the handler can never wait on the loop that drains it.
    let broker = settings.broker.clone();
    let session = client.clone();
    let connection = tokio::spawn(async move {
        let mut leaving = false;
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
                // Sent: the broker closes the connection, and then we are done.
                Ok(Event::Outgoing(Outgoing::Disconnect)) => leaving = true,
                Ok(_) => {}
                Err(_) if leaving => return,
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
    tasks.push(tokio::spawn(async move {
        while let Some(publish) = inbound_rx.recv().await {
            worker
                .handle_publish(
                    &publish.topic,
                    &publish.payload,
                    publish.retain,
                    publish.dup,
                )
                .await;
        }
    }));

    let follower = link.clone();
    let changes = store.changes().subscribe();
    tasks.push(tokio::spawn(async move {
        follower.publisher.load_versions().await;
        follower.follow_changes(changes).await;
    }));

    let (rekey, mut rekey_requests) = mpsc::unbounded_channel::<RackId>();
    let rekeyer = link.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(rack_id) = rekey_requests.recv().await {
            rekeyer.publisher.rekey(&rack_id).await;
        }
    }));

    let (commands, mut outgoing_commands) = mpsc::unbounded_channel::<OutgoingCommand>();
    let commander = link.clone();
    tasks.push(tokio::spawn(async move {
        while let Some(outgoing) = outgoing_commands.recv().await {
            let id = outgoing.command.request_id;
            let sent = commander
                .publisher
                .send(
                    &outgoing.rack_id,
                    DownMessage::Power(outgoing.command),
                    false,
                )
                .await;
            if !sent {
                tracing::warn!(rack = %outgoing.rack_id, request = id, "power command not sent");
            }
        }
    }));
    let pending = link.pending.clone();

    let sweeper = link;
    let timeout = settings.heartbeat_timeout;
    let mosquitto = settings.mosquitto.clone();
    tasks.push(tokio::spawn(async move {
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
                        if let Err(error) =
                            crate::link::mosquitto::write_files(files, &sweeper.keyring)
                        {
                            tracing::error!(%error, "cannot update the Mosquitto files");
                        }
                    }
                }
            }
        }
    }));

    LinkHandle {
        rekey,
        commands,
        pending,
        published_through,
        store,
        tasks: Arc::new(std::sync::Mutex::new(tasks)),
        client: session,
        connection: Arc::new(std::sync::Mutex::new(Some(connection))),
    }
}
