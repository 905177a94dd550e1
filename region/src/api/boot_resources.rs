//! `/boot-resources`: kernels, initrds and squashfs images that racks cache
//! and serve to network-booting machines, the OS images they deploy, and
//! the operator's boot-files tree (kind `file`).
//! Each upload is checked to be the kind it claims before it is stored.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use edgemetal_protocol::BootResourceKind;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiPath, ApiQuery};
use super::AppState;
use crate::boot::blobs::BlobError;
use crate::boot::inspect::{inspect, InspectError};
use crate::model::boot_table::{valid_file_path, MAX_FILE_DEPTH};
use crate::store::{parse_kind, BootResourceRecord, OsImageRecord, ARCHITECTURES};

/// The architecture of a boot file uploaded without one.
const ANY_ARCHITECTURE: &str = "all";

/// What the uploaded content is.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// Name/release, 1 to 64 of a-z, 0-9, `.`, `_` and `-` (`ephemeral` for the
    /// image machines boot to enlist and commission). For a `file`: its
    /// path in the boot-files tree (e.g. `menus/site.ipxe`), served over
    /// TFTP as `files/<path>` and over HTTP as `/files/<path>`.
    pub name: String,
    /// Architecture, e.g. `amd64`; files may leave it out (`all`).
    pub architecture: Option<String>,
    /// `kernel`, `initrd`, `squashfs`, `rootfs` (an OS image to deploy: a
    /// zstd-compressed tar of a root filesystem with a kernel and GRUB), or
    /// `file` (any content, for the operator's boot table).
    pub kind: String,
}

impl From<BlobError> for ApiError {
    fn from(error: BlobError) -> Self {
        match error {
            BlobError::Mismatch { .. } | BlobError::Empty => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                error.to_string(),
            ),
            BlobError::Upload(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", error.to_string())
            }
            BlobError::Io(_) => {
                tracing::error!(%error, "blob store failure");
                ApiError::internal()
            }
        }
    }
}

fn invalid(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
}

/// Upload a boot resource as the raw request body (streamed to disk, never
/// held in memory). An `x-content-sha256` header (hex) is checked against
/// the content. A resource with the same name, architecture and kind is
/// replaced.
#[utoipa::path(post, path = "/boot-resources", tag = "boot",
    params(UploadQuery, ("x-content-sha256" = Option<String>, Header, description = "Expected SHA-256, hex")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = BootResourceRecord), (status = 400, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn upload_boot_resource(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<BootResourceRecord>), ApiError> {
    let kind = parse_kind(&query.kind).ok_or_else(|| {
        invalid(format!(
            "unknown kind {:?}: use kernel, initrd, squashfs, rootfs or file",
            query.kind
        ))
    })?;
    // OS images are named os/release (`debian/bookworm`), as in MAAS.
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    };
    let name_ok = match (kind, query.name.split_once('/')) {
        (BootResourceKind::File, _) => valid_file_path(&query.name),
        (_, _) if query.name.len() > 64 => false,
        (BootResourceKind::Rootfs, Some((os, release))) => label_ok(os) && label_ok(release),
        (_, None) => label_ok(&query.name),
        _ => false,
    };
    if !name_ok {
        return Err(invalid(format!(
            "invalid name {:?}: use 1 to 64 of a-z, 0-9, '.', '_' and '-' (OS images: os/release; \
             files: a path of up to {MAX_FILE_DEPTH} such components of letters, digits, '.', '_' and '-')",
            query.name
        )));
    }
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/")
        });
    if multipart {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "multipart_not_accepted",
            "send the file itself as the body (application/octet-stream, e.g. curl --data-binary @file), not a multipart form",
        ));
    }
    let architecture = match (kind, query.architecture) {
        (BootResourceKind::File, None) => ANY_ARCHITECTURE.to_string(),
        (_, Some(architecture)) if ARCHITECTURES.contains(&architecture.as_str()) => architecture,
        (_, architecture) => {
            return Err(invalid(format!(
                "unknown architecture {:?}: use one of {}",
                architecture.unwrap_or_default(),
                ARCHITECTURES.join(", ")
            )))
        }
    };
    let expected = match headers.get("x-content-sha256") {
        None => None,
        Some(value) => {
            let mut sha = [0u8; 32];
            value
                .to_str()
                .ok()
                .and_then(|text| hex::decode_to_slice(text, &mut sha).ok())
                .ok_or_else(|| invalid("x-content-sha256 is not 64 hex digits".into()))?;
            Some(sha)
        }
    };
    let (sha256, size) = state
        .blobs
        .ingest(body.into_data_stream(), expected)
        .await?;
    let path = state.blobs.path(&sha256);
    let inspected = tokio::task::spawn_blocking(move || inspect(kind, &path))
        .await
        .map_err(|_| ApiError::internal())?;
    let facts = match inspected {
        Ok(facts) => facts,
        Err(error) => {
            remove_if_unused(&state, &hex::encode(sha256)).await;
            return Err(match error {
                InspectError::Io(error) => {
                    tracing::error!(%error, "cannot read back an uploaded blob");
                    ApiError::internal()
                }
                error => invalid(error.to_string()),
            });
        }
    };
    if let Some(facts) = &facts {
        state
            .store
            .put_os_image(&hex::encode(sha256), facts)
            .await?;
    }
    let (record, replaced) = state
        .store
        .put_boot_resource(&query.name, &architecture, kind, &sha256, size)
        .await?;
    if let Some(old) = replaced {
        remove_if_unused(&state, &old).await;
    }
    tracing::info!(name = %record.name, architecture = %record.architecture, kind = %record.kind, size, sha256 = %record.sha256, "boot resource stored");
    Ok((StatusCode::CREATED, Json(record)))
}

async fn remove_if_unused(state: &AppState, sha256: &str) {
    let mut sha = [0u8; 32];
    if hex::decode_to_slice(sha256, &mut sha).is_err() {
        return;
    }
    match state.store.blob_in_use(sha256).await {
        Ok(false) => {
            if let Err(error) = state.blobs.remove(&sha).await {
                tracing::warn!(%error, "cannot remove an unused blob");
            }
        }
        Ok(true) => {}
        Err(error) => tracing::warn!(%error, "cannot check blob use"),
    }
}

/// List boot resources.
#[utoipa::path(get, path = "/boot-resources", tag = "boot",
    responses((status = 200, body = Vec<BootResourceRecord>)))]
pub async fn list_boot_resources(
    State(state): State<AppState>,
) -> Result<Json<Vec<BootResourceRecord>>, ApiError> {
    Ok(Json(state.store.list_boot_resources().await?))
}

/// The OS image catalogue: each `rootfs` resource with its format, sizes
/// and hash, and how far each rack's cache holds it.
#[utoipa::path(get, path = "/os-images", tag = "boot",
    responses((status = 200, body = Vec<OsImageRecord>)))]
pub async fn list_os_images(
    State(state): State<AppState>,
) -> Result<Json<Vec<OsImageRecord>>, ApiError> {
    Ok(Json(state.store.os_image_catalogue().await?))
}

/// Get one boot resource.
#[utoipa::path(get, path = "/boot-resources/{id}", tag = "boot",
    params(("id" = String, Path, description = "Boot resource id")),
    responses((status = 200, body = BootResourceRecord), (status = 404, body = ErrorBody)))]
pub async fn get_boot_resource(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<BootResourceRecord>, ApiError> {
    Ok(Json(state.store.get_boot_resource(&id).await?))
}

/// Delete a boot resource (and its content when nothing else uses it).
#[utoipa::path(delete, path = "/boot-resources/{id}", tag = "boot",
    params(("id" = String, Path, description = "Boot resource id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_boot_resource(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let record = state.store.delete_boot_resource(&id).await?;
    remove_if_unused(&state, &record.sha256).await;
    Ok(StatusCode::NO_CONTENT)
}
