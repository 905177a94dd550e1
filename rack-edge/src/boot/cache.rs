//! The rack's cache of boot resources, filled from the region over the link.
//!
//! Content is addressed by sha256. A resource being fetched lives in
//! `partial/<sha>` and grows chunk by chunk, only ever at its current end,
//! so a disconnect loses nothing: the next request resumes from the file's
//! length. When it reaches the announced size it is hashed; only a match is
//! renamed into `<sha>`, the only name the HTTP and TFTP servers serve. A
//! corrupt or partial blob is therefore never served.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use edgemetal_protocol::{BlobChunk, BlobRequest, BootResource};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// How much the rack asks for per link message.
pub const CHUNK_BYTES: u32 = 512 * 1024;

/// What a chunk did to the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// Appended; more to fetch.
    Appended,
    /// The resource is complete and verified.
    Complete,
    /// The complete content did not hash to its address; it was discarded.
    Corrupt,
    /// Not for a wanted resource, or not at the partial file's end (a stale
    /// or duplicated answer): ignored.
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

/// The boot resource cache under the rack's state dir.
#[derive(Debug, Clone)]
pub struct BootCache {
    dir: PathBuf,
    partial: PathBuf,
}

impl BootCache {
    /// Opens (creating) `state_dir/boot-cache`.
    pub fn open(state_dir: &Path) -> io::Result<Self> {
        let dir = state_dir.join("boot-cache");
        let partial = dir.join("partial");
        fs::create_dir_all(&partial)?;
        Ok(BootCache { dir, partial })
    }

    /// The verified file of `sha256`, if cached.
    pub fn ready_path(&self, sha256: &[u8; 32]) -> Option<PathBuf> {
        let path = self.dir.join(hex::encode(sha256));
        path.is_file().then_some(path)
    }

    fn partial_path(&self, sha256: &[u8; 32]) -> PathBuf {
        self.partial.join(hex::encode(sha256))
    }

    fn partial_len(&self, sha256: &[u8; 32]) -> u64 {
        fs::metadata(self.partial_path(sha256))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// The next piece to ask the region for, if anything in `wanted` is missing.
    pub fn next_request(&self, wanted: &[BootResource]) -> Option<BlobRequest> {
        wanted
            .iter()
            .find(|resource| self.ready_path(&resource.sha256).is_none())
            .map(|resource| BlobRequest {
                sha256: resource.sha256,
                offset: self.partial_len(&resource.sha256),
                len: CHUNK_BYTES,
            })
    }

    /// Applies a chunk from the region. Blocking (it may hash a whole
    /// resource): call it off the async executor.
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
        let path = self.partial_path(&resource.sha256);
        let have = self.partial_len(&resource.sha256);
        let fits = chunk.offset + chunk.data.len() as u64 <= resource.size;
        if chunk.offset != have || !fits || chunk.total != resource.size {
            return Ok(ChunkOutcome::Ignored);
        }
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        file.write_all(&chunk.data)?;
        file.sync_data()?;
        if have + (chunk.data.len() as u64) < resource.size {
            return Ok(ChunkOutcome::Appended);
        }
        if hash_file(&path)? != resource.sha256 {
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
        wanted
            .iter()
            .map(|resource| {
                let ready = self.ready_path(&resource.sha256).is_some();
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
                    cached: if ready {
                        resource.size
                    } else {
                        self.partial_len(&resource.sha256)
                    },
                    ready,
                }
            })
            .collect()
    }

    /// Removes cached and partial blobs no longer wanted.
    pub fn prune(&self, wanted: &[BootResource]) -> io::Result<()> {
        let keep: Vec<String> = wanted.iter().map(|r| hex::encode(r.sha256)).collect();
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

fn hash_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgemetal_protocol::BootResourceKind;

    fn resource(content: &[u8]) -> BootResource {
        BootResource {
            name: "ephemeral".into(),
            architecture: "amd64".into(),
            kind: BootResourceKind::Kernel,
            sha256: Sha256::digest(content).into(),
            size: content.len() as u64,
        }
    }

    fn chunk(resource: &BootResource, content: &[u8], from: usize, to: usize) -> BlobChunk {
        BlobChunk {
            sha256: resource.sha256,
            offset: from as u64,
            data: content[from..to].to_vec(),
            total: content.len() as u64,
        }
    }

    #[test]
    fn chunks_resume_after_a_restart_and_only_verified_content_is_served() {
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let wanted = vec![resource(&content)];
        let cache = BootCache::open(dir.path()).unwrap();
        assert_eq!(cache.next_request(&wanted).unwrap().offset, 0);
        assert_eq!(
            cache
                .apply(&chunk(&wanted[0], &content, 0, 1000), &wanted)
                .unwrap(),
            ChunkOutcome::Appended
        );
        // A duplicate or out-of-order chunk changes nothing.
        assert_eq!(
            cache
                .apply(&chunk(&wanted[0], &content, 0, 1000), &wanted)
                .unwrap(),
            ChunkOutcome::Ignored
        );
        assert_eq!(
            cache
                .apply(&chunk(&wanted[0], &content, 2000, 3000), &wanted)
                .unwrap(),
            ChunkOutcome::Ignored
        );
        assert!(cache.ready_path(&wanted[0].sha256).is_none());
        // A restart resumes from what is on disk.
        let cache = BootCache::open(dir.path()).unwrap();
        assert_eq!(cache.next_request(&wanted).unwrap().offset, 1000);
        cache
            .apply(&chunk(&wanted[0], &content, 1000, 2000), &wanted)
            .unwrap();
        assert_eq!(
            cache
                .apply(&chunk(&wanted[0], &content, 2000, 3000), &wanted)
                .unwrap(),
            ChunkOutcome::Complete
        );
        let served = std::fs::read(cache.ready_path(&wanted[0].sha256).unwrap()).unwrap();
        assert_eq!(served, content);
        assert!(cache.next_request(&wanted).is_none());
        assert!(cache.progress(&wanted)[0].ready);
    }

    #[test]
    fn corrupt_content_is_discarded_and_fetched_again() {
        let dir = tempfile::tempdir().unwrap();
        let content = vec![7u8; 100];
        let wanted = vec![resource(&content)];
        let cache = BootCache::open(dir.path()).unwrap();
        let mut bad = chunk(&wanted[0], &content, 0, 100);
        bad.data[50] ^= 1;
        assert_eq!(cache.apply(&bad, &wanted).unwrap(), ChunkOutcome::Corrupt);
        assert!(cache.ready_path(&wanted[0].sha256).is_none());
        assert_eq!(cache.next_request(&wanted).unwrap().offset, 0);
    }

    #[test]
    fn unwanted_blobs_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let content = vec![1u8; 10];
        let wanted = vec![resource(&content)];
        let cache = BootCache::open(dir.path()).unwrap();
        cache
            .apply(&chunk(&wanted[0], &content, 0, 10), &wanted)
            .unwrap();
        cache.prune(&wanted).unwrap();
        assert!(cache.ready_path(&wanted[0].sha256).is_some());
        cache.prune(&[]).unwrap();
        assert!(cache.ready_path(&wanted[0].sha256).is_none());
    }
}
