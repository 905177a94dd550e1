//! `/racks`: read-only views of the racks that have said hello.

use axum::extract::State;
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::extract::ApiPath;
use super::AppState;
use crate::store::RackRecord;

/// List racks with status, last seen time and applied generation.
#[utoipa::path(get, path = "/racks", tag = "racks",
    responses((status = 200, body = Vec<RackRecord>), (status = 401, body = ErrorBody)))]
pub async fn list_racks(State(state): State<AppState>) -> Result<Json<Vec<RackRecord>>, ApiError> {
    Ok(Json(state.store.list_racks().await?))
}

/// Get one rack.
#[utoipa::path(get, path = "/racks/{id}", tag = "racks",
    params(("id" = String, Path, description = "Rack id")),
    responses((status = 200, body = RackRecord), (status = 404, body = ErrorBody)))]
pub async fn get_rack(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RackRecord>, ApiError> {
    Ok(Json(state.store.get_rack(&id).await?))
}
