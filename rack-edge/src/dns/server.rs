//! The DNS adapter: owns the sockets, the clock, the snapshot watch and the
//! cache file, and carries out the engine's actions. Everything about DNS
//! itself is in [`super::engine`].
//!
//! Tasks: a few UDP workers sharing the listening socket, the TCP accept
//! loop with one task per connection ([`super::tcp`]), one short task per
//! upstream exchange ([`super::upstream`]), a timer for upstream deadlines,
//! and the `run` task itself (snapshots, cache saves). The engine sits
//! behind one mutex, never held across an await.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use edgemetal_protocol::ConfigSnapshot;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;

use super::action::{Action, Client};
use super::counters::Counters;
use super::engine::{Resolver, Tuning};
use super::persist;
use super::wire::Transport;

/// The cache file's name in the state dir.
pub const CACHE_FILE: &str = "dns-cache.json";

/// Big enough for any datagram, so an oversized query is seen whole (and
/// answered FORMERR or dropped) rather than cut.
const UDP_BUFFER: usize = 65_535;

/// The adapter's knobs; the defaults suit a rack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// The engine's.
    pub tuning: Tuning,
    /// How often the cache is written to its file.
    pub persist_every: Duration,
    /// A TCP connection with nothing to read or write for this long is closed.
    pub tcp_idle: Duration,
    /// Most TCP connections at once; more are closed on accept.
    pub max_tcp_connections: usize,
    /// Tasks receiving on the UDP socket.
    pub udp_workers: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            tuning: Tuning::default(),
            persist_every: Duration::from_secs(30),
            tcp_idle: Duration::from_secs(10),
            max_tcp_connections: 256,
            udp_workers: 4,
        }
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listening socket could not be bound.
    #[error("cannot bind the DNS {transport:?} socket on {addr}: {source}")]
    Bind {
        /// UDP or TCP.
        transport: Transport,
        /// The address asked for (port 53 needs CAP_NET_BIND_SERVICE).
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// Receiving on the UDP socket failed for good.
    #[error("DNS UDP receive failed: {0}")]
    Receive(io::Error),
    /// Accepting TCP connections failed for good.
    #[error("DNS TCP accept failed: {0}")]
    Accept(io::Error),
}

/// What every task of the server shares.
pub(super) struct Shared {
    engine: Mutex<Resolver>,
    pub(super) udp: UdpSocket,
    pub(super) config: ServerConfig,
    /// Reply channels of open TCP connections, by connection id.
    pub(super) connections: Mutex<HashMap<u64, mpsc::Sender<Vec<u8>>>>,
    /// Wakes the timer when a new upstream deadline may be nearer.
    wake: Notify,
    cache_file: PathBuf,
}

/// The engine's clock: tokio's, so paused-time tests drive it too.
pub(super) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not stop DNS for good: the engine's state is
    // consistent between calls.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// Runs `f` on the engine, then carries out what it asked for.
    pub(super) async fn with_engine<R>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Resolver, Instant, &mut Vec<Action>) -> R,
    ) -> R {
        let mut actions = Vec::new();
        let result = f(&mut lock(&self.engine), now(), &mut actions);
        self.carry_out(actions).await;
        result
    }

    async fn carry_out(self: &Arc<Self>, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Reply { client, bytes } => self.reply(client, bytes).await,
                Action::Query {
                    exchange,
                    server,
                    transport,
                    bytes,
                } => {
                    super::upstream::spawn(self.clone(), exchange, server, transport, bytes);
                    self.wake.notify_one();
                }
            }
        }
    }

    async fn reply(&self, client: Client, bytes: Vec<u8>) {
        match client.transport {
            Transport::Udp => {
                if let Err(error) = self.udp.send_to(&bytes, client.addr).await {
                    tracing::debug!(%error, client = %client.addr, "DNS reply not sent");
                }
            }
            Transport::Tcp => {
                let sender = lock(&self.connections).get(&client.connection).cloned();
                // A full or closed connection loses the reply: the client
                // has gone or stopped reading.
                if let Some(sender) = sender {
                    let _ = sender.try_send(bytes);
                }
            }
        }
    }

    fn save_cache(&self) {
        let bytes = persist::encode(lock(&self.engine).cache(), now(), SystemTime::now());
        if let Err(error) = persist::save(&self.cache_file, &bytes) {
            tracing::warn!(%error, file = %self.cache_file.display(), "cannot save the DNS cache");
        }
    }
}

/// The rack's DNS server on one UDP and one TCP address.
pub struct DnsServer {
    shared: Arc<Shared>,
    tcp: TcpListener,
    snapshots: watch::Receiver<Option<ConfigSnapshot>>,
    counters: Arc<Counters>,
}

impl DnsServer {
    /// Binds both sockets (port 0 picks a free one), applies the current
    /// snapshot and restores the cache from `cache_file`, with defaults.
    pub async fn bind(
        udp: SocketAddr,
        tcp: SocketAddr,
        snapshots: watch::Receiver<Option<ConfigSnapshot>>,
        cache_file: PathBuf,
    ) -> Result<DnsServer, ServerError> {
        let counters = Arc::new(Counters::default());
        Self::bind_with(
            udp,
            tcp,
            snapshots,
            cache_file,
            ServerConfig::default(),
            counters,
        )
        .await
    }

    /// [`DnsServer::bind`] with explicit knobs and counters (e.g. ones
    /// already registered with the metrics registry).
    pub async fn bind_with(
        udp: SocketAddr,
        tcp: SocketAddr,
        mut snapshots: watch::Receiver<Option<ConfigSnapshot>>,
        cache_file: PathBuf,
        config: ServerConfig,
        counters: Arc<Counters>,
    ) -> Result<DnsServer, ServerError> {
        let udp_socket = bind_udp(udp).map_err(|source| ServerError::Bind {
            transport: Transport::Udp,
            addr: udp,
            source,
        })?;
        let tcp_listener = TcpListener::bind(tcp)
            .await
            .map_err(|source| ServerError::Bind {
                transport: Transport::Tcp,
                addr: tcp,
                source,
            })?;
        let mut engine = Resolver::new(config.tuning, StdRng::from_entropy(), counters.clone());
        apply(&mut engine, &snapshots.borrow_and_update());
        restore(&mut engine, &cache_file);
        Ok(DnsServer {
            shared: Arc::new(Shared {
                engine: Mutex::new(engine),
                udp: udp_socket,
                config,
                connections: Mutex::new(HashMap::new()),
                wake: Notify::new(),
                cache_file,
            }),
            tcp: tcp_listener,
            snapshots,
            counters,
        })
    }

    /// The UDP address actually bound.
    pub fn local_udp_addr(&self) -> io::Result<SocketAddr> {
        self.shared.udp.local_addr()
    }

    /// The TCP address actually bound.
    pub fn local_tcp_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The counters, live; keep a clone to render metrics while serving.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Serves until a fatal socket error. Follows the snapshot watch, saves
    /// the cache every `persist_every` and once more when the future is
    /// dropped (which stops every task of the server).
    pub async fn run(self) -> Result<(), ServerError> {
        let DnsServer {
            shared,
            tcp,
            mut snapshots,
            ..
        } = self;
        tracing::info!(
            udp = ?shared.udp.local_addr().ok(),
            tcp = ?tcp.local_addr().ok(),
            "DNS listening"
        );
        let _save = SaveOnDrop(shared.clone());
        let mut tasks: JoinSet<Result<(), ServerError>> = JoinSet::new();
        for _ in 0..shared.config.udp_workers.max(1) {
            tasks.spawn(udp_worker(shared.clone()));
        }
        tasks.spawn(timer(shared.clone()));
        tasks.spawn(super::tcp::accept_loop(shared.clone(), tcp));
        let mut persist = tokio::time::interval(shared.config.persist_every);
        persist.tick().await;
        let mut watching = true;
        loop {
            tokio::select! {
                changed = snapshots.changed(), if watching => match changed {
                    Ok(()) => {
                        let snapshot = snapshots.borrow_and_update().clone();
                        apply(&mut lock(&shared.engine), &snapshot);
                    }
                    // The rack is shutting down; serve what we have.
                    Err(_) => watching = false,
                },
                _ = persist.tick() => {
                    let shared = shared.clone();
                    let _ = tokio::task::spawn_blocking(move || shared.save_cache()).await;
                }
                Some(joined) = tasks.join_next() => match joined {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => return Err(error),
                    Err(error) => tracing::error!(%error, "DNS task failed"),
                },
            }
        }
    }
}

/// Saves the cache when `run` ends, however it ends.
struct SaveOnDrop(Arc<Shared>);

impl Drop for SaveOnDrop {
    fn drop(&mut self) {
        self.0.save_cache();
    }
}

fn apply(engine: &mut Resolver, snapshot: &Option<ConfigSnapshot>) {
    let default = Default::default();
    let config = snapshot.as_ref().map(|s| &s.dns).unwrap_or(&default);
    for problem in engine.reconfigure(config) {
        tracing::warn!(%problem, "DNS zone data not served");
    }
    tracing::info!(
        zones = config.zones.len(),
        forwarders = config.forwarders.len(),
        allowed_networks = config.allowed_networks.len(),
        "DNS configured"
    );
}

fn restore(engine: &mut Resolver, cache_file: &std::path::Path) {
    let bytes = match persist::load(cache_file) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%error, file = %cache_file.display(), "cannot read the DNS cache");
            return;
        }
    };
    match persist::restore(engine.cache_mut(), &bytes, now(), SystemTime::now()) {
        Ok(restored) => tracing::info!(entries = restored, "DNS cache restored"),
        Err(error) => tracing::warn!(%error, "DNS cache not restored"),
    }
}

/// A UDP socket with a large receive buffer: bursts of queries queue in
/// the kernel instead of being dropped while the workers are busy.
fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    let _ = socket.set_recv_buffer_size(4 << 20);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

async fn udp_worker(shared: Arc<Shared>) -> Result<(), ServerError> {
    let mut buffer = vec![0u8; UDP_BUFFER];
    loop {
        let (len, peer) = match shared.udp.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) if transient(&error) => continue,
            Err(error) => return Err(ServerError::Receive(error)),
        };
        let datagram = &buffer[..len];
        shared
            .with_engine(|engine, now, out| {
                engine.handle_query(now, Client::udp(peer), datagram, out)
            })
            .await;
    }
}

async fn timer(shared: Arc<Shared>) -> Result<(), ServerError> {
    loop {
        let next = lock(&shared.engine).poll_timeout();
        let deadline = next
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shared.wake.notified() => continue,
        }
        shared
            .with_engine(|engine, now, out| engine.handle_timeout(now, out))
            .await;
    }
}

/// Errors a UDP socket reports for an earlier datagram (an ICMP
/// unreachable) or for nothing: not a reason to stop serving.
pub(super) fn transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
