//! The machine lifecycle's rules: the state machine ([`status`]) and the
//! hardware inventory commissioning reports ([`inventory`]).

pub mod inventory;
pub mod status;

pub use status::{next, Action, Context, IllegalTransition, MachineStatus, ALL_STATUSES};
