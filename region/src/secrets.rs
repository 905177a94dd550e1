//! Secrets at rest: rack link secrets are stored sealed with a master key
//! that lives outside the database (a file in the data dir, mode 0600, or
//! `EDGEMETAL_MASTER_KEY`), so a copy of the database alone reveals nothing.
//!
//! Sealed text reads `v1:<key-id>:<hex nonce||ciphertext>`; the key id (first
//! 8 hex digits of the key's SHA-256) tells which master key sealed it, which
//! is what makes rotation possible.

use std::path::{Path, PathBuf};

use anyhow::Context;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// One master key.
#[derive(Clone)]
pub struct MasterKey {
    key: [u8; 32],
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

/// Why a sealed secret could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Not in the `v1:id:hex` form.
    #[error("sealed secret is malformed")]
    Malformed,
    /// Sealed under another master key.
    #[error("sealed with master key {0}, which is not loaded")]
    WrongKey(String),
    /// Authentication failed.
    #[error("sealed secret failed authentication")]
    Forged,
}

impl MasterKey {
    /// A new random key.
    pub fn generate() -> MasterKey {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        MasterKey::from_bytes(key)
    }

    fn from_bytes(key: [u8; 32]) -> MasterKey {
        let id = hex::encode(&Sha256::digest(key)[..4]);
        MasterKey { key, id }
    }

    /// Parses the hex form.
    pub fn from_hex(text: &str) -> anyhow::Result<MasterKey> {
        let bytes = hex::decode(text.trim()).context("master key is not hex")?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("master key must be 32 bytes (64 hex digits)"))?;
        Ok(MasterKey::from_bytes(key))
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals a secret.
    pub fn seal(&self, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut nonce);
        let cipher = XChaCha20Poly1305::new(Key::from_slice(&self.key));
        let ciphertext = cipher
            .encrypt(XNonce::from_slice(&nonce), plaintext)
            .expect("XChaCha20-Poly1305 encrypts any in-memory secret");
        format!(
            "v1:{}:{}{}",
            self.id,
            hex::encode(nonce),
            hex::encode(ciphertext)
        )
    }

    /// Opens a secret sealed by [`MasterKey::seal`] with this key.
    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, SecretError> {
        let mut parts = sealed.splitn(3, ':');
        let (Some("v1"), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(SecretError::Malformed);
        };
        if id != self.id {
            return Err(SecretError::WrongKey(id.to_string()));
        }
        let bytes = hex::decode(body).map_err(|_| SecretError::Malformed)?;
        if bytes.len() < 24 {
            return Err(SecretError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        XChaCha20Poly1305::new(Key::from_slice(&self.key))
            .decrypt(XNonce::from_slice(nonce), ciphertext)
            .map_err(|_| SecretError::Forged)
    }
}

/// The master keys a region can open secrets with: the current one seals,
/// any of them opens (by key id), so a rotation in progress never locks the
/// region out of its own secrets.
#[derive(Debug, Clone)]
pub struct MasterKeys {
    current: MasterKey,
    others: Vec<MasterKey>,
}

impl MasterKeys {
    /// Seals with the current key.
    pub fn seal(&self, plaintext: &[u8]) -> String {
        self.current.seal(plaintext)
    }

    /// Opens with whichever loaded key sealed it.
    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, SecretError> {
        let key_id = sealed.split(':').nth(1).unwrap_or_default();
        std::iter::once(&self.current)
            .chain(&self.others)
            .find(|key| key.id() == key_id)
            .ok_or_else(|| SecretError::WrongKey(key_id.to_string()))?
            .open(sealed)
    }

    /// The current key's id.
    pub fn current_id(&self) -> &str {
        self.current.id()
    }
}

/// The master key file in `data_dir`.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("master.key")
}

fn next_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("master.key.next")
}

fn read_key(path: &Path) -> anyhow::Result<Option<MasterKey>> {
    match std::fs::read_to_string(path) {
        Ok(text) => MasterKey::from_hex(&text)
            .with_context(|| path.display().to_string())
            .map(Some),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Loads the master keys from `EDGEMETAL_MASTER_KEY` or the data dir,
/// creating the key file on first start. A `master.key.next` left by an
/// interrupted rotation is loaded too.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<MasterKeys> {
    let next = read_key(&next_key_path(data_dir))?;
    let current = if let Ok(hex) = std::env::var("EDGEMETAL_MASTER_KEY") {
        MasterKey::from_hex(&hex).context("EDGEMETAL_MASTER_KEY")?
    } else {
        match read_key(&key_path(data_dir))? {
            Some(key) => key,
            None => {
                let key = MasterKey::generate();
                write_key(&key_path(data_dir), &key)?;
                tracing::info!(key_id = key.id(), "created the master key");
                key
            }
        }
    };
    Ok(MasterKeys {
        current,
        others: next.into_iter().collect(),
    })
}

/// Rotates the master key: every sealed secret in the store is resealed
/// under a new key. Crash-safe: the new key is on disk (`master.key.next`)
/// before the store changes, and becomes `master.key` only after the store
/// committed; a region started in between can open secrets under either.
pub async fn rotate(data_dir: &Path, store: &crate::store::Store) -> anyhow::Result<String> {
    anyhow::ensure!(
        std::env::var("EDGEMETAL_MASTER_KEY").is_err(),
        "the master key comes from EDGEMETAL_MASTER_KEY: rotate it where it is kept"
    );
    let keys = load_or_create(data_dir)?;
    let new = match keys.others.first() {
        Some(next) => next.clone(),
        None => {
            let new = MasterKey::generate();
            write_key(&next_key_path(data_dir), &new)?;
            new
        }
    };
    let count = store
        .reseal_rack_secrets(|sealed| {
            let plain = keys.open(sealed).map_err(|e| e.to_string())?;
            Ok(new.seal(&plain))
        })
        .await?;
    std::fs::rename(next_key_path(data_dir), key_path(data_dir))
        .context("cannot install the new master key")?;
    tracing::info!(key_id = new.id(), resealed = count, "master key rotated");
    Ok(new.id().to_string())
}

/// Writes a key file readable only by its owner.
pub fn write_key(path: &Path, key: &MasterKey) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .with_context(|| format!("cannot write {}", temp.display()))?;
    file.write_all(hex::encode(key.key).as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key() {
        let key = MasterKey::generate();
        let sealed = key.seal(b"rack secret");
        assert!(!sealed.contains(&hex::encode(b"rack secret")));
        assert_eq!(key.open(&sealed).unwrap(), b"rack secret");
        assert!(matches!(
            MasterKey::generate().open(&sealed),
            Err(SecretError::WrongKey(_))
        ));
        let mut tampered = sealed.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == '0' { '1' } else { '0' });
        assert!(matches!(key.open(&tampered), Err(SecretError::Forged)));
        assert!(matches!(key.open("nonsense"), Err(SecretError::Malformed)));
    }
}
