//! The routes of a deploy or release run (protocol v3), all answered from
//! the plan the rack holds, none waiting on the region:
//!
//! - `GET /metadata/v1/deploy`: the installer's plan, `key=value` lines
//!   (image URL and hash, layout, disk, network, where the seed is);
//! - `POST /metadata/v1/progress`: a step of the installer or eraser
//!   (`step=… state=… detail=…`), queued durably for the region;
//! - `GET /metadata/v1/nocloud/{token}/{meta-data,user-data,vendor-data}`:
//!   the installed system's cloud-init NoCloud seed;
//! - `POST /metadata/v1/nocloud/{token}/phone-home`: its first boot
//!   calling home (cloud-init's `phone_home`), queued durably.
//!
//! The seed's token is the run's own (per deployment); it is in the URL
//! because cloud-init's NoCloud seed is a URL, and it is never logged.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use edgemetal_protocol::{
    BootDecision, CommissionPlan, DeployPlan, EphemeralBoot, InstallProgress, MacAddress,
    MachineMetadata, PhoneHome, Plan, RackEventKind,
};

use crate::boot::render::RESOURCE_PATH;

use super::{bearer, host_of, lookup, queue, refuse, MetadataService, Refusal};

/// The fields of meta-data a run adds: where its plan and progress go.
pub(super) fn run_fields(
    service: &MetadataService,
    mac: MacAddress,
    base: &str,
) -> Vec<(&'static str, String)> {
    let Some(held) = service.decisions.plan(mac) else {
        return Vec::new();
    };
    if let Plan::Commission(commission) = &held.plan {
        return commission_fields(service, mac, base, commission);
    }
    let mut fields = vec![("progress_url", format!("{base}/metadata/v1/progress"))];
    match held.plan {
        Plan::Commission(_) => {}
        Plan::Deploy(_) => fields.push(("deploy_url", format!("{base}/metadata/v1/deploy"))),
        Plan::Release(release) => {
            fields.push(("erase", release.erase.as_str().to_string()));
            fields.push((
                "secure_fallback",
                release.secure_fallback.as_str().to_string(),
            ));
        }
    }
    fields
}

/// A commissioning run's fields (protocol v4): the hardware tests, how
/// long to listen for LLDP, and where the tools image that has them is (the
/// ephemeral image's squashfs, cached here like its kernel and initrd).
fn commission_fields(
    service: &MetadataService,
    mac: MacAddress,
    base: &str,
    plan: &CommissionPlan,
) -> Vec<(&'static str, String)> {
    let tests: Vec<&str> = plan.tests.iter().map(|t| t.as_str()).collect();
    let mut fields = vec![
        ("tests", tests.join(",")),
        ("lldp_secs", plan.lldp_secs.to_string()),
    ];
    if let Some(BootDecision::Ephemeral(EphemeralBoot {
        squashfs: Some(tools),
        ..
    })) = service.decisions.held(mac)
    {
        fields.push((
            "tools_url",
            format!("{base}{RESOURCE_PATH}{}", hex::encode(tools)),
        ));
    }
    fields
}

/// The caller's deploy plan, by its lease and (when sent) its token.
fn deploy_plan_of(
    service: &MetadataService,
    mac: MacAddress,
    metadata: &MachineMetadata,
    headers: &HeaderMap,
) -> Result<DeployPlan, Refusal> {
    if bearer(headers).is_some_and(|token| token != metadata.token) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "the token is not this machine's",
        ));
    }
    match service.decisions.plan(mac).map(|held| held.plan) {
        Some(Plan::Deploy(plan)) => Ok(plan),
        _ => Err(refuse(
            StatusCode::NOT_FOUND,
            format!(
                "no deploy plan for {mac}: the region has not sent one (is the machine deploying?)"
            ),
        )),
    }
}

/// `GET /metadata/v1/deploy`.
pub(super) async fn plan_text(
    State(service): State<MetadataService>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let (mac, metadata, base) = match lookup(&service, peer, &headers).await {
        Ok(found) => found,
        Err(refusal) => return refusal.into_response(),
    };
    let plan = match deploy_plan_of(&service, mac, &metadata, &headers) {
        Ok(plan) => plan,
        Err(refusal) => return refusal.into_response(),
    };
    let network = network_of(&service, &plan);
    let rack_host = host_of(&base);
    let fields = [
        (
            "image_url",
            format!("{base}/boot/resources/{}", hex::encode(plan.image)),
        ),
        ("image_sha256", hex::encode(plan.image)),
        ("image_bytes", plan.image_bytes.to_string()),
        ("uncompressed_bytes", plan.uncompressed_bytes.to_string()),
        ("format", plan.format.clone()),
        ("layout", plan.layout.as_str().to_string()),
        ("disk_serial", plan.disk_serial.clone()),
        ("mac", mac.to_string()),
        ("address", network.address),
        ("gateway", network.gateway),
        ("dns", rack_host),
        ("search", network.search),
        ("hostname", plan.hostname.clone()),
        (
            "seed_url",
            format!("{base}/metadata/v1/nocloud/{}/", metadata.token),
        ),
    ];
    tracing::info!(%mac, deployment = %plan.deployment_id, "deploy plan served");
    let text: String = fields
        .iter()
        .map(|(key, value)| format!("{key}={}\n", value.replace('\n', " ")))
        .collect();
    ([(header::CONTENT_TYPE, "text/plain")], text).into_response()
}

/// The installed system's static network, from the subnet holding its address.
struct Network {
    address: String,
    gateway: String,
    search: String,
}

fn network_of(service: &MetadataService, plan: &DeployPlan) -> Network {
    let mut network = Network {
        address: String::new(),
        gateway: String::new(),
        search: String::new(),
    };
    let Some(address) = plan.address else {
        return network;
    };
    let snapshot = service.snapshots.borrow();
    let subnet = snapshot.as_ref().and_then(|s| {
        s.subnets
            .iter()
            .find(|subnet| subnet.cidr.contains(address))
    });
    if let Some(subnet) = subnet {
        network.address = format!("{address}/{}", subnet.cidr.prefix_len());
        network.gateway = subnet.gateway.map(|g| g.to_string()).unwrap_or_default();
        network.search = subnet.domain.clone().unwrap_or_default();
    }
    network
}

/// `POST /metadata/v1/progress`: one `step=… state=… detail=…` line.
pub(super) async fn post_progress(
    State(service): State<MetadataService>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((mac, metadata)) = bearer(&headers).and_then(|t| service.decisions.by_token(t)) else {
        return refuse(StatusCode::UNAUTHORIZED, "missing or unknown token").into_response();
    };
    if let Err(refusal) = same_machine(&service, peer, mac) {
        return refusal.into_response();
    }
    let line = String::from_utf8_lossy(&body);
    let Some(report) = parse_progress(line.lines().next().unwrap_or("")) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "expected one line: step=<step> state=<start|progress|done|failed> detail=<text>",
        )
        .into_response();
    };
    tracing::info!(%mac, step = %report.0, state = %report.1, detail = %report.2, "run progress");
    let event = RackEventKind::InstallProgress(InstallProgress {
        mac,
        machine_id: metadata.machine_id,
        token: metadata.token,
        step: report.0,
        state: report.1,
        detail: report.2,
    });
    match queue(&service, event).await {
        true => StatusCode::NO_CONTENT.into_response(),
        false => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "cannot queue it now; retry",
        )
        .into_response(),
    }
}

/// `step=X state=Y detail=free text`: the three, or `None`.
fn parse_progress(line: &str) -> Option<(String, String, String)> {
    let rest = line.trim().strip_prefix("step=")?;
    let (step, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let rest = rest.trim_start().strip_prefix("state=")?;
    let (state, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let detail = rest
        .trim_start()
        .strip_prefix("detail=")
        .unwrap_or("")
        .trim();
    let word = |w: &str| {
        !w.is_empty() && w.len() <= 32 && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
    };
    let known_state = matches!(state, "start" | "progress" | "done" | "failed");
    (word(step) && known_state).then(|| {
        let detail: String = detail.chars().take(512).collect();
        (step.to_string(), state.to_string(), detail)
    })
}

/// A token-authenticated call must not come from another machine's lease
/// (a static address without a lease is fine: the installed system's).
fn same_machine(
    service: &MetadataService,
    peer: SocketAddr,
    mac: MacAddress,
) -> Result<(), Refusal> {
    if let IpAddr::V4(address) = peer.ip().to_canonical() {
        if service
            .directory
            .holder(address)
            .is_some_and(|holder| holder != mac)
        {
            tracing::warn!(%peer, %mac, "a run's token used from another machine's address");
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "this token belongs to another machine",
            ));
        }
    }
    Ok(())
}

/// The run behind a seed token: its machine, metadata and deploy plan.
fn seed_run(
    service: &MetadataService,
    peer: SocketAddr,
    token: &str,
) -> Result<(MacAddress, MachineMetadata, DeployPlan), Refusal> {
    let Some((mac, metadata)) = service.decisions.by_token(token) else {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            "no deployment with this seed",
        ));
    };
    same_machine(service, peer, mac)?;
    match service.decisions.plan(mac).map(|held| held.plan) {
        Some(Plan::Deploy(plan)) => Ok((mac, metadata, plan)),
        _ => Err(refuse(
            StatusCode::NOT_FOUND,
            "no deployment with this seed",
        )),
    }
}

/// A YAML string (JSON's quoting is valid YAML).
fn yaml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// `GET /metadata/v1/nocloud/{token}/{document}`.
pub(super) async fn seed(
    State(service): State<MetadataService>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((token, document)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (mac, _, plan) = match seed_run(&service, peer, &token) {
        Ok(run) => run,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(base) = crate::boot::http::rack_url(&headers) else {
        return refuse(StatusCode::BAD_REQUEST, "missing or odd Host header").into_response();
    };
    let body = match document.as_str() {
        "meta-data" => {
            let keys: Vec<String> = plan.ssh_keys.iter().map(|k| yaml_string(k)).collect();
            format!(
                "instance-id: {}\nlocal-hostname: {}\npublic-keys: [{}]\n",
                yaml_string(&plan.deployment_id),
                yaml_string(&plan.hostname),
                keys.join(", ")
            )
        }
        "user-data" if plan.user_data.is_empty() => "#cloud-config\n{}\n".to_string(),
        "user-data" => plan.user_data.clone(),
        "vendor-data" => format!(
            "#cloud-config\nphone_home:\n  url: {}\n  post: [instance_id, hostname, pub_key_ed25519]\n  tries: 30\n",
            yaml_string(&format!("{base}/metadata/v1/nocloud/{token}/phone-home"))
        ),
        "network-config" => {
            return refuse(StatusCode::NOT_FOUND, "the network is configured by the installer")
                .into_response()
        }
        _ => return refuse(StatusCode::NOT_FOUND, "no such seed document").into_response(),
    };
    tracing::info!(%mac, deployment = %plan.deployment_id, document = %document, "seed served");
    ([(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

/// `POST /metadata/v1/nocloud/{token}/phone-home`: cloud-init's form post.
pub(super) async fn phone_home(
    State(service): State<MetadataService>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let (mac, metadata, plan) = match seed_run(&service, peer, &token) {
        Ok(run) => run,
        Err(refusal) => return refusal.into_response(),
    };
    let form: Vec<(String, String)> = form_urlencoded(&body);
    let field = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.chars().take(1024).collect::<String>())
            .unwrap_or_default()
    };
    let (instance_id, hostname) = (field("instance_id"), field("hostname"));
    if instance_id != plan.deployment_id {
        tracing::warn!(%mac, "phone-home with another instance id refused");
        return refuse(StatusCode::CONFLICT, "instance_id is not this deployment's")
            .into_response();
    }
    tracing::info!(%mac, deployment = %plan.deployment_id, %hostname, "installed system called home");
    let event = RackEventKind::PhoneHome(PhoneHome {
        mac,
        machine_id: metadata.machine_id,
        token: metadata.token,
        instance_id,
        hostname,
        host_key: field("pub_key_ed25519").trim().to_string(),
    });
    match queue(&service, event).await {
        true => (StatusCode::OK, "queued\n").into_response(),
        false => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "cannot queue it now; retry",
        )
        .into_response(),
    }
}

/// `application/x-www-form-urlencoded` pairs.
fn form_urlencoded(body: &[u8]) -> Vec<(String, String)> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    fn decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let escaped = (bytes[i] == b'%')
                .then(|| Some(hex(*bytes.get(i + 1)?)? << 4 | hex(*bytes.get(i + 2)?)?))
                .flatten();
            match (bytes[i], escaped) {
                (_, Some(b)) => {
                    out.push(b);
                    i += 2;
                }
                (b'+', _) => out.push(b' '),
                (b, _) => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_are_strict() {
        assert_eq!(
            parse_progress("step=image state=progress detail=40"),
            Some(("image".into(), "progress".into(), "40".into()))
        );
        assert_eq!(
            parse_progress("step=bootloader state=failed detail=grub-install: no such disk"),
            Some((
                "bootloader".into(),
                "failed".into(),
                "grub-install: no such disk".into()
            ))
        );
        assert_eq!(
            parse_progress("step=done state=done"),
            Some(("done".into(), "done".into(), String::new()))
        );
        assert_eq!(parse_progress("step=Disk state=start"), None);
        assert_eq!(parse_progress("step=disk state=maybe"), None);
        assert_eq!(parse_progress("hello"), None);
    }

    #[test]
    fn phone_home_forms_decode() {
        let form = form_urlencoded(b"instance_id=abc-1&hostname=web+1&pub_key_ed25519=ssh-ed25519+AAAA%2Fx%3D%3D+root%40web");
        assert_eq!(form[0], ("instance_id".into(), "abc-1".into()));
        assert_eq!(form[1], ("hostname".into(), "web 1".into()));
        assert_eq!(form[2].1, "ssh-ed25519 AAAA/x== root@web");
        // A truncated escape is kept as text, never a panic.
        assert_eq!(form_urlencoded(b"a=%4")[0].1, "%4");
        assert_eq!(form_urlencoded(b"a=%zz")[0].1, "%zz");
    }
}
