//! The edgemetal rack-edge appliance.
//!
//! The link ([`link`]) is the single seam through which region data arrives:
//! a sans-IO session core plus an MQTT adapter. [`state`] persists what the
//! rack must keep across restarts (identity, applied snapshot), so that it
//! keeps serving when the region is unreachable. [`hub`] is the state every
//! service shares while the rack runs; [`status`] is the local operator
//! endpoint that shows it (health, status, metrics). Every service starts
//! the same way, into one task set ([`services`]), and its counters reach
//! Prometheus the same way ([`metrics`]).

pub mod boot;
pub mod config;
pub mod dhcp;
pub mod dns;
pub mod enrol;
pub mod hub;
pub mod image;
pub mod link;
pub mod metadata;
pub mod metrics;
pub mod ndp;
pub mod ntp;
pub mod power;
pub mod proxy;
pub mod run;
pub mod services;
pub mod state;
pub mod status;
pub mod syslog;
pub mod system;
pub mod tftp;
