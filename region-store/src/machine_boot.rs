//! Machines' own boot settings, which override their subnet's. Setting
//! them is a configuration change: racks get them in their snapshot.

use edgemetal_protocol::MacAddress;
use edgemetal_region_model::boot_table::BootSettingsSpec;

use super::{now_ms, parse_column, parse_json, Store, StoreError};

impl Store {
    /// A machine's boot settings (empty when it has none of its own).
    pub async fn get_machine_boot(&self, machine_id: &str) -> Result<BootSettingsSpec, StoreError> {
        self.get_machine(machine_id).await?;
        let row: Option<(String,)> =
            sqlx::query_as("SELECT settings_json FROM machine_boot WHERE machine_id = $1")
                .bind(machine_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map_or(Ok(BootSettingsSpec::default()), |(json,)| {
            parse_json("machine boot settings", &json)
        })
    }

    /// Replaces a machine's boot settings; empty settings remove them.
    pub async fn set_machine_boot(
        &self,
        machine_id: &str,
        settings: &BootSettingsSpec,
    ) -> Result<BootSettingsSpec, StoreError> {
        settings.validate()?;
        self.get_machine(machine_id).await?;
        let mut tx = self.begin_config_change().await?;
        sqlx::query("DELETE FROM machine_boot WHERE machine_id = $1")
            .bind(machine_id)
            .execute(&mut *tx)
            .await?;
        if !settings.is_empty() {
            let json = serde_json::to_string(settings)
                .map_err(|e| StoreError::Invalid(format!("boot settings: {e}")))?;
            sqlx::query(
                "INSERT INTO machine_boot (machine_id, settings_json, updated_ms) VALUES ($1, $2, $3)",
            )
            .bind(machine_id)
            .bind(json)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(settings.clone())
    }

    /// Every machine with boot settings of its own, by MAC.
    pub async fn list_machine_boot(
        &self,
    ) -> Result<Vec<(MacAddress, BootSettingsSpec)>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT m.mac, b.settings_json FROM machine_boot b \
             JOIN machines m ON m.id = b.machine_id ORDER BY m.mac",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(mac, json)| {
                Ok((
                    parse_column("mac", &mac)?,
                    parse_json("machine boot settings", &json)?,
                ))
            })
            .collect()
    }
}
