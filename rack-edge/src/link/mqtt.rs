//! The MQTT adapter around [`Session`]: owns the connection, the heartbeat
//! timer and the snapshot file; the session decides everything else.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edgemetal_protocol::{BrokerUrl, HealthState, ServiceHealth, ServiceKind};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

use super::session::{Inbound, Outgoing, Session};
use crate::state::SnapshotFile;
use crate::status::LiveStatus;

/// Largest payload the link accepts or sends.
const MAX_PACKET_BYTES: usize = 16 * 1024 * 1024;

/// Settings of the rack's link.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    /// The broker.
    pub broker: BrokerUrl,
    /// Heartbeat period.
    pub heartbeat: Duration,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Runs the link forever, reconnecting as needed.
pub async fn run(
    settings: LinkSettings,
    mut session: Session,
    snapshot_file: SnapshotFile,
    status: Arc<LiveStatus>,
) {
    let started = Instant::now();
    let will = session.last_will(now_ms());
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

    let mut heartbeat = tokio::time::interval(settings.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connected = false;
    loop {
        tokio::select! {
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    connected = true;
                    status.set_connected(true);
                    tracing::info!(broker = %settings.broker, rack = %session.rack_id(), "connected to broker");
                    if let Err(error) = client.try_subscribe(session.subscription(), QoS::AtLeastOnce) {
                        tracing::error!(%error, "cannot subscribe to the rack's topics");
                    }
                    for message in session.on_connected(now_ms(), crate::system::interfaces()) {
                        send(message);
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    match session.on_publish(now_ms(), &publish.topic, &publish.payload) {
                        Inbound::Apply(snapshot) => {
                            let file = snapshot_file.clone();
                            let to_store = snapshot.clone();
                            let persisted = tokio::task::spawn_blocking(move || file.store(&to_store))
                                .await
                                .map_err(|e| e.to_string())
                                .and_then(|r| r.map_err(|e| e.to_string()));
                            match &persisted {
                                Ok(()) => {
                                    status.metrics.snapshots_applied.inc();
                                    tracing::info!(generation = snapshot.generation.0, subnets = snapshot.subnets.len(), "applied snapshot");
                                    status.set_applied(snapshot.clone());
                                }
                                Err(error) => {
                                    status.metrics.snapshots_refused.inc();
                                    tracing::error!(%error, "cannot persist snapshot; keeping the previous one");
                                }
                            }
                            send(session.applied(now_ms(), snapshot, persisted));
                        }
                        Inbound::Answer(answer) => send(answer),
                        Inbound::Dropped(reason, detail) => {
                            status.metrics.reject(reason);
                            tracing::warn!(topic = %publish.topic, bytes = publish.payload.len(), %detail, "dropped link payload");
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
                    status.set_connected(false);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            _ = heartbeat.tick(), if connected => {
                let health = vec![ServiceHealth {
                    service: ServiceKind::Link,
                    state: HealthState::Healthy,
                    detail: String::new(),
                }];
                let counters = vec![edgemetal_protocol::Counter {
                    name: "link_rejected_total".into(),
                    value: status.metrics.rejected_total(),
                }];
                send(session.heartbeat(now_ms(), started.elapsed().as_secs(), health, counters));
            }
        }
    }
}
