//! What a network-booting machine boots: the region's answer to a rack's
//! boot query. An unknown machine boots the ephemeral image to enlist; a
//! known one boots it to commission. (Deployed machines will boot from
//! local disk once the machine lifecycle exists.)

use edgemetal_protocol::{BootDecision, BootResourceKind, EphemeralBoot, MacAddress};

use crate::store::{architecture_of_option93, kind_name, Store, StoreError};

/// The boot resources' name for the ephemeral image.
pub const EPHEMERAL_IMAGE: &str = "ephemeral";
/// Kernel parameters every ephemeral boot gets: a serial console, so benches
/// and out-of-band consoles see it boot.
const BASE_CMDLINE: &str = "console=tty0 console=ttyS0,115200";

/// The decision for the machine with boot interface `mac`.
pub async fn decide(
    store: &Store,
    mac: MacAddress,
    arch: Option<u16>,
) -> Result<BootDecision, StoreError> {
    let machine = store.find_machine_by_mac(mac).await?;
    let (purpose, architecture) = match &machine {
        Some(machine) => ("commission", machine.architecture.clone()),
        None => ("enlist", architecture_of_option93(arch).to_string()),
    };
    let resources = store.list_boot_resources().await?;
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
    let (Some(kernel), Some(initrd)) = (
        find(BootResourceKind::Kernel),
        find(BootResourceKind::Initrd),
    ) else {
        tracing::warn!(%mac, %architecture, "no ephemeral image for this architecture; the machine boots from disk");
        return Ok(BootDecision::LocalDisk);
    };
    Ok(BootDecision::Ephemeral(EphemeralBoot {
        purpose: purpose.to_string(),
        kernel,
        initrd,
        squashfs: find(BootResourceKind::Squashfs),
        cmdline: format!("{BASE_CMDLINE} edgemetal.purpose={purpose}"),
    }))
}
