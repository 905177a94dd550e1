//! Turns a single-use enrolment token into a rack identity: a rack id, a
//! link secret, broker credentials, and the CA to trust.

use edgemetal_protocol::enrolment::EnrolmentBundle;
use edgemetal_protocol::RackId;
use rand::RngCore;

use crate::link::Keyring;
use crate::store::{EnrolError, NewIdentity, Store};

/// What enrolment needs besides the store.
#[derive(Clone)]
pub struct Enroller {
    /// Rack identities in memory (reloaded after each enrolment).
    pub keyring: Keyring,
    /// The broker URL racks are told to use.
    pub public_broker_url: String,
    /// The CA certificate racks must trust.
    pub ca_pem: String,
    /// Files to keep current for an external Mosquitto.
    pub mosquitto: Option<crate::config::MosquittoFiles>,
}

impl Enroller {
    /// Reloads identities after an enrolment or revocation, and brings an
    /// external Mosquitto's password and ACL files up to date.
    pub async fn identities_changed(&self, store: &Store) -> Result<(), crate::store::StoreError> {
        self.keyring.reload(store).await?;
        if let Some(files) = &self.mosquitto {
            if let Err(error) = crate::link::mosquitto::write_files(files, &self.keyring) {
                tracing::error!(%error, "cannot update the Mosquitto password/ACL files");
            }
        }
        Ok(())
    }

    /// Consumes `token` and returns the new rack's identity bundle.
    pub async fn enrol(&self, store: &Store, token: &str) -> Result<EnrolmentBundle, EnrolError> {
        let bound_name = store.check_enrolment_token(token).await?;
        let rack_id = match bound_name {
            Some(name) => name,
            None => {
                let mut bytes = [0u8; 4];
                rand::thread_rng().fill_bytes(&mut bytes);
                format!("rack-{}", hex::encode(bytes))
            }
        };
        debug_assert!(RackId::new(&rack_id).is_ok());
        let mut secret = [0u8; 32];
        let mut password = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut secret);
        rand::thread_rng().fill_bytes(&mut password);
        let password = hex::encode(password);
        let master = self.keyring.master();
        store
            .enrol(
                token,
                NewIdentity {
                    rack_id: rack_id.clone(),
                    link_secret_sealed: master.seal(&secret),
                    broker_password_sealed: master.seal(password.as_bytes()),
                },
            )
            .await?;
        self.identities_changed(store).await?;
        tracing::info!(rack = %rack_id, "rack enrolled");
        Ok(EnrolmentBundle {
            broker_username: rack_id.clone(),
            rack_id,
            link_secret_hex: hex::encode(secret),
            key_epoch: 1,
            broker_url: self.public_broker_url.clone(),
            broker_password: password,
            ca_pem: self.ca_pem.clone(),
            previous_link_secret: None,
        })
    }
}
