//! The TFTP adapter: owns the sockets and the clock, and runs one task per
//! transfer, each with its own ephemeral port (the transfer ID of RFC 1350)
//! bound to the listening address. Everything about TFTP itself is in
//! [`super::engine`].

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinSet;

use super::config::TftpConfig;
use super::counters::{Counters, ErrorKind};
use super::engine::{self, Accept, ReadRequest, Transfer};
use super::source::FileSource;

/// Big enough for any UDP datagram: a request with many options must not
/// be cut (a cut request would lose its terminating NUL and be dropped).
const LISTEN_BUFFER: usize = 65_536;

/// A client sends ACKs and ERRORs to a transfer's port; 4 KiB holds any
/// sane ERROR message.
const TRANSFER_BUFFER: usize = 4_096;

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listening socket could not be bound.
    #[error("cannot bind the TFTP socket on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error (port 69 needs CAP_NET_BIND_SERVICE).
        source: io::Error,
    },
    /// Receiving on the listening socket failed for good.
    #[error("TFTP receive failed: {0}")]
    Receive(io::Error),
}

/// A read-only TFTP server on one address.
///
/// Transfer sockets are bound to the listening IP so replies leave from the
/// address the client asked. Bound to `0.0.0.0`, the kernel picks the
/// source address by route, which is right on a single-homed host; on a
/// rack serving several subnets, run one server per interface address.
pub struct TftpServer {
    socket: Arc<UdpSocket>,
    local_ip: IpAddr,
    source: Arc<dyn FileSource>,
    config: TftpConfig,
    counters: Arc<Counters>,
}

impl TftpServer {
    /// Binds the listening socket (port 0 picks a free port; see
    /// [`TftpServer::local_addr`]).
    pub async fn bind(
        addr: SocketAddr,
        source: Arc<dyn FileSource>,
        config: TftpConfig,
    ) -> Result<Self, ServerError> {
        let socket = UdpSocket::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        Ok(TftpServer {
            socket: Arc::new(socket),
            local_ip: addr.ip(),
            source,
            config,
            counters: Arc::new(Counters::default()),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.socket
            .local_addr()
            .expect("a bound UDP socket has a local address")
    }

    /// Counts into `counters` (the rack's registered ones) instead of its
    /// own.
    pub fn with_counters(mut self, counters: Arc<Counters>) -> Self {
        self.counters = counters;
        self
    }

    /// The counters, live; keep a clone to render metrics while serving.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Serves until a fatal receive error. Dropping the future stops the
    /// server and every transfer in progress.
    pub async fn run(self) -> Result<(), ServerError> {
        tracing::info!(addr = %self.local_addr(), "TFTP listening");
        let mut transfers = JoinSet::new();
        let mut buffer = vec![0u8; LISTEN_BUFFER];
        loop {
            tokio::select! {
                received = self.socket.recv_from(&mut buffer) => {
                    let (len, peer) = match received {
                        Ok(received) => received,
                        Err(error) if transient(&error) => continue,
                        Err(error) => return Err(ServerError::Receive(error)),
                    };
                    self.on_request(&buffer[..len], peer, &mut transfers).await;
                }
                Some(joined) = transfers.join_next(), if !transfers.is_empty() => {
                    if let Err(error) = joined {
                        tracing::error!(%error, "TFTP transfer task failed");
                    }
                }
            }
        }
    }

    async fn on_request(&self, datagram: &[u8], peer: SocketAddr, transfers: &mut JoinSet<()>) {
        let request = match engine::accept(datagram, &self.counters) {
            Accept::Drop(reason) => {
                tracing::debug!(%peer, reason = reason.as_str(), "TFTP datagram dropped");
                return;
            }
            Accept::Refuse { kind, packet } => {
                tracing::info!(%peer, reason = kind.as_str(), "TFTP request refused");
                send(&self.socket, &packet, peer).await;
                return;
            }
            Accept::Read(request) => request,
        };
        if transfers.len() >= self.config.max_transfers {
            tracing::warn!(
                %peer,
                path = %request.path,
                limit = self.config.max_transfers,
                "TFTP transfer limit reached; request refused as busy"
            );
            let packet = engine::error_packet(&self.counters, ErrorKind::Busy);
            send(&self.socket, &packet, peer).await;
            return;
        }
        let job = Job {
            request,
            peer,
            listener: self.socket.clone(),
            local_ip: self.local_ip,
            source: self.source.clone(),
            config: self.config.clone(),
            counters: self.counters.clone(),
        };
        transfers.spawn(job.run());
    }
}

/// One transfer's task.
struct Job {
    request: ReadRequest,
    peer: SocketAddr,
    listener: Arc<UdpSocket>,
    local_ip: IpAddr,
    source: Arc<dyn FileSource>,
    config: TftpConfig,
    counters: Arc<Counters>,
}

impl Job {
    async fn run(self) {
        let Job {
            request,
            peer,
            listener,
            local_ip,
            source,
            config,
            counters,
        } = self;
        let socket = match UdpSocket::bind(SocketAddr::new(local_ip, 0)).await {
            Ok(socket) => socket,
            Err(error) => {
                // No port of our own (e.g. out of descriptors): answer from
                // the listening port so the client does not wait for nothing.
                tracing::warn!(%error, %peer, "cannot bind a TFTP transfer socket");
                send(
                    &listener,
                    &engine::error_packet(&counters, ErrorKind::Io),
                    peer,
                )
                .await;
                return;
            }
        };
        let path = request.path.clone();
        let opened = tokio::task::spawn_blocking(move || source.open(&path, peer)).await;
        let file = match opened {
            Ok(Ok(file)) => file,
            Ok(Err(error)) => {
                let kind = engine::open_error_kind(&error);
                tracing::info!(%peer, path = %request.path, reason = kind.as_str(), "TFTP request refused");
                send(&socket, &engine::error_packet(&counters, kind), peer).await;
                return;
            }
            Err(error) => {
                tracing::error!(%error, "TFTP file source panicked");
                send(
                    &socket,
                    &engine::error_packet(&counters, ErrorKind::Io),
                    peer,
                )
                .await;
                return;
            }
        };
        let started = tokio::time::Instant::now();
        let mut transfer = Transfer::new(now(), &request, file, &config, counters.clone());
        tracing::debug!(%peer, path = %request.path, negotiated = ?transfer.negotiated(), "TFTP transfer started");
        let mut out = Vec::with_capacity(4 + usize::from(transfer.negotiated().blksize));
        let mut incoming = vec![0u8; TRANSFER_BUFFER];
        // One timer for the whole transfer, moved only when it fired or the
        // deadline came nearer. Every ACK pushes the deadline back; moving
        // the timer each time would cost a timer-wheel update per datagram.
        // A timer that fires early is harmless: the engine ignores a
        // timeout before its deadline.
        let timer = tokio::time::sleep_until(deadline_of(&transfer));
        tokio::pin!(timer);
        loop {
            while transfer.poll_transmit(&mut out) {
                send(&socket, &out, peer).await;
            }
            if let Some(outcome) = transfer.outcome() {
                let elapsed_ms = started.elapsed().as_millis() as u64;
                match outcome {
                    Ok(()) => tracing::info!(
                        %peer,
                        path = %request.path,
                        bytes = transfer.file_len(),
                        blksize = transfer.negotiated().blksize,
                        windowsize = transfer.negotiated().windowsize,
                        elapsed_ms,
                        "TFTP file served"
                    ),
                    Err(failure) => tracing::info!(
                        %peer,
                        path = %request.path,
                        reason = failure.as_str(),
                        client_error = transfer.client_error().unwrap_or(""),
                        elapsed_ms,
                        "TFTP transfer ended early"
                    ),
                }
                return;
            }
            let deadline = deadline_of(&transfer);
            if timer.is_elapsed() || deadline < timer.deadline() {
                timer.as_mut().reset(deadline);
            }
            tokio::select! {
                received = socket.recv_from(&mut incoming) => match received {
                    Ok((len, from)) if from == peer => transfer.handle(now(), &incoming[..len]),
                    Ok((len, from)) => {
                        if let Some(packet) = engine::stray(&incoming[..len], &counters) {
                            send(&socket, &packet, from).await;
                        }
                    }
                    Err(error) => tracing::debug!(%error, %peer, "TFTP transfer receive failed"),
                },
                _ = &mut timer => transfer.handle_timeout(now()),
            }
        }
    }
}

/// When the transfer next needs [`Transfer::handle_timeout`]. Never `None`
/// while it runs; the fallback only guards against a busy loop.
fn deadline_of(transfer: &Transfer) -> tokio::time::Instant {
    transfer
        .poll_timeout()
        .map(tokio::time::Instant::from_std)
        .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(1))
}

/// The engine's clock: tokio's, so paused-time tests drive it too.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Sends one datagram; a failure is logged and left to the retransmission
/// timer (UDP gives no delivery promise anyway).
async fn send(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) {
    if let Err(error) = socket.send_to(bytes, to).await {
        tracing::debug!(%error, %to, "TFTP send failed");
    }
}

/// Errors a UDP socket reports for an earlier datagram (an ICMP
/// unreachable) or for nothing: not a reason to stop serving.
fn transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
