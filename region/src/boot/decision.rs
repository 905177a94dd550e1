//! What a network-booting machine boots, by its lifecycle status: the
//! ephemeral image to enlist (unknown or New), commission, deploy, erase,
//! or for rescue;
//! its local disk otherwise (Ready, Allocated, Deployed, …). Machines that
//! boot the ephemeral image as known machines also get their metadata,
//! with the token of the current run.

use edgemetal_protocol::{
    BootDecision, BootResourceKind, EphemeralBoot, MacAddress, MachineMetadata,
};

use crate::model::lifecycle::MachineStatus;
use crate::secrets::MasterKeys;
use crate::store::{kind_name, token_digest, BootResourceRecord, Machine, Store, StoreError};

/// The boot resources' name for the ephemeral image.
pub const EPHEMERAL_IMAGE: &str = "ephemeral";
/// Kernel parameters every ephemeral boot gets: a serial console, so benches
/// and out-of-band consoles see it boot.
const BASE_CMDLINE: &str = "console=tty0 console=ttyS0,115200";

/// Why a machine in `status` boots the ephemeral image; `None` when it boots from disk.
fn ephemeral_purpose(status: MachineStatus) -> Option<&'static str> {
    match status {
        MachineStatus::New => Some("enlist"),
        MachineStatus::Commissioning => Some("commission"),
        MachineStatus::RescueMode => Some("rescue"),
        // The installer and the eraser are the ephemeral image too; their
        // plans travel with the intent (protocol v3).
        MachineStatus::Deploying => Some("deploy"),
        MachineStatus::Releasing => Some("release"),
        _ => None,
    }
}

/// The decision for the machine with boot interface `mac`, and its metadata.
pub async fn decide(
    store: &Store,
    master: &MasterKeys,
    mac: MacAddress,
    arch: Option<u16>,
) -> Result<(BootDecision, Option<MachineMetadata>), StoreError> {
    let machine = store.find_machine_by_mac(mac).await?;
    let resources = store.list_boot_resources().await?;
    decide_with(store, master, machine.as_ref(), arch, &resources).await
}

/// The decision for `machine` (`None`: never seen, with option 93 `arch`)
/// given the boot resources, and its metadata.
pub async fn decide_with(
    store: &Store,
    master: &MasterKeys,
    machine: Option<&Machine>,
    arch: Option<u16>,
    resources: &[BootResourceRecord],
) -> Result<(BootDecision, Option<MachineMetadata>), StoreError> {
    let (purpose, architecture) = match machine {
        Some(machine) => match ephemeral_purpose(machine.status) {
            Some(purpose) => (purpose, machine.architecture.clone()),
            None => return Ok((BootDecision::LocalDisk, None)),
        },
        None => (
            "enlist",
            edgemetal_protocol::Architecture::from_option93(arch).to_string(),
        ),
    };
    let find = |kind: BootResourceKind| {
        resources
            .iter()
            .find(|r| {
                r.name == EPHEMERAL_IMAGE
                    && r.architecture == architecture
                    && r.kind == kind_name(kind)
            })
            .and_then(|r| {
                let mut sha = [0u8; 32];
                hex::decode_to_slice(&r.sha256, &mut sha).ok()?;
                Some(sha)
            })
    };
    // Metadata belongs to the machine, not the image: issued even when
    // no image is there to boot (the machine may boot another way).
    let metadata = match machine {
        Some(machine) => metadata(store, master, machine, purpose).await?,
        None => None,
    };
    let (Some(kernel), Some(initrd)) = (
        find(BootResourceKind::Kernel),
        find(BootResourceKind::Initrd),
    ) else {
        tracing::warn!(%architecture, machine = ?machine.map(|m| &m.id), "no ephemeral image for this architecture; the machine boots from disk");
        return Ok((BootDecision::LocalDisk, metadata));
    };
    let decision = BootDecision::Ephemeral(EphemeralBoot {
        purpose: purpose.to_string(),
        kernel,
        initrd,
        squashfs: find(BootResourceKind::Squashfs),
        cmdline: format!("{BASE_CMDLINE} edgemetal.purpose={purpose}"),
    });
    Ok((decision, metadata))
}

/// The machine's metadata with the token of its current run. An enlisting
/// machine gets its first token here (commissioning issues its own).
async fn metadata(
    store: &Store,
    master: &MasterKeys,
    machine: &Machine,
    purpose: &str,
) -> Result<Option<MachineMetadata>, StoreError> {
    let token = match store.sealed_token(&machine.id).await? {
        Some(sealed) => match master
            .open(&sealed)
            .ok()
            .and_then(|t| String::from_utf8(t).ok())
        {
            Some(token) => token,
            None => {
                tracing::error!(machine = %machine.id, "a machine token does not unseal with the master key");
                return Ok(None);
            }
        },
        None if machine.status == MachineStatus::New => {
            let token = new_token();
            store
                .issue_token(
                    &machine.id,
                    &master.seal(token.as_bytes()),
                    &token_digest(&token),
                )
                .await?;
            token
        }
        None => return Ok(None),
    };
    Ok(Some(MachineMetadata {
        machine_id: machine.id.clone(),
        hostname: machine.hostname.clone(),
        purpose: purpose.to_string(),
        token,
    }))
}

/// A fresh random token: 32 bytes, hex.
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}
