//! Subnets and their IP ranges, with the validation that keeps them coherent:
//! subnets never overlap, ranges lie inside their subnet and never overlap.

use std::net::Ipv4Addr;

use edgemetal_protocol::{Ipv4Cidr, RackId};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use utoipa::ToSchema;

use super::{new_id, now_ms, Store, StoreError};

fn default_lease_time() -> u32 {
    3600
}

/// What an operator sets on a subnet (create and full update).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubnetSpec {
    /// Unique name, 1 to 63 characters of letters, digits, `-`, `_` and `.`.
    pub name: String,
    /// The network, e.g. `10.20.0.0/24`; prefix length 8 to 30.
    #[schema(value_type = String, example = "10.20.0.0/24")]
    pub cidr: Ipv4Cidr,
    /// Default gateway handed to machines; must be a host address of the subnet.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "10.20.0.1")]
    pub gateway: Option<Ipv4Addr>,
    /// DNS servers handed to machines.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub dns_servers: Vec<Ipv4Addr>,
    /// DNS domain of the subnet's machines.
    #[serde(default)]
    pub domain: Option<String>,
    /// Lease time in seconds (60 to 31536000).
    #[serde(default = "default_lease_time")]
    pub lease_time_secs: u32,
    /// Racks that serve DHCP on this subnet; each hands out addresses from
    /// its own slice of the dynamic ranges, and the online ones take over an
    /// offline one's clients. Empty: every enrolled rack.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub dhcp_racks: Vec<RackId>,
    /// Which gateway services the rack offers the subnet's machines; all by default.
    #[serde(default)]
    pub services: SubnetServices,
}

/// The rack's gateway services for a subnet's machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SubnetServices {
    /// Syslog relay (machines log to the subnet's internal name, port 514).
    pub syslog: bool,
    /// APT/HTTP caching proxy (the subnet's internal name, port 8000).
    pub proxy: bool,
    /// NTP at the rack's address, also offered with DHCP option 42.
    pub ntp: bool,
}

impl Default for SubnetServices {
    fn default() -> Self {
        SubnetServices {
            syslog: true,
            proxy: true,
            ntp: true,
        }
    }
}

/// A subnet as stored, with its ranges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SubnetRecord {
    /// Region-assigned id.
    pub id: String,
    /// The operator's settings.
    #[serde(flatten)]
    pub spec: SubnetSpec,
    /// Ranges inside the subnet, ordered by start address.
    pub ranges: Vec<IpRangeRecord>,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
    /// Last update time, ms since the epoch.
    pub updated_ms: i64,
}

/// What a range is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RangePurpose {
    /// Handed out by DHCP.
    Dynamic,
    /// Kept out of DHCP.
    Reserved,
}

impl RangePurpose {
    fn as_str(self) -> &'static str {
        match self {
            RangePurpose::Dynamic => "dynamic",
            RangePurpose::Reserved => "reserved",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "dynamic" => Ok(RangePurpose::Dynamic),
            "reserved" => Ok(RangePurpose::Reserved),
            other => Err(StoreError::Invalid(format!(
                "unknown range purpose {other:?}"
            ))),
        }
    }
}

impl From<RangePurpose> for edgemetal_protocol::RangePurpose {
    fn from(purpose: RangePurpose) -> Self {
        match purpose {
            RangePurpose::Dynamic => edgemetal_protocol::RangePurpose::Dynamic,
            RangePurpose::Reserved => edgemetal_protocol::RangePurpose::Reserved,
        }
    }
}

/// What an operator sets on an IP range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IpRangeSpec {
    /// First address, inclusive.
    #[schema(value_type = String, example = "10.20.0.100")]
    pub start: Ipv4Addr,
    /// Last address, inclusive.
    #[schema(value_type = String, example = "10.20.0.199")]
    pub end: Ipv4Addr,
    /// `dynamic` (DHCP pool) or `reserved`.
    pub purpose: RangePurpose,
    /// Free text.
    #[serde(default)]
    pub comment: String,
}

/// An IP range as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct IpRangeRecord {
    /// Region-assigned id.
    pub id: String,
    /// The subnet the range belongs to.
    pub subnet_id: String,
    /// The operator's settings.
    #[serde(flatten)]
    pub spec: IpRangeSpec,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
}

fn validate_subnet(spec: &SubnetSpec) -> Result<(), StoreError> {
    let name_ok = !spec.name.is_empty()
        && spec.name.len() <= 63
        && spec
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        return Err(StoreError::Invalid(format!(
            "invalid subnet name {:?}: use 1 to 63 letters, digits, '-', '_' or '.'",
            spec.name
        )));
    }
    let mut racks = spec.dhcp_racks.clone();
    racks.sort();
    racks.dedup();
    if racks.len() != spec.dhcp_racks.len() {
        return Err(StoreError::Invalid("dhcp_racks lists a rack twice".into()));
    }
    if !(8..=30).contains(&spec.cidr.prefix_len()) {
        return Err(StoreError::Invalid(format!(
            "subnet {} must have a prefix length between 8 and 30",
            spec.cidr
        )));
    }
    if let Some(gateway) = spec.gateway {
        if !is_host_address(&spec.cidr, gateway) {
            return Err(StoreError::Invalid(format!(
                "gateway {gateway} is not a host address of {}",
                spec.cidr
            )));
        }
    }
    if let Some(domain) = &spec.domain {
        let valid = !domain.is_empty()
            && domain.len() <= 253
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !valid {
            return Err(StoreError::Invalid(format!(
                "invalid domain name {domain:?}"
            )));
        }
    }
    if !(60..=31_536_000).contains(&spec.lease_time_secs) {
        return Err(StoreError::Invalid(format!(
            "lease_time_secs {} is outside 60..=31536000",
            spec.lease_time_secs
        )));
    }
    Ok(())
}

pub(super) fn is_host_address(cidr: &Ipv4Cidr, address: Ipv4Addr) -> bool {
    cidr.contains(address) && address != cidr.network() && address != cidr.broadcast()
}

fn validate_range(cidr: &Ipv4Cidr, range: &IpRangeSpec) -> Result<(), StoreError> {
    if u32::from(range.start) > u32::from(range.end) {
        return Err(StoreError::Invalid(format!(
            "range start {} is after its end {}",
            range.start, range.end
        )));
    }
    for address in [range.start, range.end] {
        if !is_host_address(cidr, address) {
            return Err(StoreError::Invalid(format!(
                "range {}-{} is not inside the host addresses of {cidr}",
                range.start, range.end
            )));
        }
    }
    Ok(())
}

fn ranges_overlap(a: &IpRangeSpec, b: &IpRangeSpec) -> bool {
    u32::from(a.start) <= u32::from(b.end) && u32::from(b.start) <= u32::from(a.end)
}

pub(super) fn parse_column<T: std::str::FromStr>(
    row: &AnyRow,
    column: &str,
) -> Result<T, StoreError> {
    let text: String = row.try_get(column)?;
    text.parse()
        .map_err(|_| StoreError::Invalid(format!("stored {column} {text:?} does not parse")))
}

fn dhcp_racks_json(spec: &SubnetSpec) -> String {
    serde_json::to_string(&spec.dhcp_racks).unwrap_or_else(|_| "[]".into())
}

fn services_json(spec: &SubnetSpec) -> String {
    serde_json::to_string(&spec.services).unwrap_or_else(|_| "{}".into())
}

fn subnet_from_row(row: &AnyRow) -> Result<SubnetRecord, StoreError> {
    let dns_json: String = row.try_get("dns_servers_json")?;
    let gateway: Option<String> = row.try_get("gateway")?;
    let lease: i64 = row.try_get("lease_time_secs")?;
    let dhcp_racks_json: String = row.try_get("dhcp_racks_json")?;
    let services_json: String = row.try_get("services_json")?;
    Ok(SubnetRecord {
        id: row.try_get("id")?,
        spec: SubnetSpec {
            name: row.try_get("name")?,
            cidr: parse_column(row, "cidr")?,
            gateway: gateway
                .map(|g| g.parse())
                .transpose()
                .map_err(|_| StoreError::Invalid("stored gateway does not parse".into()))?,
            dns_servers: serde_json::from_str(&dns_json)
                .map_err(|e| StoreError::Invalid(format!("stored dns servers: {e}")))?,
            domain: row.try_get("domain")?,
            lease_time_secs: lease as u32,
            dhcp_racks: serde_json::from_str(&dhcp_racks_json)
                .map_err(|e| StoreError::Invalid(format!("stored dhcp racks: {e}")))?,
            services: serde_json::from_str(&services_json)
                .map_err(|e| StoreError::Invalid(format!("stored services: {e}")))?,
        },
        ranges: Vec::new(),
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

fn range_from_row(row: &AnyRow) -> Result<IpRangeRecord, StoreError> {
    let purpose: String = row.try_get("purpose")?;
    Ok(IpRangeRecord {
        id: row.try_get("id")?,
        subnet_id: row.try_get("subnet_id")?,
        spec: IpRangeSpec {
            start: parse_column(row, "start_addr")?,
            end: parse_column(row, "end_addr")?,
            purpose: RangePurpose::parse(&purpose)?,
            comment: row.try_get("comment")?,
        },
        created_ms: row.try_get("created_ms")?,
    })
}

const SUBNET_COLUMNS: &str =
    "id, name, cidr, gateway, dns_servers_json, domain, lease_time_secs, dhcp_racks_json, services_json, \
     created_ms, updated_ms";
const RANGE_COLUMNS: &str = "id, subnet_id, start_addr, end_addr, purpose, comment, created_ms";

async fn load_subnets(
    executor: &mut sqlx::AnyConnection,
    only: Option<&str>,
) -> Result<Vec<SubnetRecord>, StoreError> {
    let (subnet_rows, range_rows) = match only {
        Some(id) => (
            sqlx::query(&format!(
                "SELECT {SUBNET_COLUMNS} FROM subnets WHERE id = $1"
            ))
            .bind(id)
            .fetch_all(&mut *executor)
            .await?,
            sqlx::query(&format!(
                "SELECT {RANGE_COLUMNS} FROM ip_ranges WHERE subnet_id = $1"
            ))
            .bind(id)
            .fetch_all(&mut *executor)
            .await?,
        ),
        None => (
            sqlx::query(&format!("SELECT {SUBNET_COLUMNS} FROM subnets"))
                .fetch_all(&mut *executor)
                .await?,
            sqlx::query(&format!("SELECT {RANGE_COLUMNS} FROM ip_ranges"))
                .fetch_all(&mut *executor)
                .await?,
        ),
    };
    let mut subnets = subnet_rows
        .iter()
        .map(subnet_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    for row in &range_rows {
        let range = range_from_row(row)?;
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

async fn check_no_subnet_overlap(
    tx: &mut Transaction<'static, Any>,
    spec: &SubnetSpec,
    except_id: Option<&str>,
) -> Result<(), StoreError> {
    for other in load_subnets(tx, None).await? {
        if Some(other.id.as_str()) == except_id {
            continue;
        }
        if other.spec.cidr.overlaps(&spec.cidr) {
            return Err(StoreError::Conflict(format!(
                "{} overlaps subnet {} ({})",
                spec.cidr, other.spec.name, other.spec.cidr
            )));
        }
        if other.spec.name == spec.name {
            return Err(StoreError::Conflict(format!(
                "a subnet named {:?} already exists",
                spec.name
            )));
        }
    }
    Ok(())
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
        check_no_subnet_overlap(tx.transaction(), &spec, None).await?;
        let id = new_id();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO subnets (id, name, cidr, gateway, dns_servers_json, domain, \
             lease_time_secs, created_ms, updated_ms, dhcp_racks_json, services_json) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
        check_no_subnet_overlap(tx.transaction(), &spec, Some(id)).await?;
        for range in &current.ranges {
            validate_range(&spec.cidr, &range.spec).map_err(|_| {
                StoreError::Conflict(format!(
                    "range {}-{} would fall outside {}; change or delete it first",
                    range.spec.start, range.spec.end, spec.cidr
                ))
            })?;
        }
        sqlx::query(
            "UPDATE subnets SET name = $1, cidr = $2, gateway = $3, dns_servers_json = $4, \
             domain = $5, lease_time_secs = $6, updated_ms = $7, dhcp_racks_json = $9, \
             services_json = $10 WHERE id = $8",
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
        super::reservations::check_range_spares_reservations(tx.transaction(), subnet_id, &spec)
            .await?;
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
        super::reservations::check_range_spares_reservations(tx.transaction(), subnet_id, &spec)
            .await?;
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

fn check_range(
    subnet: &SubnetRecord,
    spec: &IpRangeSpec,
    except_id: Option<&str>,
) -> Result<(), StoreError> {
    validate_range(&subnet.spec.cidr, spec)?;
    if let Some(gateway) = subnet.spec.gateway {
        let holds_gateway = (u32::from(spec.start)..=u32::from(spec.end)).contains(&gateway.into());
        if spec.purpose == RangePurpose::Dynamic && holds_gateway {
            return Err(StoreError::Invalid(format!(
                "dynamic range {}-{} contains the gateway {gateway}",
                spec.start, spec.end
            )));
        }
    }
    for other in &subnet.ranges {
        if Some(other.id.as_str()) != except_id && ranges_overlap(&other.spec, spec) {
            return Err(StoreError::Conflict(format!(
                "range {}-{} overlaps range {}-{}",
                spec.start, spec.end, other.spec.start, other.spec.end
            )));
        }
    }
    Ok(())
}
