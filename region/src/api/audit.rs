//! `/audit`: the audit log of mutating requests, newest first (admin only).

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ErrorBody};
use super::extract::ApiQuery;
use super::AppState;
use crate::store::AuditEntry;

/// Paging through the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// How many entries, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// Only entries strictly older than this time (ms since the epoch): pass the
    /// last `time_ms` of a page to get the next one.
    pub before_ms: Option<i64>,
}

/// List audit entries, newest first.
#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Vec<AuditEntry>), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_audit(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    Ok(Json(state.store.list_audit(query.before_ms, limit).await?))
}
