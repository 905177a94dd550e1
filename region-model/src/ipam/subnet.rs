//! Subnets and their IP ranges, and the rules that keep them coherent:
//! subnets never overlap, ranges lie inside their subnet and never overlap.

use std::net::Ipv4Addr;

use edgemetal_protocol::{Ipv4Cidr, RackId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::RuleError;

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
    /// The operator's boot table for the subnet's machines (each machine's
    /// own settings override it); empty: the rack's defaults.
    #[serde(default)]
    pub boot: crate::boot_table::BootSettingsSpec,
    /// Whether the subnet's racks answer IPv6 Router Solicitations
    /// (`not_a_router`, the default, or `off` where an IPv6 router serves
    /// the link).
    #[serde(default)]
    pub router_advertisements: crate::boot_table::RouterAdvertisementMode,
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
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RangePurpose::Dynamic => "dynamic",
            RangePurpose::Reserved => "reserved",
        }
    }

    /// Parses [`RangePurpose::as_str`]'s names.
    pub fn parse(text: &str) -> Result<Self, RuleError> {
        match text {
            "dynamic" => Ok(RangePurpose::Dynamic),
            "reserved" => Ok(RangePurpose::Reserved),
            other => Err(RuleError::Invalid(format!(
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

/// A subnet's settings on their own: name, prefix length, gateway, domain, lease time.
pub fn validate_subnet(spec: &SubnetSpec) -> Result<(), RuleError> {
    let name_ok = !spec.name.is_empty()
        && spec.name.len() <= 63
        && spec
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        return Err(RuleError::Invalid(format!(
            "invalid subnet name {:?}: use 1 to 63 letters, digits, '-', '_' or '.'",
            spec.name
        )));
    }
    let mut racks = spec.dhcp_racks.clone();
    racks.sort();
    racks.dedup();
    if racks.len() != spec.dhcp_racks.len() {
        return Err(RuleError::Invalid("dhcp_racks lists a rack twice".into()));
    }
    if !(8..=30).contains(&spec.cidr.prefix_len()) {
        return Err(RuleError::Invalid(format!(
            "subnet {} must have a prefix length between 8 and 30",
            spec.cidr
        )));
    }
    if let Some(gateway) = spec.gateway {
        if !is_host_address(&spec.cidr, gateway) {
            return Err(RuleError::Invalid(format!(
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
            return Err(RuleError::Invalid(format!(
                "invalid domain name {domain:?}"
            )));
        }
    }
    spec.boot.validate()?;
    if !(60..=31_536_000).contains(&spec.lease_time_secs) {
        return Err(RuleError::Invalid(format!(
            "lease_time_secs {} is outside 60..=31536000",
            spec.lease_time_secs
        )));
    }
    Ok(())
}

/// An address of `cidr` that is neither its network nor its broadcast address.
pub fn is_host_address(cidr: &Ipv4Cidr, address: Ipv4Addr) -> bool {
    cidr.contains(address) && address != cidr.network() && address != cidr.broadcast()
}

/// A range on its own: ordered, inside the host addresses of `cidr`.
pub fn validate_range(cidr: &Ipv4Cidr, range: &IpRangeSpec) -> Result<(), RuleError> {
    if u32::from(range.start) > u32::from(range.end) {
        return Err(RuleError::Invalid(format!(
            "range start {} is after its end {}",
            range.start, range.end
        )));
    }
    for address in [range.start, range.end] {
        if !is_host_address(cidr, address) {
            return Err(RuleError::Invalid(format!(
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

/// A new or changed range against its subnet: valid, a dynamic one spares
/// the gateway, and it overlaps no other range (`except_id` is the range
/// being changed).
pub fn check_range(
    subnet: &SubnetRecord,
    spec: &IpRangeSpec,
    except_id: Option<&str>,
) -> Result<(), RuleError> {
    validate_range(&subnet.spec.cidr, spec)?;
    if let Some(gateway) = subnet.spec.gateway {
        let holds_gateway = (u32::from(spec.start)..=u32::from(spec.end)).contains(&gateway.into());
        if spec.purpose == RangePurpose::Dynamic && holds_gateway {
            return Err(RuleError::Invalid(format!(
                "dynamic range {}-{} contains the gateway {gateway}",
                spec.start, spec.end
            )));
        }
    }
    for other in &subnet.ranges {
        if Some(other.id.as_str()) != except_id && ranges_overlap(&other.spec, spec) {
            return Err(RuleError::Conflict(format!(
                "range {}-{} overlaps range {}-{}",
                spec.start, spec.end, other.spec.start, other.spec.end
            )));
        }
    }
    Ok(())
}

/// A new or changed subnet against the others: no overlap, no name taken
/// (`except_id` is the subnet being changed).
pub fn check_subnet_fits(
    spec: &SubnetSpec,
    others: &[SubnetRecord],
    except_id: Option<&str>,
) -> Result<(), RuleError> {
    for other in others {
        if Some(other.id.as_str()) == except_id {
            continue;
        }
        if other.spec.cidr.overlaps(&spec.cidr) {
            return Err(RuleError::Conflict(format!(
                "{} overlaps subnet {} ({})",
                spec.cidr, other.spec.name, other.spec.cidr
            )));
        }
        if other.spec.name == spec.name {
            return Err(RuleError::Conflict(format!(
                "a subnet named {:?} already exists",
                spec.name
            )));
        }
    }
    Ok(())
}

/// A subnet's new settings (already [`validate_subnet`]-checked) against
/// what it holds: each range still fits.
pub fn check_subnet_update(spec: &SubnetSpec, current: &SubnetRecord) -> Result<(), RuleError> {
    for range in &current.ranges {
        validate_range(&spec.cidr, &range.spec).map_err(|_| {
            RuleError::Conflict(format!(
                "range {}-{} would fall outside {}; change or delete it first",
                range.spec.start, range.spec.end, spec.cidr
            ))
        })?;
    }
    Ok(())
}
