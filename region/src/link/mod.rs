//! The region's side of the rack link, over MQTT.
//!
//! [`inbound`] opens broker payloads into typed rack messages with the
//! shared frame codec, [`handler`] applies them to the store, [`core`]
//! runs one frame start to end and follows the store's changes,
//! [`intents`] decides what machines boot, [`publish`] seals what goes to
//! racks, and [`mqtt`] owns the MQTT connection.

pub mod core;
pub mod handler;
pub mod inbound;
pub mod intents;
pub mod keyring;
pub mod mosquitto;
pub mod mqtt;
pub mod publish;
pub mod requests;

pub use edgemetal_protocol::BrokerUrl;
pub use keyring::Keyring;
pub use mqtt::{spawn, LinkHandle};
pub use requests::RequestError;

/// Things the link learned that the lifecycle acts on. It lives with the
/// link, which sends it, so the link needs nothing from the lifecycle (the
/// lifecycle drives power, which drives the link: dependencies point one way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A network-booting machine was enlisted.
    Enlisted(String),
    /// A machine's results were stored (or refused).
    Results(crate::store::ResultsOutcome),
}
