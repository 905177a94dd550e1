//! The rack's identity from enrolment, kept in the state dir (owner-only):
//! rack id, link secret, broker credentials and the CA to trust.

use std::path::{Path, PathBuf};

use anyhow::Context;
use edgemetal_protocol::enrolment::EnrolmentBundle;
use edgemetal_protocol::seal::{LinkSecret, LINK_SECRET_LEN};
use edgemetal_protocol::RackId;

use super::atomic_file;

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("identity.json")
}

/// The persisted identity, or `None` before enrolment.
pub fn load(state_dir: &Path) -> anyhow::Result<Option<EnrolmentBundle>> {
    let path = path(state_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{} is not a valid identity", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Persists the identity (owner-only, atomically).
pub fn store(state_dir: &Path, bundle: &EnrolmentBundle) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec_pretty(bundle)?;
    atomic_file::write_private(&path(state_dir), &bytes)
        .with_context(|| format!("cannot write {}", path(state_dir).display()))
}

fn secret_from_hex(hex_text: &str) -> anyhow::Result<LinkSecret> {
    let bytes = hex::decode(hex_text).context("link secret is not hex")?;
    let secret: [u8; LINK_SECRET_LEN] = bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("link secret must be {LINK_SECRET_LEN} bytes"))?;
    Ok(LinkSecret(secret))
}

/// The previous key (epoch, secret) kept after a rotation, if any.
pub fn previous_secret(bundle: &EnrolmentBundle) -> anyhow::Result<Option<(u32, LinkSecret)>> {
    bundle
        .previous_link_secret
        .as_ref()
        .map(|(epoch, hex_text)| Ok((*epoch, secret_from_hex(hex_text)?)))
        .transpose()
}

/// Records a rotation: the new secret becomes current, the old one previous.
pub fn rotate(
    state_dir: &Path,
    bundle: &mut EnrolmentBundle,
    epoch: u32,
    secret: &LinkSecret,
) -> anyhow::Result<()> {
    let mut next = bundle.clone();
    next.previous_link_secret = Some((bundle.key_epoch, bundle.link_secret_hex.clone()));
    next.link_secret_hex = hex::encode(secret.0);
    next.key_epoch = epoch;
    store(state_dir, &next)?;
    *bundle = next;
    Ok(())
}

/// The rack id and link secret of an identity, validated.
pub fn link_material(bundle: &EnrolmentBundle) -> anyhow::Result<(RackId, LinkSecret)> {
    Ok((
        RackId::new(&bundle.rack_id)?,
        secret_from_hex(&bundle.link_secret_hex)?,
    ))
}
