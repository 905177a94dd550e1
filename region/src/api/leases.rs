//! `/leases`: DHCP leases as the racks report them.

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::store::LeaseRecord;

/// Filters for the lease list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LeaseFilter {
    /// Only this subnet's leases.
    pub subnet_id: Option<String>,
    /// Only this machine's leases (MAC, `52:54:00:12:34:56`).
    pub mac: Option<String>,
}

/// List leases, by subnet and address.
#[utoipa::path(get, path = "/leases", tag = "leases", params(LeaseFilter),
    responses((status = 200, body = Vec<LeaseRecord>), (status = 400, body = ErrorBody)))]
pub async fn list_leases(
    State(state): State<AppState>,
    filter: Result<Query<LeaseFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<LeaseRecord>>, ApiError> {
    let Query(filter) = filter.map_err(|rejection| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_query",
            rejection.body_text(),
        )
    })?;
    let mac = match &filter.mac {
        Some(text) => Some(
            text.parse::<edgemetal_protocol::MacAddress>()
                .map_err(|e| {
                    ApiError::new(
                        axum::http::StatusCode::BAD_REQUEST,
                        "invalid_query",
                        e.to_string(),
                    )
                })?
                .to_string(),
        ),
        None => None,
    };
    Ok(Json(
        state
            .store
            .list_leases(filter.subnet_id.as_deref(), mac.as_deref())
            .await?,
    ))
}
