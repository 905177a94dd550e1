//! The region's in-memory view of rack identities: link secrets (opened
//! from their sealed form once, on load) and broker credentials. Shared by
//! the link (sealing) and the embedded broker's authentication.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use edgemetal_protocol::seal::{LinkSecret, LINK_SECRET_LEN};
use edgemetal_protocol::RackId;
use subtle::ConstantTimeEq;

use crate::secrets::MasterKeys;
use crate::store::{Store, StoreError};

/// What the region holds for one rack.
#[derive(Clone)]
pub struct RackKeys {
    /// The rack's link secret.
    pub secret: LinkSecret,
    /// Its current key epoch.
    pub key_epoch: u32,
    /// Its broker password.
    pub broker_password: String,
    /// Whether it was revoked.
    pub revoked: bool,
    /// The next secret (epoch `key_epoch + 1`) while a rotation is under way.
    pub pending: Option<LinkSecret>,
    /// The secret of epoch `key_epoch - 1`, for last wills sealed before a rotation.
    pub previous: Option<LinkSecret>,
}

impl RackKeys {
    /// The secret for a frame sealed under `epoch`, if we hold one.
    pub fn secret_for(&self, epoch: u32) -> Option<&LinkSecret> {
        if epoch == self.key_epoch {
            Some(&self.secret)
        } else if epoch == self.key_epoch.wrapping_add(1) {
            self.pending.as_ref()
        } else if epoch.wrapping_add(1) == self.key_epoch {
            self.previous.as_ref()
        } else {
            None
        }
    }
}

/// The user name the region itself logs in to the broker with.
pub const REGION_BROKER_USER: &str = "edgemetal-region";

/// Rack identities in memory; cheap to clone.
#[derive(Clone)]
pub struct Keyring {
    racks: Arc<RwLock<HashMap<RackId, RackKeys>>>,
    master: MasterKeys,
    region_broker_password: String,
}

impl Keyring {
    /// Loads every identity from the store.
    pub async fn load(
        store: &Store,
        master: MasterKeys,
        region_broker_password: String,
    ) -> Result<Keyring, StoreError> {
        let keyring = Keyring {
            racks: Arc::new(RwLock::new(HashMap::new())),
            master,
            region_broker_password,
        };
        keyring.reload(store).await?;
        Ok(keyring)
    }

    /// Re-reads every identity (after an enrolment, a revocation or a rotation).
    pub async fn reload(&self, store: &Store) -> Result<(), StoreError> {
        let mut racks = HashMap::new();
        for identity in store.list_identities().await? {
            let Ok(rack_id) = RackId::new(&identity.rack_id) else {
                continue;
            };
            let opened = self
                .master
                .open(&identity.link_secret_sealed)
                .ok()
                .and_then(|bytes| <[u8; LINK_SECRET_LEN]>::try_from(bytes).ok());
            let password = self
                .master
                .open(&identity.broker_password_sealed)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            let open_optional = |sealed: Option<&str>| {
                sealed
                    .and_then(|sealed| self.master.open(sealed).ok())
                    .and_then(|bytes| <[u8; LINK_SECRET_LEN]>::try_from(bytes).ok())
                    .map(LinkSecret)
            };
            let pending = open_optional(identity.next_secret_sealed.as_deref());
            let previous = open_optional(identity.previous_secret_sealed.as_deref());
            let (Some(secret), Some(broker_password)) = (opened, password) else {
                tracing::error!(rack = %rack_id, "cannot open the rack's sealed secrets with the master key");
                continue;
            };
            racks.insert(
                rack_id,
                RackKeys {
                    secret: LinkSecret(secret),
                    key_epoch: identity.key_epoch,
                    broker_password,
                    revoked: identity.revoked_ms.is_some(),
                    pending,
                    previous,
                },
            );
        }
        if let Ok(mut current) = self.racks.write() {
            *current = racks;
        }
        Ok(())
    }

    /// The keys of one rack.
    pub fn get(&self, rack_id: &RackId) -> Option<RackKeys> {
        self.racks.read().ok()?.get(rack_id).cloned()
    }

    /// Every rack that is enrolled and not revoked.
    pub fn active_racks(&self) -> Vec<(RackId, RackKeys)> {
        self.racks
            .read()
            .map(|racks| {
                racks
                    .iter()
                    .filter(|(_, keys)| !keys.revoked)
                    .map(|(id, keys)| (id.clone(), keys.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ids of the active racks, sorted: cheap to compare for changes.
    pub fn active_rack_ids(&self) -> Vec<RackId> {
        let mut ids: Vec<RackId> = self.active_racks().into_iter().map(|(id, _)| id).collect();
        ids.sort();
        ids
    }

    /// The master key (to seal new secrets).
    pub fn master(&self) -> &MasterKeys {
        &self.master
    }

    /// The region's own broker password.
    pub fn region_broker_password(&self) -> &str {
        &self.region_broker_password
    }

    /// The embedded broker's login check: the region, or an active rack
    /// whose client id is its own (so no rack can take over another's session).
    pub fn broker_login_allowed(&self, client_id: &str, user: &str, password: &str) -> bool {
        if user == REGION_BROKER_USER {
            return client_id.starts_with("edgemetal-region-")
                && bool::from(
                    password
                        .as_bytes()
                        .ct_eq(self.region_broker_password.as_bytes()),
                );
        }
        let Ok(rack_id) = RackId::new(user) else {
            return false;
        };
        let Some(keys) = self.get(&rack_id) else {
            return false;
        };
        !keys.revoked
            && client_id == format!("edgemetal-rack-{rack_id}")
            && bool::from(password.as_bytes().ct_eq(keys.broker_password.as_bytes()))
    }
}
