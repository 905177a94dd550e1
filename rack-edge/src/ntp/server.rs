//! The tokio adapter: the server socket, one connected socket per
//! upstream, the timers, and health and metrics. Policy and timekeeping
//! live in [`super::serve`] and [`super::discipline`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use edgemetal_protocol::{ConfigSnapshot, HealthState, ServiceKind};
use ntp_proto::{NtpClock, NtpTimestamp, SystemSnapshot};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::access::server_config;
use super::clock::RackClock;
use super::discipline::{with_default_port, Discipline, Effect, SourceKey, SyncState};
use super::serve::Responder;
use crate::hub::Hub;

/// How long a name lookup for an upstream may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How soon an upstream that could not be resolved, or refused service, is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(60);
/// How often health and metrics are brought up to date between events
/// (the holdover ends by itself, without any event).
const REFRESH: Duration = Duration::from_secs(2);

/// The NTP server, bound and ready to run.
pub struct NtpServer {
    socket: UdpSocket,
    hub: Arc<Hub>,
    clock: RackClock,
}

impl NtpServer {
    /// Binds the server's UDP socket on `address`.
    pub async fn bind(address: SocketAddr, hub: Arc<Hub>) -> std::io::Result<NtpServer> {
        let socket = UdpSocket::bind(address).await?;
        Ok(NtpServer {
            socket,
            hub,
            clock: RackClock::system(),
        })
    }

    /// The address it is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Serves clients and disciplines the clock until the socket fails.
    pub async fn run(self) -> std::io::Result<()> {
        let metrics = self.hub.metrics.ntp.clone();
        let mut snapshots = self.hub.snapshots.subscribe();
        let initial = snapshots.borrow_and_update().clone();
        let (advertise, mut advertised) = watch::channel(SystemSnapshot::default());
        let discipline = tokio::spawn(discipline_loop(
            self.clock.clone(),
            self.hub.snapshots.subscribe(),
            advertise,
            self.hub.clone(),
        ));
        let _stop_discipline = AbortOnDrop(discipline);

        let mut responder = Responder::new(
            server_config(initial.as_ref()),
            self.clock.clone(),
            *advertised.borrow_and_update(),
            metrics.clone(),
        );
        let mut buffer = vec![0u8; 2048];
        loop {
            tokio::select! {
                received = self.socket.recv_from(&mut buffer) => {
                    let (length, client) = match received {
                        Ok(received) => received,
                        Err(error) if transient(&error) => {
                            metrics.drop_reason("socket_error");
                            continue;
                        }
                        Err(error) => return Err(error),
                    };
                    let at = infallible_now(responder.clock());
                    if let Some(reply) = responder.handle(client.ip(), at, &buffer[..length]) {
                        if let Err(error) = self.socket.send_to(&reply, client).await {
                            tracing::debug!(%client, %error, "cannot answer an NTP client");
                        }
                    }
                }
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        // The rack is shutting down.
                        return Ok(());
                    }
                    let snapshot = snapshots.borrow_and_update().clone();
                    responder.set_config(server_config(snapshot.as_ref()));
                }
                changed = advertised.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    responder.set_system(*advertised.borrow_and_update());
                }
            }
        }
    }
}

/// Aborts the discipline when the server stops.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn infallible_now(clock: &RackClock) -> NtpTimestamp {
    match clock.now() {
        Ok(now) => now,
        Err(never) => match never {},
    }
}

/// Errors a UDP socket reports for one datagram (an ICMP error for an
/// earlier send, a full buffer) rather than for itself.
fn transient(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionRefused
            | ConnectionReset
            | WouldBlock
            | Interrupted
            | HostUnreachable
            | NetworkUnreachable
    )
}

/// One upstream's socket and the task reading it.
struct Link {
    socket: Arc<UdpSocket>,
    reader: JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// An answer from an upstream, stamped on arrival.
struct Arrival {
    source: SourceKey,
    bytes: Vec<u8>,
    at: NtpTimestamp,
}

/// Follows the snapshot's upstreams, steering `clock`, and publishes what
/// the server should advertise, the service's health and the metrics.
async fn discipline_loop(
    clock: RackClock,
    mut snapshots: watch::Receiver<Option<ConfigSnapshot>>,
    advertise: watch::Sender<SystemSnapshot>,
    hub: Arc<Hub>,
) {
    let own_addresses = if_addrs::get_if_addrs()
        .map(|interfaces| interfaces.iter().map(|interface| interface.ip()).collect())
        .unwrap_or_default();
    let mut discipline = Discipline::new(clock.clone(), own_addresses);
    let (arrivals_tx, mut arrivals) = mpsc::channel::<Arrival>(64);
    let mut links: HashMap<SourceKey, Link> = HashMap::new();
    let mut timers: HashMap<SourceKey, Instant> = HashMap::new();
    let mut system_timer: Option<Instant> = None;
    // Upstream names to (re)start, and when.
    let mut pending: Vec<(String, Instant)> = Vec::new();
    let mut wanted: Vec<String> = Vec::new();
    let mut reported: Option<SyncState> = None;
    let mut refresh = Instant::now();
    // The snapshot's upstreams are read at start and whenever it changes.
    let mut reread = true;

    loop {
        if std::mem::take(&mut reread) {
            let upstreams = snapshots
                .borrow_and_update()
                .as_ref()
                .map(|snapshot| snapshot.gateway.ntp.upstreams.clone())
                .unwrap_or_default();
            if upstreams != wanted {
                tracing::info!(?upstreams, "NTP upstreams");
                let gone: Vec<SourceKey> = discipline
                    .keys()
                    .filter(|(_, name)| !upstreams.iter().any(|wanted| wanted == name))
                    .map(|(key, _)| key)
                    .collect();
                for key in gone {
                    discipline.remove(key);
                    links.remove(&key);
                    timers.remove(&key);
                }
                pending.retain(|(name, _)| upstreams.contains(name));
                for name in &upstreams {
                    let running = discipline.keys().any(|(_, running)| running == name);
                    if !running && !pending.iter().any(|(queued, _)| queued == name) {
                        pending.push((name.clone(), Instant::now()));
                    }
                }
                wanted = upstreams;
            }
        }

        let now = Instant::now();
        let mut effects = Vec::new();
        // Start the upstreams that are due.
        let due: Vec<String> = pending
            .iter()
            .filter(|(_, at)| *at <= now)
            .map(|(name, _)| name.clone())
            .collect();
        pending.retain(|(_, at)| *at > now);
        for name in due {
            match connect(&name).await {
                Ok((socket, address)) => {
                    let (key, started) = discipline.add(name.clone(), address);
                    let socket = Arc::new(socket);
                    let reader = tokio::spawn(read_answers(
                        key,
                        socket.clone(),
                        clock.clone(),
                        arrivals_tx.clone(),
                    ));
                    links.insert(key, Link { socket, reader });
                    tracing::info!(upstream = %name, %address, "following NTP upstream");
                    effects.extend(started);
                }
                Err(error) => {
                    tracing::warn!(upstream = %name, %error, "cannot reach NTP upstream; will retry");
                    pending.push((name, now + RETRY_AFTER));
                }
            }
        }
        // Fire the timers that are due.
        let fired: Vec<SourceKey> = timers
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(key, _)| *key)
            .collect();
        for key in fired {
            timers.remove(&key);
            effects.extend(discipline.source_timer(key));
        }
        if system_timer.is_some_and(|at| at <= now) {
            system_timer = None;
            effects.extend(discipline.system_timer());
        }
        apply(
            effects,
            &mut discipline,
            &mut links,
            &mut timers,
            &mut system_timer,
            &mut pending,
        )
        .await;

        if refresh <= now {
            refresh = now + REFRESH;
        }
        publish(&discipline, &advertise, &hub, &mut reported);

        let next = timers
            .values()
            .copied()
            .chain(system_timer)
            .chain(pending.iter().map(|(_, at)| *at))
            .chain(std::iter::once(refresh))
            .min()
            .unwrap_or(refresh);
        tokio::select! {
            changed = snapshots.changed() => {
                if changed.is_err() {
                    return;
                }
                reread = true;
            }
            Some(arrival) = arrivals.recv() => {
                let effects = discipline.incoming(
                    arrival.source,
                    &arrival.bytes,
                    arrival.at,
                    ntp_proto::NtpInstant::now(),
                );
                apply(effects, &mut discipline, &mut links, &mut timers, &mut system_timer, &mut pending).await;
            }
            _ = tokio::time::sleep_until(next) => {}
        }
    }
}

/// Carries out the discipline's effects.
async fn apply(
    mut effects: Vec<Effect>,
    discipline: &mut Discipline,
    links: &mut HashMap<SourceKey, Link>,
    timers: &mut HashMap<SourceKey, Instant>,
    system_timer: &mut Option<Instant>,
    pending: &mut Vec<(String, Instant)>,
) {
    effects.reverse();
    while let Some(effect) = effects.pop() {
        match effect {
            Effect::Send { source, bytes } => {
                let Some(link) = links.get(&source) else {
                    continue;
                };
                match link.socket.send(&bytes).await {
                    Ok(_) => discipline.sent(source, infallible_now(discipline.clock())),
                    // Counted by the source as an unanswered poll.
                    Err(error) => tracing::debug!(%error, "cannot send to an NTP upstream"),
                }
            }
            Effect::SourceTimer { source, after } => {
                timers.insert(source, Instant::now() + after);
            }
            Effect::SystemTimer(after) => *system_timer = Some(Instant::now() + after),
            Effect::Restart { source, name } => {
                links.remove(&source);
                timers.remove(&source);
                pending.push((name, Instant::now()));
            }
            Effect::Removed { source, name } => {
                tracing::warn!(upstream = %name, "NTP upstream refused service; will retry");
                links.remove(&source);
                timers.remove(&source);
                pending.push((name, Instant::now() + RETRY_AFTER));
            }
        }
    }
}

/// Reads `socket` (connected to one upstream) into the discipline's queue.
async fn read_answers(
    source: SourceKey,
    socket: Arc<UdpSocket>,
    clock: RackClock,
    arrivals: mpsc::Sender<Arrival>,
) {
    let mut buffer = vec![0u8; 1024];
    loop {
        match socket.recv(&mut buffer).await {
            Ok(length) => {
                let at = infallible_now(&clock);
                let arrival = Arrival {
                    source,
                    bytes: buffer[..length].to_vec(),
                    at,
                };
                if arrivals.send(arrival).await.is_err() {
                    return;
                }
            }
            // ICMP port unreachable from a down upstream: the source counts the lost poll.
            Err(error) if transient(&error) => {}
            Err(error) => {
                tracing::warn!(%error, "NTP upstream socket failed");
                return;
            }
        }
    }
}

/// Resolves `name` and connects a socket to it.
async fn connect(name: &str) -> std::io::Result<(UdpSocket, SocketAddr)> {
    let target = with_default_port(name);
    let addresses: Vec<SocketAddr> =
        tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(target.as_str()))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "name lookup timed out")
            })??
            .collect();
    let address = addresses
        .iter()
        .find(|address| address.is_ipv4())
        .or(addresses.first())
        .copied()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))?;
    let local: SocketAddr = if address.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(address).await?;
    Ok((socket, address))
}

/// Hands the server its advertised state; updates health and metrics.
fn publish(
    discipline: &Discipline,
    advertise: &watch::Sender<SystemSnapshot>,
    hub: &Hub,
    reported: &mut Option<SyncState>,
) {
    let now = infallible_now(discipline.clock());
    let advertised = discipline.advertised(now);
    advertise.send_if_modified(|current| {
        // Root dispersion grows with time from its base: compare what changes on updates.
        let changed = current.stratum != advertised.stratum
            || current.reference_id != advertised.reference_id
            || current.time_snapshot != advertised.time_snapshot;
        *current = advertised;
        changed
    });
    let state = discipline.state(now);
    let metrics = &hub.metrics.ntp;
    metrics
        .correction_seconds
        .set(discipline.clock().correction());
    match &state {
        SyncState::Synchronised { offset, .. } => {
            metrics.synchronised.set(1);
            metrics.offset_seconds.set(*offset);
        }
        _ => {
            metrics.synchronised.set(0);
        }
    }
    let same_kind = match (reported.as_ref(), &state) {
        (
            Some(SyncState::Synchronised {
                upstream: a,
                stratum: x,
                ..
            }),
            SyncState::Synchronised {
                upstream: b,
                stratum: y,
                ..
            },
        ) => a == b && x == y,
        (Some(previous), current) => previous == current,
        (None, _) => false,
    };
    if same_kind {
        return;
    }
    let (health, detail) = match &state {
        SyncState::NoUpstreams => (
            HealthState::Degraded,
            "unsynchronised: no upstream NTP servers configured; clients are told not to trust this clock"
                .to_string(),
        ),
        SyncState::Unsynchronised => (
            HealthState::Degraded,
            "unsynchronised: no upstream NTP server reachable and selected yet; clients are told not to trust this clock"
                .to_string(),
        ),
        SyncState::Synchronised {
            upstream, stratum, ..
        } => (
            HealthState::Healthy,
            format!("synchronised to {upstream}, stratum {stratum}"),
        ),
    };
    tracing::info!(detail = %detail, "NTP clock state");
    hub.set_health(ServiceKind::Ntp, health, detail);
    *reported = Some(state);
}
