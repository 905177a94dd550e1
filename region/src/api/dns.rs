//! `/domains` and `/domains/{id}/records`: DNS the racks serve.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::AppState;
use crate::store::{DnsRecordRow, DomainRecord, NewDnsRecord, NewDomain};

/// List domains.
#[utoipa::path(get, path = "/domains", tag = "dns",
    responses((status = 200, body = Vec<DomainRecord>)))]
pub async fn list_domains(
    State(state): State<AppState>,
) -> Result<Json<Vec<DomainRecord>>, ApiError> {
    Ok(Json(state.store.list_domains().await?))
}

/// Create a domain; racks answer it authoritatively.
#[utoipa::path(post, path = "/domains", tag = "dns", request_body = NewDomain,
    responses((status = 201, body = DomainRecord), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn create_domain(
    State(state): State<AppState>,
    ApiJson(new): ApiJson<NewDomain>,
) -> Result<(StatusCode, Json<DomainRecord>), ApiError> {
    let domain = state.store.create_domain(new).await?;
    Ok((StatusCode::CREATED, Json(domain)))
}

/// Get one domain.
#[utoipa::path(get, path = "/domains/{id}", tag = "dns",
    params(("id" = String, Path, description = "Domain id")),
    responses((status = 200, body = DomainRecord), (status = 404, body = ErrorBody)))]
pub async fn get_domain(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DomainRecord>, ApiError> {
    Ok(Json(state.store.get_domain(&id).await?))
}

/// Delete a domain and its records.
#[utoipa::path(delete, path = "/domains/{id}", tag = "dns",
    params(("id" = String, Path, description = "Domain id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_domain(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_domain(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List a domain's records.
#[utoipa::path(get, path = "/domains/{id}/records", tag = "dns",
    params(("id" = String, Path, description = "Domain id")),
    responses((status = 200, body = Vec<DnsRecordRow>), (status = 404, body = ErrorBody)))]
pub async fn list_records(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<DnsRecordRow>>, ApiError> {
    Ok(Json(state.store.list_dns_records(Some(&id)).await?))
}

/// Add a record (A, AAAA, CNAME, TXT, SRV or PTR) to a domain.
#[utoipa::path(post, path = "/domains/{id}/records", tag = "dns", request_body = NewDnsRecord,
    params(("id" = String, Path, description = "Domain id")),
    responses((status = 201, body = DnsRecordRow), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_record(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(new): ApiJson<NewDnsRecord>,
) -> Result<(StatusCode, Json<DnsRecordRow>), ApiError> {
    let record = state.store.create_dns_record(&id, new).await?;
    Ok((StatusCode::CREATED, Json(record)))
}

/// Get one record.
#[utoipa::path(get, path = "/domains/{id}/records/{record_id}", tag = "dns",
    params(("id" = String, Path, description = "Domain id"),
        ("record_id" = String, Path, description = "Record id")),
    responses((status = 200, body = DnsRecordRow), (status = 404, body = ErrorBody)))]
pub async fn get_record(
    State(state): State<AppState>,
    ApiPath((id, record_id)): ApiPath<(String, String)>,
) -> Result<Json<DnsRecordRow>, ApiError> {
    Ok(Json(state.store.get_dns_record(&id, &record_id).await?))
}

/// Delete a record.
#[utoipa::path(delete, path = "/domains/{id}/records/{record_id}", tag = "dns",
    params(("id" = String, Path, description = "Domain id"),
        ("record_id" = String, Path, description = "Record id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_record(
    State(state): State<AppState>,
    ApiPath((id, record_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_dns_record(&id, &record_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
