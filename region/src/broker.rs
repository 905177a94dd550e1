//! The embedded MQTT broker (rumqttd) for one-machine setups.

use std::collections::HashMap;
use std::net::SocketAddr;

use anyhow::Context;
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Starts rumqttd on `listen` in its own threads. Clients retry until it accepts.
pub fn start(listen: SocketAddr) -> anyhow::Result<()> {
    let server = ServerSettings {
        name: "edgemetal-v4".to_string(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: 16 * 1024 * 1024,
            max_inflight_count: 256,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_000,
            max_outgoing_packet_count: 256,
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("v4".to_string(), server)])),
        ..Default::default()
    };
    // Fail clearly if the port is taken, rather than have rumqttd log it from its thread.
    std::net::TcpListener::bind(listen)
        .with_context(|| format!("embedded broker cannot listen on {listen}"))?;
    let mut broker = Broker::new(config);
    std::thread::Builder::new()
        .name("embedded-broker".into())
        .spawn(move || {
            if let Err(error) = broker.start() {
                tracing::error!(%error, "embedded broker stopped");
            }
        })
        .context("cannot start the embedded broker thread")?;
    tracing::info!(%listen, "embedded MQTT broker listening");
    Ok(())
}
