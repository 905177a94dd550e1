//! DNS over TCP from clients (RFC 7766): length-prefixed messages, several
//! queries per connection, answers in whatever order they are ready (a
//! forwarded one may come after a later authoritative one). One reader per
//! connection hands queries to the engine; one writer sends what the
//! engine answers, through a channel the adapter finds by connection id.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify, Semaphore};

use super::action::Client;
use super::server::{ServerError, Shared};

/// Replies queued for one connection before further ones are dropped: a
/// client that does not read must not make the server buffer without end.
const REPLY_QUEUE: usize = 64;

/// Accepts connections until a fatal error.
pub(super) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
) -> Result<(), ServerError> {
    let slots = Arc::new(Semaphore::new(shared.config.max_tcp_connections));
    let mut next_id = 0u64;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Per-connection failures (reset before accept, out of
            // descriptors for a moment) are not the listener's end.
            Err(error) if accept_error_is_transient(&error) => {
                tracing::debug!(%error, "DNS TCP accept failed");
                continue;
            }
            Err(error) => return Err(ServerError::Accept(error)),
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "DNS TCP connection limit reached; closed");
            continue;
        };
        next_id += 1;
        let shared = shared.clone();
        let id = next_id;
        tokio::spawn(async move {
            serve(shared, stream, peer, id).await;
            drop(slot);
        });
    }
}

fn accept_error_is_transient(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || error.raw_os_error() == Some(libc::EMFILE)
        || error.raw_os_error() == Some(libc::ENFILE)
}

/// Counts of one connection, so that it is closed only once every query
/// read was answered (or the idle time ran out).
#[derive(Default)]
struct Progress {
    read: AtomicU64,
    written: AtomicU64,
    changed: Notify,
}

async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, id: u64) {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let (sender, replies) = mpsc::channel(REPLY_QUEUE);
    shared.connections_insert(id, sender);
    let progress = Arc::new(Progress::default());
    let writing = tokio::spawn(write_replies(writer, replies, progress.clone()));
    read_queries(&shared, reader, peer, id, &progress).await;
    // The client may half-close after its last query: answers still in
    // flight (forwarded ones) are sent before closing, within the idle time.
    let idle = tokio::time::sleep(shared.config.tcp_idle);
    tokio::pin!(idle);
    loop {
        let notified = progress.changed.notified();
        tokio::pin!(notified);
        // Registered before the check, so a write in between is not missed.
        notified.as_mut().enable();
        if progress.written.load(Ordering::Acquire) >= progress.read.load(Ordering::Acquire) {
            break;
        }
        tokio::select! {
            _ = notified => {}
            _ = &mut idle => break,
        }
    }
    shared.connections_remove(id);
    // The writer ends once the channel is closed and drained.
    let _ = writing.await;
}

async fn read_queries(
    shared: &Arc<Shared>,
    mut reader: OwnedReadHalf,
    peer: SocketAddr,
    id: u64,
    progress: &Progress,
) {
    let idle = shared.config.tcp_idle;
    let mut message = Vec::new();
    loop {
        let read = async {
            let len = reader.read_u16().await?;
            message.resize(usize::from(len), 0);
            reader.read_exact(&mut message).await?;
            Ok::<_, std::io::Error>(())
        };
        match tokio::time::timeout(idle, read).await {
            Ok(Ok(())) => {}
            // EOF, reset, or idle: stop reading.
            Ok(Err(_)) | Err(_) => return,
        }
        progress.read.fetch_add(1, Ordering::AcqRel);
        let client = Client::tcp(peer, id);
        // A query dropped by the engine never gets an answer; the idle
        // time bounds the wait for it at the end.
        shared
            .with_engine(|engine, now, out| engine.handle_query(now, client, &message, out))
            .await;
    }
}

async fn write_replies(
    mut writer: OwnedWriteHalf,
    mut replies: mpsc::Receiver<Vec<u8>>,
    progress: Arc<Progress>,
) {
    let mut framed = Vec::new();
    while let Some(reply) = replies.recv().await {
        framed.clear();
        framed.extend_from_slice(&(reply.len() as u16).to_be_bytes());
        framed.extend_from_slice(&reply);
        if writer.write_all(&framed).await.is_err() {
            break;
        }
        progress.written.fetch_add(1, Ordering::AcqRel);
        progress.changed.notify_waiters();
    }
    let _ = writer.shutdown().await;
}

impl Shared {
    fn connections_insert(&self, id: u64, sender: mpsc::Sender<Vec<u8>>) {
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, sender);
    }

    fn connections_remove(&self, id: u64) {
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }
}
