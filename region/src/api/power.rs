//! `/machines/{id}/power…`: BMC settings, power actions, boot device, and
//! the machine's event log.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use edgemetal_protocol::{BootDevice, PowerAction};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::{AppState, Caller};
use crate::power::{self, PowerError, PowerSettingsSpec};
use crate::store::{MachineEvent, PowerSettings, PowerStatus};

/// The power state a BMC reported after an action.
#[derive(Debug, Serialize, ToSchema)]
pub struct PowerResponse {
    /// `on` or `off`.
    pub state: String,
}

/// The next boot device.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BootDeviceSpec {
    /// `pxe` (network boot) or `disk`.
    pub device: String,
}

/// How many events to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// At most this many, newest first (1 to 1000, default 100).
    pub limit: Option<i64>,
}

impl From<PowerError> for ApiError {
    fn from(error: PowerError) -> Self {
        let message = error.to_string();
        match error {
            PowerError::Store(store) => store.into(),
            PowerError::NoSettings(_) => {
                ApiError::new(StatusCode::CONFLICT, "no_power_settings", message)
            }
            PowerError::NoRack(_) => ApiError::new(StatusCode::CONFLICT, "no_rack", message),
            PowerError::Rack(_) => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "rack_timeout", message)
            }
            PowerError::Bmc(failure) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                power::failure_code(failure.kind),
                message,
            ),
            PowerError::Sealed => {
                tracing::error!("a BMC password does not unseal with the master key");
                ApiError::internal()
            }
        }
    }
}

/// Set the machine's BMC. The password is stored sealed and never returned.
#[utoipa::path(put, path = "/machines/{id}/power-settings", tag = "power",
    request_body = PowerSettingsSpec,
    params(("id" = String, Path, description = "Machine id")),
    responses((status = 200, body = PowerSettings), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn set_power_settings(
    State(state): State<AppState>,
    Extension(Caller(key)): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiJson(spec): ApiJson<PowerSettingsSpec>,
) -> Result<Json<PowerSettings>, ApiError> {
    Ok(Json(state.power.set_settings(&id, spec, &key.name).await?))
}

/// The machine's power as last observed (by an action or the periodic check).
#[utoipa::path(get, path = "/machines/{id}/power", tag = "power",
    params(("id" = String, Path, description = "Machine id")),
    responses((status = 200, body = PowerStatus), (status = 404, body = ErrorBody)))]
pub async fn get_power(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<PowerStatus>, ApiError> {
    Ok(Json(state.store.power_status(&id).await?))
}

/// Power the machine `on`, `off`, `cycle` it, `soft-off` (ACPI), or `query`
/// its BMC now. Answers with the state the BMC reports afterwards.
#[utoipa::path(post, path = "/machines/{id}/power/{action}", tag = "power",
    params(("id" = String, Path, description = "Machine id"),
        ("action" = String, Path, description = "on, off, cycle, soft-off or query")),
    responses((status = 200, body = PowerResponse), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 502, body = ErrorBody),
        (status = 504, body = ErrorBody)))]
pub async fn power_action(
    State(state): State<AppState>,
    Extension(Caller(key)): Extension<Caller>,
    ApiPath((id, action)): ApiPath<(String, String)>,
) -> Result<Json<PowerResponse>, ApiError> {
    let action = power::parse_action(&action).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("unknown power action {action:?}: use on, off, cycle, soft-off or query"),
        )
    })?;
    act(&state, &id, action, &key.name).await
}

/// Set the device the machine boots from next (persistently).
#[utoipa::path(put, path = "/machines/{id}/boot-device", tag = "power",
    request_body = BootDeviceSpec,
    params(("id" = String, Path, description = "Machine id")),
    responses((status = 200, body = PowerResponse), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 504, body = ErrorBody)))]
pub async fn set_boot_device(
    State(state): State<AppState>,
    Extension(Caller(key)): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiJson(spec): ApiJson<BootDeviceSpec>,
) -> Result<Json<PowerResponse>, ApiError> {
    let device = match spec.device.as_str() {
        "pxe" => BootDevice::Pxe,
        "disk" => BootDevice::Disk,
        other => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!("unknown boot device {other:?}: use pxe or disk"),
            ))
        }
    };
    act(&state, &id, PowerAction::SetBootDevice(device), &key.name).await
}

async fn act(
    state: &AppState,
    id: &str,
    action: PowerAction,
    actor: &str,
) -> Result<Json<PowerResponse>, ApiError> {
    let observation = state.power.act(id, action, actor).await?;
    Ok(Json(PowerResponse {
        state: power::state_name(observation.state).to_string(),
    }))
}

/// The machine's events (power actions and settings changes), newest first.
#[utoipa::path(get, path = "/machines/{id}/events", tag = "power",
    params(("id" = String, Path, description = "Machine id"), EventsQuery),
    responses((status = 200, body = Vec<MachineEvent>), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn list_machine_events(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Json<Vec<MachineEvent>>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "limit must be between 1 and 1000",
        ));
    }
    Ok(Json(state.store.list_machine_events(&id, limit).await?))
}
