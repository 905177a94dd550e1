//! The edgemetal region: HTTP API, store, and the region side of the rack link.

pub mod admin;
pub mod api;
pub mod boot;
#[cfg(feature = "embedded-broker")]
pub mod broker;
pub mod broker_acl;
pub mod config;
pub mod enrolment;
pub mod lifecycle;
pub mod link;
pub mod metrics;
pub mod pki;
pub mod power;
pub mod secrets;
pub mod serve;
pub mod snapshot;

/// The rules (pure) and the store, as their own crates; named here as the
/// region's own modules so its services read `crate::store::…`.
pub use edgemetal_region_model as model;
pub use edgemetal_region_store as store;
