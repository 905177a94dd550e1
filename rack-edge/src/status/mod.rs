//! The local status endpoint: `/healthz`, `/status` (JSON) and `/metrics`.
//! It listens on loopback by default; it is for the site operator and tests.
//! It shows the [`Hub`]; it owns no state of its own.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::hub::Hub;

/// The endpoint's routes.
pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/status", get(status_json))
        .route("/metrics", get(metrics))
        .with_state(hub)
}

async fn status_json(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    let applied = hub.applied.read().ok().and_then(|a| a.clone());
    Json(serde_json::json!({
        "rack_id": hub.rack_id.as_str(),
        "link_connected": hub.link_connected.load(Ordering::Relaxed),
        "services": hub.services.read().map(|s| s.iter().map(|h| serde_json::json!({
            "service": format!("{:?}", h.service),
            "state": format!("{:?}", h.state),
            "detail": h.detail,
        })).collect::<Vec<_>>()).unwrap_or_default(),
        "applied_generation": applied.as_ref().map(|s| s.generation.0),
        "boot_resources": hub.boot_resources.read().map(|r| r.clone()).unwrap_or_default(),
        "subnets": applied.as_ref().map(|s| s.subnets.iter().map(|subnet| serde_json::json!({
            "id": subnet.id,
            "name": subnet.name,
            "cidr": subnet.cidr.to_string(),
            "ranges": subnet.ranges.len(),
        })).collect::<Vec<_>>()).unwrap_or_default(),
    }))
}

async fn metrics(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        hub.metrics.render(),
    )
}
