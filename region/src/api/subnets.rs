//! `/subnets` and `/subnets/{id}/ranges`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::AppState;
use crate::store::{IpRangeRecord, IpRangeSpec, SubnetRecord, SubnetSpec};

/// List subnets with their ranges.
#[utoipa::path(get, path = "/subnets", tag = "subnets",
    responses((status = 200, body = Vec<SubnetRecord>), (status = 401, body = ErrorBody)))]
pub async fn list_subnets(
    State(state): State<AppState>,
) -> Result<Json<Vec<SubnetRecord>>, ApiError> {
    Ok(Json(state.store.list_subnets().await?))
}

/// Create a subnet.
#[utoipa::path(post, path = "/subnets", tag = "subnets", request_body = SubnetSpec,
    responses((status = 201, body = SubnetRecord), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_subnet(
    State(state): State<AppState>,
    ApiJson(spec): ApiJson<SubnetSpec>,
) -> Result<(StatusCode, Json<SubnetRecord>), ApiError> {
    let subnet = state.store.create_subnet(spec).await?;
    Ok((StatusCode::CREATED, Json(subnet)))
}

/// Get a subnet.
#[utoipa::path(get, path = "/subnets/{id}", tag = "subnets",
    params(("id" = String, Path, description = "Subnet id")),
    responses((status = 200, body = SubnetRecord), (status = 404, body = ErrorBody)))]
pub async fn get_subnet(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SubnetRecord>, ApiError> {
    Ok(Json(state.store.get_subnet(&id).await?))
}

/// Replace a subnet's settings.
#[utoipa::path(put, path = "/subnets/{id}", tag = "subnets", request_body = SubnetSpec,
    params(("id" = String, Path, description = "Subnet id")),
    responses((status = 200, body = SubnetRecord), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_subnet(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(spec): ApiJson<SubnetSpec>,
) -> Result<Json<SubnetRecord>, ApiError> {
    let subnet = state.store.update_subnet(&id, spec).await?;
    Ok(Json(subnet))
}

/// Change some of a subnet's settings: a JSON merge patch (RFC 7396) of
/// its settings, so `{"gateway": "10.20.0.254"}` changes the gateway alone
/// and `null` returns a setting to its default. PUT replaces them all.
#[utoipa::path(patch, path = "/subnets/{id}", tag = "subnets",
    request_body(content = Object, content_type = "application/merge-patch+json"),
    params(("id" = String, Path, description = "Subnet id")),
    responses((status = 200, body = SubnetRecord), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn patch_subnet(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<serde_json::Value>,
) -> Result<Json<SubnetRecord>, ApiError> {
    let current = state.store.get_subnet(&id).await?;
    let spec = edgemetal_region_model::merge_patch::patched(&current.spec, &patch)
        .map_err(crate::store::StoreError::from)?;
    Ok(Json(state.store.update_subnet(&id, spec).await?))
}

/// Delete a subnet and its ranges.
#[utoipa::path(delete, path = "/subnets/{id}", tag = "subnets",
    params(("id" = String, Path, description = "Subnet id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_subnet(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_subnet(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List a subnet's ranges.
#[utoipa::path(get, path = "/subnets/{id}/ranges", tag = "subnets",
    params(("id" = String, Path, description = "Subnet id")),
    responses((status = 200, body = Vec<IpRangeRecord>), (status = 404, body = ErrorBody)))]
pub async fn list_ranges(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<IpRangeRecord>>, ApiError> {
    Ok(Json(state.store.get_subnet(&id).await?.ranges))
}

/// Add a range to a subnet.
#[utoipa::path(post, path = "/subnets/{id}/ranges", tag = "subnets", request_body = IpRangeSpec,
    params(("id" = String, Path, description = "Subnet id")),
    responses((status = 201, body = IpRangeRecord), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_range(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(spec): ApiJson<IpRangeSpec>,
) -> Result<(StatusCode, Json<IpRangeRecord>), ApiError> {
    let range = state.store.create_range(&id, spec).await?;
    Ok((StatusCode::CREATED, Json(range)))
}

/// Get one range.
#[utoipa::path(get, path = "/subnets/{id}/ranges/{range_id}", tag = "subnets",
    params(("id" = String, Path, description = "Subnet id"), ("range_id" = String, Path, description = "Range id")),
    responses((status = 200, body = IpRangeRecord), (status = 404, body = ErrorBody)))]
pub async fn get_range(
    State(state): State<AppState>,
    ApiPath((id, range_id)): ApiPath<(String, String)>,
) -> Result<Json<IpRangeRecord>, ApiError> {
    Ok(Json(state.store.get_range(&id, &range_id).await?))
}

/// Replace a range's settings.
#[utoipa::path(put, path = "/subnets/{id}/ranges/{range_id}", tag = "subnets", request_body = IpRangeSpec,
    params(("id" = String, Path, description = "Subnet id"), ("range_id" = String, Path, description = "Range id")),
    responses((status = 200, body = IpRangeRecord), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_range(
    State(state): State<AppState>,
    ApiPath((id, range_id)): ApiPath<(String, String)>,
    ApiJson(spec): ApiJson<IpRangeSpec>,
) -> Result<Json<IpRangeRecord>, ApiError> {
    let range = state.store.update_range(&id, &range_id, spec).await?;
    Ok(Json(range))
}

/// Delete a range.
#[utoipa::path(delete, path = "/subnets/{id}/ranges/{range_id}", tag = "subnets",
    params(("id" = String, Path, description = "Subnet id"), ("range_id" = String, Path, description = "Range id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_range(
    State(state): State<AppState>,
    ApiPath((id, range_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_range(&id, &range_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
