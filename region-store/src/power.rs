//! Machines' BMC settings and observed power state, and the machine event log.
//!
//! The BMC password is stored sealed with the region's master key (see
//! [`crate::secrets`]); the store only ever sees the sealed text, and the API
//! types here have no field that could carry it back out.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{now_ms, parse_json, Store, StoreError};

/// How the region reaches a machine's BMC, as the API shows it: no password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PowerSettings {
    /// The BMC protocol; `ipmi` (IPMI 2.0 over LAN) for now.
    pub driver: String,
    /// Host name or IPv4 address of the BMC.
    pub address: String,
    /// UDP port of the BMC.
    pub port: u16,
    /// BMC user name.
    pub username: String,
}

/// A machine's power as last observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PowerStatus {
    /// `on`, `off`, or `unknown` before the first successful check.
    pub state: String,
    /// When the state was last checked (successfully or not), ms since the epoch.
    pub checked_ms: Option<i64>,
    /// Why the last check failed; absent when it succeeded.
    pub error: Option<String>,
    /// The BMC settings, if any (never the password).
    pub settings: Option<PowerSettings>,
}

/// One entry of a machine's event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct MachineEvent {
    /// Event id.
    pub id: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// What kind of event, e.g. `power.on`.
    pub kind: String,
    /// Who caused it: an API key name, or `region` for its own actions.
    pub actor: String,
    /// What happened, for a human.
    pub detail: String,
}

/// A machine's BMC settings with the sealed password, for the region's own use.
#[derive(Debug, Clone)]
pub struct StoredPower {
    /// The settings.
    pub settings: PowerSettings,
    /// The password, sealed with the master key.
    pub password_sealed: String,
}

/// What [`Store::stored_power`] reads of a machine.
#[derive(sqlx::FromRow)]
struct StoredPowerRow {
    power_json: Option<String>,
    power_password_sealed: Option<String>,
}

/// What [`Store::power_status`] reads of a machine.
#[derive(sqlx::FromRow)]
struct PowerStatusRow {
    power_json: Option<String>,
    power_state: Option<String>,
    power_checked_ms: Option<i64>,
    power_error: Option<String>,
}

/// A `machine_events` row as listed.
#[derive(sqlx::FromRow)]
struct EventRow {
    id: String,
    at_ms: i64,
    kind: String,
    actor: String,
    detail: String,
}

impl From<EventRow> for MachineEvent {
    fn from(row: EventRow) -> Self {
        MachineEvent {
            id: row.id,
            at_ms: row.at_ms,
            kind: row.kind,
            actor: row.actor,
            detail: row.detail,
        }
    }
}

impl Store {
    /// Sets a machine's BMC settings and sealed password.
    pub async fn set_power_settings(
        &self,
        machine_id: &str,
        settings: &PowerSettings,
        password_sealed: &str,
    ) -> Result<(), StoreError> {
        let updated = sqlx::query(
            "UPDATE machines SET power_json = $1, power_password_sealed = $2, power_state = NULL, \
             power_checked_ms = NULL, power_error = NULL WHERE id = $3",
        )
        .bind(serde_json::to_string(settings).unwrap_or_default())
        .bind(password_sealed)
        .bind(machine_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::not_found("machine", machine_id));
        }
        Ok(())
    }

    /// A machine's BMC settings with the sealed password; `None` when unset.
    pub async fn stored_power(&self, machine_id: &str) -> Result<Option<StoredPower>, StoreError> {
        let row = sqlx::query_as::<_, StoredPowerRow>(
            "SELECT power_json, power_password_sealed FROM machines WHERE id = $1",
        )
        .bind(machine_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found("machine", machine_id))?;
        match (row.power_json, row.power_password_sealed) {
            (Some(json), Some(password_sealed)) => Ok(Some(StoredPower {
                settings: parse_json("power settings", &json)?,
                password_sealed,
            })),
            _ => Ok(None),
        }
    }

    /// A machine's power as last observed.
    pub async fn power_status(&self, machine_id: &str) -> Result<PowerStatus, StoreError> {
        let row = sqlx::query_as::<_, PowerStatusRow>(
            "SELECT power_json, power_state, power_checked_ms, power_error FROM machines \
             WHERE id = $1",
        )
        .bind(machine_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found("machine", machine_id))?;
        Ok(PowerStatus {
            state: row.power_state.unwrap_or_else(|| "unknown".into()),
            checked_ms: row.power_checked_ms,
            error: row.power_error,
            settings: row
                .power_json
                .and_then(|json| serde_json::from_str(&json).ok()),
        })
    }

    /// Records the outcome of a power check: the state on success, the
    /// error (keeping the last known state) on failure.
    pub async fn record_power_check(
        &self,
        machine_id: &str,
        outcome: Result<&str, &str>,
    ) -> Result<(), StoreError> {
        let query = match outcome {
            Ok(state) => sqlx::query(
                "UPDATE machines SET power_state = $1, power_checked_ms = $2, power_error = NULL \
                 WHERE id = $3",
            )
            .bind(state.to_string()),
            Err(error) => sqlx::query(
                "UPDATE machines SET power_error = $1, power_checked_ms = $2 WHERE id = $3",
            )
            .bind(error.to_string()),
        };
        query
            .bind(now_ms())
            .bind(machine_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ids of the machines that have BMC settings.
    pub async fn machines_with_power(&self) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM machines WHERE power_json IS NOT NULL ORDER BY id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Appends to a machine's event log.
    pub async fn add_machine_event(
        &self,
        machine_id: &str,
        kind: &str,
        actor: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        super::lifecycle::add_event_in(&mut tx, machine_id, kind, actor, detail).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A machine's events, newest first, at most `limit`.
    pub async fn list_machine_events(
        &self,
        machine_id: &str,
        limit: i64,
    ) -> Result<Vec<MachineEvent>, StoreError> {
        self.get_machine(machine_id).await?;
        let rows = sqlx::query_as::<_, EventRow>(
            "SELECT id, at_ms, kind, actor, detail FROM machine_events WHERE machine_id = $1 \
             ORDER BY at_ms DESC, id DESC LIMIT $2",
        )
        .bind(machine_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(MachineEvent::from).collect())
    }
}
