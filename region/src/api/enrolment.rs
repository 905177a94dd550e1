//! Rack enrolment: tokens (admin), the enrol call racks make with a token,
//! rack identities and their revocation.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::Json;
use edgemetal_protocol::enrolment::{EnrolmentBundle, EnrolmentRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::AppState;
use crate::store::{EnrolError, EnrolmentToken, RackIdentity};

fn default_expiry() -> u64 {
    3600
}

/// What an operator asks for when creating a token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEnrolmentToken {
    /// Bind the token to this rack id (a-z, 0-9, '-'); otherwise one is generated.
    #[serde(default)]
    pub rack_name: Option<String>,
    /// Lifetime in seconds (default 3600, at most 30 days).
    #[serde(default = "default_expiry")]
    pub expires_in_secs: u64,
}

/// A created token: its text is shown only this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    /// The text to give the rack (`emt_…`).
    pub token: String,
    /// The stored record.
    pub record: EnrolmentToken,
}

/// The enrolment call's body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrolBody {
    /// The single-use token.
    pub token: String,
    /// The rack's host name.
    #[serde(default)]
    pub hostname: String,
}

/// Create a single-use enrolment token.
#[utoipa::path(post, path = "/enrolment-tokens", tag = "racks", request_body = NewEnrolmentToken,
    responses((status = 201, body = CreatedToken), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_enrolment_token(
    State(state): State<AppState>,
    ApiJson(new): ApiJson<NewEnrolmentToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    if new.expires_in_secs == 0 || new.expires_in_secs > 30 * 24 * 3600 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "expires_in_secs must be between 1 and 2592000",
        ));
    }
    let created = state
        .store
        .create_enrolment_token(new.rack_name.as_deref(), new.expires_in_secs as i64 * 1000)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: created.text,
            record: created.token,
        }),
    ))
}

/// List enrolment tokens (never their secrets).
#[utoipa::path(get, path = "/enrolment-tokens", tag = "racks",
    responses((status = 200, body = Vec<EnrolmentToken>), (status = 403, body = ErrorBody)))]
pub async fn list_enrolment_tokens(
    State(state): State<AppState>,
) -> Result<Json<Vec<EnrolmentToken>>, ApiError> {
    Ok(Json(state.store.list_enrolment_tokens().await?))
}

/// List rack identities: enrolment time, last key rotation, revocation.
#[utoipa::path(get, path = "/rack-identities", tag = "racks",
    responses((status = 200, body = Vec<RackIdentity>), (status = 403, body = ErrorBody)))]
pub async fn list_rack_identities(
    State(state): State<AppState>,
) -> Result<Json<Vec<RackIdentity>>, ApiError> {
    Ok(Json(state.store.list_identities().await?))
}

/// Revoke a rack: its broker login stops working and the region refuses its messages.
#[utoipa::path(post, path = "/racks/{id}/revoke", tag = "racks",
    params(("id" = String, Path, description = "Rack id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn revoke_rack(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.store.revoke_identity(&id).await?;
    state.enroller.identities_changed(&state.store).await?;
    tracing::warn!(rack = %id, "rack revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// Rotate a rack's link key without downtime: the region sends the rack a new
/// secret sealed under the current one and switches once the rack answers
/// under the new key. A rack that is offline gets it when it next connects.
#[utoipa::path(post, path = "/racks/{id}/rotate-key", tag = "racks",
    params(("id" = String, Path, description = "Rack id")),
    responses((status = 202), (status = 404, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn rotate_rack_key(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let rack_id = edgemetal_protocol::RackId::new(&id)
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()))?;
    let mut secret = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut secret);
    let sealed = state.enroller.keyring.master().seal(&secret);
    state.store.start_key_rotation(&id, &sealed).await?;
    state.enroller.identities_changed(&state.store).await?;
    state.link.send_rekey(rack_id);
    tracing::info!(rack = %id, "link key rotation started");
    Ok(StatusCode::ACCEPTED)
}

/// The bucket enrolment failures are counted in, apart from API keys: a
/// token is single-use, so guessing tokens is what the limit refuses.
const ENROLMENT: &str = "enrolment";

/// Trade a single-use enrolment token for the rack's identity. Needs no API
/// key: the token is the credential. Failures count against the source like
/// bad API keys do.
pub async fn enrol(
    State(state): State<AppState>,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<EnrolBody>,
) -> Result<(StatusCode, Json<EnrolmentBundle>), ApiError> {
    let blocked = state
        .auth_failures()
        .check(source.ip(), ENROLMENT, Instant::now())
        .is_err();
    if blocked {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many failed attempts from this address; wait and retry",
        ));
    }
    let request = EnrolmentRequest {
        token: body.token,
        hostname: body.hostname,
    };
    let result = match state.enroller.enrol(&state.store, &request.token).await {
        Ok(bundle) => {
            tracing::info!(rack = %bundle.rack_id, hostname = %request.hostname, %source, "enrolment accepted");
            Ok((StatusCode::CREATED, Json(bundle)))
        }
        Err(error) => {
            state
                .auth_failures()
                .record_failure(source.ip(), ENROLMENT, Instant::now());
            tracing::warn!(%source, %error, "enrolment refused");
            Err(match error {
                EnrolError::Unknown | EnrolError::Used | EnrolError::Expired => ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "enrolment_refused",
                    error.to_string(),
                ),
                EnrolError::AlreadyEnrolled(_) => {
                    ApiError::new(StatusCode::CONFLICT, "conflict", error.to_string())
                }
                EnrolError::Store(error) => error.into(),
            })
        }
    };
    // Enrolment is a mutation outside the key guard: audit it here (never the token).
    let status = match &result {
        Ok((status, _)) => *status,
        Err(error) => error.status(),
    };
    super::auth::audit(
        &state,
        &crate::store::NewAuditEntry {
            key_id: None,
            source_ip: source.ip().to_string(),
            method: "POST".into(),
            path: "/api/v1/enrol".into(),
            status: status.as_u16(),
            action: "rack.enrol".into(),
        },
    )
    .await;
    result
}
