//! The rack's shared state hub: what every service and the link read and
//! report while the rack runs (the applied snapshot and its watch channel,
//! link and service health, boot-resource progress, metrics). The status
//! endpoint ([`crate::status`]) only shows it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

use edgemetal_protocol::{ConfigSnapshot, RackId};

use crate::metrics::Metrics;

/// What the rack is doing right now, shared by the link, the services and
/// the status endpoint.
pub struct Hub {
    /// The rack's id.
    pub rack_id: RackId,
    /// The snapshot the rack serves from.
    pub applied: RwLock<Option<ConfigSnapshot>>,
    /// Whether the broker connection is up.
    pub link_connected: std::sync::Arc<AtomicBool>,
    /// Metrics.
    pub metrics: Metrics,
    /// Every applied snapshot, for the services that serve from it.
    pub snapshots: tokio::sync::watch::Sender<Option<ConfigSnapshot>>,
    /// Health of the services besides the link, as they report it.
    pub services: RwLock<Vec<edgemetal_protocol::ServiceHealth>>,
    /// How far the boot resources of the snapshot are cached.
    pub boot_resources: RwLock<Vec<crate::boot::cache::ResourceProgress>>,
}

impl Hub {
    /// Records a service's health (replacing its previous report).
    pub fn set_health(
        &self,
        service: edgemetal_protocol::ServiceKind,
        state: edgemetal_protocol::HealthState,
        detail: impl Into<String>,
    ) {
        if let Ok(mut services) = self.services.write() {
            services.retain(|health| health.service != service);
            services.push(edgemetal_protocol::ServiceHealth {
                service,
                state,
                detail: detail.into(),
            });
        }
    }
}

impl Hub {
    /// Records a newly applied snapshot.
    pub fn set_applied(&self, snapshot: ConfigSnapshot) {
        self.metrics
            .link
            .applied_generation
            .set(snapshot.generation.0);
        if let Ok(mut applied) = self.applied.write() {
            *applied = Some(snapshot.clone());
        }
        self.snapshots.send_replace(Some(snapshot));
    }

    /// Shared view of whether the link is up (for services that fail fast without it).
    pub fn link_up(&self) -> std::sync::Arc<AtomicBool> {
        self.link_connected.clone()
    }

    /// Records whether the link is up.
    pub fn set_connected(&self, connected: bool) {
        self.link_connected.store(connected, Ordering::Relaxed);
        self.metrics.link.connected.set(i64::from(connected));
    }
}
