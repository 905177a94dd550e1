//! Machines the region manages.

use edgemetal_protocol::MacAddress;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{new_id, now_ms, parse_column, Store, StoreError};
use edgemetal_region_model::lifecycle::MachineStatus;

/// CPU architectures a machine can have, MAAS-style names.
pub const ARCHITECTURES: &[&str] = &[
    "amd64", "arm64", "i386", "armhf", "ppc64el", "s390x", "riscv64",
];

/// What an operator gives to create a machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMachine {
    /// Boot interface hardware address.
    #[schema(value_type = String, example = "52:54:00:12:34:56")]
    pub mac: MacAddress,
    /// Host name (an RFC 1123 label); generated from the MAC when absent.
    #[serde(default)]
    pub hostname: Option<String>,
    /// CPU architecture: amd64, arm64, i386, armhf, ppc64el, s390x or riscv64.
    pub architecture: String,
}

/// A machine as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Machine {
    /// Region-assigned id.
    pub id: String,
    /// Boot interface hardware address.
    #[schema(value_type = String)]
    pub mac: MacAddress,
    /// Host name.
    pub hostname: String,
    /// CPU architecture.
    pub architecture: String,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
    /// Where it is in its lifecycle.
    pub status: MachineStatus,
    /// When the status last changed, ms since the epoch.
    pub status_changed_ms: Option<i64>,
    /// When the current status times out (commissioning), ms since the epoch.
    pub status_deadline_ms: Option<i64>,
    /// What commissioning found, once it has run.
    pub hardware: Option<HardwareSummary>,
}

/// The hardware facts searches use, from the latest commissioning results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct HardwareSummary {
    /// Logical CPUs.
    pub cpu_count: i64,
    /// Memory in MiB.
    pub memory_mib: i64,
    /// Total size of the disks in bytes.
    pub storage_bytes: i64,
    /// CPU model name.
    pub cpu_model: Option<String>,
    /// `bios` or `uefi`.
    pub firmware: Option<String>,
}

/// Which machines a listing returns; every given condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MachineFilter {
    /// Only machines in this status, e.g. `ready`.
    pub status: Option<String>,
    /// Only machines with at least this many CPUs.
    pub min_cpu_count: Option<i64>,
    /// Only machines with at least this much memory, in MiB.
    pub min_memory_mib: Option<i64>,
    /// Only machines with at least this much disk, in bytes.
    pub min_storage_bytes: Option<i64>,
}

/// The columns of a [`MachineRow`].
pub(crate) const MACHINE_COLUMNS: &str = "id, mac, hostname, architecture, created_ms, status, \
     status_changed_ms, status_deadline_ms, cpu_count, memory_mib, storage_bytes, cpu_model, firmware";

fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A stored machine status; an unknown one is corrupt data.
pub(crate) fn parse_status(status: &str) -> Result<MachineStatus, StoreError> {
    MachineStatus::parse(status)
        .ok_or_else(|| StoreError::Invalid(format!("stored status {status:?} is unknown")))
}

/// A `machines` row as stored: the [`MACHINE_COLUMNS`].
#[derive(sqlx::FromRow)]
struct MachineRow {
    id: String,
    mac: String,
    hostname: String,
    architecture: String,
    created_ms: i64,
    status: String,
    status_changed_ms: Option<i64>,
    status_deadline_ms: Option<i64>,
    cpu_count: Option<i64>,
    memory_mib: Option<i64>,
    storage_bytes: Option<i64>,
    cpu_model: Option<String>,
    firmware: Option<String>,
}

impl TryFrom<MachineRow> for Machine {
    type Error = StoreError;

    fn try_from(row: MachineRow) -> Result<Self, StoreError> {
        let hardware = row.cpu_count.map(|cpu_count| HardwareSummary {
            cpu_count,
            memory_mib: row.memory_mib.unwrap_or(0),
            storage_bytes: row.storage_bytes.unwrap_or(0),
            cpu_model: row.cpu_model,
            firmware: row.firmware,
        });
        Ok(Machine {
            status: parse_status(&row.status)?,
            status_changed_ms: row.status_changed_ms,
            status_deadline_ms: row.status_deadline_ms,
            hardware,
            id: row.id,
            mac: parse_column("MAC", &row.mac)?,
            hostname: row.hostname,
            architecture: row.architecture,
            created_ms: row.created_ms,
        })
    }
}

impl Store {
    /// Creates a machine; MAC and host name are unique.
    pub async fn create_machine(&self, new: NewMachine) -> Result<Machine, StoreError> {
        if !ARCHITECTURES.contains(&new.architecture.as_str()) {
            return Err(StoreError::Invalid(format!(
                "unknown architecture {:?}: use one of {}",
                new.architecture,
                ARCHITECTURES.join(", ")
            )));
        }
        let hostname = match new.hostname {
            Some(name) if valid_hostname(&name) => name,
            Some(name) => {
                return Err(StoreError::Invalid(format!(
                    "invalid hostname {name:?}: use 1 to 63 of a-z, 0-9 and '-'"
                )))
            }
            None => format!("machine-{}", new.mac.to_string().replace(':', "")),
        };
        let machine = Machine {
            id: new_id(),
            mac: new.mac,
            hostname,
            architecture: new.architecture,
            created_ms: now_ms(),
            status: MachineStatus::New,
            status_changed_ms: None,
            status_deadline_ms: None,
            hardware: None,
        };
        sqlx::query(
            "INSERT INTO machines (id, mac, hostname, architecture, created_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&machine.id)
        .bind(machine.mac.to_string())
        .bind(&machine.hostname)
        .bind(&machine.architecture)
        .bind(machine.created_ms)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            StoreError::from_write(e, || {
                format!(
                    "a machine with MAC {} or hostname {} already exists",
                    machine.mac, machine.hostname
                )
            })
        })?;
        self.changes
            .emit(super::Change::Machine(machine.id.clone()));
        Ok(machine)
    }

    /// All machines, ordered by host name.
    pub async fn list_machines(&self) -> Result<Vec<Machine>, StoreError> {
        self.find_machines(&MachineFilter::default()).await
    }

    /// The machines that match `filter`, ordered by host name.
    pub async fn find_machines(&self, filter: &MachineFilter) -> Result<Vec<Machine>, StoreError> {
        if let Some(status) = &filter.status {
            if MachineStatus::parse(status).is_none() {
                return Err(StoreError::Invalid(format!(
                    "unknown status {status:?}: use one of {}",
                    edgemetal_region_model::lifecycle::ALL_STATUSES
                        .map(MachineStatus::as_str)
                        .join(", ")
                )));
            }
        }
        // A minimum of 0 (or none) matches machines without results too.
        sqlx::query_as::<_, MachineRow>(&format!(
            "SELECT {MACHINE_COLUMNS} FROM machines WHERE ($1 = '' OR status = $1) \
             AND ($2 <= 0 OR cpu_count >= $2) AND ($3 <= 0 OR memory_mib >= $3) \
             AND ($4 <= 0 OR storage_bytes >= $4) ORDER BY hostname"
        ))
        .bind(filter.status.clone().unwrap_or_default())
        .bind(filter.min_cpu_count.unwrap_or(0))
        .bind(filter.min_memory_mib.unwrap_or(0))
        .bind(filter.min_storage_bytes.unwrap_or(0))
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(Machine::try_from)
        .collect()
    }

    /// One machine.
    pub async fn get_machine(&self, id: &str) -> Result<Machine, StoreError> {
        let row = sqlx::query_as::<_, MachineRow>(&format!(
            "SELECT {MACHINE_COLUMNS} FROM machines WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found("machine", id))?;
        row.try_into()
    }

    /// The machine with this boot MAC, if any.
    pub async fn find_machine_by_mac(
        &self,
        mac: MacAddress,
    ) -> Result<Option<Machine>, StoreError> {
        sqlx::query_as::<_, MachineRow>(&format!(
            "SELECT {MACHINE_COLUMNS} FROM machines WHERE mac = $1"
        ))
        .bind(mac.to_string())
        .fetch_optional(&self.pool)
        .await?
        .map(Machine::try_from)
        .transpose()
    }

    /// Deletes a machine.
    pub async fn delete_machine(&self, id: &str) -> Result<(), StoreError> {
        let machine = self.get_machine(id).await?;
        let mut tx = self.pool.begin().await?;
        // Its results go with it; its events stay, as the record of what happened.
        sqlx::query("DELETE FROM commissioning_results WHERE machine_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        // Its boot settings too; racks hold them, so that is a configuration change.
        let had_boot_settings = sqlx::query("DELETE FROM machine_boot WHERE machine_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        if had_boot_settings {
            sqlx::query("UPDATE config_state SET generation = generation + 1 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
        }
        let deleted = sqlx::query("DELETE FROM machines WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        if deleted == 0 {
            return Err(StoreError::not_found("machine", id));
        }
        self.changes
            .emit(super::Change::MachineRemoved(machine.mac));
        if had_boot_settings {
            self.changes.emit(super::Change::Config);
        }
        Ok(())
    }
}
