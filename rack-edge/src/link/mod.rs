//! The rack's side of the link: a sans-IO [`session`] core and its MQTT adapter.

pub mod blobs;
pub mod metrics;
pub mod mqtt;
pub mod session;
pub mod validate;

pub use metrics::LinkMetrics;
pub use session::{Inbound, Outgoing, Session};
