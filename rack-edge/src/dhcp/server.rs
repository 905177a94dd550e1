//! The DHCP adapter: owns the sockets (one per served interface, bound to the
//! device) and the clock, feeds the engine, and hands its actions to the
//! journal writer ([`super::commit`]), which makes them durable before it
//! sends them. Everything about DHCP itself is in the engine.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use edgemetal_protocol::{ConfigSnapshot, Discovery, LeaseChange, LeaseReport, RackEventKind};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::commit::{Committer, Outlet, Reply, Work};
use super::{
    Action, Engine, EngineConfig, Journal, JournalRecord, LeaseDirectory, LeaseEvent, RecvMeta,
};
use crate::hub::Hub;
use crate::state::SharedQueue;

/// Compact the journal once it has grown by this many records (and by
/// more than its live size, see [`Journal::needs_compaction`]).
const COMPACT_AFTER: usize = 10_000;

/// Most datagrams handled per batch handed to the writer.
const MAX_BATCH: usize = 256;

/// Datagrams read from one socket in one go: the socket's index, then each
/// datagram with its sender.
type Burst = (usize, Vec<(Vec<u8>, SocketAddr)>);

/// One interface the rack serves DHCP on.
struct Served {
    address: Ipv4Addr,
    socket: Arc<UdpSocket>,
}

/// The engine's clock: wall-clock seconds, so persisted expiry times stay
/// meaningful across restarts.
pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The first IPv4 address configured on `interface`.
fn interface_address(interface: &str) -> anyhow::Result<Ipv4Addr> {
    if_addrs::get_if_addrs()?
        .into_iter()
        .filter(|i| i.name == interface)
        .find_map(|i| match i.addr {
            if_addrs::IfAddr::V4(v4) => Some(v4.ip),
            _ => None,
        })
        .with_context(|| format!("interface {interface} has no IPv4 address"))
}

/// A UDP socket on port 67 that only sees (and sends on) `interface`, so
/// several interfaces can each have their own; and a duplicate of it for
/// the writer thread to send with.
fn bind(interface: &str) -> anyhow::Result<(UdpSocket, std::net::UdpSocket)> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_broadcast(true)?;
    socket
        .bind_device(Some(interface.as_bytes()))
        .with_context(|| format!("cannot bind to device {interface} (needs CAP_NET_RAW)"))?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 67)).into())
        .context("cannot bind UDP port 67 (needs CAP_NET_BIND_SERVICE)")?;
    let sender = socket.try_clone()?;
    Ok((UdpSocket::from_std(socket.into())?, sender.into()))
}

/// Serves DHCP on `interfaces` until the process ends.
pub async fn run(
    interfaces: Vec<String>,
    http_port: u16,
    state_dir: &Path,
    hub: Arc<Hub>,
    events: Arc<SharedQueue>,
    directory: LeaseDirectory,
) -> anyhow::Result<()> {
    let mut served = Vec::new();
    let mut outlets = Vec::new();
    for name in interfaces {
        let address = interface_address(&name)?;
        let (socket, sender) = bind(&name)?;
        tracing::info!(interface = %name, %address, "DHCP listening");
        served.push(Served {
            address,
            socket: Arc::new(socket),
        });
        outlets.push(Outlet {
            name,
            socket: sender,
        });
    }
    anyhow::ensure!(!served.is_empty(), "no DHCP interface");
    hub.set_health(
        edgemetal_protocol::ServiceKind::Dhcp,
        edgemetal_protocol::HealthState::Healthy,
        "",
    );
    let addresses: Vec<Ipv4Addr> = served.iter().map(|s| s.address).collect();
    let server_id = addresses[0];

    let journal_path = state_dir.join("dhcp-leases.jsonl");
    let (journal, replayed) = Journal::open(&journal_path, COMPACT_AFTER)
        .with_context(|| format!("cannot open {}", journal_path.display()))?;
    if replayed.torn_tail || replayed.corrupt > 0 {
        tracing::warn!(
            torn = replayed.torn_tail,
            corrupt = replayed.corrupt,
            "lease journal repaired on replay"
        );
    }
    tracing::info!(records = replayed.records, "lease journal replayed");

    let mut snapshots = hub.snapshots.subscribe();
    let config = |snapshot: &Option<ConfigSnapshot>| {
        let empty = ConfigSnapshot {
            boot_resources: Vec::new(),
            dns: Default::default(),
            generation: Default::default(),
            subnets: Vec::new(),
            gateway: Default::default(),
            machine_boot: Default::default(),
        };
        EngineConfig::from_snapshot(
            snapshot.as_ref().unwrap_or(&empty),
            &hub.rack_id,
            &addresses,
            server_id,
            http_port,
        )
    };
    let mut engine =
        Engine::new(config(&snapshots.borrow_and_update())).with_leases(replayed.leases);
    directory.fill(engine.leases(), now_secs());
    let writer = Committer {
        journal,
        outlets,
        hub: hub.clone(),
        events,
        directory,
    }
    .start()
    .context("cannot start the DHCP journal writer")?;

    // One reader task per socket; the engine itself is driven from one place.
    // A reader hands over every datagram already queued on its socket at
    // once (a burst), so under load the engine is woken once per burst, not
    // once per datagram.
    let (packets_tx, mut packets) = mpsc::channel::<Burst>(64);
    for (index, interface) in served.iter().enumerate() {
        let socket = interface.socket.clone();
        let tx = packets_tx.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 1500];
            loop {
                let mut burst = Vec::new();
                match socket.recv_from(&mut buffer).await {
                    Ok((len, from)) => burst.push((buffer[..len].to_vec(), from)),
                    Err(error) => {
                        tracing::warn!(%error, "DHCP receive failed");
                        continue;
                    }
                }
                while burst.len() < MAX_BATCH {
                    match socket.try_recv_from(&mut buffer) {
                        Ok((len, from)) => burst.push((buffer[..len].to_vec(), from)),
                        Err(_) => break,
                    }
                }
                if tx.send((index, burst)).await.is_err() {
                    return;
                }
            }
        });
    }

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut dropped_seen: std::collections::HashMap<&'static str, u64> = Default::default();
    loop {
        // Handle every datagram already waiting (up to a batch) and hand the
        // batch to the writer, which makes its records durable before it
        // sends its replies; meanwhile this loop handles the next datagrams.
        let mut batch = Batch::default();
        tokio::select! {
            Some(burst) = packets.recv() => {
                let mut next = Some(burst);
                let mut handled = 0;
                while let Some((index, datagrams)) = next.take() {
                    let now = now_secs();
                    for (bytes, from) in datagrams {
                        if let SocketAddr::V4(source) = from {
                            let meta = RecvMeta { local_addr: served[index].address, source };
                            batch.add(index, engine.handle(now, &bytes, meta));
                        }
                        handled += 1;
                    }
                    if handled < MAX_BATCH {
                        next = packets.try_recv().ok();
                    }
                }
            }
            changed = snapshots.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                engine.reconfigure(config(&snapshots.borrow_and_update()));
                tracing::info!("DHCP reconfigured from the new snapshot");
                continue;
            }
            _ = tick.tick() => batch.add(0, engine.poll_expired(now_secs())),
        };
        if !batch.is_empty() {
            writer.send(batch.into_work()).await?;
        }
        for (reason, count) in engine.counters().dropped_by_reason() {
            let seen = dropped_seen.entry(reason.as_str()).or_default();
            if count > *seen {
                hub.metrics
                    .dhcp
                    .dropped
                    .get_or_create(&vec![("reason", reason.as_str().to_string())])
                    .inc_by(count - *seen);
                *seen = count;
            }
        }
        if writer.take_compaction_request() {
            // Taken after every batch already queued: the writer applies it
            // in that order, so no record is lost from the rewritten file.
            writer
                .send(Work::Compact(JournalRecord::live(engine.leases())))
                .await?;
        }
    }
}

/// The engine's actions for one batch of datagrams, sorted for the writer.
#[derive(Default)]
struct Batch {
    records: Vec<JournalRecord>,
    replies: Vec<Reply>,
    events: Vec<LeaseEvent>,
}

impl Batch {
    fn add(&mut self, interface: usize, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Persist(record) => self.records.push(record),
                Action::Send { bytes, to } => self.replies.push(Reply {
                    interface,
                    bytes,
                    to,
                }),
                Action::Event(event) => self.events.push(event),
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty() && self.replies.is_empty() && self.events.is_empty()
    }

    fn into_work(self) -> Work {
        Work::Batch {
            records: self.records,
            replies: self.replies,
            events: self.events,
        }
    }
}

pub(super) fn report(event: LeaseEvent, hub: &Hub) {
    hub.metrics
        .dhcp
        .events
        .get_or_create(&vec![("event", event_name(&event).to_string())])
        .inc();
    match &event {
        LeaseEvent::UnknownPxeClient { mac, arch } => {
            tracing::info!(%mac, ?arch, "network boot from an unknown machine")
        }
        LeaseEvent::New(lease)
        | LeaseEvent::Renewed(lease)
        | LeaseEvent::Released(lease)
        | LeaseEvent::Expired(lease)
        // Per-lease lines are debug: at thousands of leases a second the
        // metrics carry the rates, the journal the facts.
        | LeaseEvent::Declined(lease) => tracing::debug!(
            event = event_name(&event),
            mac = %lease.mac,
            address = %lease.address,
            subnet = %lease.subnet_id,
            expires_at = lease.expires_at,
            "lease"
        ),
    }
}

/// The region's view of an engine event.
pub(super) fn to_rack_event(event: &LeaseEvent) -> Option<RackEventKind> {
    let (change, lease) = match event {
        LeaseEvent::New(lease) => (LeaseChange::New, lease),
        LeaseEvent::Renewed(lease) => (LeaseChange::Renewed, lease),
        LeaseEvent::Released(lease) => (LeaseChange::Released, lease),
        LeaseEvent::Expired(lease) => (LeaseChange::Expired, lease),
        LeaseEvent::Declined(lease) => (LeaseChange::Declined, lease),
        LeaseEvent::UnknownPxeClient { mac, arch } => {
            return Some(RackEventKind::Discovery(Discovery {
                mac: *mac,
                arch: *arch,
            }))
        }
    };
    Some(RackEventKind::Lease(LeaseReport {
        change,
        subnet_id: lease.subnet_id.to_string(),
        address: lease.address,
        mac: lease.mac,
        expires_at_secs: lease.expires_at,
    }))
}

fn event_name(event: &LeaseEvent) -> &'static str {
    match event {
        LeaseEvent::New(_) => "new",
        LeaseEvent::Renewed(_) => "renewed",
        LeaseEvent::Released(_) => "released",
        LeaseEvent::Expired(_) => "expired",
        LeaseEvent::Declined(_) => "declined",
        LeaseEvent::UnknownPxeClient { .. } => "unknown_pxe_client",
    }
}

/// The DHCP server's metrics, registered once on the rack's registry (like
/// every service's counters): `dhcp_events{event}`, `dhcp_dropped{reason}`.
#[derive(Debug, Default)]
pub struct DhcpMetrics {
    /// Lease events, by kind.
    pub events: Family<Vec<(&'static str, String)>, Counter>,
    /// Datagrams dropped, by reason (the engine's counts, as they grow).
    pub dropped: Family<Vec<(&'static str, String)>, Counter>,
}

impl DhcpMetrics {
    /// Registers the metrics under the rack's registry.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "dhcp_events",
            "DHCP lease events, by kind",
            self.events.clone(),
        );
        registry.register(
            "dhcp_dropped",
            "DHCP datagrams dropped, by reason",
            self.dropped.clone(),
        );
    }
}
