//! The tokio adapter: a UDP socket and a TCP listener on the relay's
//! address feed decoded lines to one writer task, which queues them on disk
//! in batches (one fsync per batch) and wakes the link.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use edgemetal_protocol::{ConfigSnapshot, LogLine};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch, Semaphore};

use super::admission::Admission;
use super::framing::Framer;
use super::{message, Counters, LogQueue, SharedLogQueue};
use crate::dhcp::LeaseDirectory;

/// Lines in flight between the sockets and the writer; beyond it TCP
/// senders wait and UDP datagrams wait in the socket buffer.
const CHANNEL_LINES: usize = 16 * 1024;
/// Most lines the writer queues per fsync.
const WRITE_BATCH: usize = 4096;
/// Most TCP senders at once.
const MAX_CONNECTIONS: usize = 512;
/// A TCP sender silent this long is disconnected, so idle connections
/// cannot hold every slot.
const TCP_IDLE: std::time::Duration = std::time::Duration::from_secs(600);
/// Socket receive buffer asked for, to ride out bursts while the writer syncs.
const UDP_RECEIVE_BUFFER: usize = 8 * 1024 * 1024;

/// Opens the disk queue in `state_dir`. The link drains it even when the
/// relay does not listen (lines queued before a restart).
pub fn open_queue(
    state_dir: &Path,
    snapshot: Option<&ConfigSnapshot>,
) -> anyhow::Result<Arc<SharedLogQueue>> {
    let bound = Admission::from_snapshot(snapshot).queue_bytes;
    let queue = LogQueue::open(state_dir, bound).context("cannot open the syslog queue")?;
    Ok(SharedLogQueue::new(queue))
}

/// Binds the relay's UDP and TCP sockets on `address`; [`SyslogRelay::run`]
/// serves them.
pub async fn bind(
    address: SocketAddr,
    snapshots: watch::Receiver<Option<ConfigSnapshot>>,
    directory: LeaseDirectory,
    queue: Arc<SharedLogQueue>,
    counters: Arc<Counters>,
) -> anyhow::Result<SyslogRelay> {
    let udp =
        bind_udp(address).with_context(|| format!("cannot listen for syslog on UDP {address}"))?;
    let tcp = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen for syslog on TCP {address}"))?;
    let admission = Arc::new(RwLock::new(Admission::from_snapshot(
        snapshots.borrow().as_ref(),
    )));
    let (lines, received) = mpsc::channel(CHANNEL_LINES);
    let relay = Relay {
        admission,
        directory,
        counters,
        lines,
    };
    Ok(SyslogRelay {
        udp,
        tcp,
        snapshots,
        received,
        queue,
        relay,
    })
}

/// A bound syslog relay.
pub struct SyslogRelay {
    udp: UdpSocket,
    tcp: TcpListener,
    snapshots: watch::Receiver<Option<ConfigSnapshot>>,
    received: mpsc::Receiver<LogLine>,
    queue: Arc<SharedLogQueue>,
    relay: Relay,
}

impl SyslogRelay {
    /// Serves UDP and TCP, follows the snapshots' admission rules and queues
    /// the lines on disk, each in its own task; stopping the future stops
    /// them all.
    pub async fn run(self) -> anyhow::Result<()> {
        let SyslogRelay {
            udp,
            tcp,
            snapshots,
            received,
            queue,
            relay,
        } = self;
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(follow_snapshots(snapshots, relay.admission.clone()));
        tasks.spawn(write_lines(
            received,
            queue,
            relay.admission.clone(),
            relay.counters.clone(),
        ));
        tasks.spawn(serve_udp(udp, relay.clone()));
        tasks.spawn(serve_tcp(tcp, relay));
        while let Some(joined) = tasks.join_next().await {
            joined.context("a syslog relay task failed")?;
        }
        Ok(())
    }
}

fn bind_udp(address: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(UDP_RECEIVE_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    UdpSocket::from_std(socket.into())
}

/// What every receiving task shares.
#[derive(Clone)]
struct Relay {
    admission: Arc<RwLock<Admission>>,
    directory: LeaseDirectory,
    counters: Arc<Counters>,
    lines: mpsc::Sender<LogLine>,
}

impl Relay {
    /// The sender's machine, or `None` (counted) when it is refused.
    fn admit(&self, source: IpAddr) -> Option<Option<edgemetal_protocol::MacAddress>> {
        let admitted = self
            .admission
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .admit(source, |ip| self.directory.holder(ip));
        match admitted {
            Ok(mac) => Some(mac),
            Err(_) => {
                self.counters.refused.inc();
                None
            }
        }
    }

    fn max_bytes(&self) -> usize {
        self.admission
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .max_message_bytes
    }

    /// Decodes one message and hands it to the writer; false once the writer is gone.
    async fn accept(
        &self,
        raw: &[u8],
        cut: bool,
        source: IpAddr,
        mac: Option<edgemetal_protocol::MacAddress>,
        transport: &'static str,
    ) -> bool {
        let line = message::decode(raw, cut, self.max_bytes(), source, mac, now_ms());
        self.counters
            .received
            .get_or_create(&vec![("transport", transport)])
            .inc();
        if line.truncated {
            self.counters.truncated.inc();
        }
        if line.malformed {
            self.counters.malformed.inc();
        }
        self.lines.send(line).await.is_ok()
    }
}

async fn follow_snapshots(
    mut snapshots: watch::Receiver<Option<ConfigSnapshot>>,
    admission: Arc<RwLock<Admission>>,
) {
    while snapshots.changed().await.is_ok() {
        let next = Admission::from_snapshot(snapshots.borrow_and_update().as_ref());
        *admission.write().unwrap_or_else(|e| e.into_inner()) = next;
    }
}

async fn serve_udp(socket: UdpSocket, relay: Relay) {
    let mut buffer = vec![0u8; 65_536];
    loop {
        let (len, from) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) => {
                // ICMP errors surface here on some kernels; the socket stays usable.
                tracing::debug!(%error, "syslog UDP receive failed");
                continue;
            }
        };
        let Some(mac) = relay.admit(from.ip()) else {
            continue;
        };
        if !relay
            .accept(&buffer[..len], false, from.ip(), mac, "udp")
            .await
        {
            return;
        }
    }
}

async fn serve_tcp(listener: TcpListener, relay: Relay) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "syslog TCP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(mac) = relay.admit(from.ip()) else {
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(peer = %from, "too many syslog TCP senders; connection refused");
            continue;
        };
        let relay = relay.clone();
        tokio::spawn(async move {
            let _slot = slot;
            read_stream(stream, from.ip(), mac, relay).await;
        });
    }
}

async fn read_stream(
    mut stream: tokio::net::TcpStream,
    source: IpAddr,
    mac: Option<edgemetal_protocol::MacAddress>,
    relay: Relay,
) {
    let mut framer = Framer::new(relay.max_bytes());
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match tokio::time::timeout(TCP_IDLE, stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => break,
            Ok(Ok(n)) => n,
        };
        for frame in framer.push(&buffer[..n]) {
            if !relay
                .accept(&frame.bytes, frame.cut, source, mac, "tcp")
                .await
            {
                return;
            }
        }
    }
    if let Some(frame) = framer.finish() {
        relay
            .accept(&frame.bytes, frame.cut, source, mac, "tcp")
            .await;
    }
}

/// Queues lines as they come, as many per fsync as are waiting.
async fn write_lines(
    mut received: mpsc::Receiver<LogLine>,
    queue: Arc<SharedLogQueue>,
    admission: Arc<RwLock<Admission>>,
    counters: Arc<Counters>,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while received.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        let lines = std::mem::take(&mut batch);
        let bound = admission
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .queue_bytes;
        let queue_for_write = queue.clone();
        let pushed = tokio::task::spawn_blocking(move || {
            let mut queue = queue_for_write.lock();
            let pushed = queue.push(lines, bound);
            (pushed, queue.pending_bytes())
        })
        .await;
        match pushed {
            Ok((Ok(pushed), bytes)) => {
                counters.dropped_full.inc_by(pushed.dropped as u64);
                counters.queued_bytes.set(bytes as i64);
                queue.added.notify_one();
            }
            Ok((Err(error), _)) => {
                tracing::error!(%error, "cannot queue syslog lines on disk; they are lost")
            }
            Err(error) => tracing::error!(%error, "syslog queue task failed"),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}
