//! Starts the rack: identity, persisted snapshot, status endpoint, link.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

use anyhow::Context;
use rand::RngCore;

use crate::config::RackConfig;
use crate::link::{mqtt, Session};
use crate::metrics::Metrics;
use crate::state::{load_or_create_rack_id, SnapshotFile};
use crate::status::{self, LiveStatus};

/// Runs the rack until SIGINT or SIGTERM.
pub async fn run(config: RackConfig) -> anyhow::Result<()> {
    let broker = config.broker_url.parse().context("invalid broker URL")?;
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create state dir {}", config.state_dir.display()))?;
    let rack_id = load_or_create_rack_id(&config.state_dir, config.rack_id.as_deref())?;

    let snapshot_file = SnapshotFile::in_dir(&config.state_dir);
    // A snapshot that does not decode is set aside, not fatal: the region sends a fresh one.
    let applied = snapshot_file.load().unwrap_or_else(|error| {
        tracing::error!(%error, "ignoring the persisted snapshot");
        None
    });
    match &applied {
        Some(snapshot) => tracing::info!(
            rack = %rack_id,
            generation = snapshot.generation.0,
            subnets = snapshot.subnets.len(),
            "serving from the persisted snapshot"
        ),
        None => {
            tracing::info!(rack = %rack_id, "no persisted snapshot yet; waiting for the region")
        }
    }

    let status = Arc::new(LiveStatus {
        rack_id: rack_id.clone(),
        applied: RwLock::new(None),
        link_connected: AtomicBool::new(false),
        metrics: Metrics::new(),
    });
    if let Some(snapshot) = &applied {
        status.set_applied(snapshot.clone());
    }

    let listener = tokio::net::TcpListener::bind(config.status_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.status_listen))?;
    tracing::info!(address = %listener.local_addr()?, "status endpoint listening");
    let app = status::router(status.clone());
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "status endpoint failed");
        }
    });

    let mut nonce = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut nonce);
    let session = Session::new(
        rack_id,
        env!("CARGO_PKG_VERSION").to_string(),
        crate::system::hostname(),
        applied,
        nonce,
    );
    let settings = mqtt::LinkSettings {
        broker,
        heartbeat: config.heartbeat_interval(),
    };
    tokio::select! {
        _ = mqtt::run(settings, session, snapshot_file, status) => {}
        _ = shutdown_signal() => tracing::info!("shutting down"),
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
