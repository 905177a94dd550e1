//! The adapter's side of one upstream exchange: a fresh UDP socket per
//! query (the kernel picks a random source port, which with the engine's
//! random id makes answers hard to forge), or a TCP connection when a UDP
//! answer was truncated. Every message that comes back goes to the engine,
//! which decides; the deadline that matters is the engine's, this task's
//! own only bounds its life.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::action::ExchangeId;
use super::forward::Verdict;
use super::server::Shared;
use super::wire::Transport;

/// Upstreams answer with at most the payload size we advertise (1232),
/// but a confused one may send more: read whole datagrams.
const UDP_BUFFER: usize = 65_535;

/// Starts carrying out one exchange in its own task. A plain function, so
/// that the task's future type does not contain itself (the exchange calls
/// the engine, whose actions may start further exchanges).
pub(super) fn spawn(
    shared: Arc<Shared>,
    id: ExchangeId,
    server: SocketAddr,
    transport: Transport,
    bytes: Vec<u8>,
) {
    tokio::spawn(exchange(shared, id, server, transport, bytes));
}

/// Carries out one exchange until the engine settles it or its time is up.
async fn exchange(
    shared: Arc<Shared>,
    id: ExchangeId,
    server: SocketAddr,
    transport: Transport,
    bytes: Vec<u8>,
) {
    let timeout = shared.config.tuning.upstream_timeout;
    let outcome = match transport {
        Transport::Udp => over_udp(&shared, id, server, &bytes, timeout).await,
        Transport::Tcp => over_tcp(&shared, id, server, &bytes, timeout * 2).await,
    };
    if let Err(error) = outcome {
        tracing::debug!(%error, %server, ?transport, "DNS upstream exchange failed");
        shared
            .with_engine(|engine, now, out| engine.handle_failure(now, id, out))
            .await;
    }
}

async fn answer(shared: &Arc<Shared>, id: ExchangeId, server: SocketAddr, bytes: &[u8]) -> Verdict {
    shared
        .with_engine(|engine, now, out| engine.handle_answer(now, id, server, bytes, out))
        .await
}

/// `Err` only for failures worth failing over at once (a refused port,
/// an unreachable network); silence is left to the engine's timer.
async fn over_udp(
    shared: &Arc<Shared>,
    id: ExchangeId,
    server: SocketAddr,
    query: &[u8],
    timeout: Duration,
) -> std::io::Result<()> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    // Connected: the kernel drops datagrams from any other source, and
    // reports an ICMP port unreachable as an error we can fail over on.
    socket.connect(server).await?;
    socket.send(query).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buffer = vec![0u8; UDP_BUFFER];
    loop {
        let len = match tokio::time::timeout_at(deadline, socket.recv(&mut buffer)).await {
            Err(_elapsed) => return Ok(()),
            Ok(received) => received?,
        };
        if answer(shared, id, server, &buffer[..len]).await != Verdict::Rejected {
            return Ok(());
        }
    }
}

async fn over_tcp(
    shared: &Arc<Shared>,
    id: ExchangeId,
    server: SocketAddr,
    query: &[u8],
    timeout: Duration,
) -> std::io::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let Ok(stream) = tokio::time::timeout_at(deadline, TcpStream::connect(server)).await else {
        return Ok(());
    };
    let mut stream = stream?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&(query.len() as u16).to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    loop {
        let read = async {
            let len = stream.read_u16().await?;
            let mut message = vec![0u8; usize::from(len)];
            stream.read_exact(&mut message).await?;
            Ok::<_, std::io::Error>(message)
        };
        let message = match tokio::time::timeout_at(deadline, read).await {
            Err(_elapsed) => return Ok(()),
            Ok(message) => message?,
        };
        if answer(shared, id, server, &message).await != Verdict::Rejected {
            return Ok(());
        }
    }
}
