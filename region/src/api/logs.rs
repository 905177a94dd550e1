//! `/machines/{id}/logs`: the machine's syslog lines as its racks relayed
//! them, newest first, filtered and paged with an id cursor.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiPath, ApiQuery};
use super::AppState;
use crate::store::{parse_severity, LogQuery, LogRecord, MAX_LOG_PAGE};

/// Filters and paging for a machine's log lines.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Only lines the rack received at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Only lines the rack received before this time (ms since the epoch).
    pub until_ms: Option<i64>,
    /// Only this severity or worse: `emerg`, `alert`, `crit`, `err`,
    /// `warning`, `notice`, `info`, `debug` (or 0–7). Excludes malformed lines.
    pub severity: Option<String>,
    /// Only lines whose text contains this (ASCII case-insensitive).
    pub contains: Option<String>,
    /// How many lines, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// Only lines older than this cursor: pass a page's `next_before_id`.
    pub before_id: Option<i64>,
}

/// One page of log lines.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogPage {
    /// The lines, newest first.
    pub lines: Vec<LogRecord>,
    /// Pass as `before_id` for the next (older) page; `null` on the last page.
    pub next_before_id: Option<i64>,
}

fn bad_query(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
}

/// List a machine's log lines, newest first.
#[utoipa::path(get, path = "/machines/{id}/logs", tag = "machines",
    params(("id" = String, Path, description = "Machine id"), LogsQuery),
    responses((status = 200, body = LogPage), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn list_machine_logs(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<LogsQuery>,
) -> Result<Json<LogPage>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_LOG_PAGE).contains(&limit) {
        return Err(bad_query(format!(
            "limit must be between 1 and {MAX_LOG_PAGE}"
        )));
    }
    let max_severity = match &query.severity {
        None => None,
        Some(name) => Some(parse_severity(name).ok_or_else(|| {
            bad_query(format!(
                "unknown severity {name:?}: use emerg, alert, crit, err, warning, notice, info, debug or 0-7"
            ))
        })?),
    };
    if let (Some(since), Some(until)) = (query.since_ms, query.until_ms) {
        if since >= until {
            return Err(bad_query("since_ms must be before until_ms"));
        }
    }
    if query.contains.as_ref().is_some_and(|c| c.len() > 1024) {
        return Err(bad_query("contains is limited to 1024 bytes"));
    }
    let lines = state
        .store
        .list_machine_logs(
            &id,
            &LogQuery {
                since_ms: query.since_ms,
                until_ms: query.until_ms,
                max_severity,
                contains: query.contains.filter(|c| !c.is_empty()),
                before_id: query.before_id,
                limit,
            },
        )
        .await?;
    let next_before_id = (lines.len() == limit as usize)
        .then(|| lines.last().map(|l| l.id))
        .flatten();
    Ok(Json(LogPage {
        lines,
        next_before_id,
    }))
}
