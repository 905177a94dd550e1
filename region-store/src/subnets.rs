//! Subnets and their IP ranges as stored; the rules that keep them coherent
//! are [`edgemetal_region_model::ipam`]'s, checked inside each write.

use super::{new_id, now_ms, parse_column, parse_json, Store, StoreError};
use edgemetal_region_model::ipam::{
    check_range, check_subnet_fits, check_subnet_update, validate_subnet, IpRangeRecord,
    IpRangeSpec, RangePurpose, SubnetRecord, SubnetSpec,
};

fn dhcp_racks_json(spec: &SubnetSpec) -> String {
    serde_json::to_string(&spec.dhcp_racks).unwrap_or_else(|_| "[]".into())
}

fn services_json(spec: &SubnetSpec) -> String {
    serde_json::to_string(&spec.services).unwrap_or_else(|_| "{}".into())
}

fn boot_json(spec: &SubnetSpec) -> String {
    serde_json::to_string(&spec.boot).unwrap_or_else(|_| "{}".into())
}

fn router_advertisements(spec: &SubnetSpec) -> String {
    match serde_json::to_value(spec.router_advertisements) {
        Ok(serde_json::Value::String(mode)) => mode,
        _ => "not_a_router".into(),
    }
}

/// A `subnets` row as stored.
#[derive(sqlx::FromRow)]
struct SubnetRow {
    id: String,
    name: String,
    cidr: String,
    gateway: Option<String>,
    dns_servers_json: String,
    domain: Option<String>,
    lease_time_secs: i64,
    dhcp_racks_json: String,
    services_json: String,
    boot_json: String,
    router_advertisements: String,
    created_ms: i64,
    updated_ms: i64,
}

impl TryFrom<SubnetRow> for SubnetRecord {
    type Error = StoreError;

    fn try_from(row: SubnetRow) -> Result<Self, StoreError> {
        Ok(SubnetRecord {
            id: row.id,
            spec: SubnetSpec {
                name: row.name,
                cidr: parse_column("cidr", &row.cidr)?,
                gateway: row
                    .gateway
                    .map(|g| g.parse())
                    .transpose()
                    .map_err(|_| StoreError::Invalid("stored gateway does not parse".into()))?,
                dns_servers: parse_json("dns servers", &row.dns_servers_json)?,
                domain: row.domain,
                lease_time_secs: row.lease_time_secs as u32,
                dhcp_racks: parse_json("dhcp racks", &row.dhcp_racks_json)?,
                services: parse_json("services", &row.services_json)?,
                boot: parse_json("boot settings", &row.boot_json)?,
                router_advertisements: serde_json::from_value(serde_json::Value::String(
                    row.router_advertisements,
                ))
                .map_err(|e| StoreError::Invalid(format!("stored router advertisements: {e}")))?,
            },
            ranges: Vec::new(),
            created_ms: row.created_ms,
            updated_ms: row.updated_ms,
        })
    }
}

/// An `ip_ranges` row as stored.
#[derive(sqlx::FromRow)]
struct RangeRow {
    id: String,
    subnet_id: String,
    start_addr: String,
    end_addr: String,
    purpose: String,
    comment: String,
    created_ms: i64,
}

impl TryFrom<RangeRow> for IpRangeRecord {
    type Error = StoreError;

    fn try_from(row: RangeRow) -> Result<Self, StoreError> {
        Ok(IpRangeRecord {
            id: row.id,
            subnet_id: row.subnet_id,
            spec: IpRangeSpec {
                start: parse_column("start_addr", &row.start_addr)?,
                end: parse_column("end_addr", &row.end_addr)?,
                purpose: RangePurpose::parse(&row.purpose)?,
                comment: row.comment,
            },
            created_ms: row.created_ms,
        })
    }
}

const SUBNET_COLUMNS: &str =
    "id, name, cidr, gateway, dns_servers_json, domain, lease_time_secs, dhcp_racks_json, services_json, \
     boot_json, router_advertisements, created_ms, updated_ms";
const RANGE_COLUMNS: &str = "id, subnet_id, start_addr, end_addr, purpose, comment, created_ms";

async fn load_subnets(
    executor: &mut sqlx::AnyConnection,
    only: Option<&str>,
) -> Result<Vec<SubnetRecord>, StoreError> {
    let (subnet_rows, range_rows) = match only {
        Some(id) => (
            sqlx::query_as::<_, SubnetRow>(&format!(
                "SELECT {SUBNET_COLUMNS} FROM subnets WHERE id = $1"
            ))
            .bind(id)
            .fetch_all(&mut *executor)
            .await?,
            sqlx::query_as::<_, RangeRow>(&format!(
                "SELECT {RANGE_COLUMNS} FROM ip_ranges WHERE subnet_id = $1"
            ))
            .bind(id)
            .fetch_all(&mut *executor)
            .await?,
        ),
        None => (
            sqlx::query_as::<_, SubnetRow>(&format!("SELECT {SUBNET_COLUMNS} FROM subnets"))
                .fetch_all(&mut *executor)
                .await?,
            sqlx::query_as::<_, RangeRow>(&format!("SELECT {RANGE_COLUMNS} FROM ip_ranges"))
                .fetch_all(&mut *executor)
                .await?,
        ),
    };
    let mut subnets = subnet_rows
        .into_iter()
        .map(SubnetRecord::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    for row in range_rows {
        let range = IpRangeRecord::try_from(row)?;
        if let Some(subnet) = subnets.iter_mut().find(|s| s.id == range.subnet_id) {
            subnet.ranges.push(range);
        }
    }
    for subnet in &mut subnets {
        subnet.ranges.sort_by_key(|r| u32::from(r.spec.start));
    }
    subnets.sort_by_key(|s| (u32::from(s.spec.cidr.network()), s.spec.cidr.prefix_len()));
    Ok(subnets)
}

/// One subnet with its ranges, or `NotFound`.
pub(super) async fn load_subnet(
    executor: &mut sqlx::AnyConnection,
    id: &str,
) -> Result<SubnetRecord, StoreError> {
    load_subnets(executor, Some(id))
        .await?
        .pop()
        .ok_or_else(|| StoreError::not_found("subnet", id))
}

impl Store {
    /// All subnets with their ranges, ordered by network.
    pub async fn list_subnets(&self) -> Result<Vec<SubnetRecord>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        load_subnets(&mut conn, None).await
    }

    /// One subnet with its ranges.
    pub async fn get_subnet(&self, id: &str) -> Result<SubnetRecord, StoreError> {
        let mut conn = self.pool.acquire().await?;
        load_subnet(&mut conn, id).await
    }

    /// Creates a subnet; bumps the configuration generation.
    pub async fn create_subnet(&self, spec: SubnetSpec) -> Result<SubnetRecord, StoreError> {
        validate_subnet(&spec)?;
        let mut tx = self.begin_config_change().await?;
        check_subnet_fits(&spec, &load_subnets(tx.transaction(), None).await?, None)?;
        let id = new_id();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO subnets (id, name, cidr, gateway, dns_servers_json, domain, \
             lease_time_secs, created_ms, updated_ms, dhcp_racks_json, services_json, \
             boot_json, router_advertisements) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&id)
        .bind(&spec.name)
        .bind(spec.cidr.to_string())
        .bind(spec.gateway.map(|g| g.to_string()))
        .bind(serde_json::to_string(&spec.dns_servers).unwrap_or_else(|_| "[]".into()))
        .bind(&spec.domain)
        .bind(i64::from(spec.lease_time_secs))
        .bind(now)
        .bind(now)
        .bind(dhcp_racks_json(&spec))
        .bind(services_json(&spec))
        .bind(boot_json(&spec))
        .bind(router_advertisements(&spec))
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            StoreError::from_write(e, || format!("subnet {} already exists", spec.cidr))
        })?;
        tx.commit().await?;
        self.get_subnet(&id).await
    }

    /// Replaces a subnet's settings; its ranges must still fit.
    pub async fn update_subnet(
        &self,
        id: &str,
        spec: SubnetSpec,
    ) -> Result<SubnetRecord, StoreError> {
        validate_subnet(&spec)?;
        let mut tx = self.begin_config_change().await?;
        let current = load_subnet(&mut tx, id).await?;
        check_subnet_fits(
            &spec,
            &load_subnets(tx.transaction(), None).await?,
            Some(id),
        )?;
        check_subnet_update(&spec, &current)?;
        sqlx::query(
            "UPDATE subnets SET name = $1, cidr = $2, gateway = $3, dns_servers_json = $4, \
             domain = $5, lease_time_secs = $6, updated_ms = $7, dhcp_racks_json = $9, \
             services_json = $10, boot_json = $11, router_advertisements = $12 WHERE id = $8",
        )
        .bind(&spec.name)
        .bind(spec.cidr.to_string())
        .bind(spec.gateway.map(|g| g.to_string()))
        .bind(serde_json::to_string(&spec.dns_servers).unwrap_or_else(|_| "[]".into()))
        .bind(&spec.domain)
        .bind(i64::from(spec.lease_time_secs))
        .bind(now_ms())
        .bind(id)
        .bind(dhcp_racks_json(&spec))
        .bind(services_json(&spec))
        .bind(boot_json(&spec))
        .bind(router_advertisements(&spec))
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            StoreError::from_write(e, || format!("subnet {} already exists", spec.cidr))
        })?;
        tx.commit().await?;
        self.get_subnet(id).await
    }

    /// Deletes a subnet and its ranges.
    pub async fn delete_subnet(&self, id: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_config_change().await?;
        for table in ["ip_ranges", "reservations"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE subnet_id = $1"))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let deleted = sqlx::query("DELETE FROM subnets WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::not_found("subnet", id));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Adds a range to a subnet; it must fit and not overlap the others.
    pub async fn create_range(
        &self,
        subnet_id: &str,
        spec: IpRangeSpec,
    ) -> Result<IpRangeRecord, StoreError> {
        let mut tx = self.begin_config_change().await?;
        let subnet = load_subnet(&mut tx, subnet_id).await?;
        check_range(&subnet, &spec, None)?;
        super::reservations::check_spares_reservations(tx.transaction(), subnet_id, &spec).await?;
        let id = new_id();
        sqlx::query(
            "INSERT INTO ip_ranges (id, subnet_id, start_addr, end_addr, purpose, comment, \
             created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(subnet_id)
        .bind(spec.start.to_string())
        .bind(spec.end.to_string())
        .bind(spec.purpose.as_str())
        .bind(&spec.comment)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_range(subnet_id, &id).await
    }

    /// One range of a subnet.
    pub async fn get_range(
        &self,
        subnet_id: &str,
        range_id: &str,
    ) -> Result<IpRangeRecord, StoreError> {
        self.get_subnet(subnet_id)
            .await?
            .ranges
            .into_iter()
            .find(|r| r.id == range_id)
            .ok_or_else(|| StoreError::not_found("range", range_id))
    }

    /// Replaces a range's settings.
    pub async fn update_range(
        &self,
        subnet_id: &str,
        range_id: &str,
        spec: IpRangeSpec,
    ) -> Result<IpRangeRecord, StoreError> {
        let mut tx = self.begin_config_change().await?;
        let subnet = load_subnet(&mut tx, subnet_id).await?;
        if !subnet.ranges.iter().any(|r| r.id == range_id) {
            return Err(StoreError::not_found("range", range_id));
        }
        check_range(&subnet, &spec, Some(range_id))?;
        super::reservations::check_spares_reservations(tx.transaction(), subnet_id, &spec).await?;
        sqlx::query(
            "UPDATE ip_ranges SET start_addr = $1, end_addr = $2, purpose = $3, comment = $4 \
             WHERE id = $5",
        )
        .bind(spec.start.to_string())
        .bind(spec.end.to_string())
        .bind(spec.purpose.as_str())
        .bind(&spec.comment)
        .bind(range_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_range(subnet_id, range_id).await
    }

    /// Deletes a range.
    pub async fn delete_range(&self, subnet_id: &str, range_id: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_config_change().await?;
        let deleted = sqlx::query("DELETE FROM ip_ranges WHERE id = $1 AND subnet_id = $2")
            .bind(range_id)
            .bind(subnet_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::not_found("range", range_id));
        }
        tx.commit().await?;
        Ok(())
    }
}
