//! The rack's HTTP boot server: iPXE binaries (UEFI HTTP boot loads them
//! directly), each machine's iPXE script at the stable URL the DHCP answer
//! points to (the operator's, when one is set), the cached boot resources
//! and the operator's boot files, with Range requests and streaming from
//! disk (tower-http's `ServeFile`).

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use edgemetal_protocol::{BootDecision, BootStage, MacAddress};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::cache::BootCache;
use super::decisions::Decisions;
use super::small_files::SmallFiles;
use super::table::BootTable;
use super::{progress, render};
use crate::dhcp::LeaseDirectory;
use crate::state::SharedQueue;

/// What the HTTP boot server serves from.
#[derive(Clone)]
pub struct BootHttp {
    /// The verified boot resources.
    pub cache: BootCache,
    /// Per-machine boot decisions.
    pub decisions: Arc<Decisions>,
    /// Directory with the iPXE binaries (Debian's `ipxe` package: /usr/lib/ipxe).
    pub ipxe_dir: PathBuf,
    /// Where machines' boot steps are reported, with who holds which
    /// address (to tell whose kernel is being fetched); none in benches.
    pub progress: Option<(Arc<SharedQueue>, LeaseDirectory)>,
    /// The operator's scripts and boot files.
    pub table: BootTable,
    /// Small verified files, answered from memory.
    pub small: SmallFiles,
}

/// The routes under `/boot/`.
pub fn router(state: BootHttp) -> Router {
    Router::new()
        .route("/boot/ipxe/{file}", get(ipxe_script))
        .route("/boot/resources/{sha256}", get(resource))
        .route("/boot/{file}", get(binary))
        .route("/files/{*path}", get(boot_file))
        .with_state(state)
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, format!("{what} not found\n")).into_response()
}

/// `http://HOST:PORT` as the client addressed this rack; only characters a
/// host and port can have, so nothing odd reaches a script.
pub(crate) fn rack_url(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let plain = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".:-[]".contains(&b));
    plain.then(|| format!("http://{host}"))
}

async fn ipxe_script(
    State(state): State<BootHttp>,
    Path(file): Path<String>,
    request: Request<Body>,
) -> Response {
    let headers = request.headers();
    let Some(mac) = file
        .strip_suffix(".ipxe")
        .and_then(|mac| mac.parse::<MacAddress>().ok())
    else {
        return not_found("script");
    };
    let text = |script: String| ([(header::CONTENT_TYPE, "text/plain")], script).into_response();
    // Present when served with connect info (the rack's server, not benches).
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    if let Some(script) = state.table.script_for(mac, peer) {
        tracing::info!(%mac, "operator's iPXE script served");
        if let Some((events, _)) = &state.progress {
            progress::report(events, mac, BootStage::ConfigServed);
        }
        return text(script);
    }
    let Some(url) = rack_url(headers) else {
        return (StatusCode::BAD_REQUEST, "missing or odd Host header\n").into_response();
    };
    let arch = state
        .progress
        .as_ref()
        .and_then(|(_, directory)| directory.architecture(mac));
    let decision = state.decisions.decide(mac, arch).await;
    tracing::info!(%mac, ?decision, "iPXE script served");
    if let Some((events, _)) = &state.progress {
        progress::report(events, mac, BootStage::ConfigServed);
    }
    text(render::ipxe_script(&decision, &url, mac))
}

/// A file of the operator's boot-files tree, once the rack holds it whole.
async fn boot_file(
    State(state): State<BootHttp>,
    Path(path): Path<String>,
    request: Request<Body>,
) -> Response {
    // Names are looked up, never joined to a directory: nothing escapes.
    let Some(sha) = state.table.file(&path) else {
        return not_found("file");
    };
    match state.cache.ready_path(&sha) {
        Some(file) => serve_verified(&state.small, &sha, file, request).await,
        None => not_found("file"),
    }
}

async fn serve(path: PathBuf, request: Request<Body>) -> Response {
    match ServeFile::new(path).oneshot(request).await {
        Ok(response) => response.into_response(),
        Err(error) => match error {},
    }
}

async fn resource(
    State(state): State<BootHttp>,
    Path(sha256): Path<String>,
    request: Request<Body>,
) -> Response {
    let mut sha = [0u8; 32];
    if sha256.len() != 64 || hex::decode_to_slice(&sha256, &mut sha).is_err() {
        return not_found("resource");
    }
    // Present when served with connect info (the rack's server, not benches).
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0);
    if let (Some((events, directory)), Some(peer)) = (&state.progress, peer) {
        let from_start = request
            .headers()
            .get(header::RANGE)
            .is_none_or(|range| range.as_bytes().starts_with(b"bytes=0-"));
        if from_start {
            report_resource(&state.decisions, events, directory, peer, &sha);
        }
    }
    // Only verified content has this name; a partial download never does.
    match state.cache.ready_path(&sha) {
        Some(path) => serve_verified(&state.small, &sha, path, request).await,
        None => not_found("resource"),
    }
}

/// Verified content `sha`: small files from memory, the rest (and Range or
/// conditional requests) from disk.
async fn serve_verified(
    small: &SmallFiles,
    sha: &[u8; 32],
    path: PathBuf,
    request: Request<Body>,
) -> Response {
    if super::small_files::plain_get(&request) {
        if let Some(response) = small.answer(sha, &path).await {
            return response;
        }
    }
    serve(path, request).await
}

/// Reports a machine starting to load its kernel or initrd: the machine is
/// the one holding the source address, the file is its decision's.
fn report_resource(
    decisions: &Decisions,
    events: &SharedQueue,
    directory: &LeaseDirectory,
    peer: SocketAddr,
    sha: &[u8; 32],
) {
    let IpAddr::V4(address) = peer.ip().to_canonical() else {
        return;
    };
    let Some(mac) = directory.holder(address) else {
        return;
    };
    let Some(BootDecision::Ephemeral(image)) = decisions.held(mac) else {
        return;
    };
    let stage = if &image.kernel == sha {
        BootStage::KernelServed
    } else if &image.initrd == sha {
        BootStage::InitrdServed
    } else {
        return;
    };
    tracing::info!(%mac, %peer, ?stage, resource = %hex::encode(sha), "boot resource served");
    progress::report(events, mac, stage);
}

async fn binary(
    State(state): State<BootHttp>,
    Path(file): Path<String>,
    request: Request<Body>,
) -> Response {
    // A bare file name: no separators, no dot files, so no way out of the directory.
    let plain = !file.starts_with('.')
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !plain {
        return not_found("file");
    }
    let path = state.ipxe_dir.join(&file);
    if !path.is_file() {
        return not_found("file");
    }
    serve(path, request).await
}
