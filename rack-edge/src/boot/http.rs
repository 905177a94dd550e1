//! The rack's HTTP boot server: iPXE binaries (UEFI HTTP boot loads them
//! directly), each machine's iPXE script at the stable URL the DHCP answer
//! points to, and the cached boot resources, with Range requests and
//! streaming from disk (tower-http's `ServeFile`).

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use edgemetal_protocol::MacAddress;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::cache::BootCache;
use super::decisions::Decisions;
use super::render;

/// What the HTTP boot server serves from.
#[derive(Clone)]
pub struct BootHttp {
    /// The verified boot resources.
    pub cache: BootCache,
    /// Per-machine boot decisions.
    pub decisions: Arc<Decisions>,
    /// Directory with the iPXE binaries (Debian's `ipxe` package: /usr/lib/ipxe).
    pub ipxe_dir: PathBuf,
}

/// The routes under `/boot/`.
pub fn router(state: BootHttp) -> Router {
    Router::new()
        .route("/boot/ipxe/{file}", get(ipxe_script))
        .route("/boot/resources/{sha256}", get(resource))
        .route("/boot/{file}", get(binary))
        .with_state(state)
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, format!("{what} not found\n")).into_response()
}

/// `http://HOST:PORT` as the client addressed this rack; only characters a
/// host and port can have, so nothing odd reaches a script.
fn rack_url(headers: &HeaderMap) -> Option<String> {
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
    headers: HeaderMap,
) -> Response {
    let Some(mac) = file
        .strip_suffix(".ipxe")
        .and_then(|mac| mac.parse::<MacAddress>().ok())
    else {
        return not_found("script");
    };
    let Some(url) = rack_url(&headers) else {
        return (StatusCode::BAD_REQUEST, "missing or odd Host header\n").into_response();
    };
    let decision = state.decisions.decide(mac, None).await;
    tracing::info!(%mac, ?decision, "iPXE script served");
    (
        [(header::CONTENT_TYPE, "text/plain")],
        render::ipxe_script(&decision, &url, mac),
    )
        .into_response()
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
    // Only verified content has this name; a partial download never does.
    match state.cache.ready_path(&sha) {
        Some(path) => serve(path, request).await,
        None => not_found("resource"),
    }
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
