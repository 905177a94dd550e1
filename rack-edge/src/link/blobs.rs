//! Blob sync on the link: the window of requests, and the writer that
//! stores arriving chunks off the run loop.
//!
//! Writing a 512 KiB chunk into a fresh page-cache file takes a few
//! milliseconds; done in the run loop, it stopped the loop reading the
//! next chunk meanwhile and halved the sync rate. The writer is one
//! blocking thread fed by a short queue, so receiving, opening and writing
//! overlap, and the queue's bound pushes back on the broker connection.

use std::io;
use std::time::{Duration, Instant};

use edgemetal_protocol::{BlobChunk, BootResource};
use tokio::sync::mpsc;

use super::mqtt::{now_ms, persist_counters, StateFiles};
use super::session::{Outgoing, Session};
use crate::boot::window::FetchWindow;
use crate::boot::{BootCache, ChunkOutcome};
use crate::hub::Hub;

/// A blob request unanswered for this long (with nothing else arriving) is sent again.
pub const BLOB_RETRY: Duration = Duration::from_secs(10);

/// Chunks queued for the writer at most (4 MiB): enough to cover a sync's
/// pause, small beside the window.
const WRITE_QUEUE: usize = 8;

/// What writing one chunk did.
pub struct Written {
    /// The blob the chunk is of.
    pub sha256: [u8; 32],
    /// Where it starts.
    pub offset: u64,
    /// Its length.
    pub bytes: u64,
    /// The cache's verdict.
    pub outcome: io::Result<ChunkOutcome>,
}

/// The writer thread's queue and its results.
pub struct ChunkWriter {
    queue: mpsc::Sender<(BlobChunk, Vec<BootResource>)>,
    /// What each written chunk did, in order.
    pub written: mpsc::UnboundedReceiver<Written>,
}

impl ChunkWriter {
    /// Starts the writer; it ends when the `ChunkWriter` is dropped.
    pub fn start(cache: BootCache) -> Self {
        let (queue, mut chunks) = mpsc::channel::<(BlobChunk, Vec<BootResource>)>(WRITE_QUEUE);
        let (results, written) = mpsc::unbounded_channel();
        tokio::task::spawn_blocking(move || {
            while let Some((chunk, wanted)) = chunks.blocking_recv() {
                let outcome = cache.apply(&chunk, &wanted);
                let done = Written {
                    sha256: chunk.sha256,
                    offset: chunk.offset,
                    bytes: chunk.data.len() as u64,
                    outcome,
                };
                if results.send(done).is_err() {
                    break;
                }
            }
        });
        ChunkWriter { queue, written }
    }

    /// Queues `chunk` (waiting while the queue is full).
    pub async fn write(&self, chunk: BlobChunk, wanted: Vec<BootResource>) {
        if self.queue.send((chunk, wanted)).await.is_err() {
            tracing::error!("the boot cache writer stopped");
        }
    }
}

/// Tells the window what a written chunk did, and logs what matters.
pub fn record(window: &mut FetchWindow, written: &Written) {
    let now = Instant::now();
    let sha256 = hex::encode(written.sha256);
    match &written.outcome {
        Ok(ChunkOutcome::Missing) => {
            window.missing(&written.sha256, now);
            tracing::warn!(%sha256, "the region does not have a boot resource; retrying later");
        }
        outcome => {
            window.answered(&written.sha256, written.offset, written.bytes, now);
            match outcome {
                Ok(ChunkOutcome::Corrupt) => {
                    tracing::error!(%sha256, "boot resource failed verification; fetching it again")
                }
                Ok(ChunkOutcome::Complete) => {
                    tracing::info!(%sha256, "boot resource cached and verified")
                }
                Err(error) => tracing::error!(%error, "cannot write the boot cache"),
                Ok(_) => {}
            }
        }
    }
}

/// Fills the window of blob requests: asks for as many missing pieces of
/// the snapshot's boot resources as [`FetchWindow`] allows now (a lost one
/// is asked again after [`BLOB_RETRY`]). Returns when to look again if
/// nothing arrives.
pub async fn ask(
    session: &mut Session,
    files: &StateFiles,
    cache: &BootCache,
    hub: &Hub,
    window: &mut FetchWindow,
    send: &impl Fn(Outgoing),
) -> Option<Instant> {
    let wanted = wanted_resources(hub);
    let cache = cache.clone();
    let now = Instant::now();
    let room = window.room(now);
    let (in_flight, paused) = window.skip_list(now);
    let (requests, progress) = tokio::task::spawn_blocking(move || {
        let skip = |sha: &[u8; 32], offset: u64| {
            paused.contains(sha) || in_flight.contains(&(*sha, offset))
        };
        (
            cache.missing(&wanted, room.max(1), skip),
            cache.progress(&wanted),
        )
    })
    .await
    .unwrap_or_default();
    if let Ok(mut shown) = hub.boot_resources.write() {
        *shown = progress;
    }
    let more = !requests.is_empty();
    for request in requests.into_iter().take(room) {
        window.asked(&request, now);
        let message = session.blob_request(now_ms(), request);
        if !persist_counters(session, &files.counters).await {
            break;
        }
        send(message);
    }
    window.wake_at(more, now)
}

/// The boot resources of the applied snapshot.
pub fn wanted_resources(hub: &Hub) -> Vec<BootResource> {
    hub.snapshots
        .borrow()
        .as_ref()
        .map(|s| s.boot_resources.clone())
        .unwrap_or_default()
}

/// Sleeps until `wake` (forever when `None`).
pub async fn sleep_until_wake(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// What the cache holds of each resource, as the region is told it.
pub fn held_resources(hub: &Hub) -> Vec<edgemetal_protocol::ResourceHeld> {
    let Ok(shown) = hub.boot_resources.read() else {
        return Vec::new();
    };
    shown
        .iter()
        .filter_map(|progress| {
            let mut sha256 = [0u8; 32];
            hex::decode_to_slice(&progress.sha256, &mut sha256).ok()?;
            Some(edgemetal_protocol::ResourceHeld {
                sha256,
                size: progress.size,
                cached: progress.cached,
                ready: progress.ready,
            })
        })
        .collect()
}
