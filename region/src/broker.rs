//! The embedded MQTT broker (rumqttd) for one-machine setups: TLS with the
//! region's own certificate, a login check against the rack identities, and
//! the same per-rack topic ACL an external Mosquitto gets ([`crate::broker_acl`]).
//!
//! rumqttd has no ACL hook, so the rules sit in its packet parser: [`AclV4`]
//! wraps rumqttd's own MQTT 3.1.1 codec (one clone per connection), learns
//! the user from CONNECT and refuses — by ending the connection, fail-closed
//! — a will, PUBLISH or SUBSCRIBE outside what that user may touch. The
//! end-to-end seal remains the first fence; this one keeps a rack's
//! credentials from even seeing another rack's traffic. `Server`/`Protocol`
//! are public but not documented API of rumqttd: the pin in Cargo.lock holds.

use std::net::SocketAddr;

use anyhow::Context;
use bytes::BytesMut;
use rumqttd::protocol::{self, v4::V4, Packet, Protocol};
use rumqttd::{
    ConnectionSettings, LinkType, Router, RouterConfig, Server, ServerSettings, TlsConfig,
};

use crate::broker_acl::{may_publish, may_subscribe};

use crate::link::Keyring;
use crate::pki::Pki;

/// Bytes per segment of the router's in-memory log; one is kept per
/// subscription filter (each rack's `down/#`, the region's `up/#`).
///
/// The log only bridges a publish to the subscribers reading it: every
/// session here is clean (region and racks), so nothing is queued for an
/// offline client, and the router moves packets to a connection as soon as
/// it has QoS 1 slots (`max_inflight_count`, more than a rack's blob fetch
/// window), so a reader lags the log by a few packets. Retention is
/// therefore memory, not delivery: 100 MiB × 10 segments kept about 1 GB per
/// rack that synced a large boot resource. A segment may overflow its size
/// by one packet, so a 512 KiB chunk (the largest packet) always fits, and
/// a filter holds at most `(SEGMENTS_KEPT + 1) × (SEGMENT_BYTES + chunk)`,
/// about 6 MiB.
const SEGMENT_BYTES: usize = 1024 * 1024;
/// Full segments kept per filter besides the one being written.
const SEGMENTS_KEPT: usize = 3;

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
    let router = RouterConfig {
        max_connections: 10_000,
        max_outgoing_packet_count: 256,
        max_segment_size: SEGMENT_BYTES,
        max_segment_count: SEGMENTS_KEPT,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    };
    // Fail clearly if the port is taken, rather than have rumqttd log it from its thread.
    std::net::TcpListener::bind(listen)
        .with_context(|| format!("embedded broker cannot listen on {listen}"))?;
    let router_tx = Router::new(0, router).spawn();
    let mut server = Server::new(server, router_tx, AclV4::default());
    std::thread::Builder::new()
        .name("embedded-broker".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => return tracing::error!(%error, "embedded broker runtime"),
            };
            runtime.block_on(async {
                if let Err(error) = server.start(LinkType::Remote).await {
                    tracing::error!(?error, "embedded broker stopped");
                }
            });
        })
        .context("cannot start the embedded broker thread")?;
    tracing::info!(%listen, tls = pki.is_some(), "embedded MQTT broker listening");
    Ok(())
}

/// rumqttd's MQTT 3.1.1 codec with the topic ACL applied to what clients send.
#[derive(Clone, Default)]
pub struct AclV4 {
    /// The user the connection logged in as (from its CONNECT).
    user: Option<String>,
}

impl AclV4 {
    fn allowed(&mut self, packet: &Packet) -> bool {
        match packet {
            Packet::Connect(_, _, will, _, login) => {
                self.user = login.as_ref().map(|l| l.username.clone());
                will.as_ref()
                    .is_none_or(|will| self.publish_allowed(&will.topic))
            }
            Packet::Publish(publish, _) => self.publish_allowed(&publish.topic),
            Packet::Subscribe(subscribe, _) => subscribe.filters.iter().all(|filter| {
                self.user
                    .as_deref()
                    .is_some_and(|user| may_subscribe(user, &filter.path))
            }),
            _ => true,
        }
    }

    fn publish_allowed(&self, topic: &[u8]) -> bool {
        match (self.user.as_deref(), std::str::from_utf8(topic)) {
            (Some(user), Ok(topic)) => may_publish(user, topic),
            _ => false,
        }
    }
}

impl Protocol for AclV4 {
    fn read_mut(
        &mut self,
        stream: &mut BytesMut,
        max_size: usize,
    ) -> Result<Packet, protocol::Error> {
        let packet = V4.read_mut(stream, max_size)?;
        if self.allowed(&packet) {
            return Ok(packet);
        }
        // The user name is not secret; the topic is what was refused.
        let (kind, topic) = match &packet {
            Packet::Publish(publish, _) => (
                "publish",
                String::from_utf8_lossy(&publish.topic).into_owned(),
            ),
            Packet::Subscribe(subscribe, _) => (
                "subscribe",
                subscribe
                    .filters
                    .iter()
                    .map(|f| f.path.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            _ => ("will", String::new()),
        };
        tracing::warn!(user = ?self.user, kind, %topic, "embedded broker refused a topic outside the client's ACL; disconnecting it");
        Err(protocol::Error::IncorrectPacketFormat)
    }

    fn write(&self, packet: Packet, write: &mut BytesMut) -> Result<usize, protocol::Error> {
        V4.write(packet, write)
    }
}
