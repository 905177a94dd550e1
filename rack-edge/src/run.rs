//! Starts the rack: identity, persisted snapshot, then every service and
//! the link into one task set ([`Services`]) until a signal or the link ends.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use rand::RngCore;

use edgemetal_protocol::{HealthState, ServiceKind};

use crate::config::RackConfig;
use crate::hub::Hub;
use crate::link::session::LinkKeys;
use crate::link::{mqtt, Session};
use crate::metrics::Metrics;
use crate::services::Services;
use crate::state::{identity, CountersFile, SnapshotFile};
use crate::status;

/// Runs the rack until SIGINT or SIGTERM.
pub async fn run(config: RackConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create state dir {}", config.state_dir.display()))?;
    let bundle = match identity::load(&config.state_dir)? {
        Some(bundle) => bundle,
        None => {
            let (Some(region_url), Some(token)) = (&config.region_url, &config.enrolment_token)
            else {
                anyhow::bail!(
                    "this rack is not enrolled: run `edgemetal-rack enrol --region-url URL --token TOKEN`, \
                     or start with --region-url and --enrolment-token"
                );
            };
            let bundle =
                crate::enrol::enrol(region_url, token, config.region_ca_file.as_deref()).await?;
            identity::store(&config.state_dir, &bundle)?;
            tracing::info!(rack = %bundle.rack_id, "enrolled with the region");
            bundle
        }
    };
    let (rack_id, secret) = identity::link_material(&bundle)?;
    let broker: edgemetal_protocol::BrokerUrl = config
        .broker_url
        .as_deref()
        .unwrap_or(&bundle.broker_url)
        .parse()
        .context("invalid broker URL")?;
    if !broker.tls {
        anyhow::ensure!(
            config.insecure_plaintext,
            "refusing the plaintext broker {broker}: use mqtts://, or pass --insecure-plaintext"
        );
        tracing::warn!(%broker, "INSECURE: the broker link is plaintext (--insecure-plaintext)");
    }
    let counters_file = CountersFile::in_dir(&config.state_dir);
    let counters = counters_file.load()?;

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

    let hub = Arc::new(Hub {
        rack_id: rack_id.clone(),
        applied: RwLock::new(None),
        link_connected: std::sync::Arc::new(AtomicBool::new(false)),
        metrics: Metrics::new(),
        snapshots: tokio::sync::watch::channel(None).0,
        services: RwLock::new(Vec::new()),
        boot_resources: RwLock::new(Vec::new()),
    });
    if let Some(snapshot) = &applied {
        hub.set_applied(snapshot.clone());
    }

    // Every service starts the same way: bind (fatal unless said otherwise),
    // then its serving future goes into `services` (see crate::services).
    let mut services = Services::new(hub.clone());
    let listener = crate::services::http_listener(config.status_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.status_listen))?;
    tracing::info!(address = %axum::serve::Listener::local_addr(&listener)?, "status endpoint listening");
    let app = status::router(hub.clone());
    services.spawn("status endpoint", None, async move {
        Ok(axum::serve(listener, app).await?)
    });

    let events = crate::state::SharedQueue::new(
        crate::state::EventQueue::open(&config.state_dir).context("cannot open the event queue")?,
    );
    let directory = crate::dhcp::LeaseDirectory::default();
    if !config.dhcp_interfaces.is_empty() {
        let ndp_counters = hub.metrics.ndp.clone();
        let ndp_policy = crate::ndp::LinkPolicy::following(hub.snapshots.subscribe());
        let (interfaces, port, dir, hub, events, directory) = (
            config.dhcp_interfaces.clone(),
            config.http_boot_port,
            config.state_dir.clone(),
            hub.clone(),
            events.clone(),
            directory.clone(),
        );
        services.spawn("DHCP server", Some(ServiceKind::Dhcp), async move {
            crate::dhcp::server::run(interfaces, port, &dir, hub, events, directory).await
        });
        // Router advertisements that let network-booting firmware (iPXE)
        // finish IPv6 autoconfiguration at once instead of waiting ≈ 13 s.
        services.spawn(
            "IPv6 router advertisements",
            None,
            crate::ndp::serve(config.dhcp_interfaces.clone(), ndp_counters, ndp_policy),
        );
    }
    let boot = crate::boot::serve::start(
        &config,
        &hub,
        &mut services,
        events.clone(),
        directory.clone(),
    )
    .await?;
    if let Some(address) = config.dns_address() {
        let server = crate::dns::DnsServer::bind_with(
            address,
            address,
            hub.snapshots.subscribe(),
            config.state_dir.join(crate::dns::CACHE_FILE),
            crate::dns::ServerConfig::default(),
            hub.metrics.dns.clone(),
        )
        .await
        .with_context(|| format!("cannot listen for DNS on {address}"))?;
        tracing::info!(%address, "DNS server listening");
        hub.set_health(ServiceKind::Dns, HealthState::Healthy, "");
        services.spawn("DNS server", Some(ServiceKind::Dns), async move {
            Ok(server.run().await?)
        });
    }

    // Gateway services (the machines' way out), each configured from the
    // snapshot (`gateway` and the subnets' `services`).
    // gateway: syslog relay
    let syslog_queue =
        crate::syslog::server::open_queue(&config.state_dir, hub.snapshots.borrow().as_ref())?;
    if let Some(address) = config.syslog_address() {
        let relay = crate::syslog::bind(
            address,
            hub.snapshots.subscribe(),
            directory.clone(),
            syslog_queue.clone(),
            hub.metrics.syslog.clone(),
        )
        .await?;
        tracing::info!(%address, "syslog relay listening (UDP and TCP)");
        hub.set_health(ServiceKind::Syslog, HealthState::Healthy, "");
        services.spawn("syslog relay", Some(ServiceKind::Syslog), relay.run());
    }
    // gateway: caching proxy
    if let Some(address) = config.proxy_address() {
        let bound = crate::proxy::Proxy::bind(
            address,
            &config.state_dir.join(crate::proxy::CACHE_DIR),
            hub.snapshots.subscribe(),
            hub.metrics.proxy.clone(),
        )
        .await;
        match bound {
            Ok(server) => {
                // Not fatal when it cannot start: DHCP and boot matter more.
                let cache = server.proxy().describe();
                tracing::info!(%address, %cache, "caching proxy listening");
                hub.set_health(ServiceKind::Proxy, HealthState::Healthy, "");
                services.spawn("caching proxy", Some(ServiceKind::Proxy), async move {
                    Ok(server.run().await?)
                });
            }
            Err(error) => {
                tracing::error!(%error, "caching proxy not started");
                hub.set_health(ServiceKind::Proxy, HealthState::Down, error.to_string());
            }
        }
    }
    // gateway: NTP server
    if let Some(address) = config.ntp_address() {
        // Not fatal: a host that already runs an NTP daemon on port 123
        // still gets DHCP, boot and DNS from the rack; the status says why
        // NTP is down.
        match crate::ntp::NtpServer::bind(address, hub.clone()).await {
            Ok(server) => {
                tracing::info!(%address, "NTP server listening");
                services.spawn("NTP server", Some(ServiceKind::Ntp), async move {
                    Ok(server.run().await?)
                });
            }
            Err(error) => {
                let detail = format!("cannot listen for NTP on {address}: {error}");
                tracing::error!(%detail, "NTP server not started");
                hub.set_health(ServiceKind::Ntp, HealthState::Down, detail);
            }
        }
    }

    let mut nonce = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut nonce);
    let previous = identity::previous_secret(&bundle)?
        .map(|(key_epoch, secret)| LinkKeys { secret, key_epoch });
    let session = Session::new(
        rack_id,
        env!("CARGO_PKG_VERSION").to_string(),
        crate::system::hostname(),
        applied,
        LinkKeys {
            secret,
            key_epoch: bundle.key_epoch,
        },
        counters,
        nonce,
    )
    .with_previous_keys(previous)
    .with_protocol_version(config.protocol_version)
    .with_services((!config.dhcp_interfaces.is_empty()).then_some(ServiceKind::Dhcp))
    .with_services([ServiceKind::Power])
    .with_services(config.http_boot_address().map(|_| ServiceKind::Http))
    .with_services(config.tftp_address().map(|_| ServiceKind::Tftp))
    .with_services(config.dns_address().map(|_| ServiceKind::Dns))
    .with_services(config.syslog_address().map(|_| ServiceKind::Syslog))
    .with_services(config.proxy_address().map(|_| ServiceKind::Proxy))
    .with_services(config.ntp_address().map(|_| ServiceKind::Ntp))
    .with_bmc_networks(config.bmc_networks.clone());
    let settings = mqtt::LinkSettings {
        broker,
        heartbeat: config.heartbeat_interval(),
        username: bundle.broker_username.clone(),
        password: bundle.broker_password.clone(),
        ca_pem: bundle.ca_pem.clone(),
        power: crate::power::PowerExecutor::new(crate::power::PowerExecutorOptions {
            // Below the region's 30 s wait, so a dead BMC is reported as such.
            request_timeout: Duration::from_secs(25),
            ..Default::default()
        }),
        boot_cache: boot.cache,
        decisions: boot.decisions,
        boot_queries: boot.queries,
    };
    let files = mqtt::StateFiles {
        snapshot: snapshot_file,
        counters: counters_file,
        state_dir: config.state_dir.clone(),
        identity: bundle,
        events: events.clone(),
        logs: syslog_queue,
    };
    // The link is the one task the rack cannot run without.
    services.spawn_essential("the region link", async move {
        mqtt::run(settings, session, files, hub).await;
        Ok(())
    });
    services.run(shutdown_signal()).await
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
