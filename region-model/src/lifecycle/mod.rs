//! The machine lifecycle's rules: the state machine ([`status`]), the
//! hardware inventory commissioning reports ([`inventory`]) with its
//! hardware tests and LLDP neighbours ([`hardware_tests`]), and what a
//! deploy request must satisfy ([`deploy`]).

pub mod deploy;
pub mod hardware_tests;
pub mod inventory;
pub mod status;

pub use status::{next, Action, Context, IllegalTransition, MachineStatus, ALL_STATUSES};
