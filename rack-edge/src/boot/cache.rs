//! The rack's cache of boot resources, filled from the region over the link.
//!
//! Content is addressed by sha256. A resource being fetched lives in
//! `partial/<sha>`; chunks of [`CHUNK_BYTES`] arrive in any order (many are
//! asked for at once, see [`FetchWindow`]) and each is written at its offset
//! as it comes, so nothing is held in memory. Which chunks are there is a
//! bitmap, `partial/<sha>.chunks`, persisted only after the data it covers
//! is synced: a restart resumes from it and fetches only what it lacks. The
//! content is hashed as the contiguous prefix grows; when every chunk is
//! there the hash is checked and only a match is renamed into `<sha>`, the
//! only name the HTTP and TFTP servers serve. A corrupt or partial blob is
//! therefore never served.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgemetal_protocol::{BlobChunk, BlobRequest, BootResource};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// How much the rack asks for per link message.
pub const CHUNK_BYTES: u32 = 512 * 1024;

/// Chunks written between syncs of the data and its bitmap: at most this
/// much is fetched again after a crash.
const SYNC_EVERY: u32 = 32;

/// The bitmap file's first bytes: format and the resource's size.
const BITMAP_MAGIC: &[u8; 8] = b"emchunk1";

/// What a chunk did to the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// Written at its offset; more to fetch.
    Stored,
    /// The resource is complete and verified.
    Complete,
    /// The complete content did not hash to its address; it was discarded.
    Corrupt,
    /// Not for a wanted resource, not a whole chunk, or a chunk already
    /// there (a stale or duplicated answer): ignored.
    Ignored,
    /// The region does not have the blob.
    Missing,
}

/// One resource's state, for the rack's status.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceProgress {
    /// Name/release.
    pub name: String,
    /// Architecture.
    pub architecture: String,
    /// SHA-256, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Bytes cached so far.
    pub cached: u64,
    /// Whether it is complete, verified and served.
    pub ready: bool,
}

/// A resource being fetched: its open partial file and which chunks it holds.
#[derive(Debug)]
struct Partial {
    size: u64,
    file: File,
    done: Vec<bool>,
    done_count: u32,
    /// Chunks written since the last sync of data and bitmap.
    unsynced: u32,
    /// Hash of the first `hashed` chunks.
    hasher: Sha256,
    hashed: u32,
}

fn chunk_count(size: u64) -> u32 {
    size.div_ceil(CHUNK_BYTES as u64) as u32
}

fn chunk_len(size: u64, index: u32) -> u64 {
    let offset = index as u64 * CHUNK_BYTES as u64;
    (size - offset).min(CHUNK_BYTES as u64)
}

fn cached_bytes(size: u64, done: &[bool]) -> u64 {
    (0..done.len() as u32)
        .filter(|&i| done[i as usize])
        .map(|i| chunk_len(size, i))
        .sum()
}

/// The boot resource cache under the rack's state dir.
#[derive(Debug, Clone)]
pub struct BootCache {
    dir: PathBuf,
    partial: PathBuf,
    blob_rate_limit: Option<u64>,
    open: Arc<Mutex<HashMap<[u8; 32], Partial>>>,
}

impl BootCache {
    /// Opens (creating) `state_dir/boot-cache`.
    pub fn open(state_dir: &Path) -> io::Result<Self> {
        let dir = state_dir.join("boot-cache");
        let partial = dir.join("partial");
        fs::create_dir_all(&partial)?;
        Ok(BootCache {
            dir,
            partial,
            blob_rate_limit: None,
            open: Arc::default(),
        })
    }

    /// Fetch at most `bytes_per_second` from the region (`None`: unlimited).
    pub fn with_blob_rate_limit(mut self, bytes_per_second: Option<u64>) -> Self {
        self.blob_rate_limit = bytes_per_second.filter(|&rate| rate > 0);
        self
    }

    /// The fetch rate limit, bytes per second.
    pub fn blob_rate_limit(&self) -> Option<u64> {
        self.blob_rate_limit
    }

    /// The verified file of `sha256`, if cached.
    pub fn ready_path(&self, sha256: &[u8; 32]) -> Option<PathBuf> {
        let path = self.dir.join(hex::encode(sha256));
        path.is_file().then_some(path)
    }

    fn partial_path(&self, sha256: &[u8; 32]) -> PathBuf {
        self.partial.join(hex::encode(sha256))
    }

    fn bitmap_path(&self, sha256: &[u8; 32]) -> PathBuf {
        self.partial.join(format!("{}.chunks", hex::encode(sha256)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Partial>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Which chunks of `resource` are on disk, as persisted. A partial file
    /// without a bitmap is from a build that appended in order: its whole
    /// chunks are there. A bitmap that does not parse counts for nothing.
    fn stored_chunks(&self, resource: &BootResource) -> Vec<bool> {
        let chunks = chunk_count(resource.size) as usize;
        match fs::read(self.bitmap_path(&resource.sha256)) {
            Ok(bytes) => parse_bitmap(&bytes, resource.size).unwrap_or_else(|| vec![false; chunks]),
            Err(_) => {
                let len = fs::metadata(self.partial_path(&resource.sha256)).map_or(0, |m| m.len());
                let whole = if len >= resource.size {
                    chunks
                } else {
                    (len / CHUNK_BYTES as u64) as usize
                };
                (0..chunks).map(|i| i < whole).collect()
            }
        }
    }

    /// Opens the partial state of `resource`, loading it on first use.
    fn partial<'a>(
        &self,
        open: &'a mut HashMap<[u8; 32], Partial>,
        resource: &BootResource,
    ) -> io::Result<&'a mut Partial> {
        if open
            .get(&resource.sha256)
            .is_some_and(|p| p.size != resource.size)
        {
            open.remove(&resource.sha256);
        }
        let entry = match open.entry(resource.sha256) {
            std::collections::hash_map::Entry::Occupied(entry) => return Ok(entry.into_mut()),
            std::collections::hash_map::Entry::Vacant(entry) => entry,
        };
        let done = self.stored_chunks(resource);
        // The bitmap exists before any chunk is written out of order, so
        // a partial file without one is never mistaken for a prefix.
        self.store_bitmap(&resource.sha256, resource.size, &done)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(self.partial_path(&resource.sha256))?;
        let done_count = done.iter().filter(|d| **d).count() as u32;
        Ok(entry.insert(Partial {
            size: resource.size,
            file,
            done,
            done_count,
            unsynced: 0,
            hasher: Sha256::new(),
            hashed: 0,
        }))
    }

    fn store_bitmap(&self, sha256: &[u8; 32], size: u64, done: &[bool]) -> io::Result<()> {
        crate::state::atomic_file::write(&self.bitmap_path(sha256), &encode_bitmap(size, done))
    }

    /// Up to `limit` pieces to ask the region for, in order, from the
    /// resources in `wanted` not cached yet, leaving out those `skip` names
    /// (asked already, or of a blob the region said it lacks).
    pub fn missing(
        &self,
        wanted: &[BootResource],
        limit: usize,
        skip: impl Fn(&[u8; 32], u64) -> bool,
    ) -> Vec<BlobRequest> {
        let mut requests = Vec::new();
        let open = self.lock();
        for resource in wanted {
            if requests.len() >= limit {
                break;
            }
            if self.ready_path(&resource.sha256).is_some() || resource.size == 0 {
                continue;
            }
            let done = match open.get(&resource.sha256) {
                Some(partial) if partial.size == resource.size => partial.done.clone(),
                _ => self.stored_chunks(resource),
            };
            let pieces = (0..done.len() as u32)
                .filter(|&i| !done[i as usize])
                .map(|i| i as u64 * CHUNK_BYTES as u64)
                .filter(|&offset| !skip(&resource.sha256, offset))
                .take(limit - requests.len())
                .map(|offset| BlobRequest {
                    sha256: resource.sha256,
                    offset,
                    len: CHUNK_BYTES,
                });
            requests.extend(pieces);
        }
        requests
    }

    /// The next piece to ask the region for, if anything in `wanted` is missing.
    pub fn next_request(&self, wanted: &[BootResource]) -> Option<BlobRequest> {
        self.missing(wanted, 1, |_, _| false).pop()
    }

    /// Applies a chunk from the region: written at its offset at once.
    /// Blocking (it hashes, and may hash a whole resource after a restart):
    /// call it off the async executor.
    pub fn apply(&self, chunk: &BlobChunk, wanted: &[BootResource]) -> io::Result<ChunkOutcome> {
        let Some(resource) = wanted.iter().find(|r| r.sha256 == chunk.sha256) else {
            return Ok(ChunkOutcome::Ignored);
        };
        if self.ready_path(&resource.sha256).is_some() {
            return Ok(ChunkOutcome::Ignored);
        }
        if chunk.total == 0 {
            return Ok(ChunkOutcome::Missing);
        }
        let aligned = chunk.offset.is_multiple_of(CHUNK_BYTES as u64);
        if chunk.total != resource.size || !aligned || chunk.offset >= resource.size {
            return Ok(ChunkOutcome::Ignored);
        }
        let index = (chunk.offset / CHUNK_BYTES as u64) as u32;
        if chunk.data.len() as u64 != chunk_len(resource.size, index) {
            return Ok(ChunkOutcome::Ignored);
        }
        let mut open = self.lock();
        let partial = self.partial(&mut open, resource)?;
        if partial.done[index as usize] {
            return Ok(ChunkOutcome::Ignored);
        }
        partial.file.write_all_at(&chunk.data, chunk.offset)?;
        partial.done[index as usize] = true;
        partial.done_count += 1;
        partial.unsynced += 1;
        if partial.hashed == index {
            partial.hasher.update(&chunk.data);
            partial.hashed += 1;
        }
        hash_prefix(partial)?;
        if partial.done_count < partial.done.len() as u32 {
            if partial.unsynced >= SYNC_EVERY {
                partial.file.sync_data()?;
                partial.unsynced = 0;
                let (size, done) = (partial.size, partial.done.clone());
                self.store_bitmap(&resource.sha256, size, &done)?;
            }
            return Ok(ChunkOutcome::Stored);
        }
        let partial = open.remove(&resource.sha256).expect("open above");
        partial.file.sync_data()?;
        let path = self.partial_path(&resource.sha256);
        let digest: [u8; 32] = partial.hasher.finalize().into();
        let _ = fs::remove_file(self.bitmap_path(&resource.sha256));
        if digest != resource.sha256 {
            fs::remove_file(&path)?;
            return Ok(ChunkOutcome::Corrupt);
        }
        let ready = self.dir.join(hex::encode(resource.sha256));
        fs::rename(&path, &ready)?;
        File::open(&self.dir)?.sync_all()?;
        Ok(ChunkOutcome::Complete)
    }

    /// How far each wanted resource is.
    pub fn progress(&self, wanted: &[BootResource]) -> Vec<ResourceProgress> {
        let open = self.lock();
        wanted
            .iter()
            .map(|resource| {
                let ready = self.ready_path(&resource.sha256).is_some();
                let cached = if ready {
                    resource.size
                } else {
                    match open.get(&resource.sha256) {
                        Some(partial) if partial.size == resource.size => {
                            cached_bytes(partial.size, &partial.done)
                        }
                        _ => cached_bytes(resource.size, &self.stored_chunks(resource)),
                    }
                };
                ResourceProgress {
                    name: format!(
                        "{}/{}",
                        resource.name,
                        match resource.kind {
                            edgemetal_protocol::BootResourceKind::Kernel => "kernel",
                            edgemetal_protocol::BootResourceKind::Initrd => "initrd",
                            edgemetal_protocol::BootResourceKind::Squashfs => "squashfs",
                        }
                    ),
                    architecture: resource.architecture.clone(),
                    sha256: hex::encode(resource.sha256),
                    size: resource.size,
                    cached,
                    ready,
                }
            })
            .collect()
    }

    /// Removes cached and partial blobs (and their bitmaps) no longer wanted.
    pub fn prune(&self, wanted: &[BootResource]) -> io::Result<()> {
        let mut open = self.lock();
        open.retain(|sha256, _| wanted.iter().any(|r| r.sha256 == *sha256));
        let keep: Vec<String> = wanted
            .iter()
            .flat_map(|r| {
                let sha = hex::encode(r.sha256);
                [format!("{sha}.chunks"), sha]
            })
            .collect();
        for dir in [&self.dir, &self.partial] {
            for entry in fs::read_dir(dir)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if entry.file_type()?.is_file() && !keep.contains(&name) {
                    fs::remove_file(entry.path())?;
                }
            }
        }
        Ok(())
    }
}

/// Extends the hash over the chunks that now follow its prefix (read back
/// from the partial file: they arrived ahead of their turn, or before a restart).
fn hash_prefix(partial: &mut Partial) -> io::Result<()> {
    let mut buffer = Vec::new();
    while partial.hashed < partial.done.len() as u32 && partial.done[partial.hashed as usize] {
        let len = chunk_len(partial.size, partial.hashed) as usize;
        buffer.resize(len, 0);
        let offset = partial.hashed as u64 * CHUNK_BYTES as u64;
        partial.file.read_exact_at(&mut buffer, offset)?;
        partial.hasher.update(&buffer);
        partial.hashed += 1;
    }
    Ok(())
}

/// The bitmap file: magic, the resource's size, one byte (0 or 1) per chunk.
fn encode_bitmap(size: u64, done: &[bool]) -> Vec<u8> {
    let flags = done.iter().map(|d| *d as u8);
    [BITMAP_MAGIC.as_slice(), &size.to_le_bytes()]
        .concat()
        .into_iter()
        .chain(flags)
        .collect()
}

fn parse_bitmap(bytes: &[u8], size: u64) -> Option<Vec<bool>> {
    let header = [BITMAP_MAGIC.as_slice(), &size.to_le_bytes()].concat();
    let flags = bytes.strip_prefix(header.as_slice())?;
    (flags.len() == chunk_count(size) as usize && flags.iter().all(|f| *f <= 1))
        .then(|| flags.iter().map(|f| *f == 1).collect())
}

/// Fewest chunks kept in flight.
pub const MIN_WINDOW: usize = 8;
/// Most chunks kept in flight (32 MiB: 100 MB/s at 300 ms).
pub const MAX_WINDOW: usize = 64;
/// The delivery rate estimate is the highest sample of the last one or two
/// periods of this long (or four round trips, if longer).
const RATE_PERIOD: Duration = Duration::from_secs(1);

/// A piece of a blob: its sha256 and offset.
pub type Piece = ([u8; 32], u64);

/// One request sent and not answered yet.
#[derive(Debug, Clone)]
struct Asked {
    sha256: [u8; 32],
    offset: u64,
    at: Instant,
    /// Answers that came for requests asked after this one.
    overtaken: usize,
    /// Bytes delivered when it was asked, and when the last of them came.
    delivered: u64,
    delivered_at: Instant,
}

/// The blob requests in flight on the link: as many as the path's
/// bandwidth × delay needs, at most [`MAX_WINDOW`], paced by an optional
/// [`TokenBucket`]. Sans-IO: the link feeds it times and answers.
///
/// The window is twice the estimated bandwidth-delay product (the highest
/// recent delivery rate × the lowest round trip), so it doubles each round
/// trip until the path is full and then keeps about one round trip queued.
/// A request is lost when [`MAX_WINDOW`] later ones were answered before it
/// (the region answers in order), or when nothing arrived for `retry`
/// since it was asked; it is then asked again.
#[derive(Debug)]
pub struct FetchWindow {
    retry: Duration,
    asked: Vec<Asked>,
    paused: HashMap<[u8; 32], Instant>,
    last_arrival: Option<Instant>,
    min_rtt: Option<Duration>,
    delivered: u64,
    /// Highest delivery rates (bytes/s) of this period and the one before.
    rates: (f64, f64),
    period_start: Instant,
    bucket: Option<TokenBucket>,
}

impl FetchWindow {
    /// A window that re-asks after `retry`, paced to `rate_limit` bytes per second.
    pub fn new(retry: Duration, rate_limit: Option<u64>, now: Instant) -> Self {
        FetchWindow {
            retry,
            asked: Vec::new(),
            paused: HashMap::new(),
            last_arrival: None,
            min_rtt: None,
            delivered: 0,
            rates: (0.0, 0.0),
            period_start: now,
            bucket: rate_limit.map(|rate| TokenBucket::new(rate, now)),
        }
    }

    /// Forgets what is in flight (a new connection: the old one's answers are lost).
    pub fn reset(&mut self) {
        self.asked.clear();
        self.min_rtt = None;
        self.rates = (0.0, 0.0);
    }

    /// How many chunks may be in flight now.
    pub fn window(&self) -> usize {
        let Some(rtt) = self.min_rtt else {
            return MIN_WINDOW;
        };
        let rate = self.rates.0.max(self.rates.1);
        let bdp = rate * rtt.as_secs_f64() / CHUNK_BYTES as f64;
        ((2.0 * bdp).ceil() as usize).clamp(MIN_WINDOW, MAX_WINDOW)
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.asked.len()
    }

    /// The pieces in flight and paused blobs, to leave out of the next requests.
    pub fn skip_list(&self, now: Instant) -> (Vec<Piece>, Vec<[u8; 32]>) {
        let asked = self.asked.iter().map(|a| (a.sha256, a.offset)).collect();
        let paused = self
            .paused
            .iter()
            .filter(|(_, until)| now < **until)
            .map(|(sha, _)| *sha)
            .collect();
        (asked, paused)
    }

    /// Drops the requests deemed lost; then how many may be asked now
    /// (room in the window, and tokens in the bucket).
    pub fn room(&mut self, now: Instant) -> usize {
        let progress = self.last_arrival;
        let retry = self.retry;
        self.asked.retain(|a| {
            let quiet_since = progress.map_or(a.at, |p| p.max(a.at));
            a.overtaken <= MAX_WINDOW && now.saturating_duration_since(quiet_since) < retry
        });
        self.paused.retain(|_, until| now < *until);
        let room = self.window().saturating_sub(self.asked.len());
        match &mut self.bucket {
            Some(bucket) => room.min(bucket.available(now, CHUNK_BYTES as u64)),
            None => room,
        }
    }

    /// Records a request as sent.
    pub fn asked(&mut self, request: &BlobRequest, now: Instant) {
        if let Some(bucket) = &mut self.bucket {
            bucket.take(now, request.len as u64);
        }
        // Idle until now, the delivery rate is measured from now.
        let delivered_at = match (self.asked.is_empty(), self.last_arrival) {
            (false, Some(last)) => last,
            _ => now,
        };
        self.asked.push(Asked {
            sha256: request.sha256,
            offset: request.offset,
            at: now,
            overtaken: 0,
            delivered: self.delivered,
            delivered_at,
        });
    }

    /// Records an answer of `bytes` to the piece at `offset` of `sha256`.
    ///
    /// Each answer is a delivery rate sample: the bytes delivered since the
    /// request was asked over the time since the last delivery before it
    /// (never shorter than its round trip).
    pub fn answered(&mut self, sha256: &[u8; 32], offset: u64, bytes: u64, now: Instant) {
        self.last_arrival = Some(now);
        let Some(index) = self
            .asked
            .iter()
            .position(|a| a.sha256 == *sha256 && a.offset == offset)
        else {
            return;
        };
        let answered = self.asked.remove(index);
        for earlier in &mut self.asked[..index] {
            earlier.overtaken += 1;
        }
        self.delivered += bytes;
        let rtt = now.saturating_duration_since(answered.at);
        let min_rtt = *self.min_rtt.get_or_insert(rtt);
        self.min_rtt = Some(min_rtt.min(rtt));
        let interval = now.saturating_duration_since(answered.delivered_at);
        if !interval.is_zero() {
            let rate = (self.delivered - answered.delivered) as f64 / interval.as_secs_f64();
            if now.saturating_duration_since(self.period_start) >= RATE_PERIOD.max(4 * min_rtt) {
                self.rates = (0.0, self.rates.0);
                self.period_start = now;
            }
            self.rates.0 = self.rates.0.max(rate);
        }
    }

    /// The region lacks `sha256`: its requests are answered, and it is not
    /// asked for again before `retry` has passed.
    pub fn missing(&mut self, sha256: &[u8; 32], now: Instant) {
        self.last_arrival = Some(now);
        self.asked.retain(|a| a.sha256 != *sha256);
        self.paused.insert(*sha256, now + self.retry);
    }

    /// When the link should look again without an answer arriving: when the
    /// bucket has a chunk's tokens (if more is `wanted`), or the oldest
    /// request would be lost.
    pub fn wake_at(&self, wanted: bool, now: Instant) -> Option<Instant> {
        let refill = self
            .bucket
            .as_ref()
            .filter(|_| wanted && self.asked.len() < self.window())
            .map(|b| b.ready_at(now, CHUNK_BYTES as u64));
        let lost = self
            .asked
            .iter()
            .map(|a| self.last_arrival.map_or(a.at, |p| p.max(a.at)) + self.retry)
            .min();
        let paused = self.paused.values().min().copied();
        [refill, lost, paused].into_iter().flatten().min()
    }
}

/// A token bucket of bytes: `rate` per second, holding at most an eighth
/// of a second's worth (and at least one chunk).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate` bytes per second.
    pub fn new(rate: u64, now: Instant) -> Self {
        let capacity = (rate as f64 / 8.0).max(CHUNK_BYTES as f64);
        TokenBucket {
            rate: rate.max(1) as f64,
            capacity,
            tokens: capacity,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.at = now;
    }

    /// How many pieces of `cost` bytes may be taken now.
    pub fn available(&mut self, now: Instant, cost: u64) -> usize {
        self.refill(now);
        (self.tokens / cost.max(1) as f64).floor().max(0.0) as usize
    }

    /// Takes `cost` bytes' tokens.
    pub fn take(&mut self, now: Instant, cost: u64) {
        self.refill(now);
        self.tokens -= cost as f64;
    }

    /// When `cost` bytes' tokens will be there.
    pub fn ready_at(&self, now: Instant, cost: u64) -> Instant {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        let tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        let lacking = (cost as f64 - tokens).max(0.0);
        now + Duration::from_secs_f64(lacking / self.rate)
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
