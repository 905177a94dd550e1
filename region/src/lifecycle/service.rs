//! What lifecycle actions do besides changing the status: commissioning
//! issues the machine a fresh token, sets its next boot to the network and
//! powers it on through a rack that reaches its BMC; results, aborts and
//! timeouts power it off. Transitions themselves are checked and recorded
//! by the store ([`crate::store::Store::transition`]).

use std::time::Duration;

use edgemetal_protocol::{BootDevice, CommissionPlan, PowerAction, PowerState};
use tokio::sync::mpsc;

use super::{Action, MachineStatus};
use crate::link::Notice;
use crate::power::{PowerError, PowerService};
use crate::secrets::MasterKeys;
use crate::store::{
    now_ms, token_digest, Machine, ResultsOutcome, Store, StoreError, TokenChange, Transition,
};

/// How the lifecycle behaves, from the region's configuration.
#[derive(Debug, Clone)]
pub struct LifecycleSettings {
    /// How long commissioning may take before the machine is Failed commissioning.
    pub commissioning_timeout: Duration,
    /// Whether an enlisted machine is commissioned right away.
    pub auto_commission: bool,
    /// How long a deployment may take, power-on to phone-home.
    pub deployment_timeout: Duration,
    /// How long a release with erase may take.
    pub release_timeout: Duration,
}

/// Why a lifecycle action failed.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// The store refused (unknown machine, illegal transition) or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The machine could not be powered; it is now in a failed status.
    #[error(transparent)]
    Power(#[from] PowerError),
    /// The action exists in the lifecycle but edgemetal cannot carry it out yet.
    #[error("{0}")]
    Unsupported(&'static str),
    /// The request was refused before anything changed.
    #[error(transparent)]
    Refused(#[from] super::deploy::Refusal),
}

/// The lifecycle's side effects.
#[derive(Clone)]
pub struct LifecycleService {
    pub(super) store: Store,
    pub(super) power: PowerService,
    pub(super) master: MasterKeys,
    pub(super) settings: LifecycleSettings,
}

impl LifecycleService {
    /// A service over the store and power control; tokens are sealed with `master`.
    pub fn new(
        store: Store,
        power: PowerService,
        master: MasterKeys,
        settings: LifecycleSettings,
    ) -> Self {
        LifecycleService {
            store,
            power,
            master,
            settings,
        }
    }

    /// Carries out an operator's action.
    pub async fn act(
        &self,
        machine_id: &str,
        action: Action,
        actor: &str,
        reason: &str,
    ) -> Result<Machine, LifecycleError> {
        match action {
            Action::Commission => {
                self.commission(machine_id, actor, reason, CommissionPlan::default())
                    .await
            }
            Action::Abort => {
                let machine = self
                    .change(
                        machine_id,
                        Action::Abort,
                        actor,
                        reason,
                        TokenChange::Withdraw,
                    )
                    .await?;
                self.store.fail_run(machine_id, "aborted").await?;
                self.power_off(machine_id, actor).await;
                Ok(machine)
            }
            Action::Deploy => Err(LifecycleError::Unsupported(
                "deploy takes a body: {\"image\": \"debian/bookworm\", ...}",
            )),
            Action::Release => {
                let machine = self
                    .change(
                        machine_id,
                        Action::Release,
                        actor,
                        reason,
                        TokenChange::Keep,
                    )
                    .await?;
                if machine.status != MachineStatus::Releasing {
                    return Ok(machine);
                }
                // Releasing means powering off (no disk erasure yet).
                let outcome = match self.power.act(machine_id, PowerAction::Off, actor).await {
                    Ok(_) | Err(PowerError::NoSettings(_)) => Action::ReleasePassed,
                    Err(_) => Action::ReleaseFailed,
                };
                Ok(self
                    .change(machine_id, outcome, "region", "", TokenChange::Keep)
                    .await?)
            }
            Action::EnterRescue => {
                let machine = self
                    .issue_and_change(machine_id, action, actor, reason, None)
                    .await?;
                self.boot_from_network(machine_id, actor).await?;
                Ok(machine)
            }
            Action::ExitRescue => {
                let machine = self
                    .change(machine_id, action, actor, reason, TokenChange::Withdraw)
                    .await?;
                self.power_off(machine_id, actor).await;
                Ok(machine)
            }
            _ => Ok(self
                .change(machine_id, action, actor, reason, TokenChange::Keep)
                .await?),
        }
    }

    /// Starts commissioning: a token for this run, a deadline, then the
    /// next boot from the network and power on. A machine without BMC
    /// settings is powered on by hand (or is already booting, when enlisted).
    pub async fn commission(
        &self,
        machine_id: &str,
        actor: &str,
        reason: &str,
        plan: CommissionPlan,
    ) -> Result<Machine, LifecycleError> {
        // Checked first: a refusal must leave the machine as it was.
        self.reachable(machine_id).await?;
        let deadline = now_ms() + self.settings.commissioning_timeout.as_millis() as i64;
        let machine = self
            .store
            .start_commissioning(
                machine_id,
                Transition {
                    action: Action::Commission,
                    actor,
                    reason,
                    deadline_ms: Some(deadline),
                    token: self.token_for_run(machine_id).await?,
                },
                &plan,
            )
            .await?;
        if let Err(error) = self.boot_from_network(machine_id, actor).await {
            let why = format!("cannot power the machine on: {error}");
            self.change(
                machine_id,
                Action::CommissioningFailed,
                "region",
                &why,
                TokenChange::Withdraw,
            )
            .await?;
            return Err(error.into());
        }
        Ok(machine)
    }

    /// The status change, with a token: the machine's current one if it
    /// has one (an enlisting machine keeps the token its running agent
    /// already read), else a new one.
    async fn issue_and_change(
        &self,
        machine_id: &str,
        action: Action,
        actor: &str,
        reason: &str,
        deadline_ms: Option<i64>,
    ) -> Result<Machine, StoreError> {
        let token = self.token_for_run(machine_id).await?;
        let (machine, _) = self
            .store
            .transition(
                machine_id,
                Transition {
                    action,
                    actor,
                    reason,
                    deadline_ms,
                    token,
                },
            )
            .await?;
        Ok(machine)
    }

    /// The machine's current token if it has one (an enlisting machine
    /// keeps the token its running agent already read), else a new one.
    async fn token_for_run(&self, machine_id: &str) -> Result<TokenChange, StoreError> {
        Ok(match self.store.sealed_token(machine_id).await? {
            Some(_) => TokenChange::Keep,
            None => new_token(&self.master),
        })
    }

    async fn change(
        &self,
        machine_id: &str,
        action: Action,
        actor: &str,
        reason: &str,
        token: TokenChange,
    ) -> Result<Machine, StoreError> {
        let (machine, _) = self
            .store
            .transition(
                machine_id,
                Transition {
                    action,
                    actor,
                    reason,
                    deadline_ms: None,
                    token,
                },
            )
            .await?;
        Ok(machine)
    }

    /// Next boot from the network, then power on (or cycle, if it is on).
    pub(super) async fn boot_from_network(
        &self,
        machine_id: &str,
        actor: &str,
    ) -> Result<(), PowerError> {
        if self.store.stored_power(machine_id).await?.is_none() {
            // Booted by hand: its rack holds the intent before we answer.
            self.power.intents_published().await;
            self.store
                .add_machine_event(
                    machine_id,
                    "power.manual",
                    "region",
                    "no BMC settings: the machine must be network-booted by hand",
                )
                .await?;
            return Ok(());
        }
        self.power
            .act(
                machine_id,
                PowerAction::SetBootDevice(BootDevice::Pxe),
                actor,
            )
            .await?;
        let state = self.power.check(machine_id).await?.state;
        let action = if state == PowerState::On {
            PowerAction::Cycle
        } else {
            PowerAction::On
        };
        self.power.act(machine_id, action, actor).await?;
        Ok(())
    }

    /// Powers the machine off if it has a BMC; a failure is in its events.
    async fn power_off(&self, machine_id: &str, actor: &str) {
        match self.power.act(machine_id, PowerAction::Off, actor).await {
            Ok(_) | Err(PowerError::NoSettings(_)) => {}
            Err(error) => tracing::warn!(machine = machine_id, %error, "cannot power off"),
        }
    }

    /// Acts on what the link reported.
    pub async fn handle(&self, notice: Notice) {
        match notice {
            Notice::Enlisted(machine_id) if self.settings.auto_commission => {
                if let Err(error) = self
                    .commission(
                        &machine_id,
                        "region",
                        "auto-commission after enlistment",
                        CommissionPlan::default(),
                    )
                    .await
                {
                    tracing::warn!(machine = %machine_id, %error, "cannot auto-commission");
                }
            }
            Notice::Enlisted(_) => {}
            Notice::Results(ResultsOutcome::Stored {
                machine_id,
                ready: true,
            }) => {
                tracing::info!(machine = %machine_id, "commissioning done; powering off");
                self.power_off(&machine_id, "region").await;
            }
            Notice::Results(
                ResultsOutcome::RunFailed { machine_id } | ResultsOutcome::Released { machine_id },
            ) => {
                tracing::info!(machine = %machine_id, "run ended; powering off");
                self.power_off(&machine_id, "region").await;
            }
            Notice::Results(ResultsOutcome::Installed { machine_id }) => {
                // The rack already answers its network boots with "boot
                // local disk"; the BMC's boot device says so too, for the
                // power-ons that come later (PXE again only for the next
                // commission, deploy or release).
                match self
                    .power
                    .act(
                        &machine_id,
                        PowerAction::SetBootDevice(BootDevice::Disk),
                        "region",
                    )
                    .await
                {
                    Ok(_) | Err(PowerError::NoSettings(_)) => {}
                    Err(error) => {
                        tracing::warn!(machine = %machine_id, %error, "cannot set the boot device to disk")
                    }
                }
            }
            Notice::Results(ResultsOutcome::Deployed { machine_id }) => {
                tracing::info!(machine = %machine_id, "deployed");
            }
            Notice::Results(_) => {}
        }
    }

    /// Fails machines whose commissioning ran out of time, and powers them off.
    pub async fn expire_overdue(&self) -> Result<(), StoreError> {
        for (machine_id, status) in self.store.overdue_machines(now_ms()).await? {
            let (failed, what, timeout) = match status {
                MachineStatus::Commissioning => (
                    Action::CommissioningFailed,
                    "commissioning",
                    self.settings.commissioning_timeout,
                ),
                MachineStatus::Deploying => (
                    Action::DeploymentFailed,
                    "deployment",
                    self.settings.deployment_timeout,
                ),
                MachineStatus::Releasing => (
                    Action::ReleaseFailed,
                    "release",
                    self.settings.release_timeout,
                ),
                _ => continue,
            };
            let why = format!("{what} timed out after {} s", timeout.as_secs());
            if status != MachineStatus::Commissioning {
                self.store.fail_run(&machine_id, &why).await?;
            }
            match self
                .change(&machine_id, failed, "region", &why, TokenChange::Withdraw)
                .await
            {
                Ok(_) => self.power_off(&machine_id, "region").await,
                // Results won the race: nothing to fail.
                Err(StoreError::Conflict(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

/// A fresh token, sealed and hashed for the store.
pub(super) fn new_token(master: &MasterKeys) -> TokenChange {
    let token = crate::boot::decision::new_token();
    TokenChange::Issue {
        sealed: master.seal(token.as_bytes()),
        sha256: token_digest(&token),
    }
}

/// Runs the lifecycle's background work: the link's notices, and a check
/// for overdue machines every second.
pub async fn run(service: LifecycleService, mut notices: mpsc::UnboundedReceiver<Notice>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            notice = notices.recv() => match notice {
                // Each notice may wait on a BMC: one task each, so a slow
                // BMC does not hold up the others.
                Some(notice) => {
                    let service = service.clone();
                    tokio::spawn(async move { service.handle(notice).await });
                }
                None => return,
            },
            _ = tick.tick() => {
                if let Err(error) = service.expire_overdue().await {
                    tracing::error!(%error, "cannot check for overdue machines");
                }
            }
        }
    }
}
