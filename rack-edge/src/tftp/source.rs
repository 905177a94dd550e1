//! Where served files come from: a directory on disk ([`DirSource`]),
//! in-memory bytes ([`MemorySource`], e.g. generated per-machine boot
//! configs), or several of these in order ([`Chain`]).
//!
//! [`FileSource::open`] is called once per read request, off the async
//! runtime's worker threads; the [`TftpFile`] it returns is then read by
//! position, block by block, for the whole transfer.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::path::NormalisedPath;

/// An open file to serve: its length is fixed when it is opened and it is
/// served exactly, so the size promised in a `tsize` option holds.
#[derive(Debug)]
pub enum TftpFile {
    /// A file on disk, read by position.
    Disk {
        /// The open file.
        file: File,
        /// Its length when opened.
        len: u64,
    },
    /// Bytes in memory (shared, so a generated file is not copied per transfer).
    Memory(Arc<[u8]>),
}

impl TftpFile {
    /// In-memory bytes.
    pub fn from_bytes(bytes: impl Into<Arc<[u8]>>) -> Self {
        TftpFile::Memory(bytes.into())
    }

    /// The length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            TftpFile::Disk { len, .. } => *len,
            TftpFile::Memory(bytes) => bytes.len() as u64,
        }
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads from `offset` into `buf`, stopping at the length fixed at open
    /// time. Returns fewer bytes than asked only at that end, or when a
    /// disk file shrank under us.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let remaining = self.len().saturating_sub(offset);
        let want = buf
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        match self {
            TftpFile::Memory(bytes) => {
                // `want` > 0 implies `offset` < len, so it fits in usize.
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                if want > 0 {
                    buf[..want].copy_from_slice(&bytes[start..start + want]);
                }
                Ok(want)
            }
            TftpFile::Disk { file, .. } => {
                let mut filled = 0;
                while filled < want {
                    match file.read_at(&mut buf[filled..want], offset + filled as u64) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                        Err(error) => return Err(error),
                    }
                }
                Ok(filled)
            }
        }
    }
}

/// Why a file could not be opened; each maps to a TFTP error and a counter.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No such file (TFTP "file not found").
    #[error("file not found")]
    NotFound,
    /// The name resolves, through a symlink, outside the root (TFTP
    /// "access violation").
    #[error("file resolves outside the root")]
    OutsideRoot,
    /// A directory, device, FIFO or socket, not a regular file.
    #[error("not a regular file")]
    NotAFile,
    /// The OS refused access.
    #[error("permission denied")]
    PermissionDenied,
    /// Any other failure.
    #[error("cannot open: {0}")]
    Io(#[from] io::Error),
}

/// Something that can serve files by name. Implementations must be cheap to
/// call concurrently; `open` runs on a blocking thread.
pub trait FileSource: Send + Sync + 'static {
    /// Opens `path` for `peer` (the client's address, for sources that
    /// answer per machine).
    fn open(&self, path: &NormalisedPath, peer: SocketAddr) -> Result<TftpFile, OpenError>;
}

impl<T: FileSource + ?Sized> FileSource for Arc<T> {
    fn open(&self, path: &NormalisedPath, peer: SocketAddr) -> Result<TftpFile, OpenError> {
        (**self).open(path, peer)
    }
}

/// Files under one directory. Symlinks are followed only while they stay
/// inside it.
#[derive(Debug, Clone)]
pub struct DirSource {
    root: PathBuf,
}

impl DirSource {
    /// Serves the directory `root`, which must exist.
    pub fn new(root: impl AsRef<Path>) -> io::Result<Self> {
        let root = std::fs::canonicalize(root.as_ref())?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", root.display()),
            ));
        }
        Ok(DirSource { root })
    }

    /// The canonical root.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl FileSource for DirSource {
    fn open(&self, path: &NormalisedPath, _peer: SocketAddr) -> Result<TftpFile, OpenError> {
        let candidate = self.root.join(path.to_relative_path());
        // Resolve every symlink first and check where the file really is.
        let real = std::fs::canonicalize(&candidate).map_err(classify)?;
        if !real.starts_with(&self.root) {
            return Err(OpenError::OutsideRoot);
        }
        // O_NOFOLLOW: `real` has no symlinks left, so one appearing now is a
        // race. O_NONBLOCK: opening a FIFO must not hang the thread.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&real)
            .map_err(classify)?;
        let metadata = file.metadata()?;
        if !metadata.is_file() {
            return Err(OpenError::NotAFile);
        }
        // A directory on the way may have been swapped for a symlink between
        // the check and the open: ask the kernel what was really opened.
        if let Ok(opened) = std::fs::read_link(opened_path(&file)) {
            if !opened.starts_with(&self.root) {
                return Err(OpenError::OutsideRoot);
            }
        }
        Ok(TftpFile::Disk {
            file,
            len: metadata.len(),
        })
    }
}

fn opened_path(file: &File) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

fn classify(error: io::Error) -> OpenError {
    match error.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => OpenError::NotFound,
        io::ErrorKind::PermissionDenied => OpenError::PermissionDenied,
        // ELOOP from O_NOFOLLOW: a symlink appeared after canonicalisation.
        _ if error.raw_os_error() == Some(libc::ELOOP) => OpenError::OutsideRoot,
        _ => OpenError::Io(error),
    }
}

/// Files held in memory, replaceable while serving: the place for
/// generated per-machine files (PXELINUX `pxelinux.cfg/01-<mac>`, GRUB
/// `grub.cfg-<mac>`, iPXE scripts).
#[derive(Debug, Default)]
pub struct MemorySource {
    files: RwLock<HashMap<NormalisedPath, Arc<[u8]>>>,
}

impl MemorySource {
    /// An empty source.
    pub fn new() -> Self {
        MemorySource::default()
    }

    /// Serves `bytes` as `path` from now on, replacing any earlier content.
    pub fn insert(&self, path: NormalisedPath, bytes: impl Into<Arc<[u8]>>) {
        self.write().insert(path, bytes.into());
    }

    /// Stops serving `path`.
    pub fn remove(&self, path: &NormalisedPath) {
        self.write().remove(path);
    }

    /// Replaces every file at once (e.g. from a new configuration snapshot).
    pub fn replace_all(&self, files: HashMap<NormalisedPath, Arc<[u8]>>) {
        *self.write() = files;
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<NormalisedPath, Arc<[u8]>>> {
        // A panic while holding the lock cannot leave the map half-written
        // (each operation is one map call), so a poisoned lock is still usable.
        self.files.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl FileSource for MemorySource {
    fn open(&self, path: &NormalisedPath, _peer: SocketAddr) -> Result<TftpFile, OpenError> {
        let files = self.files.read().unwrap_or_else(|e| e.into_inner());
        files
            .get(path)
            .map(|bytes| TftpFile::Memory(bytes.clone()))
            .ok_or(OpenError::NotFound)
    }
}

/// Tries each source in order; the first that has the file serves it. Any
/// answer other than "not found" (e.g. an escape refusal) is final, so a
/// later source cannot override a refusal.
pub struct Chain {
    sources: Vec<Arc<dyn FileSource>>,
}

impl Chain {
    /// Sources in priority order.
    pub fn new(sources: Vec<Arc<dyn FileSource>>) -> Self {
        Chain { sources }
    }
}

impl FileSource for Chain {
    fn open(&self, path: &NormalisedPath, peer: SocketAddr) -> Result<TftpFile, OpenError> {
        for source in &self.sources {
            match source.open(path, peer) {
                Err(OpenError::NotFound) => continue,
                other => return other,
            }
        }
        Err(OpenError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(name: &str) -> NormalisedPath {
        NormalisedPath::parse(name.as_bytes()).unwrap()
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:5000".parse().unwrap()
    }

    #[test]
    fn a_directory_serves_files_and_refuses_symlinks_out() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"secret").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("sub")).unwrap();
        std::fs::write(root.path().join("sub/file"), b"hello").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("leak"))
            .unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("leakdir")).unwrap();
        std::os::unix::fs::symlink("sub/file", root.path().join("inside")).unwrap();
        let source = DirSource::new(root.path()).unwrap();

        let file = source.open(&path("sub/file"), peer()).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(file.read_at(0, &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        assert!(source.open(&path("inside"), peer()).is_ok());
        assert!(matches!(
            source.open(&path("leak"), peer()),
            Err(OpenError::OutsideRoot)
        ));
        assert!(matches!(
            source.open(&path("leakdir/secret"), peer()),
            Err(OpenError::OutsideRoot)
        ));
        assert!(matches!(
            source.open(&path("missing"), peer()),
            Err(OpenError::NotFound)
        ));
        assert!(matches!(
            source.open(&path("sub/file/more"), peer()),
            Err(OpenError::NotFound)
        ));
        assert!(matches!(
            source.open(&path("sub"), peer()),
            Err(OpenError::NotAFile)
        ));
    }

    #[test]
    fn a_fifo_is_refused_without_hanging() {
        let root = tempfile::tempdir().unwrap();
        let fifo = root.path().join("fifo");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a node.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let source = DirSource::new(root.path()).unwrap();
        assert!(matches!(
            source.open(&path("fifo"), peer()),
            Err(OpenError::NotAFile)
        ));
    }

    #[test]
    fn reads_stop_at_the_length_fixed_at_open() {
        let file = TftpFile::from_bytes(&b"0123456789"[..]);
        let mut buf = [0u8; 4];
        assert_eq!(file.read_at(8, &mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"89");
        assert_eq!(file.read_at(10, &mut buf).unwrap(), 0);
        assert_eq!(file.read_at(u64::MAX, &mut buf).unwrap(), 0);
    }

    #[test]
    fn a_chain_falls_through_only_on_not_found() {
        let generated = Arc::new(MemorySource::new());
        generated.insert(
            path("pxelinux.cfg/01-52-54-00-12-34-56"),
            &b"DEFAULT x\n"[..],
        );
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("pxelinux.0"), b"boot").unwrap();
        let chain = Chain::new(vec![
            generated.clone(),
            Arc::new(DirSource::new(root.path()).unwrap()),
        ]);
        assert_eq!(
            chain
                .open(&path("pxelinux.cfg/01-52-54-00-12-34-56"), peer())
                .unwrap()
                .len(),
            10
        );
        assert_eq!(chain.open(&path("pxelinux.0"), peer()).unwrap().len(), 4);
        assert!(matches!(
            chain.open(&path("nope"), peer()),
            Err(OpenError::NotFound)
        ));
        generated.remove(&path("pxelinux.cfg/01-52-54-00-12-34-56"));
        assert!(chain
            .open(&path("pxelinux.cfg/01-52-54-00-12-34-56"), peer())
            .is_err());
    }
}
