//! The embedded MQTT broker (rumqttd) for one-machine setups: TLS with the
//! region's own certificate, and a login check against the rack identities.
//!
//! rumqttd has no per-topic ACLs: a rack with valid credentials can publish
//! anywhere. The end-to-end seal covers that: a frame on another rack's topic
//! fails the rack-id check or the seal and is dropped and counted.

use std::collections::HashMap;
use std::net::SocketAddr;

use anyhow::Context;
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings, TlsConfig};

use crate::link::Keyring;
use crate::pki::Pki;

/// Starts rumqttd on `listen` in its own threads; `pki` None means plaintext.
/// Clients retry until it accepts.
pub fn start(listen: SocketAddr, pki: Option<&Pki>, keyring: Keyring) -> anyhow::Result<()> {
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: 16 * 1024 * 1024,
        max_inflight_count: 256,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    connections.set_auth_handler(move |client_id, user, password| {
        let allowed = keyring.broker_login_allowed(&client_id, &user, &password);
        if !allowed {
            // The claimed user, never the password.
            tracing::warn!(%client_id, %user, "embedded broker refused a login");
        }
        async move { allowed }
    });
    let tls = pki.map(|pki| TlsConfig::Rustls {
        capath: None,
        certpath: pki.server_cert.display().to_string(),
        keypath: pki.server_key.display().to_string(),
    });
    let server = ServerSettings {
        name: "edgemetal-v4".to_string(),
        listen,
        tls,
        next_connection_delay_ms: 1,
        connections,
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
    tracing::info!(%listen, tls = pki.is_some(), "embedded MQTT broker listening");
    Ok(())
}
