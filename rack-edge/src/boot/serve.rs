//! Starts the rack's boot servers (HTTP with the metadata service, and
//! TFTP) over the shared cache and decisions.

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::Context;
use edgemetal_protocol::{BootQuery, HealthState, Ipv4Cidr, ServiceKind};
use tokio::sync::mpsc;

use super::tftp_files::TftpFiles;
use super::{http, BootCache, Decisions};
use crate::config::RackConfig;
use crate::dhcp::LeaseDirectory;
use crate::hub::Hub;
use crate::services::Services;
use crate::state::SharedQueue;

/// What the link needs from the boot side.
pub struct BootParts {
    /// The resource cache the link fills.
    pub cache: BootCache,
    /// The decisions the link answers.
    pub decisions: Arc<Decisions>,
    /// Queries the link forwards to the region.
    pub queries: mpsc::UnboundedReceiver<BootQuery>,
}

/// Opens the cache and decisions; binds the HTTP and TFTP servers that the
/// configuration enables and starts them into `services`.
pub async fn start(
    config: &RackConfig,
    hub: &Arc<Hub>,
    services: &mut Services,
    events: Arc<SharedQueue>,
    directory: LeaseDirectory,
) -> anyhow::Result<BootParts> {
    let cache = BootCache::open(&config.state_dir)
        .context("cannot open the boot cache")?
        .with_blob_rate_limit(config.blob_rate_limit);
    let (queries_tx, queries) = mpsc::unbounded_channel();
    let decisions = Decisions::open(
        &config.state_dir,
        queries_tx,
        hub.snapshots.subscribe(),
        hub.metrics.boot.clone(),
    );
    let decisions = Arc::new(if config.protocol_version < 2 {
        decisions.asking_the_region_first(hub.link_up())
    } else {
        decisions
    });
    if let Some(address) = config.http_boot_address() {
        let listener = crate::services::http_listener(address)
            .await
            .with_context(|| format!("cannot listen for HTTP boot on {address}"))?;
        tracing::info!(%address, "HTTP boot server listening");
        let app = http::router(http::BootHttp {
            cache: cache.clone(),
            decisions: decisions.clone(),
            ipxe_dir: config.ipxe_dir.clone(),
            progress: Some((events.clone(), directory.clone())),
            table: super::table::BootTable::new(hub.snapshots.subscribe()),
            small: Default::default(),
        })
        .merge(crate::metadata::router(crate::metadata::MetadataService {
            decisions: decisions.clone(),
            directory,
            events,
            snapshots: hub.snapshots.subscribe(),
            gateway: crate::metadata::GatewayPorts {
                syslog: config.syslog_address().map(|a| a.port()),
                proxy: config.proxy_address().map(|a| a.port()),
                ntp: config.ntp_address().map(|a| a.port()),
                dns: config.dns_address().map(|a| a.port()),
            },
        }));
        // The metadata service and the boot reports need the caller's address.
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        services.spawn("HTTP boot server", Some(ServiceKind::Http), async move {
            Ok(axum::serve(listener, app).await?)
        });
        hub.set_health(ServiceKind::Http, HealthState::Healthy, "");
    }
    if let Some(address) = config.tftp_address() {
        let binaries = match crate::tftp::DirSource::new(&config.ipxe_dir) {
            Ok(source) => source,
            Err(error) => {
                tracing::warn!(dir = %config.ipxe_dir.display(), %error, "no iPXE binaries to serve");
                crate::tftp::DirSource::new(&config.state_dir)?
            }
        };
        let files = TftpFiles {
            cache: cache.clone(),
            decisions: decisions.clone(),
            binaries,
            table: super::table::BootTable::new(hub.snapshots.subscribe()),
            addresses: ipv4_networks(),
            http_port: config
                .http_boot_address()
                .map_or(config.http_boot_port, |a| a.port()),
        };
        let server = crate::tftp::TftpServer::bind(address, Arc::new(files), Default::default())
            .await
            .with_context(|| format!("cannot listen for TFTP on {address}"))?
            .with_counters(hub.metrics.tftp.clone());
        tracing::info!(%address, "TFTP server listening");
        services.spawn("TFTP server", Some(ServiceKind::Tftp), async move {
            Ok(server.run().await?)
        });
        hub.set_health(ServiceKind::Tftp, HealthState::Healthy, "");
    }
    Ok(BootParts {
        cache,
        decisions,
        queries,
    })
}

/// The rack's IPv4 addresses with their networks.
fn ipv4_networks() -> Vec<(Ipv4Cidr, std::net::Ipv4Addr)> {
    crate::system::interfaces()
        .into_iter()
        .flat_map(|interface| interface.addresses)
        .filter_map(|address| match address.address {
            IpAddr::V4(v4) if !v4.is_loopback() => {
                Some((Ipv4Cidr::containing(v4, address.prefix_len).ok()?, v4))
            }
            _ => None,
        })
        .collect()
}
