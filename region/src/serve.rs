//! Starts every part of the region and runs until asked to stop.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::RegionConfig;
use crate::link::{self, BrokerUrl};
use crate::metrics::Metrics;
use crate::store::Store;

/// Runs the region until SIGINT or SIGTERM.
pub async fn run(config: RegionConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let store = Store::connect(&config.database_url())
        .await
        .context("cannot open the region database")?;
    tracing::info!(backend = ?store.backend(), "store ready");

    let broker = broker_url(&config).await?;
    let metrics = Arc::new(Metrics::new());
    let link = link::spawn(
        link::mqtt::LinkSettings {
            broker,
            heartbeat_timeout: Duration::from_secs(config.heartbeat_timeout_secs),
        },
        store.clone(),
        metrics.clone(),
    );

    let app = crate::api::router(crate::api::AppState {
        store: store.clone(),
        link,
        metrics,
    });
    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http_listen))?;
    tracing::info!(address = %listener.local_addr()?, "API listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("HTTP server failed")?;
    store.close().await;
    Ok(())
}

async fn broker_url(config: &RegionConfig) -> anyhow::Result<BrokerUrl> {
    if let Some(url) = &config.broker.url {
        return url.parse().context("invalid broker URL");
    }
    #[cfg(feature = "embedded-broker")]
    {
        let listen = config.broker.embedded_listen;
        crate::broker::start(listen)?;
        let host = if listen.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            listen.ip().to_string()
        };
        Ok(BrokerUrl {
            host,
            port: listen.port(),
        })
    }
    #[cfg(not(feature = "embedded-broker"))]
    anyhow::bail!("no broker URL configured and this build has no embedded broker")
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
    tracing::info!("shutting down");
}
