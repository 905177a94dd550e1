//! `/api-keys`: create, list, inspect and revoke API keys (admin only).

use axum::extract::State;
use axum::http::header::CACHE_CONTROL;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::AppState;
use crate::store::{ApiKey, ApiKeyRole, NewApiKey};

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// A name to recognise the key by: 1 to 64 characters.
    pub name: String,
    /// What the key may do: `admin`, `operator` or `read_only`.
    pub role: ApiKeyRole,
    /// Lifetime in seconds (1 to 315360000); leave out for a key that does not expire.
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
}

/// A key just created, with its token: the only time the token is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKeyBody {
    /// The stored record.
    pub key: ApiKey,
    /// The bearer token, `em_<id>_<secret>`; the region keeps only a hash of it.
    pub token: String,
}

/// List API keys, revoked and expired ones included (never their secrets).
#[utoipa::path(get, path = "/api-keys", tag = "api-keys",
    responses((status = 200, body = Vec<ApiKey>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn list_api_keys(State(state): State<AppState>) -> Result<Json<Vec<ApiKey>>, ApiError> {
    Ok(Json(state.store.list_api_keys().await?))
}

/// Create an API key; the response holds its token, shown only this once.
#[utoipa::path(post, path = "/api-keys", tag = "api-keys", request_body = CreateApiKey,
    responses((status = 201, body = CreatedApiKeyBody), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_api_key(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CreateApiKey>,
) -> Result<
    (
        StatusCode,
        [(axum::http::HeaderName, &'static str); 1],
        Json<CreatedApiKeyBody>,
    ),
    ApiError,
> {
    let created = state
        .store
        .create_api_key(&NewApiKey {
            name: request.name,
            role: request.role,
            expires_in_secs: request.expires_in_secs,
        })
        .await?;
    tracing::info!(key_id = %created.key.id, role = %created.key.role, "API key created");
    Ok((
        StatusCode::CREATED,
        // The body holds a secret: no cache along the way may keep it.
        [(CACHE_CONTROL, "no-store")],
        Json(CreatedApiKeyBody {
            key: created.key,
            token: created.token,
        }),
    ))
}

/// Get one API key (never its secret).
#[utoipa::path(get, path = "/api-keys/{id}", tag = "api-keys",
    params(("id" = String, Path, description = "Key id")),
    responses((status = 200, body = ApiKey), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_api_key(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ApiKey>, ApiError> {
    Ok(Json(state.store.get_api_key(&id).await?))
}

/// Revoke an API key: it stops working at once. The record stays, marked revoked.
#[utoipa::path(delete, path = "/api-keys/{id}", tag = "api-keys",
    params(("id" = String, Path, description = "Key id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let key = state.store.revoke_api_key(&id).await?;
    tracing::info!(key_id = %key.id, "API key revoked");
    Ok(StatusCode::NO_CONTENT)
}
