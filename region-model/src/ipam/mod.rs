//! IP address management rules: what makes a subnet, a range or a
//! reservation acceptable, given what already exists. The store loads what
//! exists, asks these, and writes only if they agree.

pub mod reservation;
pub mod subnet;

#[cfg(test)]
mod tests;

pub use reservation::{
    check_range_spares_reservations, check_reservation, ReservationRecord, ReservationSpec,
};
pub use subnet::{
    check_range, check_subnet_fits, check_subnet_update, is_host_address, validate_range,
    validate_subnet, IpRangeRecord, IpRangeSpec, RangePurpose, SubnetRecord, SubnetServices,
    SubnetSpec,
};

/// Why a rule refused a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The change is invalid on its own.
    #[error("{0}")]
    Invalid(String),
    /// The change conflicts with what exists (overlap, duplicate).
    #[error("{0}")]
    Conflict(String),
}
