//! The proxy's cache on disk, under the rack's state directory, so it
//! survives restarts. Each object is a body file and a small JSON metadata
//! file naming it; the metadata file is written last (by rename), so it is
//! the commit: a crash leaves either the old object, the new one, or an
//! orphan body that the next start deletes. Downloads go to `tmp/` and only
//! a complete one is renamed into `objects/`.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::counters::Counters;
use super::lru::Lru;
use super::policy::Freshness;

/// A cached object's description, stored next to its body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The absolute URL it was fetched from.
    pub url: String,
    /// The body's file name in `objects/` (unique per stored version, so a
    /// client still reading an older version is never cut short).
    #[serde(default)]
    pub body: String,
    /// The body's length in bytes.
    pub length: u64,
    /// `Content-Type` to answer with.
    pub content_type: Option<String>,
    /// Upstream's `ETag`, for revalidation.
    pub etag: Option<String>,
    /// Upstream's `Last-Modified`, for revalidation.
    pub last_modified: Option<String>,
    /// How long it may be served without asking upstream.
    pub freshness: Freshness,
}

/// The cache key of a URL: its SHA-256, hex (a safe file name).
pub fn key(url: &str) -> String {
    hex::encode(Sha256::digest(url.as_bytes()))
}

/// The on-disk cache with its size cap.
pub struct Cache {
    objects: PathBuf,
    tmp: PathBuf,
    inner: Mutex<Inner>,
    counters: Counters,
}

struct Inner {
    metas: HashMap<String, Arc<Meta>>,
    lru: Lru,
    cap: u64,
    next_temp: u64,
}

impl Cache {
    /// Opens (creating) the cache in `root`, keeping the objects whose body
    /// is complete, most recently used last (by the body's modification
    /// time, which a hit refreshes), and evicting down to `cap`.
    pub fn open(root: &Path, cap: u64, counters: Counters) -> io::Result<Cache> {
        let objects = root.join("objects");
        let tmp = root.join("tmp");
        // Whatever was downloading when the rack stopped is incomplete.
        match std::fs::remove_dir_all(&tmp) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        std::fs::create_dir_all(&objects)?;
        std::fs::create_dir_all(&tmp)?;
        let mut found = Vec::new();
        let mut bodies = Vec::new();
        for entry in std::fs::read_dir(&objects)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(key) = name.strip_suffix(".meta") {
                let meta = std::fs::read(entry.path())
                    .ok()
                    .and_then(|bytes| serde_json::from_slice::<Meta>(&bytes).ok());
                let body = meta.as_ref().and_then(|meta| {
                    let stat = std::fs::metadata(objects.join(&meta.body)).ok()?;
                    (stat.len() == meta.length).then(|| stat.modified().ok())?
                });
                match (meta, body) {
                    (Some(meta), Some(used)) if !meta.body.is_empty() => {
                        found.push((used, key.to_string(), meta))
                    }
                    _ => {
                        tracing::warn!(object = %name, "dropping an unreadable cache entry");
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            } else {
                bodies.push(name);
            }
        }
        found.sort_by_key(|(used, _, _)| *used);
        let mut inner = Inner {
            metas: HashMap::new(),
            lru: Lru::default(),
            cap,
            next_temp: 0,
        };
        for (_, key, meta) in found {
            inner.lru.insert(&key, meta.length);
            inner.metas.insert(key, Arc::new(meta));
        }
        let referenced: std::collections::HashSet<&str> =
            inner.metas.values().map(|m| m.body.as_str()).collect();
        for name in bodies.iter().filter(|n| !referenced.contains(n.as_str())) {
            let _ = std::fs::remove_file(objects.join(name));
        }
        let cache = Cache {
            objects,
            tmp,
            inner: Mutex::new(inner),
            counters,
        };
        cache.evict(&mut cache.lock());
        Ok(cache)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stored object under `key`, marked as just used.
    pub fn lookup(&self, key: &str) -> Option<Arc<Meta>> {
        let meta = {
            let mut inner = self.lock();
            let meta = inner.metas.get(key)?.clone();
            inner.lru.touch(key);
            meta
        };
        // The modification time orders objects for eviction after a restart.
        if let Ok(file) = std::fs::File::options()
            .append(true)
            .open(self.body_path(&meta))
        {
            let _ = file.set_modified(SystemTime::now());
        }
        Some(meta)
    }

    /// Where an object's body is.
    pub fn body_path(&self, meta: &Meta) -> PathBuf {
        self.objects.join(&meta.body)
    }

    /// A fresh path in `tmp/` for a download.
    pub fn temp_path(&self) -> PathBuf {
        let mut inner = self.lock();
        inner.next_temp += 1;
        self.tmp.join(format!(
            "{}-{:016x}",
            inner.next_temp,
            rand::random::<u64>()
        ))
    }

    /// Whether an object of `length` bytes can be stored at all.
    pub fn fits(&self, length: u64) -> bool {
        length <= self.lock().cap
    }

    /// Stores the complete download at `temp` as `key`'s object, replacing
    /// any older version, then evicts down to the cap.
    pub fn commit(&self, key: &str, mut meta: Meta, temp: &Path) -> io::Result<()> {
        meta.body = format!("{key}.{:016x}.body", rand::random::<u64>());
        std::fs::rename(temp, self.objects.join(&meta.body))?;
        let mut inner = self.lock();
        if let Err(error) = self.write_meta(key, &meta) {
            let _ = std::fs::remove_file(self.objects.join(&meta.body));
            return Err(error);
        }
        inner.lru.insert(key, meta.length);
        if let Some(old) = inner.metas.insert(key.to_string(), Arc::new(meta)) {
            let _ = std::fs::remove_file(self.objects.join(&old.body));
        }
        self.evict(&mut inner);
        Ok(())
    }

    /// Records a successful revalidation (304): the object stays, with the
    /// new freshness and validators.
    pub fn refresh(
        &self,
        key: &str,
        freshness: Freshness,
        etag: Option<String>,
        modified: Option<String>,
    ) {
        let mut inner = self.lock();
        let Some(old) = inner.metas.get(key) else {
            return;
        };
        let mut meta = Meta::clone(old);
        meta.freshness = freshness;
        meta.etag = etag.or(meta.etag);
        meta.last_modified = modified.or(meta.last_modified);
        if meta != **old {
            if let Err(error) = self.write_meta(key, &meta) {
                tracing::warn!(%error, "cannot update a cache entry");
                return;
            }
            inner.metas.insert(key.to_string(), Arc::new(meta));
        }
    }

    /// Changes the size cap, evicting if it shrank.
    pub fn set_cap(&self, cap: u64) {
        let mut inner = self.lock();
        inner.cap = cap;
        self.evict(&mut inner);
    }

    /// Objects and bytes held.
    pub fn usage(&self) -> (usize, u64) {
        let inner = self.lock();
        (inner.lru.len(), inner.lru.total())
    }

    fn write_meta(&self, key: &str, meta: &Meta) -> io::Result<()> {
        let temp = self.temp_path_locked(key);
        std::fs::write(&temp, serde_json::to_vec(meta).map_err(io::Error::other)?)?;
        std::fs::rename(&temp, self.objects.join(format!("{key}.meta")))
    }

    /// A temp path for metadata (called with the lock held, so not through
    /// `temp_path`).
    fn temp_path_locked(&self, key: &str) -> PathBuf {
        self.tmp
            .join(format!("{key}.{:016x}.meta", rand::random::<u64>()))
    }

    fn evict(&self, inner: &mut Inner) {
        let cap = inner.cap;
        for key in inner.lru.evict_to(cap) {
            // Metadata first: without it the body is an orphan, never served.
            let _ = std::fs::remove_file(self.objects.join(format!("{key}.meta")));
            if let Some(meta) = inner.metas.remove(&key) {
                let _ = std::fs::remove_file(self.objects.join(&meta.body));
            }
            self.counters.evictions.inc();
            tracing::debug!(%key, "evicted from the proxy cache");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(cache: &Cache, url: &str, body: &[u8]) {
        let temp = cache.temp_path();
        std::fs::write(&temp, body).unwrap();
        let meta = Meta {
            url: url.to_string(),
            body: String::new(),
            length: body.len() as u64,
            content_type: None,
            etag: None,
            last_modified: None,
            freshness: Freshness::Forever,
        };
        cache.commit(&key(url), meta, &temp).unwrap();
    }

    #[test]
    fn objects_survive_a_reopen_and_the_least_recently_used_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let counters = Counters::default();
        let cache = Cache::open(dir.path(), 250, counters.clone()).unwrap();
        store(&cache, "http://a/1.deb", &[1; 100]);
        store(&cache, "http://a/2.deb", &[2; 100]);
        assert!(cache.lookup(&key("http://a/1.deb")).is_some());
        store(&cache, "http://a/3.deb", &[3; 100]);
        assert!(
            cache.lookup(&key("http://a/2.deb")).is_none(),
            "2 was the least recently used"
        );
        assert_eq!(counters.evictions.get(), 1);
        assert_eq!(cache.usage(), (2, 200));
        drop(cache);

        let cache = Cache::open(dir.path(), 250, Counters::default()).unwrap();
        assert_eq!(cache.usage(), (2, 200));
        let meta = cache.lookup(&key("http://a/3.deb")).unwrap();
        assert_eq!(std::fs::read(cache.body_path(&meta)).unwrap(), vec![3; 100]);
        // Shrinking the cap evicts on the spot.
        cache.set_cap(150);
        assert_eq!(cache.usage().0, 1);
        let files = std::fs::read_dir(dir.path().join("objects"))
            .unwrap()
            .count();
        assert_eq!(files, 2, "one body and its metadata are left");
    }

    #[test]
    fn a_replaced_object_leaves_no_old_body_and_broken_entries_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), 1000, Counters::default()).unwrap();
        store(&cache, "http://a/Packages", b"old");
        store(&cache, "http://a/Packages", b"newer");
        let meta = cache.lookup(&key("http://a/Packages")).unwrap();
        assert_eq!(std::fs::read(cache.body_path(&meta)).unwrap(), b"newer");
        assert_eq!(cache.usage(), (1, 5));
        // A truncated body (e.g. a crash mid-write by something else) and a
        // stray download are dropped at the next start.
        std::fs::write(cache.body_path(&meta), b"ne").unwrap();
        std::fs::write(dir.path().join("tmp").join("partial"), b"x").unwrap();
        drop(cache);
        let cache = Cache::open(dir.path(), 1000, Counters::default()).unwrap();
        assert_eq!(cache.usage(), (0, 0));
        assert_eq!(
            std::fs::read_dir(dir.path().join("objects"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }
}
