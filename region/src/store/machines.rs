//! Machines the region manages.

use edgemetal_protocol::MacAddress;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use utoipa::ToSchema;

use super::{new_id, now_ms, Store, StoreError};

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
}

fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn machine_from_row(row: &AnyRow) -> Result<Machine, StoreError> {
    let mac: String = row.try_get("mac")?;
    Ok(Machine {
        id: row.try_get("id")?,
        mac: mac
            .parse()
            .map_err(|_| StoreError::Invalid(format!("stored MAC {mac:?} does not parse")))?,
        hostname: row.try_get("hostname")?,
        architecture: row.try_get("architecture")?,
        created_ms: row.try_get("created_ms")?,
    })
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
        Ok(machine)
    }

    /// All machines, ordered by host name.
    pub async fn list_machines(&self) -> Result<Vec<Machine>, StoreError> {
        sqlx::query(
            "SELECT id, mac, hostname, architecture, created_ms FROM machines ORDER BY hostname",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(machine_from_row)
        .collect()
    }

    /// One machine.
    pub async fn get_machine(&self, id: &str) -> Result<Machine, StoreError> {
        let row = sqlx::query(
            "SELECT id, mac, hostname, architecture, created_ms FROM machines WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found("machine", id))?;
        machine_from_row(&row)
    }

    /// The machine with this boot MAC, if any.
    pub async fn find_machine_by_mac(
        &self,
        mac: MacAddress,
    ) -> Result<Option<Machine>, StoreError> {
        sqlx::query(
            "SELECT id, mac, hostname, architecture, created_ms FROM machines WHERE mac = $1",
        )
        .bind(mac.to_string())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(machine_from_row)
        .transpose()
    }

    /// Deletes a machine.
    pub async fn delete_machine(&self, id: &str) -> Result<(), StoreError> {
        let deleted = sqlx::query("DELETE FROM machines WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::not_found("machine", id));
        }
        Ok(())
    }
}
