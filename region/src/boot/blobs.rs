//! Content-addressed blob store for boot resources: one file per sha256
//! under the data dir. Uploads stream to a temporary file while being
//! hashed, so a multi-GB squashfs never sits in memory, and only complete,
//! hashed content is renamed into place.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// File system trouble.
    #[error("blob store: {0}")]
    Io(#[from] std::io::Error),
    /// The upload's body could not be read.
    #[error("upload interrupted: {0}")]
    Upload(String),
    /// The content does not match the sha256 the client announced.
    #[error("content has sha256 {actual}, not the announced {expected}")]
    Mismatch {
        /// What the client said.
        expected: String,
        /// What arrived.
        actual: String,
    },
    /// An empty upload.
    #[error("empty upload")]
    Empty,
}

/// The blob directory.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    /// Blobs under `data_dir/blobs`.
    pub fn new(data_dir: &Path) -> Self {
        BlobStore {
            dir: data_dir.join("blobs"),
        }
    }

    /// Where the blob `sha256` is stored.
    pub fn path(&self, sha256: &[u8; 32]) -> PathBuf {
        self.dir.join(hex::encode(sha256))
    }

    /// Writes the chunks of `body` to the store, returning the content's
    /// sha256 and size; refuses content whose hash differs from `expected`.
    pub async fn ingest<S, E>(
        &self,
        mut body: S,
        expected: Option<[u8; 32]>,
    ) -> Result<([u8; 32], u64), BlobError>
    where
        S: futures_util::Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        use futures_util::StreamExt;
        tokio::fs::create_dir_all(&self.dir).await?;
        let temp = self
            .dir
            .join(format!(".upload-{}", uuid::Uuid::new_v4().simple()));
        let result = async {
            let mut file = tokio::fs::File::create(&temp).await?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| BlobError::Upload(e.to_string()))?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk).await?;
            }
            if size == 0 {
                return Err(BlobError::Empty);
            }
            file.sync_all().await?;
            let sha256: [u8; 32] = hasher.finalize().into();
            if let Some(expected) = expected.filter(|e| *e != sha256) {
                return Err(BlobError::Mismatch {
                    expected: hex::encode(expected),
                    actual: hex::encode(sha256),
                });
            }
            tokio::fs::rename(&temp, self.path(&sha256)).await?;
            Ok((sha256, size))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
        result
    }

    /// Up to `len` bytes of a blob from `offset`, and its size; `None` when
    /// absent. Reads only that range (one positioned read off the executor),
    /// so serving a blob takes memory for one piece, whatever its size.
    pub async fn read(
        &self,
        sha256: &[u8; 32],
        offset: u64,
        len: usize,
    ) -> Result<Option<(Vec<u8>, u64)>, BlobError> {
        let path = self.path(sha256);
        let read = tokio::task::spawn_blocking(move || read_range(&path, offset, len)).await;
        read.map_err(|e| BlobError::Io(std::io::Error::other(e)))?
    }

    /// Removes a blob (nothing references it any more).
    pub async fn remove(&self, sha256: &[u8; 32]) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.path(sha256)).await {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error.into()),
            _ => Ok(()),
        }
    }
}

/// Up to `len` bytes of the file at `path` from `offset`, and its size.
fn read_range(path: &Path, offset: u64, len: usize) -> Result<Option<(Vec<u8>, u64)>, BlobError> {
    use std::os::unix::fs::FileExt;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let total = file.metadata()?.len();
    let wanted = len.min(total.saturating_sub(offset) as usize);
    let mut data = vec![0; wanted];
    file.read_exact_at(&mut data, offset)?;
    Ok(Some((data, total)))
}
