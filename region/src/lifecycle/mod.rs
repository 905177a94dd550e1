//! The machine lifecycle: the state machine ([`status`]), what each action
//! does beyond changing the status ([`service`]: power, tokens, timeouts),
//! and the hardware inventory commissioning reports ([`inventory`]).

pub mod inventory;
pub mod service;
pub mod status;

pub use service::{LifecycleError, LifecycleService, LifecycleSettings, Notice};
pub use status::{next, Action, Context, IllegalTransition, MachineStatus, ALL_STATUSES};
