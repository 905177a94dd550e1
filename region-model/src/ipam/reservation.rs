//! DHCP reservations: a fixed address (and host name) for one MAC on one
//! subnet. They travel to racks in the snapshot.
//!
//! A reservation may not sit inside a dynamic range: a rack could already
//! have leased that address to another client, and the reservation would
//! then hand one address to two machines until that lease ran out.

use std::net::Ipv4Addr;

use edgemetal_protocol::MacAddress;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::subnet::{is_host_address, IpRangeSpec, RangePurpose, SubnetRecord};
use super::RuleError;

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

fn validate_hostname(hostname: &str) -> Result<(), RuleError> {
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
        Err(RuleError::Invalid(format!(
            "invalid hostname {hostname:?}: use one DNS label of 1 to 63 letters, digits and '-'"
        )))
    }
}

/// A new reservation against its subnet: a valid host name, a host address
/// that is not the gateway and lies outside every dynamic range.
pub fn check_reservation(subnet: &SubnetRecord, spec: &ReservationSpec) -> Result<(), RuleError> {
    if let Some(hostname) = &spec.hostname {
        validate_hostname(hostname)?;
    }
    let cidr = subnet.spec.cidr;
    if !is_host_address(&cidr, spec.address) {
        return Err(RuleError::Invalid(format!(
            "{} is not a host address of {cidr}",
            spec.address
        )));
    }
    if subnet.spec.gateway == Some(spec.address) {
        return Err(RuleError::Conflict(format!(
            "{} is the subnet's gateway",
            spec.address
        )));
    }
    let address = u32::from(spec.address);
    if let Some(range) = subnet.ranges.iter().find(|r| {
        r.spec.purpose == RangePurpose::Dynamic
            && (u32::from(r.spec.start)..=u32::from(r.spec.end)).contains(&address)
    }) {
        return Err(RuleError::Conflict(format!(
            "{} is inside the dynamic range {}-{}; reserve an address outside it",
            spec.address, range.spec.start, range.spec.end
        )));
    }
    Ok(())
}

/// Refuses a dynamic range that would cover one of its subnet's reservations.
pub fn check_range_spares_reservations(
    range: &IpRangeSpec,
    reservations: &[ReservationRecord],
) -> Result<(), RuleError> {
    if range.purpose != RangePurpose::Dynamic {
        return Ok(());
    }
    let (start, end) = (u32::from(range.start), u32::from(range.end));
    for reservation in reservations {
        if (start..=end).contains(&u32::from(reservation.spec.address)) {
            return Err(RuleError::Conflict(format!(
                "dynamic range {}-{} would cover the reservation of {} for {}",
                range.start, range.end, reservation.spec.address, reservation.spec.mac
            )));
        }
    }
    Ok(())
}
