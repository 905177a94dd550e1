//! `/machines`: the machines, their lifecycle actions and their
//! commissioning results.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::{AppState, Caller};
use crate::lifecycle::{Action, CommissionRequest, DeployRequest, LifecycleError, ReleaseRequest};
use crate::store::{CommissioningRecord, Machine, MachineFilter, NewMachine, RunRecord};

/// List machines, optionally only those matching every given condition,
/// e.g. `?status=ready&min_cpu_count=4&min_memory_mib=8192`.
#[utoipa::path(get, path = "/machines", tag = "machines", params(MachineFilter),
    responses((status = 200, body = Vec<Machine>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_machines(
    State(state): State<AppState>,
    ApiQuery(filter): ApiQuery<MachineFilter>,
) -> Result<Json<Vec<Machine>>, ApiError> {
    Ok(Json(state.store.find_machines(&filter).await?))
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

/// Why an operator takes an action, for the machine's event log.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// Free text recorded with the status change.
    #[serde(default)]
    pub reason: String,
}

impl From<LifecycleError> for ApiError {
    fn from(error: LifecycleError) -> Self {
        match error {
            LifecycleError::Store(store) => store.into(),
            LifecycleError::Power(power) => power.into(),
            LifecycleError::Unsupported(message) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
            }
            LifecycleError::Refused(refusal) => {
                ApiError::new(refusal.status, refusal.code, refusal.message)
            }
        }
    }
}

/// Take a lifecycle action: `commission`, `abort`, `allocate`, `deploy`,
/// `release`, `mark-broken`, `mark-fixed`, `rescue` or `exit-rescue`. An
/// action the machine's status does not allow is 409 and says what is.
/// Commissioning sets the next boot to PXE and powers the machine on
/// through a rack that reaches its BMC.
#[utoipa::path(post, path = "/machines/{id}/actions/{action}", tag = "machines",
    request_body(content = Option<ActionRequest>, description = "Optional reason; commission takes an optional CommissionRequest, deploy a DeployRequest, release a ReleaseRequest"),
    params(("id" = String, Path, description = "Machine id"),
        ("action" = String, Path, description = "The action")),
    responses((status = 200, body = Machine), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 502, body = ErrorBody),
        (status = 504, body = ErrorBody)))]
pub async fn machine_action(
    State(state): State<AppState>,
    Extension(Caller(key)): Extension<Caller>,
    ApiPath((id, action)): ApiPath<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Machine>, ApiError> {
    let empty = body.iter().all(u8::is_ascii_whitespace);
    match Action::from_api_name(&action) {
        Some(Action::Deploy) => {
            let request: DeployRequest =
                parse_body(&body, "{\"image\": \"debian/bookworm\", ...}")?;
            check_reason(request.reason.as_deref().unwrap_or(""))?;
            return Ok(Json(state.lifecycle.deploy(&id, request, &key.name).await?));
        }
        Some(Action::Commission) => {
            let request: CommissionRequest = if empty {
                CommissionRequest::default()
            } else {
                parse_body(
                    &body,
                    "{\"tests\": [\"smartctl\", \"memtester\", \"fio\", \"stress-ng\"], \"lldp_secs\": 30} or empty",
                )?
            };
            let reason = request.reason.clone().unwrap_or_default();
            check_reason(&reason)?;
            let plan = request.plan().map_err(LifecycleError::Refused)?;
            return Ok(Json(
                state
                    .lifecycle
                    .commission(&id, &key.name, &reason, plan)
                    .await?,
            ));
        }
        Some(Action::Release) => {
            let request: ReleaseRequest = if empty {
                ReleaseRequest::default()
            } else {
                parse_body(&body, "{\"erase\": \"none|quick|full|secure\"} or empty")?
            };
            check_reason(request.reason.as_deref().unwrap_or(""))?;
            return Ok(Json(
                state.lifecycle.release(&id, request, &key.name).await?,
            ));
        }
        _ => {}
    }
    // The body is optional: no body means no reason.
    let request: ActionRequest = if empty {
        ActionRequest::default()
    } else {
        parse_body(&body, "{\"reason\": \"...\"} or empty")?
    };
    let action = Action::from_api_name(&action).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "unknown action {action:?}: use one of {}",
                crate::lifecycle::status::OPERATOR_ACTIONS
                    .iter()
                    .filter_map(|a| a.api_name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    let reason = request.reason;
    check_reason(&reason)?;
    let machine = state.lifecycle.act(&id, action, &key.name, &reason).await?;
    Ok(Json(machine))
}

fn check_reason(reason: &str) -> Result<(), ApiError> {
    if reason.len() > 1024 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "reason must be at most 1024 bytes",
        ));
    }
    Ok(())
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body must be {shape}: {e}"),
        )
    })
}

/// The machine's deploy and release runs, newest first: what was asked,
/// the last step reported, and how each ended.
#[utoipa::path(get, path = "/machines/{id}/deployments", tag = "machines",
    params(("id" = String, Path, description = "Machine id")),
    responses((status = 200, body = Vec<RunRecord>), (status = 404, body = ErrorBody)))]
pub async fn list_deployments(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<RunRecord>>, ApiError> {
    Ok(Json(state.store.list_runs(&id).await?))
}

/// The machine's latest commissioning results: the parsed inventory and
/// every raw output. 404 until it has been commissioned.
#[utoipa::path(get, path = "/machines/{id}/commissioning-results", tag = "machines",
    params(("id" = String, Path, description = "Machine id")),
    responses((status = 200, body = CommissioningRecord), (status = 404, body = ErrorBody)))]
pub async fn commissioning_results(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CommissioningRecord>, ApiError> {
    state
        .store
        .latest_results(&id)
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("machine {id} has no commissioning results yet"),
            )
        })
}
