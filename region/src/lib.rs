//! The edgemetal region: HTTP API, store, and the region side of the rack link.

pub mod api;
#[cfg(feature = "embedded-broker")]
pub mod broker;
pub mod config;
pub mod link;
pub mod metrics;
pub mod serve;
pub mod snapshot;
pub mod store;
