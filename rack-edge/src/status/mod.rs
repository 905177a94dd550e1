//! The local status endpoint: `/healthz`, `/status` (JSON) and `/metrics`.
//! It listens on loopback by default; it is for the site operator and tests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use edgemetal_protocol::{ConfigSnapshot, RackId};

use crate::metrics::Metrics;

/// What the rack is doing right now, shared by the link and the endpoint.
pub struct LiveStatus {
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

impl LiveStatus {
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

impl LiveStatus {
    /// Records a newly applied snapshot.
    pub fn set_applied(&self, snapshot: ConfigSnapshot) {
        self.metrics.applied_generation.set(snapshot.generation.0);
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
        self.metrics.link_connected.set(i64::from(connected));
    }
}

/// The endpoint's routes.
pub fn router(status: Arc<LiveStatus>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/status", get(status_json))
        .route("/metrics", get(metrics))
        .with_state(status)
}

async fn status_json(State(status): State<Arc<LiveStatus>>) -> impl IntoResponse {
    let applied = status.applied.read().ok().and_then(|a| a.clone());
    Json(serde_json::json!({
        "rack_id": status.rack_id.as_str(),
        "link_connected": status.link_connected.load(Ordering::Relaxed),
        "services": status.services.read().map(|s| s.iter().map(|h| serde_json::json!({
            "service": format!("{:?}", h.service),
            "state": format!("{:?}", h.state),
            "detail": h.detail,
        })).collect::<Vec<_>>()).unwrap_or_default(),
        "applied_generation": applied.as_ref().map(|s| s.generation.0),
        "boot_resources": status.boot_resources.read().map(|r| r.clone()).unwrap_or_default(),
        "subnets": applied.as_ref().map(|s| s.subnets.iter().map(|subnet| serde_json::json!({
            "id": subnet.id,
            "name": subnet.name,
            "cidr": subnet.cidr.to_string(),
            "ranges": subnet.ranges.len(),
        })).collect::<Vec<_>>()).unwrap_or_default(),
    }))
}

async fn metrics(State(status): State<Arc<LiveStatus>>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        status.metrics.render(),
    )
}
