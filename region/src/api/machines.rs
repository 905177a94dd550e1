//! `/machines`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::AppState;
use crate::store::{Machine, NewMachine};

/// List machines.
#[utoipa::path(get, path = "/machines", tag = "machines",
    responses((status = 200, body = Vec<Machine>), (status = 401, body = ErrorBody)))]
pub async fn list_machines(State(state): State<AppState>) -> Result<Json<Vec<Machine>>, ApiError> {
    Ok(Json(state.store.list_machines().await?))
}

/// Create a machine.
#[utoipa::path(post, path = "/machines", tag = "machines", request_body = NewMachine,
    responses((status = 201, body = Machine), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_machine(
    State(state): State<AppState>,
    ApiJson(new): ApiJson<NewMachine>,
) -> Result<(StatusCode, Json<Machine>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.store.create_machine(new).await?),
    ))
}

/// Get a machine.
#[utoipa::path(get, path = "/machines/{id}", tag = "machines",
    params(("id" = String, Path, description = "Machine id")),
    responses((status = 200, body = Machine), (status = 404, body = ErrorBody)))]
pub async fn get_machine(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Machine>, ApiError> {
    Ok(Json(state.store.get_machine(&id).await?))
}

/// Delete a machine.
#[utoipa::path(delete, path = "/machines/{id}", tag = "machines",
    params(("id" = String, Path, description = "Machine id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_machine(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_machine(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
