//! `/machines/{id}/boot-settings`: the machine's own boot table (iPXE
//! script or URL, loaders by firmware slot), over its subnet's.

use axum::extract::State;
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::AppState;
use crate::model::boot_table::BootSettingsSpec;

/// The machine's own boot settings (`{}` when it follows its subnet's).
#[utoipa::path(get, path = "/machines/{id}/boot-settings", tag = "boot",
    params(("id" = String, Path, description = "Machine id")),
    responses((status = 200, body = BootSettingsSpec), (status = 404, body = ErrorBody)))]
pub async fn get_machine_boot(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<BootSettingsSpec>, ApiError> {
    Ok(Json(state.store.get_machine_boot(&id).await?))
}

/// Replace the machine's boot settings; `{}` returns it to its subnet's.
/// Racks get them with their next configuration, ahead of the next boot.
#[utoipa::path(put, path = "/machines/{id}/boot-settings", tag = "boot",
    request_body = BootSettingsSpec,
    params(("id" = String, Path, description = "Machine id")),
    responses((status = 200, body = BootSettingsSpec), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn set_machine_boot(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(settings): ApiJson<BootSettingsSpec>,
) -> Result<Json<BootSettingsSpec>, ApiError> {
    Ok(Json(state.store.set_machine_boot(&id, &settings).await?))
}
