//! The metadata service on the rack's HTTP port: a machine running the
//! ephemeral image reads its own metadata (who it is, its token, where to
//! post) and posts its commissioning results.
//!
//! Who is asking is decided by the source address: only the machine that
//! holds the address in this rack's DHCP leases reads that machine's
//! metadata. Posting needs the token from that metadata. Metadata the rack
//! already has is served without the region (the link may be down);
//! results are queued durably before the machine hears 202, and the link
//! delivers them whenever it can.

mod deploy;
pub mod results;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use edgemetal_protocol::gateway::subnet_service_name;
use edgemetal_protocol::{
    BootStage, CommissioningResults, ConfigSnapshot, MacAddress, MachineMetadata, RackEventKind,
};
use tokio::sync::watch;

use crate::boot::decisions::Decisions;
use crate::boot::http::rack_url;
use crate::boot::progress;
use crate::dhcp::LeaseDirectory;
use crate::state::SharedQueue;

/// What the metadata service needs.
#[derive(Clone)]
pub struct MetadataService {
    /// Machines' metadata, from the region's boot answers.
    pub decisions: Arc<Decisions>,
    /// Who holds which address.
    pub directory: LeaseDirectory,
    /// Where results and boot progress are queued for the region.
    pub events: Arc<SharedQueue>,
    /// The subnets and their gateway services.
    pub snapshots: watch::Receiver<Option<ConfigSnapshot>>,
    /// The ports this rack runs its gateway services on, if it runs them.
    pub gateway: GatewayPorts,
}

/// Where this rack runs the services machines are pointed at.
#[derive(Debug, Clone, Copy, Default)]
pub struct GatewayPorts {
    /// Syslog relay (UDP and TCP).
    pub syslog: Option<u16>,
    /// Caching proxy.
    pub proxy: Option<u16>,
    /// NTP server.
    pub ntp: Option<u16>,
    /// DNS server.
    pub dns: Option<u16>,
}

/// The routes under `/metadata/v1/`.
pub fn router(service: MetadataService) -> Router {
    Router::new()
        .route("/metadata/v1/meta-data", get(meta_data_text))
        .route("/metadata/v1/meta-data.json", get(meta_data_json))
        .route(
            "/metadata/v1/results",
            post(post_results).layer(DefaultBodyLimit::max(results::MAX_UPLOAD_BYTES)),
        )
        .route("/metadata/v1/deploy", get(deploy::plan_text))
        .route(
            "/metadata/v1/progress",
            post(deploy::post_progress).layer(DefaultBodyLimit::max(4096)),
        )
        .route("/metadata/v1/nocloud/{token}/{document}", get(deploy::seed))
        .route(
            "/metadata/v1/nocloud/{token}/phone-home",
            post(deploy::phone_home).layer(DefaultBodyLimit::max(16 * 1024)),
        )
        .with_state(service)
}

/// A refused request: its status and a line for the caller.
pub(super) struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, format!("{}\n", self.1)).into_response()
    }
}

pub(super) fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal(status, message.into())
}

/// The machine behind `peer`, by its lease on this rack.
pub(super) fn caller(service: &MetadataService, peer: SocketAddr) -> Result<MacAddress, Refusal> {
    let IpAddr::V4(address) = peer.ip().to_canonical() else {
        return Err(refuse(StatusCode::FORBIDDEN, "IPv6 callers are not served"));
    };
    service.directory.holder(address).ok_or_else(|| {
        tracing::warn!(%address, "metadata asked from an address this rack did not lease");
        refuse(
            StatusCode::FORBIDDEN,
            format!("{address} holds no lease from this rack"),
        )
    })
}

/// The caller (by its lease), its metadata and this rack's base URL.
pub(super) async fn lookup(
    service: &MetadataService,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<(MacAddress, MachineMetadata, String), Refusal> {
    let mac = caller(service, peer)?;
    let Some(base) = rack_url(headers) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "missing or odd Host header",
        ));
    };
    let Some(metadata) = service.decisions.metadata(mac) else {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            format!("no metadata for {mac}: the region has not issued any (is the machine known?)"),
        ));
    };
    progress::report(&service.events, mac, BootStage::MetadataServed);
    tracing::info!(%mac, machine = %metadata.machine_id, purpose = %metadata.purpose, "metadata served");
    Ok((mac, metadata, base))
}

/// What the machine reads: who it is, where to post, and where its
/// services are. Syslog and the proxy go by the subnet's internal name
/// (every rack on the subnet answers it), NTP and DNS by this rack's address.
fn fields(
    service: &MetadataService,
    mac: MacAddress,
    metadata: &MachineMetadata,
    base: &str,
    peer: SocketAddr,
) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("machine_id", metadata.machine_id.clone()),
        ("hostname", metadata.hostname.clone()),
        ("purpose", metadata.purpose.clone()),
        ("token", metadata.token.clone()),
        ("results_url", format!("{base}/metadata/v1/results")),
        ("rack_url", base.to_string()),
    ];
    let rack_host = host_of(base);
    let subnet = match peer.ip().to_canonical() {
        IpAddr::V4(address) => service.snapshots.borrow().as_ref().and_then(|snapshot| {
            snapshot
                .subnets
                .iter()
                .find(|subnet| subnet.cidr.contains(address))
                .map(|subnet| (subnet_service_name(&subnet.name), subnet.services))
        }),
        IpAddr::V6(_) => None,
    };
    if let Some((name, services)) = subnet {
        let ports = service.gateway;
        if let (true, Some(port)) = (services.syslog, ports.syslog) {
            fields.push(("syslog", format!("{name}:{port}")));
        }
        if let (true, Some(port)) = (services.proxy, ports.proxy) {
            fields.push(("proxy", format!("http://{name}:{port}/")));
        }
        if let (true, Some(_)) = (services.ntp, ports.ntp) {
            fields.push(("ntp", rack_host.clone()));
        }
    }
    if service.gateway.dns.is_some() {
        fields.push(("dns", rack_host));
    }
    fields.extend(deploy::run_fields(service, mac, base));
    fields
}

/// The host of a base URL `http://HOST:PORT`.
pub(super) fn host_of(base: &str) -> String {
    base.trim_start_matches("http://")
        .rsplit_once(':')
        .map_or(base, |(host, _)| host)
        .to_string()
}

/// `key=value` lines: easy for a busybox shell to read.
async fn meta_data_text(
    State(service): State<MetadataService>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    match lookup(&service, peer, &headers).await {
        Ok((mac, metadata, base)) => {
            let text: String = fields(&service, mac, &metadata, &base, peer)
                .iter()
                .map(|(key, value)| format!("{key}={value}\n"))
                .collect();
            ([(header::CONTENT_TYPE, "text/plain")], text).into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// The same as JSON.
async fn meta_data_json(
    State(service): State<MetadataService>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    match lookup(&service, peer, &headers).await {
        Ok((mac, metadata, base)) => {
            let object: serde_json::Map<String, serde_json::Value> =
                fields(&service, mac, &metadata, &base, peer)
                    .into_iter()
                    .map(|(key, value)| (key.to_string(), value.into()))
                    .collect();
            Json(object).into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}

pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Takes a machine's results: checks its token, decodes the archive, and
/// answers 202 only once the results are queued durably.
async fn post_results(
    State(service): State<MetadataService>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((mac, metadata)) = bearer(&headers).and_then(|t| service.decisions.by_token(t)) else {
        tracing::warn!(%peer, "commissioning results without a valid token refused");
        return refuse(
            StatusCode::UNAUTHORIZED,
            "missing or unknown token: send 'Authorization: Bearer <token from meta-data>'",
        )
        .into_response();
    };
    // The token is the proof; a lease that says the address is someone
    // else's means the token was lifted from another machine.
    if let IpAddr::V4(address) = peer.ip().to_canonical() {
        if service
            .directory
            .holder(address)
            .is_some_and(|holder| holder != mac)
        {
            tracing::warn!(%peer, %mac, "results posted with another machine's token refused");
            return refuse(
                StatusCode::FORBIDDEN,
                "this token belongs to another machine",
            )
            .into_response();
        }
    }
    let outputs = match results::decode(&body) {
        Ok(outputs) => outputs,
        Err(error) => {
            tracing::warn!(%mac, %error, "commissioning results refused");
            let status = match error {
                results::ResultsError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            return refuse(status, error.to_string()).into_response();
        }
    };
    let count = outputs.len();
    let event = RackEventKind::CommissioningResults(CommissioningResults {
        mac,
        machine_id: metadata.machine_id.clone(),
        token: metadata.token.clone(),
        purpose: metadata.purpose.clone(),
        outputs,
    });
    let (bytes, machine, purpose) = (body.len(), metadata.machine_id, metadata.purpose);
    let queued = queue(&service, event).await;
    if queued {
        tracing::info!(%mac, %machine, %purpose, outputs = count, bytes, "results queued for the region");
        if (purpose == "deploy" || purpose == "release")
            && service.decisions.finish(mac, &metadata.token)
        {
            // The installer reboots next: from now on, its disk.
            tracing::info!(%mac, %machine, %purpose, "run finished here; the machine boots from disk");
        }
    }
    if queued {
        (StatusCode::ACCEPTED, "queued\n").into_response()
    } else {
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the rack cannot store results now; retry",
        )
        .into_response()
    }
}

/// Queues `event` durably for the region; false if it could not be stored.
/// In its own task: if the client goes away mid-request the handler is
/// dropped, but an event already on its way to disk is still stored.
pub(super) async fn queue(service: &MetadataService, event: RackEventKind) -> bool {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let events = service.events.clone();
    let queued = tokio::spawn(async move {
        tokio::task::spawn_blocking(move || events.push(now_ms, vec![event])).await
    })
    .await;
    match queued {
        Ok(Ok(Ok(()))) => true,
        Ok(Ok(Err(error))) => {
            tracing::error!(%error, "cannot queue an event for the region");
            false
        }
        _ => {
            tracing::error!("the event queueing task failed");
            false
        }
    }
}
