//! Starts every part of the region and runs until asked to stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;

use crate::api::tls::{TlsListener, Transport};
use crate::config::RegionConfig;
use crate::enrolment::Enroller;
use crate::link::{self, BrokerUrl, Keyring};
use crate::metrics::Metrics;
use crate::pki::Pki;
use crate::store::Store;

/// Runs the region until SIGINT or SIGTERM.
pub async fn run(mut config: RegionConfig) -> anyhow::Result<()> {
    if config.api.tls_generated && config.api.tls_cert.is_none() {
        // The region CA's server certificate: racks enrolling over HTTPS
        // verify it with `--region-ca-file data/region/pki/ca.crt`.
        std::fs::create_dir_all(&config.data_dir)?;
        let pki = crate::pki::ensure(&config.data_dir, &config.broker.tls_names)?;
        config.api.tls_cert = Some(pki.server_cert);
        config.api.tls_key = Some(pki.server_key);
    }
    // Decided first: a configuration that would expose the API in clear (or
    // name unusable certificate files) stops the region before anything starts.
    let api_transport = crate::api::tls::transport(&config.api, config.http_listen)?;
    let api_tls = match &api_transport {
        Transport::Https { cert, key } => Some(crate::api::tls::server_config(cert, key)?),
        Transport::Plaintext { .. } => None,
    };
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let store = Store::connect(&config.database_url())
        .await
        .context("cannot open the region database")?;
    tracing::info!(backend = ?store.backend(), "store ready");

    let master = crate::secrets::load_or_create(&config.data_dir)?;
    let pki = crate::pki::ensure(&config.data_dir, &config.broker.tls_names)?;
    let keyring = Keyring::load(&store, master, region_broker_password(&config.data_dir)?)
        .await
        .context("cannot load rack identities")?;
    let (broker, ca_pem) = start_or_find_broker(&config, &pki, &keyring)?;
    if let Some(files) = &config.broker.mosquitto {
        crate::link::mosquitto::write_files(files, &keyring)?;
    }
    let metrics = Arc::new(Metrics::new());
    let (notices_tx, notices) = tokio::sync::mpsc::unbounded_channel();
    let link = link::spawn(
        link::mqtt::LinkSettings {
            broker: broker.clone(),
            heartbeat_timeout: Duration::from_secs(config.heartbeat_timeout_secs),
            ca_pem: Some(ca_pem.clone()),
            mosquitto: config.broker.mosquitto.clone(),
            blobs: crate::boot::blobs::BlobStore::new(&config.data_dir),
            dns: config.dns.clone(),
            lifecycle: Some(notices_tx),
            gateway: config.gateway(),
        },
        store.clone(),
        metrics.clone(),
        keyring.clone(),
    );
    let enroller = Enroller {
        keyring,
        public_broker_url: config
            .broker
            .public_url
            .clone()
            .unwrap_or_else(|| broker.to_string()),
        ca_pem,
        mosquitto: config.broker.mosquitto.clone(),
    };

    let power =
        crate::power::PowerService::new(store.clone(), link.clone(), enroller.keyring.clone());
    let mut background = Vec::new();
    background.push(tokio::spawn(crate::store::syslog::run_retention(
        store.clone(),
        config.syslog_retention.limits(),
        Duration::from_secs(config.syslog_retention.prune_interval_secs.max(1)),
    )));
    background.push(tokio::spawn(crate::power::poller::run(
        power.clone(),
        Duration::from_secs(config.power_poll_interval_secs.max(1)),
    )));
    let lifecycle = crate::lifecycle::LifecycleService::new(
        store.clone(),
        power.clone(),
        enroller.keyring.master().clone(),
        crate::lifecycle::LifecycleSettings {
            commissioning_timeout: Duration::from_secs(config.commissioning.timeout_secs.max(1)),
            deployment_timeout: Duration::from_secs(config.deployment.timeout_secs.max(1)),
            release_timeout: Duration::from_secs(config.deployment.release_timeout_secs.max(1)),
            auto_commission: config.commissioning.auto_commission,
        },
    );
    background.push(tokio::spawn(crate::lifecycle::service::run(
        lifecycle.clone(),
        notices,
    )));
    let app = crate::api::router(crate::api::AppState {
        store: store.clone(),
        link: link.clone(),
        power,
        lifecycle,
        blobs: crate::boot::blobs::BlobStore::new(&config.data_dir),
        metrics,
        enroller,
        auth_failures: std::sync::Arc::new(std::sync::Mutex::new(
            crate::api::AuthFailureLimiter::new(
                config.api.auth_failure_limit,
                std::time::Duration::from_secs(config.api.auth_failure_window_secs),
                crate::api::ratelimit::DEFAULT_CAPACITY,
            ),
        )),
    });
    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http_listen))?;
    let address = listener.local_addr()?;
    // ConnectInfo gives the guard the client address it rate-limits and audits.
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    match api_tls {
        Some(tls) => {
            tracing::info!(%address, "API listening (HTTPS)");
            // tap_io carries axum's ConnectInfo<SocketAddr> support to any
            // listener whose address is a SocketAddr.
            let listener = TlsListener::new(listener, tls)?.tap_io(|_| {});
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await
                .context("HTTPS server failed")?;
        }
        None => {
            if api_transport == (Transport::Plaintext { exposed: true }) {
                tracing::warn!(
                    %address,
                    "INSECURE: the API serves plain HTTP on a non-loopback address \
                     (allow_plaintext); API keys cross the network in clear unless a \
                     TLS-terminating proxy is in front"
                );
            } else {
                tracing::info!(%address, "API listening (HTTP, loopback only)");
            }
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await
                .context("HTTP server failed")?;
        }
    }
    // A clean stop: nothing that uses the store outlives it.
    link.stop().await;
    for task in background {
        task.abort();
    }
    store.close().await;
    tracing::info!("region stopped");
    Ok(())
}

/// Returns the broker to use and the CA its certificate chains to; starts
/// the embedded broker when no external one is configured.
fn start_or_find_broker(
    config: &RegionConfig,
    pki: &Pki,
    keyring: &Keyring,
) -> anyhow::Result<(BrokerUrl, String)> {
    if let Some(url) = &config.broker.url {
        let url: BrokerUrl = url.parse().context("invalid broker URL")?;
        if !url.tls {
            tracing::warn!(%url, "INSECURE: the broker link is plaintext; use mqtts:// in production");
        }
        let ca_pem = match &config.broker.ca_file {
            Some(file) => std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?,
            None => pki.ca_pem()?,
        };
        return Ok((url, ca_pem));
    }
    #[cfg(feature = "embedded-broker")]
    {
        let listen = config.broker.embedded_listen;
        let tls = !config.broker.insecure_plaintext;
        if !tls {
            tracing::warn!(%listen, "INSECURE: the embedded broker runs without TLS (insecure_plaintext)");
        }
        crate::broker::start(listen, tls.then_some(pki), keyring.clone())?;
        // Connect by a name the certificate holds.
        let host = if listen.ip().is_unspecified() || listen.ip().is_loopback() {
            "127.0.0.1".to_string()
        } else {
            listen.ip().to_string()
        };
        Ok((
            BrokerUrl {
                host,
                port: listen.port(),
                tls,
            },
            pki.ca_pem()?,
        ))
    }
    #[cfg(not(feature = "embedded-broker"))]
    {
        let _ = (pki, keyring);
        anyhow::bail!("no broker URL configured and this build has no embedded broker")
    }
}

/// The region's own broker password, made on first start (mode 0600).
fn region_broker_password(data_dir: &std::path::Path) -> anyhow::Result<String> {
    use rand::RngCore;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("broker-region.secret");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok(text.trim().to_string());
    }
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    let password = hex::encode(bytes);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(password.as_bytes())?;
    Ok(password)
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
