//! The rack's cache of boot resources, filled from the region over the link.
//!
//! Content is addressed by sha256. A resource being fetched lives in
//! `partial/<sha>`; chunks of [`CHUNK_BYTES`] arrive in any order (many are
//! asked for at once, see [`super::window::FetchWindow`]) and each is written at its offset
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
    /// Shared so a chunk is written and synced without holding the map's lock.
    file: Arc<File>,
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
            file: Arc::new(file),
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
        // The write and the periodic sync run outside the lock, so the
        // link can work out its next requests (`missing`) meanwhile.
        let file = {
            let mut open = self.lock();
            let partial = self.partial(&mut open, resource)?;
            if partial.done[index as usize] {
                return Ok(ChunkOutcome::Ignored);
            }
            partial.file.clone()
        };
        file.write_all_at(&chunk.data, chunk.offset)?;
        let mut open = self.lock();
        // Pruned meanwhile, or the same chunk applied twice at once.
        let Some(partial) = open.get_mut(&resource.sha256) else {
            return Ok(ChunkOutcome::Ignored);
        };
        if !Arc::ptr_eq(&partial.file, &file) || partial.done[index as usize] {
            return Ok(ChunkOutcome::Ignored);
        }
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
                partial.unsynced = 0;
                // The bitmap is taken before the sync, so it never names a
                // chunk the sync does not cover.
                let (size, done) = (partial.size, partial.done.clone());
                drop(open);
                file.sync_data()?;
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
                            edgemetal_protocol::BootResourceKind::Rootfs => "rootfs",
                            edgemetal_protocol::BootResourceKind::File => "file",
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

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
