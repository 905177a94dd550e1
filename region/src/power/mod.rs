//! Power control of machines: the region keeps each machine's BMC settings
//! (password sealed at rest), picks a rack that reaches the BMC, has it carry
//! out the action over the link, and records the outcome as an event and as
//! the machine's observed power state. [`poller`] checks every machine's
//! power periodically.

pub mod poller;
pub mod rack_choice;

use std::net::Ipv4Addr;
use std::time::Duration;

use edgemetal_protocol::{
    BootDevice, PowerAction, PowerDriverKind, PowerFailure, PowerFailureKind, PowerObservation,
    PowerParameters, PowerRequest, PowerState, RackId,
};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::link::{Keyring, LinkHandle, RequestError};
use crate::store::{PowerSettings, Store, StoreError, StoredPower};

/// How long the region waits for a rack's answer to a power command. The
/// rack's own BMC bound is shorter, so a slow BMC is reported as such.
pub const RACK_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// What an operator sets as a machine's BMC.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PowerSettingsSpec {
    /// `ipmi`: IPMI 2.0 over LAN (RMCP+, cipher suite 3).
    pub driver: String,
    /// IPv4 address of the BMC.
    pub address: String,
    /// UDP port; 623 when absent.
    #[serde(default = "default_ipmi_port")]
    pub port: u16,
    /// BMC user name (IPMI: at most 16 bytes).
    pub username: String,
    /// BMC password (IPMI 2.0: at most 20 bytes). Stored sealed; never returned.
    pub password: String,
}

fn default_ipmi_port() -> u16 {
    623
}

/// Why a power action failed.
#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    /// The store failed or the machine does not exist.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The machine has no BMC settings.
    #[error("machine {0} has no power settings: set them with PUT /machines/{0}/power-settings")]
    NoSettings(String),
    /// No online rack reaches the BMC.
    #[error("no online rack reaches the BMC at {0}: a rack needs an interface on its network or a --bmc-network route to it")]
    NoRack(Ipv4Addr),
    /// The rack did not answer.
    #[error(transparent)]
    Rack(#[from] RequestError),
    /// The BMC answered with an error, or could not be reached by the rack.
    #[error("{}", .0.detail)]
    Bmc(PowerFailure),
    /// The sealed password does not open with the master key.
    #[error("the BMC password cannot be unsealed with the current master key")]
    Sealed,
}

/// How long a power-on waits for the machines' new boot intents to be
/// published to the racks (region side; nothing on the rack waits).
const INTENTS_BEFORE_POWER_ON: std::time::Duration = std::time::Duration::from_secs(5);

/// The region's power control.
#[derive(Clone)]
pub struct PowerService {
    store: Store,
    link: LinkHandle,
    keyring: Keyring,
}

impl PowerService {
    /// Power control over `link`, sealing passwords with `keyring`'s master key.
    pub fn new(store: Store, link: LinkHandle, keyring: Keyring) -> Self {
        PowerService {
            store,
            link,
            keyring,
        }
    }

    /// Validates and stores a machine's BMC settings; the password is sealed.
    pub async fn set_settings(
        &self,
        machine_id: &str,
        spec: PowerSettingsSpec,
        actor: &str,
    ) -> Result<PowerSettings, StoreError> {
        if spec.driver != "ipmi" {
            return Err(StoreError::Invalid(format!(
                "unknown power driver {:?}: use \"ipmi\"",
                spec.driver
            )));
        }
        if spec.address.parse::<Ipv4Addr>().is_err() {
            return Err(StoreError::Invalid(format!(
                "BMC address {:?} is not an IPv4 address",
                spec.address
            )));
        }
        if spec.port == 0 {
            return Err(StoreError::Invalid("BMC port must not be 0".into()));
        }
        if spec.username.is_empty() || spec.username.len() > 16 {
            return Err(StoreError::Invalid(
                "BMC user name must be 1 to 16 bytes (IPMI limit)".into(),
            ));
        }
        if spec.password.len() > 20 {
            return Err(StoreError::Invalid(
                "BMC password must be at most 20 bytes (IPMI 2.0 limit)".into(),
            ));
        }
        let settings = PowerSettings {
            driver: spec.driver,
            address: spec.address,
            port: spec.port,
            username: spec.username,
        };
        let sealed = self.keyring.master().seal(spec.password.as_bytes());
        self.store
            .set_power_settings(machine_id, &settings, &sealed)
            .await?;
        self.store
            .add_machine_event(
                machine_id,
                "power.settings",
                actor,
                &format!(
                    "BMC set to {} {}:{} as {}",
                    settings.driver, settings.address, settings.port, settings.username
                ),
            )
            .await?;
        Ok(settings)
    }

    /// Waits (bounded) until the racks were sent every boot intent changed
    /// so far: a machine about to boot finds its intent on its rack.
    pub async fn intents_published(&self) -> bool {
        self.link.changes_published(INTENTS_BEFORE_POWER_ON).await
    }

    /// Carries out `action` on the machine's BMC through a rack that reaches
    /// it; records an event and the observed state.
    pub async fn act(
        &self,
        machine_id: &str,
        action: PowerAction,
        actor: &str,
    ) -> Result<PowerObservation, PowerError> {
        if matches!(action, PowerAction::On | PowerAction::Cycle) && !self.intents_published().await
        {
            // The racks still boot it from what they hold; the push follows.
            tracing::warn!(
                machine = machine_id,
                "powering on before every boot intent was published"
            );
        }
        let outcome = self.run(machine_id, action).await;
        let kind = format!("power.{}", action_name(action));
        let detail = match &outcome {
            Ok((rack, observation)) => format!(
                "{} via rack {rack}: power is {}",
                action_name(action),
                state_name(observation.state)
            ),
            Err(error) => format!("{} failed: {error}", action_name(action)),
        };
        if !matches!(outcome, Err(PowerError::Store(StoreError::NotFound { .. }))) {
            self.store
                .add_machine_event(machine_id, &kind, actor, &detail)
                .await?;
            let check = match &outcome {
                Ok((_, observation)) => Ok(state_name(observation.state)),
                Err(_) => Err(detail.as_str()),
            };
            self.store.record_power_check(machine_id, check).await?;
        }
        outcome.map(|(_, observation)| observation)
    }

    /// Reads the machine's power state and records it (no event: this runs
    /// for every machine on every poll).
    pub async fn check(&self, machine_id: &str) -> Result<PowerObservation, PowerError> {
        let outcome = self.run(machine_id, PowerAction::Query).await;
        let check = match &outcome {
            Ok((_, observation)) => Ok(state_name(observation.state).to_string()),
            Err(error) => Err(error.to_string()),
        };
        if !matches!(outcome, Err(PowerError::Store(StoreError::NotFound { .. }))) {
            self.store
                .record_power_check(machine_id, check.as_deref().map_err(String::as_str))
                .await?;
        }
        outcome.map(|(_, observation)| observation)
    }

    /// Whether a rack reaches the machine's BMC now, without acting on it.
    pub async fn reachable(&self, machine_id: &str) -> Result<(), PowerError> {
        self.route(machine_id).await.map(|_| ())
    }

    /// The protocol version of the rack that reaches the machine's BMC.
    pub async fn rack_protocol(&self, machine_id: &str) -> Result<(RackId, u16), PowerError> {
        self.route(machine_id)
            .await
            .map(|(_, rack_id, version)| (rack_id, version))
    }

    /// The machine's BMC settings, the rack that reaches them and the
    /// protocol that rack speaks.
    async fn route(&self, machine_id: &str) -> Result<(StoredPower, RackId, u16), PowerError> {
        let stored = self
            .store
            .stored_power(machine_id)
            .await?
            .ok_or_else(|| PowerError::NoSettings(machine_id.to_string()))?;
        let bmc: Ipv4Addr = stored
            .settings
            .address
            .parse()
            .map_err(|_| PowerError::NoSettings(machine_id.to_string()))?;
        let racks = self.store.list_racks().await?;
        let rack = rack_choice::choose(&racks, bmc).ok_or(PowerError::NoRack(bmc))?;
        let rack_id = RackId::new(&rack.id).map_err(|_| PowerError::NoRack(bmc))?;
        Ok((stored, rack_id, rack.protocol_version))
    }

    async fn run(
        &self,
        machine_id: &str,
        action: PowerAction,
    ) -> Result<(RackId, PowerObservation), PowerError> {
        let (stored, rack_id, _) = self.route(machine_id).await?;
        let password = self
            .keyring
            .master()
            .open(&stored.password_sealed)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or(PowerError::Sealed)?;
        let request = PowerRequest {
            parameters: PowerParameters {
                driver: PowerDriverKind::IpmiLan,
                address: stored.settings.address.clone(),
                port: stored.settings.port,
                username: stored.settings.username.clone(),
                password,
            },
            action,
        };
        tracing::info!(machine = machine_id, rack = %rack_id, action = action_name(action), "power command");
        let observation = self
            .link
            .power(rack_id.clone(), request, RACK_ANSWER_TIMEOUT)
            .await?
            .map_err(PowerError::Bmc)?;
        Ok((rack_id, observation))
    }
}

/// The API name of an action.
pub fn action_name(action: PowerAction) -> &'static str {
    match action {
        PowerAction::On => "on",
        PowerAction::Off => "off",
        PowerAction::Cycle => "cycle",
        PowerAction::SoftOff => "soft-off",
        PowerAction::Query => "query",
        PowerAction::SetBootDevice(BootDevice::Pxe) => "boot-pxe",
        PowerAction::SetBootDevice(BootDevice::Disk) => "boot-disk",
    }
}

/// The action an API path names.
pub fn parse_action(name: &str) -> Option<PowerAction> {
    Some(match name {
        "on" => PowerAction::On,
        "off" => PowerAction::Off,
        "cycle" => PowerAction::Cycle,
        "soft-off" => PowerAction::SoftOff,
        "query" => PowerAction::Query,
        _ => return None,
    })
}

/// `on` or `off`.
pub fn state_name(state: PowerState) -> &'static str {
    match state {
        PowerState::On => "on",
        PowerState::Off => "off",
    }
}

/// The stable API error code for a BMC failure.
pub fn failure_code(kind: PowerFailureKind) -> &'static str {
    match kind {
        PowerFailureKind::Authentication => "bmc_authentication",
        PowerFailureKind::Timeout => "bmc_timeout",
        PowerFailureKind::Unreachable => "bmc_unreachable",
        PowerFailureKind::UnsupportedCipher => "bmc_cipher",
        PowerFailureKind::Refused => "bmc_refused",
        PowerFailureKind::UnsupportedDriver => "bmc_driver",
        PowerFailureKind::Other => "bmc_error",
    }
}
