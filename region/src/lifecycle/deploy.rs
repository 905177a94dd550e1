//! Deploy and release with erase: the requests, checked in full before any
//! status changes (the rules are pure, in the model), then the run started
//! with its token and deadline in one transaction, then the machine
//! network-booted. What happens next arrives from the rack as events (see
//! the store's `deployments` module): the installer's steps, its results,
//! the installed system's phone-home, the eraser's results.

use axum::http::StatusCode;
use edgemetal_protocol::{EraseMode, StorageLayout};
use edgemetal_region_model::lifecycle::deploy as rules;
use serde::Deserialize;
use utoipa::ToSchema;

use super::service::{new_token, LifecycleError, LifecycleService};
use super::{Action, MachineStatus};
use crate::power::PowerError;
use crate::store::{
    kind_name, now_ms, CommissioningRecord, Machine, NewRun, StoreError, TokenChange, Transition,
};

/// `POST /machines/{id}/actions/deploy`: what to install.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// The OS image's name, e.g. `debian/bookworm` (a `rootfs` boot resource); required.
    #[serde(default)]
    pub image: String,
    /// cloud-init user data, at most 64 KiB.
    #[serde(default)]
    pub user_data: Option<String>,
    /// OpenSSH public keys for the default user.
    #[serde(default)]
    pub ssh_keys: Option<Vec<String>>,
    /// The installed system's host name (default: the machine's).
    #[serde(default)]
    pub hostname: Option<String>,
    /// `flat` (default) or `lvm`.
    #[serde(default)]
    pub storage_layout: Option<String>,
    /// The target disk's serial, from the commissioning inventory (default: the boot disk).
    #[serde(default)]
    pub disk: Option<String>,
    /// Why, for the event log.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /machines/{id}/actions/release`: how to leave the disks.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// `none` (default), `quick`, `full` or `secure`.
    #[serde(default)]
    pub erase: Option<String>,
    /// For `secure` on a disk without an erase of its own: `full` (default) or `fail`.
    #[serde(default)]
    pub secure_fallback: Option<String>,
    /// Why, for the event log.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A request refused before anything changed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// The HTTP status it deserves.
    pub status: StatusCode,
    /// A machine-readable code.
    pub code: &'static str,
    /// What to fix.
    pub message: String,
}

/// The first protocol whose intents carry plans (deploy, erase).
const PLANS_PROTOCOL: u16 = 3;

fn refuse(status: StatusCode, code: &'static str, message: impl Into<String>) -> LifecycleError {
    LifecycleError::Refused(Refusal {
        status,
        code,
        message: message.into(),
    })
}

fn unprocessable(code: &'static str, error: impl ToString) -> LifecycleError {
    refuse(StatusCode::UNPROCESSABLE_ENTITY, code, error.to_string())
}

impl LifecycleService {
    /// Deploys `request.image` to an Allocated machine.
    pub async fn deploy(
        &self,
        machine_id: &str,
        request: DeployRequest,
        actor: &str,
    ) -> Result<Machine, LifecycleError> {
        let machine = self.store.get_machine(machine_id).await?;
        if machine.status != MachineStatus::Allocated {
            return Err(refuse(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "cannot deploy a machine that is {}: allocate a Ready machine first",
                    machine.status.label()
                ),
            ));
        }
        let latest = self.store.latest_results(machine_id).await?;
        self.check_racks_carry_plans(machine_id, latest.as_ref())
            .await?;
        if request.image.is_empty() {
            return Err(unprocessable(
                "invalid",
                "image is required, e.g. {\"image\": \"debian/bookworm\"}",
            ));
        }
        let layout = match request.storage_layout.as_deref() {
            None => StorageLayout::Flat,
            Some(name) => StorageLayout::parse(name).ok_or_else(|| {
                unprocessable(
                    "invalid",
                    format!("storage_layout {name:?}: use flat or lvm"),
                )
            })?,
        };
        let resources = self.store.list_boot_resources().await?;
        let named: Vec<_> = resources
            .iter()
            .filter(|r| r.kind == kind_name(edgemetal_protocol::BootResourceKind::Rootfs))
            .collect();
        let image = match named.iter().find(|r| r.name == request.image) {
            None => {
                let known: Vec<&str> = named.iter().map(|r| r.name.as_str()).collect();
                return Err(unprocessable(
                    "unknown_image",
                    format!(
                        "no OS image {:?}; the region has: {}",
                        request.image,
                        if known.is_empty() {
                            "none (upload one with kind=rootfs)".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
            Some(_) => named
                .iter()
                .find(|r| r.name == request.image && r.architecture == machine.architecture)
                .ok_or_else(|| {
                    unprocessable(
                        "image_architecture",
                        format!(
                            "OS image {:?} has no {} build; the machine is {}",
                            request.image, machine.architecture, machine.architecture
                        ),
                    )
                })?,
        };
        let facts = self.store.os_image(&image.sha256).await?.ok_or_else(|| {
            unprocessable(
                "unknown_image",
                format!(
                    "{:?} was uploaded before OS images were checked: upload it again",
                    image.name
                ),
            )
        })?;
        let user_data = request.user_data.unwrap_or_default();
        rules::check_user_data(&user_data).map_err(|e| {
            refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "user_data_too_large",
                e.to_string(),
            )
        })?;
        let ssh_keys = request.ssh_keys.unwrap_or_default();
        rules::check_ssh_keys(&ssh_keys).map_err(|e| unprocessable("invalid", e))?;
        let hostname = request.hostname.unwrap_or_else(|| machine.hostname.clone());
        rules::check_hostname(&hostname).map_err(|e| unprocessable("invalid", e))?;
        let inventory = latest
            .map(|results| results.inventory.disks)
            .unwrap_or_default();
        let disk = rules::choose_disk(&inventory, request.disk.as_deref()).map_err(|e| {
            let code = match e {
                rules::DeployRuleError::NoDisk => "no_disk",
                _ => "unknown_disk",
            };
            unprocessable(code, e)
        })?;
        rules::check_disk_fits(disk, facts.uncompressed_bytes)
            .map_err(|e| unprocessable("disk_too_small", e))?;
        let address = self
            .store
            .list_reservations(None)
            .await?
            .into_iter()
            .find(|r| r.spec.mac == machine.mac)
            .map(|r| r.spec.address.to_string());
        let reason = request.reason.unwrap_or_default();
        let deadline = now_ms() + self.settings.deployment_timeout.as_millis() as i64;
        let (machine, run) = self
            .store
            .start_run(
                machine_id,
                Transition {
                    action: Action::Deploy,
                    actor,
                    reason: &reason,
                    deadline_ms: Some(deadline),
                    token: new_token(&self.master),
                },
                NewRun {
                    purpose: "deploy",
                    image: (&image.name, &image.sha256),
                    layout: layout.as_str(),
                    disk_serial: disk.serial.as_deref().unwrap_or(""),
                    hostname: &hostname,
                    address,
                    user_data_sealed: self.master.seal(user_data.as_bytes()),
                    ssh_keys: &ssh_keys,
                    erase: "none",
                },
            )
            .await?;
        tracing::info!(machine = machine_id, run = %run.id, image = %image.name, disk = %disk.name, "deploying");
        self.boot_or_fail(machine_id, actor, Action::DeploymentFailed)
            .await?;
        Ok(machine)
    }

    /// Releases a machine; with an erase mode, its disks are erased by the
    /// ephemeral image before it is Ready.
    pub async fn release(
        &self,
        machine_id: &str,
        request: ReleaseRequest,
        actor: &str,
    ) -> Result<Machine, LifecycleError> {
        let erase = match request.erase.as_deref() {
            None => EraseMode::None,
            Some(name) => EraseMode::parse(name).ok_or_else(|| {
                unprocessable(
                    "invalid",
                    format!("erase {name:?}: use none, quick, full or secure"),
                )
            })?,
        };
        let fallback = match request.secure_fallback.as_deref() {
            None | Some("full") => "full",
            Some("fail") => "fail",
            Some(other) => {
                return Err(unprocessable(
                    "invalid",
                    format!("secure_fallback {other:?}: use full or fail"),
                ))
            }
        };
        let reason = request.reason.unwrap_or_default();
        let machine = self.store.get_machine(machine_id).await?;
        let erases = erase != EraseMode::None && machine.status != MachineStatus::Allocated;
        if !erases {
            return self.act(machine_id, Action::Release, actor, &reason).await;
        }
        // Checked before the status changes, as for deploy.
        super::next(machine.status, Action::Release, Default::default())
            .map_err(|illegal| StoreError::Conflict(illegal.to_string()))?;
        let latest = self.store.latest_results(machine_id).await?;
        self.check_racks_carry_plans(machine_id, latest.as_ref())
            .await?;
        let deadline = now_ms() + self.settings.release_timeout.as_millis() as i64;
        let erase_field = format!("{}/{fallback}", erase.as_str());
        let (machine, run) = self
            .store
            .start_run(
                machine_id,
                Transition {
                    action: Action::Release,
                    actor,
                    reason: &reason,
                    deadline_ms: Some(deadline),
                    token: new_token(&self.master),
                },
                NewRun {
                    purpose: "release",
                    image: ("", ""),
                    layout: "",
                    disk_serial: "",
                    hostname: "",
                    address: None,
                    user_data_sealed: String::new(),
                    ssh_keys: &[],
                    erase: &erase_field,
                },
            )
            .await?;
        tracing::info!(machine = machine_id, run = %run.id, erase = erase.as_str(), "releasing with erase");
        self.boot_or_fail(machine_id, actor, Action::ReleaseFailed)
            .await?;
        Ok(machine)
    }

    /// Whether a rack reaches the machine's BMC (a machine without BMC
    /// settings is booted by hand, so that is fine too).
    pub(super) async fn reachable(&self, machine_id: &str) -> Result<(), LifecycleError> {
        match self.power.reachable(machine_id).await {
            Ok(()) | Err(PowerError::NoSettings(_)) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Deploy and erase travel to the rack as plans, which racks before
    /// protocol v3 cannot carry: refused up front (409 `rack_too_old`)
    /// rather than failing later in the installer. The racks that matter
    /// are the one that drives the machine's BMC and the one that relayed
    /// its last commissioning (it served that boot).
    async fn check_racks_carry_plans(
        &self,
        machine_id: &str,
        latest: Option<&CommissioningRecord>,
    ) -> Result<(), LifecycleError> {
        let mut racks = Vec::new();
        match self.power.rack_protocol(machine_id).await {
            Ok((rack, version)) => racks.push((rack.to_string(), version)),
            Err(PowerError::NoSettings(_)) => {}
            Err(error) => return Err(error.into()),
        }
        if let Some(results) = latest {
            match self.store.get_rack(&results.rack_id).await {
                Ok(rack) => racks.push((rack.id, rack.protocol_version)),
                Err(StoreError::NotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        match racks.into_iter().find(|(_, version)| *version < PLANS_PROTOCOL) {
            Some((rack, version)) => Err(refuse(
                StatusCode::CONFLICT,
                "rack_too_old",
                format!(
                    "rack {rack} speaks protocol v{version}; deploy and erase need v{PLANS_PROTOCOL}: update the rack"
                ),
            )),
            None => Ok(()),
        }
    }

    /// Network-boots the machine for its run; if that fails the run fails
    /// with `failed` and the error is returned.
    async fn boot_or_fail(
        &self,
        machine_id: &str,
        actor: &str,
        failed: Action,
    ) -> Result<(), LifecycleError> {
        let Err(error) = self.boot_from_network(machine_id, actor).await else {
            return Ok(());
        };
        let why = format!("cannot power the machine on: {error}");
        self.store.fail_run(machine_id, &why).await?;
        self.store
            .transition(
                machine_id,
                Transition {
                    action: failed,
                    actor: "region",
                    reason: &why,
                    deadline_ms: None,
                    token: TokenChange::Withdraw,
                },
            )
            .await?;
        Err(error.into())
    }
}
