//! The machine lifecycle: the state machine ([`status`]), what each action
//! does beyond changing the status ([`service`]: power, tokens, timeouts),
//! and the hardware inventory commissioning reports ([`inventory`]).

pub mod commission;
pub mod deploy;
pub mod service;

pub use edgemetal_region_model::lifecycle::{inventory, status};

pub use commission::CommissionRequest;
pub use deploy::{DeployRequest, Refusal, ReleaseRequest};
pub use service::{LifecycleError, LifecycleService, LifecycleSettings};
pub use status::{next, Action, Context, IllegalTransition, MachineStatus, ALL_STATUSES};
