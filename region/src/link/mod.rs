//! The region's side of the rack link, over MQTT.
//!
//! [`inbound`] turns broker payloads into typed rack messages (and counts
//! what it drops), [`handler`] applies them to the store, [`mqtt`] owns the
//! MQTT connection and the snapshot publishing.

pub mod handler;
pub mod inbound;
pub mod keyring;
pub mod mqtt;
pub mod requests;

pub use edgemetal_protocol::BrokerUrl;
pub use keyring::Keyring;
pub use mqtt::{spawn, LinkHandle};
pub use requests::RequestError;
