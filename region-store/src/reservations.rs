//! DHCP reservations as stored; [`edgemetal_region_model::ipam::reservation`]
//! decides which are acceptable.

use edgemetal_region_model::ipam::{
    check_range_spares_reservations, check_reservation, IpRangeSpec, ReservationRecord,
    ReservationSpec,
};
use sqlx::{Any, Transaction};

use super::subnets::load_subnet;
use super::{new_id, now_ms, parse_column, Store, StoreError};

/// A `reservations` row as stored.
#[derive(sqlx::FromRow)]
struct ReservationRow {
    id: String,
    subnet_id: String,
    mac: String,
    address: String,
    hostname: Option<String>,
    created_ms: i64,
}

impl TryFrom<ReservationRow> for ReservationRecord {
    type Error = StoreError;

    fn try_from(row: ReservationRow) -> Result<Self, StoreError> {
        Ok(ReservationRecord {
            id: row.id,
            subnet_id: row.subnet_id,
            spec: ReservationSpec {
                mac: parse_column("mac", &row.mac)?,
                address: parse_column("address", &row.address)?,
                hostname: row.hostname,
            },
            created_ms: row.created_ms,
        })
    }
}

const COLUMNS: &str = "id, subnet_id, mac, address, hostname, created_ms";

/// Refuses a dynamic range that would cover a stored reservation of its subnet.
pub(super) async fn check_spares_reservations(
    tx: &mut Transaction<'static, Any>,
    subnet_id: &str,
    range: &IpRangeSpec,
) -> Result<(), StoreError> {
    let rows = sqlx::query_as::<_, ReservationRow>(&format!(
        "SELECT {COLUMNS} FROM reservations WHERE subnet_id = $1"
    ))
    .bind(subnet_id)
    .fetch_all(&mut **tx)
    .await?;
    let reservations = rows
        .into_iter()
        .map(ReservationRecord::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(check_range_spares_reservations(range, &reservations)?)
}

impl Store {
    /// Adds a reservation to a subnet; bumps the configuration generation.
    pub async fn create_reservation(
        &self,
        subnet_id: &str,
        spec: ReservationSpec,
    ) -> Result<ReservationRecord, StoreError> {
        let mut tx = self.begin_config_change().await?;
        let subnet = load_subnet(&mut tx, subnet_id).await?;
        check_reservation(&subnet, &spec)?;
        let id = new_id();
        sqlx::query(
            "INSERT INTO reservations (id, subnet_id, mac, address, hostname, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(subnet_id)
        .bind(spec.mac.to_string())
        .bind(spec.address.to_string())
        .bind(&spec.hostname)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            StoreError::from_write(e, || {
                format!(
                    "{} or {} already has a reservation on this subnet",
                    spec.mac, spec.address
                )
            })
        })?;
        tx.commit().await?;
        self.get_reservation(subnet_id, &id).await
    }

    /// One reservation of a subnet.
    pub async fn get_reservation(
        &self,
        subnet_id: &str,
        id: &str,
    ) -> Result<ReservationRecord, StoreError> {
        let row = sqlx::query_as::<_, ReservationRow>(&format!(
            "SELECT {COLUMNS} FROM reservations WHERE subnet_id = $1 AND id = $2"
        ))
        .bind(subnet_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found("reservation", id))?;
        row.try_into()
    }

    /// A subnet's reservations (all subnets' when `None`), by address.
    pub async fn list_reservations(
        &self,
        subnet_id: Option<&str>,
    ) -> Result<Vec<ReservationRecord>, StoreError> {
        if let Some(id) = subnet_id {
            // A listing of a subnet that does not exist is a 404, not an empty list.
            self.get_subnet(id).await?;
        }
        let rows = sqlx::query_as::<_, ReservationRow>(&format!(
            "SELECT {COLUMNS} FROM reservations WHERE ($1 = '' OR subnet_id = $1)"
        ))
        .bind(subnet_id.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        let mut records = rows
            .into_iter()
            .map(ReservationRecord::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        records.sort_by_key(|r| (r.subnet_id.clone(), u32::from(r.spec.address)));
        Ok(records)
    }

    /// Deletes a reservation; bumps the configuration generation.
    pub async fn delete_reservation(&self, subnet_id: &str, id: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_config_change().await?;
        let deleted = sqlx::query("DELETE FROM reservations WHERE subnet_id = $1 AND id = $2")
            .bind(subnet_id)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::not_found("reservation", id));
        }
        tx.commit().await?;
        Ok(())
    }
}
