//! DHCP reservations: a fixed address (and host name) for one MAC on one
//! subnet. They travel to racks in the snapshot.
//!
//! A reservation may not sit inside a dynamic range: a rack could already
//! have leased that address to another client, and the reservation would
//! then hand one address to two machines until that lease ran out.

use std::net::Ipv4Addr;

use edgemetal_protocol::MacAddress;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use utoipa::ToSchema;

use super::subnets::{is_host_address, load_subnet, parse_column, IpRangeSpec, RangePurpose};
use super::{new_id, now_ms, Store, StoreError};

/// What an operator sets on a reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReservationSpec {
    /// The machine's hardware address, e.g. `52:54:00:12:34:56`.
    #[schema(value_type = String, example = "52:54:00:12:34:56")]
    pub mac: MacAddress,
    /// Its fixed address: a host address of the subnet outside its dynamic ranges.
    #[schema(value_type = String, example = "10.20.0.20")]
    pub address: Ipv4Addr,
    /// Host name handed to the machine (DHCP option 12): one DNS label.
    #[serde(default)]
    pub hostname: Option<String>,
}

/// A reservation as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReservationRecord {
    /// Region-assigned id.
    pub id: String,
    /// The subnet it belongs to.
    pub subnet_id: String,
    /// The operator's settings.
    #[serde(flatten)]
    pub spec: ReservationSpec,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
}

fn validate_hostname(hostname: &str) -> Result<(), StoreError> {
    let valid = !hostname.is_empty()
        && hostname.len() <= 63
        && !hostname.starts_with('-')
        && !hostname.ends_with('-')
        && hostname
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "invalid hostname {hostname:?}: use one DNS label of 1 to 63 letters, digits and '-'"
        )))
    }
}

fn reservation_from_row(row: &AnyRow) -> Result<ReservationRecord, StoreError> {
    Ok(ReservationRecord {
        id: row.try_get("id")?,
        subnet_id: row.try_get("subnet_id")?,
        spec: ReservationSpec {
            mac: parse_column(row, "mac")?,
            address: parse_column(row, "address")?,
            hostname: row.try_get("hostname")?,
        },
        created_ms: row.try_get("created_ms")?,
    })
}

const COLUMNS: &str = "id, subnet_id, mac, address, hostname, created_ms";

/// Refuses a dynamic range that would cover a reservation of its subnet.
pub(super) async fn check_range_spares_reservations(
    tx: &mut Transaction<'static, Any>,
    subnet_id: &str,
    range: &IpRangeSpec,
) -> Result<(), StoreError> {
    if range.purpose != RangePurpose::Dynamic {
        return Ok(());
    }
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM reservations WHERE subnet_id = $1"
    ))
    .bind(subnet_id)
    .fetch_all(&mut **tx)
    .await?;
    let (start, end) = (u32::from(range.start), u32::from(range.end));
    for row in &rows {
        let reservation = reservation_from_row(row)?;
        if (start..=end).contains(&u32::from(reservation.spec.address)) {
            return Err(StoreError::Conflict(format!(
                "dynamic range {}-{} would cover the reservation of {} for {}",
                range.start, range.end, reservation.spec.address, reservation.spec.mac
            )));
        }
    }
    Ok(())
}

impl Store {
    /// Adds a reservation to a subnet; bumps the configuration generation.
    pub async fn create_reservation(
        &self,
        subnet_id: &str,
        spec: ReservationSpec,
    ) -> Result<ReservationRecord, StoreError> {
        if let Some(hostname) = &spec.hostname {
            validate_hostname(hostname)?;
        }
        let mut tx = self.begin_config_change().await?;
        let subnet = load_subnet(&mut tx, subnet_id).await?;
        let cidr = subnet.spec.cidr;
        if !is_host_address(&cidr, spec.address) {
            return Err(StoreError::Invalid(format!(
                "{} is not a host address of {cidr}",
                spec.address
            )));
        }
        if subnet.spec.gateway == Some(spec.address) {
            return Err(StoreError::Conflict(format!(
                "{} is the subnet's gateway",
                spec.address
            )));
        }
        let address = u32::from(spec.address);
        if let Some(range) = subnet.ranges.iter().find(|r| {
            r.spec.purpose == RangePurpose::Dynamic
                && (u32::from(r.spec.start)..=u32::from(r.spec.end)).contains(&address)
        }) {
            return Err(StoreError::Conflict(format!(
                "{} is inside the dynamic range {}-{}; reserve an address outside it",
                spec.address, range.spec.start, range.spec.end
            )));
        }
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
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM reservations WHERE subnet_id = $1 AND id = $2"
        ))
        .bind(subnet_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found("reservation", id))?;
        reservation_from_row(&row)
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
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM reservations WHERE ($1 = '' OR subnet_id = $1)"
        ))
        .bind(subnet_id.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        let mut records = rows
            .iter()
            .map(reservation_from_row)
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
