//! `/subnets/{id}/reservations`: fixed addresses for known machines.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::AppState;
use crate::store::{ReservationRecord, ReservationSpec};

/// List a subnet's reservations, by address.
#[utoipa::path(get, path = "/subnets/{id}/reservations", tag = "subnets",
    params(("id" = String, Path, description = "Subnet id")),
    responses((status = 200, body = Vec<ReservationRecord>), (status = 404, body = ErrorBody)))]
pub async fn list_reservations(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<ReservationRecord>>, ApiError> {
    Ok(Json(state.store.list_reservations(Some(&id)).await?))
}

/// Reserve an address (and host name) for one MAC on a subnet. The address
/// must be a host address of the subnet outside its dynamic ranges.
#[utoipa::path(post, path = "/subnets/{id}/reservations", tag = "subnets",
    request_body = ReservationSpec,
    params(("id" = String, Path, description = "Subnet id")),
    responses((status = 201, body = ReservationRecord), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_reservation(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(spec): ApiJson<ReservationSpec>,
) -> Result<(StatusCode, Json<ReservationRecord>), ApiError> {
    let reservation = state.store.create_reservation(&id, spec).await?;
    Ok((StatusCode::CREATED, Json(reservation)))
}

/// Get one reservation.
#[utoipa::path(get, path = "/subnets/{id}/reservations/{reservation_id}", tag = "subnets",
    params(("id" = String, Path, description = "Subnet id"),
        ("reservation_id" = String, Path, description = "Reservation id")),
    responses((status = 200, body = ReservationRecord), (status = 404, body = ErrorBody)))]
pub async fn get_reservation(
    State(state): State<AppState>,
    ApiPath((id, reservation_id)): ApiPath<(String, String)>,
) -> Result<Json<ReservationRecord>, ApiError> {
    Ok(Json(
        state.store.get_reservation(&id, &reservation_id).await?,
    ))
}

/// Delete a reservation.
#[utoipa::path(delete, path = "/subnets/{id}/reservations/{reservation_id}", tag = "subnets",
    params(("id" = String, Path, description = "Subnet id"),
        ("reservation_id" = String, Path, description = "Reservation id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_reservation(
    State(state): State<AppState>,
    ApiPath((id, reservation_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_reservation(&id, &reservation_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
