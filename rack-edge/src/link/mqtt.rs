//! The MQTT adapter around [`Session`]: owns the connection, the heartbeat
//! timer and the state files; the session decides everything else.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edgemetal_protocol::{BrokerUrl, HealthState, ServiceHealth, ServiceKind};
use rumqttc::{
    AsyncClient, Event, LastWill, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use tokio::sync::mpsc;

use super::blobs::{self, ChunkWriter, BLOB_RETRY};
use super::session::{Inbound, Outgoing, Session};
use crate::boot::window::FetchWindow;
use crate::hub::Hub;
use crate::state::{CountersFile, SnapshotFile};

/// Largest payload the link accepts or sends.
const MAX_PACKET_BYTES: usize = 16 * 1024 * 1024;

/// Settings of the rack's link.
pub struct LinkSettings {
    /// The broker.
    pub broker: BrokerUrl,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// The rack's broker user name.
    pub username: String,
    /// The rack's broker password.
    pub password: String,
    /// CA (PEM) the broker's certificate must chain to.
    pub ca_pem: String,
    /// Carries out the region's power commands.
    pub power: crate::power::PowerExecutor,
    /// Where boot resources from the region are cached.
    pub boot_cache: crate::boot::BootCache,
    /// Per-machine boot decisions, answered by the region.
    pub decisions: Arc<crate::boot::Decisions>,
    /// Boot queries for the region, from the HTTP and TFTP servers.
    pub boot_queries: mpsc::UnboundedReceiver<edgemetal_protocol::BootQuery>,
}

/// The files the link keeps current.
pub struct StateFiles {
    /// The applied snapshot.
    pub snapshot: SnapshotFile,
    /// The sequence counters.
    pub counters: CountersFile,
    /// Where the identity lives (rewritten on key rotation).
    pub state_dir: std::path::PathBuf,
    /// The identity as persisted.
    pub identity: edgemetal_protocol::enrolment::EnrolmentBundle,
    /// Events to deliver to the region.
    pub events: Arc<crate::state::SharedQueue>,
    /// Syslog lines to deliver to the region.
    pub logs: Arc<crate::syslog::SharedLogQueue>,
}

/// Most events per message.
const EVENTS_PER_MESSAGE: usize = 200;
/// Most event payload per message: well inside the broker's packet limit.
const EVENT_BYTES_PER_MESSAGE: usize = 4 * 1024 * 1024;

/// Most log lines per message.
const LOGS_PER_MESSAGE: usize = 1000;
/// Most log payload per message.
const LOG_BYTES_PER_MESSAGE: u64 = 1024 * 1024;

/// Sends the next batch of queued log lines, unless one is still unacknowledged.
///
/// One batch at a time: the region acks the highest id of what it stored,
/// so an ack can never cover an earlier batch that it failed to store.
async fn deliver_logs(
    session: &mut Session,
    files: &StateFiles,
    in_flight: &mut Option<u64>,
    send: &impl Fn(Outgoing),
) {
    if in_flight.is_some() {
        return;
    }
    let batch = {
        let queue = files.logs.lock();
        queue.batch(queue.acked(), LOGS_PER_MESSAGE, LOG_BYTES_PER_MESSAGE)
    };
    let Some(last) = batch.last().map(|l| l.id) else {
        return;
    };
    let message = session.logs(now_ms(), batch);
    if !persist_counters(session, &files.counters).await {
        return;
    }
    send(message);
    *in_flight = Some(last);
}

/// Forgets the log lines the region stored; returns how many that were.
async fn ack_logs(files: &StateFiles, up_to: u64) -> u64 {
    let logs = files.logs.clone();
    let acked = tokio::task::spawn_blocking(move || {
        let mut queue = logs.lock();
        let before = queue.len();
        let result = queue.ack(up_to);
        (result, (before - queue.len()) as u64, queue.pending_bytes())
    })
    .await;
    match acked {
        Ok((Ok(()), forgotten, _)) => forgotten,
        Ok((Err(error), forgotten, _)) => {
            tracing::error!(%error, "cannot trim the syslog queue on disk");
            forgotten
        }
        Err(error) => {
            tracing::error!(%error, "syslog queue task failed");
            0
        }
    }
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Persists the session's counters if they changed. It must succeed before
/// the output that changed them is acted on; false means hold it back.
pub(super) async fn persist_counters(session: &mut Session, file: &CountersFile) -> bool {
    let Some(counters) = session.take_counters() else {
        return true;
    };
    let file = file.clone();
    match tokio::task::spawn_blocking(move || file.store(&counters)).await {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::error!(%error, "cannot persist link counters; holding messages back");
            false
        }
        Err(error) => {
            tracing::error!(%error, "counter persistence task failed");
            false
        }
    }
}

/// Sends the queued events not yet sent on this connection, in order.
async fn deliver_events(
    session: &mut Session,
    files: &StateFiles,
    sent: &mut u64,
    send: &impl Fn(Outgoing),
) {
    loop {
        let batch = files
            .events
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pending_batch(*sent, EVENTS_PER_MESSAGE, EVENT_BYTES_PER_MESSAGE);
        let Some(last) = batch.last().map(|e| e.id) else {
            return;
        };
        let message = session.events(now_ms(), batch);
        if !persist_counters(session, &files.counters).await {
            return;
        }
        send(message);
        *sent = last;
    }
}

/// Runs the link forever, reconnecting as needed.
pub async fn run(
    mut settings: LinkSettings,
    mut session: Session,
    mut files: StateFiles,
    hub: Arc<Hub>,
) {
    let started = Instant::now();
    let will = session.last_will(now_ms());
    persist_counters(&mut session, &files.counters).await;
    let mut options = MqttOptions::new(
        format!("edgemetal-rack-{}", session.rack_id()),
        settings.broker.host.clone(),
        settings.broker.port,
    );
    options.set_keep_alive(Duration::from_secs(10));
    options.set_clean_session(true);
    options.set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    options.set_last_will(LastWill::new(
        will.topic,
        will.payload,
        QoS::AtLeastOnce,
        will.retain,
    ));
    options.set_credentials(settings.username.clone(), settings.password.clone());
    if settings.broker.tls {
        options.set_transport(Transport::Tls(TlsConfiguration::Simple {
            ca: settings.ca_pem.clone().into_bytes(),
            alpn: None,
            client_auth: None,
        }));
    }
    let (client, mut eventloop) = AsyncClient::new(options, 256);

    // Publishing happens in its own task so that it never waits on the event
    // loop that drains its queue.
    let (outgoing_tx, mut outgoing_rx) = mpsc::channel::<Outgoing>(256);
    let publisher = client.clone();
    tokio::spawn(async move {
        while let Some(message) = outgoing_rx.recv().await {
            if let Err(error) = publisher
                .publish(
                    message.topic,
                    QoS::AtLeastOnce,
                    message.retain,
                    message.payload,
                )
                .await
            {
                tracing::warn!(%error, "cannot queue a publish");
            }
        }
    });
    let send = |message: Outgoing| {
        if outgoing_tx.try_send(message).is_err() {
            tracing::warn!("outgoing queue full; message dropped");
        }
    };

    // Power commands run in their own tasks; their results come back here to be sealed.
    let (power_done, mut power_results) =
        mpsc::channel::<(u64, edgemetal_protocol::PowerOutcome)>(64);

    let mut writer = ChunkWriter::start(settings.boot_cache.clone());
    let mut window = FetchWindow::new(
        BLOB_RETRY,
        settings.boot_cache.blob_rate_limit(),
        Instant::now(),
    );
    // When to fill the window again if no chunk arrives (pacing, retries).
    let mut blob_wake: Option<Instant> = None;
    let mut boot_queries =
        std::mem::replace(&mut settings.boot_queries, mpsc::unbounded_channel().1);

    // Highest event id sent on this connection; resent from the ack on reconnect.
    let mut events_sent = 0u64;
    // Last id of the log batch awaiting its ack.
    let mut logs_in_flight: Option<u64> = None;
    let mut heartbeat = tokio::time::interval(settings.heartbeat);
    // What the region was last told the cache holds (sent again on change).
    let mut resources_reported = Vec::new();
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connected = false;
    loop {
        tokio::select! {
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    connected = true;
                    hub.set_connected(true);
                    tracing::info!(broker = %settings.broker, rack = %session.rack_id(), "connected to broker");
                    if let Err(error) = client.try_subscribe(session.subscription(), QoS::AtLeastOnce) {
                        tracing::error!(%error, "cannot subscribe to the rack's topics");
                    }
                    let messages = session.on_connected(now_ms(), crate::system::interfaces());
                    if persist_counters(&mut session, &files.counters).await {
                        for message in messages {
                            send(message);
                        }
                    }
                    events_sent = files.events.queue.lock().unwrap_or_else(|e| e.into_inner()).acked();
                    deliver_events(&mut session, &files, &mut events_sent, &send).await;
                    logs_in_flight = None;
                    deliver_logs(&mut session, &files, &mut logs_in_flight, &send).await;
                    window.reset();
                    blob_wake = blobs::ask(&mut session, &files, &settings.boot_cache, &hub, &mut window, &send).await;
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let inbound = session.on_publish(now_ms(), &publish.topic, &publish.payload, publish.retain);
                    if !persist_counters(&mut session, &files.counters).await {
                        continue;
                    }
                    match inbound {
                        Inbound::Apply(snapshot) => {
                            let file = files.snapshot.clone();
                            let to_store = snapshot.clone();
                            let persisted = tokio::task::spawn_blocking(move || file.store(&to_store))
                                .await
                                .map_err(|e| e.to_string())
                                .and_then(|r| r.map_err(|e| e.to_string()));
                            match &persisted {
                                Ok(()) => {
                                    hub.metrics.link.snapshots_applied.inc();
                                    tracing::info!(generation = snapshot.generation.0, subnets = snapshot.subnets.len(), "applied snapshot");
                                    hub.set_applied(snapshot.clone());
                                }
                                Err(error) => {
                                    hub.metrics.link.snapshots_refused.inc();
                                    tracing::error!(%error, "cannot persist snapshot; keeping the previous one");
                                }
                            }
                            let ack = session.applied(now_ms(), snapshot, persisted);
                            if persist_counters(&mut session, &files.counters).await {
                                send(ack);
                            }
                            let cache = settings.boot_cache.clone();
                            let wanted = blobs::wanted_resources(&hub);
                            let _ = tokio::task::spawn_blocking(move || cache.prune(&wanted)).await;
                            blob_wake = blobs::ask(&mut session, &files, &settings.boot_cache, &hub, &mut window, &send).await;
                        }
                        Inbound::Rekey(keys) => {
                            // Persist first: a crash after the ack but before the write
                            // would leave the rack unable to open the region's frames.
                            let epoch = keys.key_epoch;
                            let rotated = crate::state::identity::rotate(
                                &files.state_dir,
                                &mut files.identity,
                                epoch,
                                &keys.secret,
                            );
                            match rotated {
                                Ok(()) => {
                                    let ack = session.rekeyed(now_ms(), keys);
                                    if persist_counters(&mut session, &files.counters).await {
                                        send(ack);
                                    }
                                    tracing::info!(epoch, "switched to the new link key");
                                }
                                Err(error) => tracing::error!(%error, "cannot persist the new link key; staying on the old one"),
                            }
                        }
                        Inbound::EventsAcked(up_to) => {
                            let acked = files.events.queue.lock().unwrap_or_else(|e| e.into_inner()).ack(up_to);
                            if let Err(error) = acked {
                                tracing::error!(%error, "cannot trim the event queue");
                            }
                        }
                        Inbound::LogsAcked(up_to) => {
                            let forwarded = ack_logs(&files, up_to).await;
                            hub.metrics.syslog.forwarded.inc_by(forwarded);
                            hub.metrics.syslog.queued_bytes.set(files.logs.lock().pending_bytes() as i64);
                            if logs_in_flight.is_some_and(|last| up_to >= last) {
                                logs_in_flight = None;
                            }
                            deliver_logs(&mut session, &files, &mut logs_in_flight, &send).await;
                        }
                        Inbound::BlobChunk(chunk) => writer.write(chunk, blobs::wanted_resources(&hub)).await,
                        Inbound::BootAnswer(answer) => settings.decisions.answered(answer),
                        Inbound::Intents(planned) => {
                            let decisions = settings.decisions.clone();
                            let (full, count, plans) = (planned.batch.full, planned.batch.intents.len(), planned.plans.len());
                            let changed = tokio::task::spawn_blocking(move || decisions.apply_planned(planned)).await.unwrap_or(0);
                            tracing::info!(full, intents = count, plans, changed, "boot intents received");
                        }
                        Inbound::Power(command) => {
                            let executor = settings.power.clone();
                            let done = power_done.clone();
                            tokio::spawn(async move {
                                let outcome = executor.execute(command.request).await;
                                let _ = done.send((command.request_id, outcome)).await;
                            });
                        }
                        Inbound::Answer(answer) => {
                            if persist_counters(&mut session, &files.counters).await {
                                send(answer);
                            }
                        }
                        Inbound::Dropped(reason, detail) => {
                            hub.metrics.link.reject(reason);
                            tracing::warn!(topic = %publish.topic, bytes = publish.payload.len(), %reason, %detail, "dropped link payload");
                        }
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    if connected {
                        tracing::warn!(broker = %settings.broker, %error, "lost the broker; serving from the applied snapshot");
                    } else {
                        tracing::debug!(broker = %settings.broker, %error, "broker not reachable");
                    }
                    connected = false;
                    hub.set_connected(false);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    // Every connection gets a will of its own: the region
                    // accepts only the will of the connection it saw come online.
                    let will = session.last_will(now_ms());
                    if persist_counters(&mut session, &files.counters).await {
                        eventloop.mqtt_options.set_last_will(LastWill::new(will.topic, will.payload, QoS::AtLeastOnce, will.retain));
                    }
                }
            },
            Some(query) = boot_queries.recv() => {
                // Unconnected, the query is dropped: the boot uses what the rack remembers.
                if connected {
                    let message = session.boot_query(now_ms(), query);
                    if persist_counters(&mut session, &files.counters).await {
                        send(message);
                    }
                }
            }
            Some((request_id, outcome)) = power_results.recv() => {
                // Sent even while disconnected: the client queues it, and the
                // region has likely given up anyway if the link is down long.
                let result = session.power_result(now_ms(), request_id, outcome);
                if persist_counters(&mut session, &files.counters).await {
                    send(result);
                }
            }
            Some(written) = writer.written.recv() => {
                blobs::record(&mut window, &written);
                if connected {
                    blob_wake = blobs::ask(&mut session, &files, &settings.boot_cache, &hub, &mut window, &send).await;
                }
            }
            _ = blobs::sleep_until_wake(blob_wake), if connected && blob_wake.is_some() => {
                blob_wake = blobs::ask(&mut session, &files, &settings.boot_cache, &hub, &mut window, &send).await;
            }
            _ = files.events.added.notified(), if connected => {
                deliver_events(&mut session, &files, &mut events_sent, &send).await;
            }
            _ = files.logs.added.notified(), if connected => {
                deliver_logs(&mut session, &files, &mut logs_in_flight, &send).await;
            }
            _ = heartbeat.tick(), if connected => {
                // Anything sent but still unacknowledged a heartbeat later is sent again;
                // the region applies each event id once.
                events_sent = files.events.queue.lock().unwrap_or_else(|e| e.into_inner()).acked();
                deliver_events(&mut session, &files, &mut events_sent, &send).await;
                logs_in_flight = None;
                deliver_logs(&mut session, &files, &mut logs_in_flight, &send).await;
                blob_wake = blobs::ask(&mut session, &files, &settings.boot_cache, &hub, &mut window, &send).await;
                let mut health = vec![ServiceHealth {
                    service: ServiceKind::Link,
                    state: HealthState::Healthy,
                    detail: String::new(),
                }];
                if let Ok(services) = hub.services.read() {
                    health.extend(services.iter().cloned());
                }
                let counters = vec![edgemetal_protocol::Counter {
                    name: "link_rejected_total".into(),
                    value: hub.metrics.link.rejected_total(),
                }];
                let heartbeat = session.heartbeat(now_ms(), started.elapsed().as_secs(), health, counters);
                if persist_counters(&mut session, &files.counters).await {
                    send(heartbeat);
                }
                let held = blobs::held_resources(&hub);
                if held != resources_reported {
                    if let Some(report) = session.resources(now_ms(), held.clone()) {
                        if persist_counters(&mut session, &files.counters).await {
                            send(report);
                            resources_reported = held;
                        }
                    }
                }
            }
        }
    }
}
